package rls

import (
	"fmt"
	"maps"
	"slices"
)

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

	// NativeMembership makes member_rooms and can_author call
	// bulkhead_context's C functions member_rooms_native and
	// can_author_native (the extension, version 1.2 or later, must be
	// installed in Schema), which read the context settings named below
	// themselves: it requires Schema "bulkhead" and the bulkhead.*
	// settings. The delegation paths stay in PL/pgSQL, as
	// member_rooms_delegated and can_author_delegated. Without it,
	// member_rooms and can_author are the PL/pgSQL SECURITY DEFINER helpers.
	NativeMembership bool

	// TenantType is the SQL type of every tenant column, and so of
	// current_tenant(): "uuid" (also when empty: bulkhead's own schema) or,
	// for a database bulkhead adopts, "text", "bigint" or "integer". The
	// membership helpers and every kind but Tenant compare the tenant with
	// bulkhead's uuid columns: Generate, and Policies for those kinds,
	// refuse any other type.
	TenantType string
}

// tenantTypes maps each TenantType (spelled as format_type spells the
// column's type) to the type's name in pg_catalog.
var tenantTypes = map[string]string{"uuid": "uuid", "text": "text", "bigint": "int8", "integer": "int4"}

// TenantTypes returns the TenantType values accepted, sorted.
func TenantTypes() []string { return slices.Sorted(maps.Keys(tenantTypes)) }

// CatalogType returns the name in pg_catalog of the tenant type typ, and
// false when typ is not one.
func CatalogType(typ string) (string, bool) {
	name, ok := tenantTypes[typ]
	return name, ok
}

// tenantType is TenantType with its default.
func (c Config) tenantType() string {
	if c.TenantType == "" {
		return "uuid"
	}
	return c.TenantType
}

// The schema and settings bulkhead_context's C functions read.
const (
	nativeSchema    = "bulkhead"
	nativeTenant    = "bulkhead.tenant_id"
	nativeEntity    = "bulkhead.entity_id"
	nativeActingFor = "bulkhead.acting_for"
)

func (c Config) validate() error {
	for what, v := range map[string]string{"schema": c.Schema, "runtime role": c.Runtime, "maintenance role": c.Maintenance,
		"owner role": c.Owner, "definer role": c.Definer} {
		if !identRE.MatchString(v) {
			return fmt.Errorf("rls config: %s %q is not a plain lower-case identifier", what, v)
		}
	}
	if c.NativeMembership && (c.Schema != nativeSchema || c.TenantSetting != nativeTenant || c.EntitySetting != nativeEntity || c.ActingForSetting != nativeActingFor) {
		return fmt.Errorf("rls config: NativeMembership needs schema %s and the settings %s, %s, %s (what bulkhead_context reads)", nativeSchema, nativeTenant, nativeEntity, nativeActingFor)
	}
	if _, ok := tenantTypes[c.tenantType()]; !ok {
		return fmt.Errorf("rls config: tenant type %q: want one of %v", c.TenantType, TenantTypes())
	}
	settingRE := `^[a-z_]+\.[a-z_]+$`
	for what, v := range map[string]string{"tenant setting": c.TenantSetting, "entity setting": c.EntitySetting, "acting-for setting": c.ActingForSetting} {
		if !matches(settingRE, v) {
			return fmt.Errorf("rls config: %s %q must look like prefix.name", what, v)
		}
	}
	return nil
}
