package postgres

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/jackc/pgx/v5"
)

// Finding is one problem the self-check found.
type Finding struct {
	Check  string `json:"check"`  // which rule
	Object string `json:"object"` // the role, table, function or view
	Detail string `json:"detail"`
}

func (f Finding) String() string { return f.Check + ": " + f.Object + ": " + f.Detail }

// Querier is what the self-check reads the catalog through.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// SelfCheck verifies, as the runtime role the server uses, that the
// database enforces isolation. It reads only the catalog, so it runs with
// no scope. An empty result means every rule holds:
//
//   - the connected role (current_user) is not the owner, not superuser, not
//     BYPASSRLS, NOINHERIT, a member of no role, owns nothing;
//   - it has no TRUNCATE, TRIGGER or REFERENCES on any table, no CREATE on
//     any schema, no access to the public schema or to the wrapped keysets'
//     schema, no TEMP on any database, no CONNECT on another database open
//     to PUBLIC (such as postgres);
//   - the owner is not a member of the definer role or of any other role
//     that bypasses row-level security;
//   - no two indexes are the same;
//   - every table with a tenant_id column, and every declared table, has
//     RLS enabled and forced, is declared in Tables, and carries exactly the
//     generator's policies (names, commands, permissive/restrictive), and
//     each policy's USING and WITH CHECK, as PostgreSQL deparses them, is
//     the generator's (ExpectedPolicies);
//   - every function of the schema is one the migrations make, with their
//     body, owner, result, language, SECURITY DEFINER, LEAKPROOF and SET
//     clauses (ExpectedFunctions): the generated helpers, the context
//     functions every policy calls, the access check, the authentication
//     definers and the extension's C functions, and nothing added;
//   - the context settings can be set only through bulkhead.enter (the
//     bulkhead_context extension is preloaded and created);
//   - no SECURITY DEFINER function it can execute is outside the generator's
//     allow-list (right schema, name, owner and pinned search_path);
//   - no trigger but bulkhead's own (AllowedTriggers) sits on a table with
//     row-level security (a trigger sees every row written);
//   - no view without security_invoker, and no materialized view, that it
//     can read sits over a table with row-level security.
func SelfCheck(ctx context.Context, q Querier) ([]Finding, error) {
	var out []Finding
	add := func(check, obj, detail string) { out = append(out, Finding{check, obj, detail}) }
	rowsOf := func(sql string, args ...any) ([][]any, error) {
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return nil, fmt.Errorf("self-check: %w", err)
		}
		defer rows.Close()
		var res [][]any
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				return nil, err
			}
			res = append(res, v)
		}
		return res, rows.Err()
	}

	// Role attributes and membership.
	var role string
	var super, bypass, inherit, createrole, createdb bool
	rows, err := rowsOf(`SELECT rolname, rolsuper, rolbypassrls, rolinherit, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("self-check: current_user not in pg_roles")
	}
	role = rows[0][0].(string)
	super, bypass, inherit, createrole, createdb = rows[0][1].(bool), rows[0][2].(bool), rows[0][3].(bool), rows[0][4].(bool), rows[0][5].(bool)
	if role == Owner {
		add("role", role, "the server connects as the schema owner; it must connect as "+Runtime)
	}
	for _, a := range []struct {
		bad  bool
		what string
	}{{super, "is SUPERUSER"}, {bypass, "has BYPASSRLS"}, {inherit, "has INHERIT (must be NOINHERIT)"}, {createrole, "has CREATEROLE"}, {createdb, "has CREATEDB"}} {
		if a.bad {
			add("role", role, a.what)
		}
	}
	rows, err = rowsOf(`SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = current_user ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("role", role, "is a member of role "+r[0].(string))
	}
	rows, err = rowsOf(`
		SELECT 'relation ' || c.oid::regclass::text FROM pg_class c WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
		UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
		UNION ALL SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
		UNION ALL SELECT 'type ' || t.oid::regtype::text FROM pg_type t WHERE t.typowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
		ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("ownership", role, "owns "+r[0].(string))
	}

	// The context settings must be the extension's superuser-only ones
	// (a plain or placeholder setting is forgeable), and enter() must exist.
	rows, err = rowsOf(`
		SELECT n.name FROM unnest($1::text[]) AS n(name)
		WHERE NOT EXISTS (SELECT 1 FROM pg_settings s WHERE s.name = n.name AND s.context = 'superuser')
		UNION ALL SELECT 'bulkhead.enter(bytea)' WHERE to_regprocedure('bulkhead.enter(bytea)') IS NULL
		ORDER BY 1`, []string{TenantSetting, EntitySetting, ActingForSetting})
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("context", r[0].(string), "missing or settable by any role: the bulkhead_context extension must be installed, preloaded (shared_preload_libraries) and created (migration 00010)")
	}

	// Forbidden privileges.
	rows, err = rowsOf(`
		SELECT c.oid::regclass::text, p.priv FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN unnest(ARRAY['TRUNCATE', 'TRIGGER', 'REFERENCES']) AS p(priv)
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND has_table_privilege(current_user, c.oid, p.priv)
		ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("privilege", r[0].(string), "runtime role has "+r[1].(string))
	}
	rows, err = rowsOf(`SELECT nspname FROM pg_namespace WHERE has_schema_privilege(current_user, oid, 'CREATE') ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("privilege", "schema "+r[0].(string), "runtime role has CREATE")
	}
	rows, err = rowsOf(`SELECT 1 FROM pg_namespace WHERE nspname = 'public' AND has_schema_privilege(current_user, oid, 'USAGE')`)
	if err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		add("privilege", "schema public", "runtime role has USAGE")
	}
	rows, err = rowsOf(`SELECT 1 FROM pg_namespace WHERE nspname = $1 AND has_schema_privilege(current_user, oid, 'USAGE')`, KeySchema)
	if err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		add("privilege", "schema "+KeySchema, "runtime role can enter the schema of the wrapped keysets")
	}
	rows, err = rowsOf(`SELECT 1 WHERE has_database_privilege(current_user, current_database(), 'TEMP')`)
	if err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		add("privilege", "database", "runtime role may create temporary tables")
	}
	// Other databases: no TEMP anywhere, and no CONNECT to a database open
	// to PUBLIC (postgres, template1, other applications' databases). A
	// database closed to PUBLIC with CONNECT granted to the runtime role is
	// another bulkhead database on the same roles (PrepareDatabase), under
	// the same policies.
	rows, err = rowsOf(`
		SELECT d.datname, p.priv,
		       EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee = 0) AS public_open
		FROM pg_database d CROSS JOIN unnest(ARRAY['CONNECT', 'TEMPORARY']) AS p(priv)
		WHERE d.datallowconn AND d.datname <> current_database() AND has_database_privilege(current_user, d.oid, p.priv)
		ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		name, priv, open := r[0].(string), r[1].(string), r[2].(bool)
		switch {
		case priv == "TEMPORARY":
			add("privilege", "database "+name, "runtime role may create temporary tables in another database")
		case open:
			add("privilege", "database "+name, "runtime role has CONNECT on another database open to PUBLIC (REVOKE CONNECT, TEMPORARY ON DATABASE "+pgx.Identifier{name}.Sanitize()+" FROM PUBLIC, granting CONNECT to the roles that need it)")
		}
	}
	// The owner must not be able to SET ROLE to a BYPASSRLS role (the
	// definer, the maintenance role, or any other). Migrations get the
	// definer membership only while they run (WithDefinerMembership).
	rows, err = rowsOf(`
		SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
		WHERE u.rolname = $1 AND (r.rolbypassrls OR r.rolsuper OR r.rolname = $2)
		ORDER BY 1`, Owner, Definer)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("role", Owner, "is a member of "+r[0].(string)+", so it can SET ROLE to a role that bypasses row-level security")
	}

	// Row-level security on every tenant table.
	declared := map[string]rls.Table{}
	for _, t := range Tables {
		declared[Schema+"."+t.Name] = t
	}
	rows, err = rowsOf(`
		SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  -- a table in a schema the runtime role can't enter is out of its reach
		  AND (has_schema_privilege(current_user, n.oid, 'USAGE') OR n.nspname || '.' || c.relname = ANY($1::text[]))
		  AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
		       OR n.nspname || '.' || c.relname = ANY($1::text[]))
		ORDER BY 1`, declaredNames())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range rows {
		name, enabled, forced := r[0].(string), r[1].(bool), r[2].(bool)
		seen[name] = true
		if !enabled {
			add("rls", name, "row-level security is not enabled")
		}
		if !forced {
			add("rls", name, "row-level security is not forced")
		}
		if _, ok := declared[name]; !ok {
			add("rls", name, "has a tenant_id column but is not declared in postgres.Tables (no generated policies)")
		}
	}
	for _, name := range declaredNames() {
		if !seen[name] {
			add("rls", name, "declared tenant table is missing")
		}
	}
	rows, err = rowsOf(`
		SELECT n.nspname || '.' || c.relname, p.polname, p.polcmd::text, p.polpermissive
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	have := map[string][]string{}
	for _, r := range rows {
		have[r[0].(string)] = append(have[r[0].(string)], policyKey(r[1].(string), cmdName(r[2].(string)), r[3].(bool)))
	}
	for name, t := range declared {
		ps, err := rls.Policies(RLSConfig, t)
		if err != nil {
			return nil, err
		}
		var want []string
		for _, p := range ps {
			want = append(want, policyKey(p.Name, p.Command, p.Permissive))
		}
		sort.Strings(want)
		got := have[name]
		sort.Strings(got)
		for _, w := range want {
			if !slices.Contains(got, w) {
				add("policy", name, "missing generated policy "+w)
			}
		}
		for _, g := range got {
			if !slices.Contains(want, g) {
				add("policy", name, "unexpected policy "+g+" (only the generator's policies may exist: permissive ones are OR-ed)")
			}
		}
	}

	// Meaning, not only names: every expression as PostgreSQL deparses it,
	// and every helper's body, against the generator's.
	expected, err := LoadExpectedPolicies()
	if err != nil {
		return nil, err
	}
	rows, err = rowsOf(`SELECT current_setting('server_version_num')::int / 10000`)
	if err != nil {
		return nil, err
	}
	if major := int(rows[0][0].(int32)); major != expected.ServerMajor {
		add("policy", "server", fmt.Sprintf("policy expressions can't be compared on PostgreSQL %d: the generator's deparsed expressions were recorded on PostgreSQL %d (run go test ./postgres -run TestExpectedPoliciesAreTheGenerators -update on %d)", major, expected.ServerMajor, major))
	} else {
		rows, err = rowsOf(livePoliciesSQL, declaredNames())
		if err != nil {
			return nil, err
		}
		comparePolicies(livePolicies(rows), expected.Policies, add)
	}
	liveFns, err := ReadFunctions(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("self-check: %w", err)
	}
	recorded, err := LoadExpectedFunctions()
	if err != nil {
		return nil, err
	}
	compareRecordedFunctions(liveFns, recorded.Functions, add)

	// SECURITY DEFINER functions the runtime role can run.
	rows, err = rowsOf(`
		SELECT n.nspname, p.proname, p.oid::regprocedure::text, pg_get_userbyid(p.proowner), coalesce(p.proconfig, '{}')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND has_function_privilege(current_user, p.oid, 'EXECUTE')
		ORDER BY 3`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		nsp, name, sig, owner := r[0].(string), r[1].(string), r[2].(string), r[3].(string)
		pinned := false
		for _, c := range r[4].([]any) {
			// Exactly these two schemas: one more after pg_temp still
			// resolves unqualified names the body doesn't find in pg_catalog.
			pinned = pinned || c == "search_path=pg_catalog, pg_temp" || c == "search_path=pg_catalog,pg_temp"
		}
		switch {
		case nsp != Schema || !(slices.Contains(RLSConfig.DefinerFunctions(), name) || slices.Contains(AuthFunctions, name) || slices.Contains(NotifyFunctions, name)):
			add("definer", sig, "SECURITY DEFINER function executable by the runtime role is not on the allow-list")
		case owner != Definer:
			add("definer", sig, "allow-listed SECURITY DEFINER function is owned by "+owner+", not "+Definer)
		case !pinned:
			add("definer", sig, "SECURITY DEFINER function has no pinned search_path")
		}
	}

	// Duplicate indexes: the same table, columns, operator classes,
	// expressions and predicate (each one costs every write).
	rows, err = rowsOf(`
		SELECT a.indexrelid::regclass::text, b.indexrelid::regclass::text
		FROM pg_index a
		JOIN pg_index b ON b.indrelid = a.indrelid AND a.indexrelid < b.indexrelid
		JOIN pg_class ac ON ac.oid = a.indexrelid JOIN pg_class bc ON bc.oid = b.indexrelid
		JOIN pg_class t ON t.oid = a.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		  AND ac.relam = bc.relam
		  AND a.indkey::text = b.indkey::text AND a.indclass::text = b.indclass::text
		  AND a.indcollation::text = b.indcollation::text AND a.indoption::text = b.indoption::text
		  AND coalesce(pg_get_expr(a.indexprs, a.indrelid), '') = coalesce(pg_get_expr(b.indexprs, b.indrelid), '')
		  AND coalesce(pg_get_expr(a.indpred, a.indrelid), '') = coalesce(pg_get_expr(b.indpred, b.indrelid), '')
		ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		add("index", r[0].(string), "duplicates index "+r[1].(string))
	}

	// Triggers on row-level-security tables run with their owner's rights and
	// see every row written: only bulkhead's own are allowed.
	rows, err = rowsOf(`
		SELECT c.oid::regclass::text, t.tgname, p.oid::regprocedure::text
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE NOT t.tgisinternal AND c.relrowsecurity
		ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		table, name, fn := r[0].(string), r[1].(string), r[2].(string)
		if allowed, ok := AllowedTriggers[table+"."+name]; !ok || allowed != fn {
			add("trigger", table, "trigger "+name+" ("+fn+") is not one of bulkhead's: a trigger sees every row written, whatever the policies")
		}
	}

	// Views that would run with their owner's rights over RLS tables.
	rows, err = rowsOf(`
		SELECT DISTINCT v.oid::regclass::text, v.relkind::text
		FROM pg_class v
		JOIN pg_namespace n ON n.oid = v.relnamespace
		JOIN pg_rewrite rw ON rw.ev_class = v.oid
		JOIN pg_depend d ON d.objid = rw.oid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class t ON t.oid = d.refobjid AND t.relrowsecurity
		WHERE v.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND has_table_privilege(current_user, v.oid, 'SELECT')
		  AND (v.relkind = 'm' OR NOT coalesce(v.reloptions::text[] && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'], false))
		ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		what := "view without security_invoker"
		if r[1].(string) == "m" {
			what = "materialized view"
		}
		add("view", r[0].(string), what+" over a row-level-security table is readable by the runtime role")
	}
	return out, nil
}

// livePolicies turns rows of livePoliciesSQL into LivePolicy values.
func livePolicies(rows [][]any) []LivePolicy {
	out := make([]LivePolicy, 0, len(rows))
	for _, r := range rows {
		roles := []string{}
		if rs, ok := r[3].([]any); ok {
			for _, x := range rs {
				roles = append(roles, fmt.Sprint(x))
			}
		}
		out = append(out, LivePolicy{Table: r[0].(string), Name: r[1].(string), Permissive: r[2].(string), Roles: roles,
			Command: r[4].(string), Using: r[5].(string), Check: r[6].(string)})
	}
	return out
}

func declaredNames() []string {
	names := make([]string, 0, len(Tables))
	for _, t := range Tables {
		names = append(names, Schema+"."+t.Name)
	}
	return names
}

func policyKey(name, cmd string, permissive bool) string {
	mode := "RESTRICTIVE"
	if permissive {
		mode = "PERMISSIVE"
	}
	return fmt.Sprintf("%s %s FOR %s", name, mode, cmd)
}

func cmdName(polcmd string) string {
	switch polcmd {
	case "r":
		return "SELECT"
	case "a":
		return "INSERT"
	case "w":
		return "UPDATE"
	case "d":
		return "DELETE"
	default:
		return "ALL"
	}
}
