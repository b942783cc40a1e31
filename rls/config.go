package rls

import "fmt"

// Config names the schema, roles and settings the generated SQL refers to.
type Config struct {
	Schema      string // holds the tables and the helper functions
	Runtime     string // the server's role: gets the tables' DML grants
	Maintenance string // the cross-tenant maintenance role: gets full DML
	Owner       string // the migration role: may call the helpers
	Definer     string // NOLOGIN BYPASSRLS role owning the membership helpers

	TenantSetting    string // e.g. bulkhead.tenant_id
	EntitySetting    string // e.g. bulkhead.entity_id
	ActingForSetting string // e.g. bulkhead.acting_for
}

func (c Config) validate() error {
	for what, v := range map[string]string{"schema": c.Schema, "runtime role": c.Runtime, "maintenance role": c.Maintenance,
		"owner role": c.Owner, "definer role": c.Definer} {
		if !identRE.MatchString(v) {
			return fmt.Errorf("rls config: %s %q is not a plain lower-case identifier", what, v)
		}
	}
	settingRE := `^[a-z_]+\.[a-z_]+$`
	for what, v := range map[string]string{"tenant setting": c.TenantSetting, "entity setting": c.EntitySetting, "acting-for setting": c.ActingForSetting} {
		if !matches(settingRE, v) {
			return fmt.Errorf("rls config: %s %q must look like prefix.name", what, v)
		}
	}
	return nil
}
