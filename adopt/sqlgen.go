package adopt

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/jackc/pgx/v5/pgconn"
)

// PolicyName is adopt's layer-1 policy, the one permissive policy it
// installs on each table it isolates. Tables of kind owned or private get
// the generator's restrictive layer-2 policies as well, named
// bulkhead_adopt_<command> (policyNames).
const PolicyName = "bulkhead_adopt_tenant"

// policyNames is every policy name adopt may install on a table.
var policyNames = []string{PolicyName, "bulkhead_adopt_select", "bulkhead_adopt_insert", "bulkhead_adopt_update", "bulkhead_adopt_delete"}

// Trigger names of the shadow write recorder.
var shadowTriggers = []string{"bulkhead_adopt_shadow_ins", "bulkhead_adopt_shadow_upd", "bulkhead_adopt_shadow_del"}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// strictPolicies are t's policies from the policy generator, renamed for
// adopt: layer 1 first (the row's tenant column equals the tenant in
// context, current_tenant() run once per statement), then, for kinds owned,
// private and room, the restrictive policies comparing the owner column
// with current_entity() (and, for room, the room column with the rooms the
// membership table makes the entity a member of, read once per statement).
func strictPolicies(p *Plan, t Table) ([]rls.Policy, error) {
	rt := rls.Table{Name: t.Name, Kind: rls.Tenant, TenantColumn: t.TenantColumn}
	if k, ok := layerTwo[t.Kind]; ok {
		rt.Kind, rt.Entity = k, t.OwnerColumn
	}
	if mt, ok := p.membershipOf(t); ok {
		rt.RoomColumn = t.RoomColumn
		rt.Membership = &rls.Membership{Schema: p.Schema, Table: mt.Name, TenantColumn: mt.TenantColumn, Room: t.Membership.RoomColumn, Entity: t.Membership.EntityColumn}
	}
	ps, err := rls.Policies(rlsConfig(p), rt)
	if err != nil {
		return nil, fmt.Errorf("policy for %s: %w", t.Name, err)
	}
	if len(ps) == 0 || ps[0].Name != rls.TenantPolicy || !ps[0].Permissive || ps[0].Using == "" || ps[0].Using != ps[0].Check {
		return nil, fmt.Errorf("policy for %s: the generator's layer 1 changed shape", t.Name)
	}
	for i := range ps {
		ps[i].Name = "bulkhead_adopt_" + strings.TrimPrefix(ps[i].Name, "bulkhead_")
		if i > 0 && (ps[i].Permissive || !slices.Contains(policyNames[1:], ps[i].Name)) {
			return nil, fmt.Errorf("policy for %s: unexpected generated policy %s", t.Name, ps[i].Name)
		}
	}
	return ps, nil
}

// shadowPolicies are strictPolicies with each clause ORed with the table's
// shadow switch, evaluated once per statement as an InitPlan: clean rows
// pass the first arm; in shadow mode the switch passes every other row.
func shadowPolicies(p *Plan, t Table) ([]rls.Policy, error) {
	ps, err := strictPolicies(p, t)
	if err != nil {
		return nil, err
	}
	open := fmt.Sprintf("(SELECT %s.shadow_open(%s::regclass::oid))", StateSchema, lit(qident(p.Schema, t.Name)))
	for i := range ps {
		for _, c := range []*string{&ps[i].Using, &ps[i].Check} {
			if *c != "" {
				*c = "(" + *c + ") OR " + open
			}
		}
	}
	return ps, nil
}

// createPolicySQL and alterPolicySQL install pol on the table q, or set
// its clauses.
func createPolicySQL(q string, pol rls.Policy) string {
	as := "RESTRICTIVE"
	if pol.Permissive {
		as = "PERMISSIVE"
	}
	return fmt.Sprintf("CREATE POLICY %s ON %s AS %s FOR %s TO PUBLIC", pol.Name, q, as, pol.Command) + clauses(pol)
}

func alterPolicySQL(q string, pol rls.Policy) string {
	return fmt.Sprintf("ALTER POLICY %s ON %s", pol.Name, q) + clauses(pol)
}

func clauses(pol rls.Policy) string {
	var s string
	if pol.Using != "" {
		s += " USING (" + pol.Using + ")"
	}
	if pol.Check != "" {
		s += " WITH CHECK (" + pol.Check + ")"
	}
	return s
}

// backfillPrepareSQL adds the tenant column (when the plan says so) and
// makes the context its default, so the legacy application's inserts that
// don't name it still get the tenant.
func backfillPrepareSQL(p *Plan, t Table, hasDefault bool) []string {
	q := qident(p.Schema, t.Name)
	var out []string
	if t.AddColumn {
		// No default in ADD COLUMN: a non-volatile default would be stored
		// as every existing row's value.
		out = append(out, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", q, ident(t.TenantColumn), p.tenantType()))
	}
	if !hasDefault {
		out = append(out, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s.current_tenant()", q, ident(t.TenantColumn), StateSchema))
	}
	return out
}

func notNullName(t Table) string { return "bulkhead_adopt_" + t.TenantColumn + "_not_null" }

// backfillFinishSQL forbids a NULL tenant from now on: NOT VALID first (no
// scan under a strong lock), then VALIDATE (a scan under a lock that lets
// reads and writes go on).
func backfillFinishSQL(p *Plan, t Table) []string {
	q := qident(p.Schema, t.Name)
	return []string{
		fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID", q, ident(notNullName(t)), ident(t.TenantColumn)),
		fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", q, ident(notNullName(t))),
	}
}

// triggerSQL creates the WHEN-guarded AFTER ROW triggers: the trigger
// function runs only for rows strict mode would refuse (WITH CHECK) or not
// reach (USING): another tenant's, and for kinds owned and private a row
// whose owner is not the entity in context (NULL included: strict mode
// refuses it too).
func triggerSQL(p *Plan, t Table, pk []string) []string {
	q := qident(p.Schema, t.Name)
	c := ident(t.TenantColumn)
	// The context read inline, with built-in functions only: a trigger's
	// WHEN is prepared for every statement, and inlining a SQL function
	// there (current_tenant()) re-parses its body each time (measured:
	// shadow inserts 13 % slower than with this form). Same meaning as
	// current_tenant(): '' or unset is NULL.
	cur := fmt.Sprintf("NULLIF(pg_catalog.current_setting(%s, true), '')::pg_catalog.%s", lit(p.TenantSetting), p.catalogType())
	ent := fmt.Sprintf("NULLIF(pg_catalog.current_setting(%s, true), '')::pg_catalog.uuid", lit(p.entitySetting()))
	bad := func(row string) string {
		s := fmt.Sprintf("%s.%s IS DISTINCT FROM %s", row, c, cur)
		if t.entityKind() {
			s += fmt.Sprintf(" OR (%s.%s OPERATOR(pg_catalog.=) %s) IS NOT TRUE", row, ident(t.OwnerColumn), ent)
		}
		if t.Kind == KindRoom {
			// A WHEN can't hold a sub-query: the membership is a function.
			s += fmt.Sprintf(" OR NOT %s.%s(%s.%s, %s, %s)", StateSchema, ident(memberFunction(t.Name)), row, ident(t.RoomColumn), cur, ent)
		}
		return s
	}
	args := fmt.Sprintf("%s, %s", lit(t.TenantColumn), lit(strings.Join(pk, ",")))
	fn := StateSchema + ".record_violation"
	return append(roomFunctionSQL(p, t),
		// BEFORE, not AFTER: an INSERT ... ON CONFLICT checks the proposed
		// row against the INSERT policy even when it then takes the
		// conflict path (DO NOTHING, or DO UPDATE, whose UPDATE trigger sees
		// only the existing row changed), and an AFTER INSERT trigger never
		// sees that row. It fires in name order among the table's own
		// BEFORE INSERT triggers: one sorting after it that changes the
		// tenant, owner or room, or skips the row, is checked as it was
		// before (docs/ADOPT.md, Gaps).
		fmt.Sprintf("CREATE TRIGGER %s BEFORE INSERT ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s(%s)", shadowTriggers[0], q, bad("NEW"), fn, args),
		fmt.Sprintf("CREATE TRIGGER %s AFTER UPDATE ON %s FOR EACH ROW WHEN (%s OR %s) EXECUTE FUNCTION %s(%s)", shadowTriggers[1], q, bad("OLD"), bad("NEW"), fn, args),
		fmt.Sprintf("CREATE TRIGGER %s AFTER DELETE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s(%s)", shadowTriggers[2], q, bad("OLD"), fn, args),
	)
}

// roomFunctionSQL creates, for a room table, the membership check its
// recorder's WHEN calls: whether entity is a member of room in tenant,
// exactly the strict policies' test, read as the caller (SECURITY INVOKER:
// it sees what the caller's grants and the membership table's policies let
// it see, as the policies' sub-query does). The room parameter takes the
// membership room column's type; the body names only qualified relations,
// pg_catalog's operators and positional parameters, so nothing in it
// resolves through the caller's search_path or a column's name. PL/pgSQL,
// not SQL: its plan is kept for the session, where a SQL function called
// from a WHEN is parsed and planned again by every statement.
func roomFunctionSQL(p *Plan, t Table) []string {
	mt, ok := p.membershipOf(t)
	if !ok {
		return nil
	}
	m := t.Membership
	mq := qident(p.Schema, mt.Name)
	return []string{fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s.%s(%s.%s%%TYPE, pg_catalog.uuid, pg_catalog.uuid) RETURNS boolean
  LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
  AS $f$BEGIN RETURN EXISTS (SELECT 1 FROM %s m WHERE m.%s OPERATOR(pg_catalog.=) $2 AND m.%s OPERATOR(pg_catalog.=) $1 AND m.%s OPERATOR(pg_catalog.=) $3); END$f$`,
		StateSchema, ident(memberFunction(t.Name)), mq, ident(m.RoomColumn), mq, ident(mt.TenantColumn), ident(m.RoomColumn), ident(m.EntityColumn))}
}

// dropTriggerSQL drops the recorder's triggers and, whatever t's kind now
// (it may have been room when they were made), its membership check.
func dropTriggerSQL(p *Plan, t Table) []string {
	var out []string
	for _, tr := range shadowTriggers {
		out = append(out, fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", tr, qident(p.Schema, t.Name)))
	}
	if len(memberFunction(t.Name)) <= 63 {
		out = append(out, fmt.Sprintf("DROP FUNCTION IF EXISTS %s.%s", StateSchema, ident(memberFunction(t.Name))))
	}
	return out
}

// openSwitchSQL and closeSwitchSQL open and close the shadow switch of the
// table q (the row of the mode table that shadow_open reads).
func openSwitchSQL(q string) string {
	return fmt.Sprintf("INSERT INTO %s.mode VALUES (%s::regclass::oid, true) ON CONFLICT (rel) DO UPDATE SET shadow = true", StateSchema, lit(q))
}

func closeSwitchSQL(q string) string {
	return fmt.Sprintf("DELETE FROM %s.mode WHERE rel = %s::regclass::oid", StateSchema, lit(q))
}

// shadowSQL turns RLS on (forced: the legacy application may connect as
// the owner) with the shadow policies, opens the switch, installs the write
// recorder and grants the runtime role the DML privileges grant (those it
// lacks: see missingPrivileges).
func shadowSQL(p *Plan, t Table, pk, grant []string) ([]string, error) {
	q := qident(p.Schema, t.Name)
	ps, err := shadowPolicies(p, t)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pol := range ps {
		out = append(out, createPolicySQL(q, pol))
	}
	out = append(out,
		openSwitchSQL(q),
		"ALTER TABLE "+q+" ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE "+q+" FORCE ROW LEVEL SECURITY",
	)
	if len(grant) > 0 {
		out = append(out, fmt.Sprintf("GRANT %s ON %s TO %s", strings.Join(grant, ", "), q, ident(p.Runtime.Name)))
	}
	return append(out, triggerSQL(p, t, pk)...), nil
}

// enforceSQL makes the policies strict (one ALTER POLICY each), closes the
// switch and drops the recorder, which strict mode makes useless.
func enforceSQL(p *Plan, t Table) ([]string, error) {
	q := qident(p.Schema, t.Name)
	ps, err := strictPolicies(p, t)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pol := range ps {
		out = append(out, alterPolicySQL(q, pol))
	}
	out = append(out, closeSwitchSQL(q))
	return append(out, dropTriggerSQL(p, t)...), nil
}

// unenforceSQL is enforceSQL undone: back to shadow.
func unenforceSQL(p *Plan, t Table, pk []string) ([]string, error) {
	q := qident(p.Schema, t.Name)
	ps, err := shadowPolicies(p, t)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pol := range ps {
		out = append(out, alterPolicySQL(q, pol))
	}
	out = append(out, openSwitchSQL(q))
	return append(out, triggerSQL(p, t, pk)...), nil
}

// SQL returns, per phase, the statements the plan implies (what backfill,
// shadow and enforce run, without the data updates), for review.
func SQL(p *Plan) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "-- SQL implied by the adoption plan for schema %s (tenant setting %s).\n", p.Schema, p.TenantSetting)
	fmt.Fprintf(&b, "-- Each phase runs per table in one transaction with a lock_timeout; rollback undoes it exactly.\n\n")
	b.WriteString("-- state schema and context helpers (installed by the first phase)\n")
	st, err := schemaSQL(p)
	if err != nil {
		return "", err
	}
	for _, s := range st {
		b.WriteString(s + ";\n")
	}
	if p.Runtime.Create {
		fmt.Fprintf(&b, "\n-- runtime role (shadow)\nCREATE ROLE %s NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;\nGRANT USAGE ON SCHEMA %s TO %s;\n", ident(p.Runtime.Name), ident(p.Schema), ident(p.Runtime.Name))
		fmt.Fprintf(&b, "-- then, by the operator: ALTER ROLE %s LOGIN PASSWORD '...'; and point the application at it\n", ident(p.Runtime.Name))
	}
	if p.Runtime.Warning != "" {
		fmt.Fprintf(&b, "-- WARNING: %s.\n", p.Runtime.Warning)
	}
	for _, t := range p.TenantTables() {
		fmt.Fprintf(&b, "\n-- table %s\n", t.Name)
		if len(t.PrimaryKey) > 0 && t.PrimaryKey[0] != t.TenantColumn {
			cols := make([]string, 0, len(t.PrimaryKey)+1)
			cols = append(cols, ident(t.TenantColumn))
			for _, c := range t.PrimaryKey {
				if c != t.TenantColumn {
					cols = append(cols, ident(c))
				}
			}
			fmt.Fprintf(&b, "-- keys (adopt keys, optional, after backfill): if other tenant tables reference %s, this index is built\n-- and their foreign keys carry the tenant: child (%s, col) REFERENCES %s (%s); the primary key itself stays.\n-- CREATE UNIQUE INDEX CONCURRENTLY bulkhead_adopt_tk_<oid> ON %s (%s);\n",
				t.Name, ident(t.TenantColumn), qident(p.Schema, t.Name), strings.Join(cols, ", "), qident(p.Schema, t.Name), strings.Join(cols, ", "))
		}
		b.WriteString("-- backfill\n")
		for _, s := range backfillPrepareSQL(p, t, false) {
			b.WriteString(s + ";\n")
		}
		for _, r := range t.Backfill {
			fmt.Fprintf(&b, "-- rule %s: %s (batched by primary key)\n", r.Name, ruleText(r))
		}
		for _, r := range t.OwnerBackfill {
			fmt.Fprintf(&b, "-- owner rule %s: %s into %s, after the tenants (batched by primary key)\n", r.Name, ruleText(r), t.OwnerColumn)
		}
		for _, s := range backfillFinishSQL(p, t) {
			b.WriteString(s + ";\n")
		}
		fmt.Fprintf(&b, "-- when %s was nullable (no scan: the validated check proves it):\nALTER TABLE %s ALTER COLUMN %s SET NOT NULL;\nALTER TABLE %s DROP CONSTRAINT %s;\n",
			t.TenantColumn, qident(p.Schema, t.Name), ident(t.TenantColumn), qident(p.Schema, t.Name), ident(notNullName(t)))
		b.WriteString("-- shadow\n")
		b.WriteString("-- (the GRANT names only the privileges the runtime role lacks on the table and on every column)\n")
		sh, err := shadowSQL(p, t, t.PrimaryKey, dmlPrivileges)
		if err != nil {
			return "", err
		}
		for _, s := range sh {
			b.WriteString(s + ";\n")
		}
		b.WriteString("-- enforce\n")
		en, err := enforceSQL(p, t)
		if err != nil {
			return "", err
		}
		for _, s := range en {
			b.WriteString(s + ";\n")
		}
	}
	return b.String(), nil
}

func ruleText(r Rule) string {
	switch {
	case r.Constant != "":
		return "constant " + r.Constant
	case r.Parent != nil:
		return fmt.Sprintf("parent %s -> %s.%s", r.Parent.Column, r.Parent.Table, r.Parent.key())
	}
	return "expression " + r.Expression
}

func (pr *ParentRule) key() string {
	if pr.Key == "" {
		return "id"
	}
	return pr.Key
}
