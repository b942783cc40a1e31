package rls

import (
	"fmt"
	"strings"
)

// DefinerFunctions are the SECURITY DEFINER helpers Generate installs
// with cfg, by name, owned by Config.Definer. They are the only such
// functions the runtime role may execute; the self-check treats this list
// as its allow-list (with NativeMembership, member_rooms and can_author
// are not among them: member_rooms_delegated and can_author_delegated are).
func (cfg Config) DefinerFunctions() []string {
	ds := cfg.definers()
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.name
	}
	return out
}

// ContextFunctionNames are the functions ContextFunctions installs.
var ContextFunctionNames = []string{"current_tenant", "current_entity", "current_acting_for"}

// Generate returns the SQL that installs the helper functions that read
// tables (ContextFunctions must be installed already) and, for each
// table, RLS (ENABLE + FORCE), its policies, grants and indexes. The
// statements are separated by ";\n\n" and are idempotent. Run them in one
// transaction: if any fails, nothing is installed.
// It returns an error for an invalid Config or Table.
func Generate(cfg Config, tables []Table) ([]string, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.tenantType() != "uuid" {
		return nil, fmt.Errorf("rls config: tenant type %s: the membership helpers compare uuid tenants; only Policies of Tenant tables and ContextFunctions take another type", cfg.TenantType)
	}
	stmts := functions(cfg)
	for _, t := range tables {
		ts, err := tableStatements(cfg, t)
		if err != nil {
			return nil, err
		}
		stmts = append(stmts, ts...)
	}
	return stmts, nil
}

// Remove returns the SQL that undoes Generate for tables: drops their
// policies and disables RLS, then drops the helper functions. It is for
// down migrations and for tests that must show the suite fails without
// policies. Indexes and grants are left in place.
func Remove(cfg Config, tables []Table) ([]string, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var stmts []string
	for i := len(tables) - 1; i >= 0; i-- {
		t := tables[i]
		ps, err := Policies(cfg, t)
		if err != nil {
			return nil, err
		}
		q := cfg.Schema + "." + t.Name
		for _, p := range ps {
			stmts = append(stmts, fmt.Sprintf("DROP POLICY IF EXISTS %s ON %s", p.Name, q))
		}
		stmts = append(stmts, "ALTER TABLE "+q+" NO FORCE ROW LEVEL SECURITY", "ALTER TABLE "+q+" DISABLE ROW LEVEL SECURITY")
	}
	ds := cfg.definers()
	for i := len(ds) - 1; i >= 0; i-- {
		stmts = append(stmts, fmt.Sprintf("DROP FUNCTION IF EXISTS %s.%s(%s)", cfg.Schema, ds[i].name, argTypes(ds[i].args)))
	}
	if cfg.NativeMembership {
		for i := len(natives) - 1; i >= 0; i-- {
			stmts = append(stmts, fmt.Sprintf("DROP FUNCTION IF EXISTS %s.%s(%s)", cfg.Schema, natives[i].name, argTypes(natives[i].definer().args)))
		}
	}
	stmts = append(stmts, fmt.Sprintf("DROP FUNCTION IF EXISTS %s.current_actors(text)", cfg.Schema))
	return stmts, nil
}

func tableStatements(cfg Config, t Table) ([]string, error) {
	ps, err := Policies(cfg, t)
	if err != nil {
		return nil, err
	}
	q := cfg.Schema + "." + t.Name
	stmts := []string{
		"ALTER TABLE " + q + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + q + " FORCE ROW LEVEL SECURITY",
	}
	for _, p := range ps {
		stmts = append(stmts, p.SQL(cfg, t)...)
	}
	grants := make([]string, 0, 4)
	updateColumns := ""
	for _, g := range t.grants() {
		if g == Update && t.UpdateColumns != nil {
			cols := make([]string, len(t.UpdateColumns))
			for i, c := range t.UpdateColumns {
				cols[i] = ident(c)
			}
			updateColumns = fmt.Sprintf("GRANT UPDATE (%s) ON %s TO %s", strings.Join(cols, ", "), q, cfg.Runtime)
			continue
		}
		grants = append(grants, string(g))
	}
	stmts = append(stmts, fmt.Sprintf("REVOKE ALL ON %s FROM PUBLIC, %s", q, cfg.Runtime))
	if len(grants) > 0 {
		stmts = append(stmts, fmt.Sprintf("GRANT %s ON %s TO %s", strings.Join(grants, ", "), q, cfg.Runtime))
	}
	if updateColumns != "" {
		stmts = append(stmts, updateColumns)
	}
	stmts = append(stmts, fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s", q, cfg.Maintenance))
	if t.Kind == Participants || t.Kind == Rooms || t.Kind == Worlds || t.Kind == Delegations {
		stmts = append(stmts, fmt.Sprintf("GRANT SELECT ON %s TO %s", q, cfg.Definer))
	}
	for _, cols := range indexColumns(t) {
		name := t.Name + "_" + strings.Join(cols, "_") + "_idx"
		stmts = append(stmts, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s, %s)", name, q, t.tenantColumn(), strings.Join(cols, ", ")))
	}
	return stmts, nil
}

// indexColumns lists the columns, after the tenant column, that the
// policies look rows up by.
func indexColumns(t Table) [][]string {
	var out [][]string
	switch t.Kind {
	case Entities, Owned, Private:
		if t.Entity != "id" {
			out = append(out, []string{t.Entity})
		}
	case Room, Member:
		out = append(out, []string{t.RoomColumn}, []string{t.Entity})
	case Visibility:
		out = append(out, []string{t.Entity}, []string{t.RoomColumn})
	case Inherit:
		out = append(out, []string{t.ParentKey})
	case Link:
		out = append(out, []string{t.OtherKey})
	case Agents:
		out = append(out, []string{t.Entity})
	case Worlds:
		out = append(out, []string{"owner_id"})
	case Rooms:
		out = append(out, []string{"world_id"})
	case Participants:
		out = append(out, []string{"entity_id", "room_id"})
	case Delegations:
		out = append(out, []string{"agent_id", "principal_id"}, []string{"principal_id"})
	}
	for _, c := range t.Indexes {
		out = append(out, []string{c})
	}
	return out
}

// SQL returns the statements that (re)create p on t: DROP POLICY IF EXISTS,
// then CREATE POLICY.
func (p Policy) SQL(cfg Config, t Table) []string {
	q := cfg.Schema + "." + t.Name
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE POLICY %s ON %s", p.Name, q)
	if p.Permissive {
		b.WriteString(" AS PERMISSIVE")
	} else {
		b.WriteString(" AS RESTRICTIVE")
	}
	fmt.Fprintf(&b, " FOR %s TO PUBLIC", p.Command)
	if p.Using != "" {
		fmt.Fprintf(&b, "\n  USING (%s)", p.Using)
	}
	if p.Check != "" {
		fmt.Fprintf(&b, "\n  WITH CHECK (%s)", p.Check)
	}
	return []string{fmt.Sprintf("DROP POLICY IF EXISTS %s ON %s", p.Name, q), b.String()}
}
