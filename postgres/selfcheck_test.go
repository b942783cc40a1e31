package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/postgres"
)

func TestSelfCheckCleanDatabase(t *testing.T) {
	t.Parallel()
	d := mustDB(t)
	findings, err := postgres.SelfCheck(context.Background(), d.DB.Pool())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("finding on a clean database: %s", f)
	}
}

// TestSelfCheckFindsBreakage breaks a fresh database in one way each and
// expects the self-check to name it. Each breakage is made by the owner or
// the superuser, as a careless migration or DBA would.
func TestSelfCheckFindsBreakage(t *testing.T) {
	cases := []struct {
		name   string
		admin  bool // as superuser (else owner)
		sql    []string
		undo   []string // for cluster-wide changes
		expect string   // substring of a finding
	}{
		{name: "table without FORCE", sql: []string{`ALTER TABLE bulkhead.memories NO FORCE ROW LEVEL SECURITY`}, expect: "rls: bulkhead.memories: row-level security is not forced"},
		{name: "RLS disabled", sql: []string{`ALTER TABLE bulkhead.rooms DISABLE ROW LEVEL SECURITY`}, expect: "rls: bulkhead.rooms: row-level security is not enabled"},
		{name: "extra permissive policy", sql: []string{`CREATE POLICY everyone ON bulkhead.memories FOR SELECT USING (true)`}, expect: "unexpected policy everyone PERMISSIVE FOR SELECT"},
		{name: "dropped layer-2 policy", sql: []string{`DROP POLICY bulkhead_select ON bulkhead.documents`}, expect: "missing generated policy bulkhead_select"},
		{name: "undeclared tenant table", sql: []string{`CREATE TABLE bulkhead.notes (tenant_id uuid NOT NULL, body text)`, `GRANT SELECT ON bulkhead.notes TO bulkhead_app`}, expect: "bulkhead.notes: row-level security is not enabled"},
		{name: "SECURITY DEFINER function granted", sql: []string{
			`CREATE FUNCTION bulkhead.peek() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM bulkhead.memories'`,
			`GRANT EXECUTE ON FUNCTION bulkhead.peek() TO bulkhead_app`}, expect: "definer: bulkhead.peek(): SECURITY DEFINER function executable by the runtime role is not on the allow-list"},
		{name: "view without security_invoker", sql: []string{`CREATE VIEW bulkhead.all_memories AS SELECT * FROM bulkhead.memories`, `GRANT SELECT ON bulkhead.all_memories TO bulkhead_app`}, expect: "view without security_invoker"},
		{name: "foreign trigger copies rows", sql: []string{
			`CREATE TABLE bulkhead.copies (body text)`,
			`CREATE FUNCTION bulkhead.copy_row() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN INSERT INTO bulkhead.copies VALUES (NEW.content); RETURN NEW; END'`,
			`CREATE TRIGGER copy_memories AFTER INSERT ON bulkhead.memories FOR EACH ROW EXECUTE FUNCTION bulkhead.copy_row()`}, expect: "trigger copy_memories (bulkhead.copy_row()) is not one of bulkhead's"},
		{name: "hand-edited policy expression", sql: []string{`ALTER POLICY bulkhead_insert ON bulkhead.memories WITH CHECK (true)`},
			expect: "policy: bulkhead.memories: policy bulkhead_insert: WITH CHECK differs from the generator's"},
		{name: "the review's p.room_id = room_id", sql: []string{`ALTER POLICY bulkhead_insert ON bulkhead.memories WITH CHECK (EXISTS (SELECT 1 FROM bulkhead.participants p WHERE p.room_id = room_id AND p.entity_id = author_id))`},
			expect: "policy bulkhead_insert: WITH CHECK differs"},
		{name: "helper function body changed", admin: true, sql: []string{`CREATE OR REPLACE FUNCTION bulkhead.owned_worlds() RETURNS uuid[] LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN (SELECT array_agg(id) FROM bulkhead.worlds); END $$`},
			expect: "function: bulkhead.owned_worlds(): body differs from the migrations'"},
		// Issue 18: the check on a definer's search_path had no test.
		{name: "definer search_path unpinned", admin: true, sql: []string{`ALTER FUNCTION bulkhead.owned_worlds() RESET search_path`},
			expect: "definer: bulkhead.owned_worlds(): SECURITY DEFINER function has no pinned search_path"},
		{name: "definer search_path widened", admin: true, sql: []string{`ALTER FUNCTION bulkhead.owned_worlds() SET search_path = public, pg_catalog, pg_temp`},
			expect: "definer: bulkhead.owned_worlds(): SECURITY DEFINER function has no pinned search_path"},
		// Still pinned, one setting as before, another value: only the
		// function record sees it (its config compared entry by entry).
		{name: "definer search_path narrowed", admin: true, sql: []string{`ALTER FUNCTION bulkhead.owned_worlds() SET search_path = pg_catalog`},
			expect: "function: bulkhead.owned_worlds(): differs from the migrations'"},
		{name: "definer search_path with a schema after pg_temp", admin: true, sql: []string{`ALTER FUNCTION bulkhead.owned_worlds() SET search_path = pg_catalog, pg_temp, public`},
			expect: "definer: bulkhead.owned_worlds(): SECURITY DEFINER function has no pinned search_path"},
		// Issue 16: the membership look-up is an SQL call to a C function.
		{name: "membership wrapper edited", admin: true, sql: []string{`CREATE OR REPLACE FUNCTION bulkhead.member_rooms(scope text) RETURNS uuid[] LANGUAGE sql STABLE AS $$ SELECT ARRAY(SELECT p.room_id FROM bulkhead.participants p) $$`},
			expect: "function: bulkhead.member_rooms(text): body differs from the migrations'"},
		{name: "membership wrapper made a definer", admin: true, sql: []string{`ALTER FUNCTION bulkhead.member_rooms(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp`},
			expect: "definer: bulkhead.member_rooms(text): SECURITY DEFINER function executable by the runtime role is not on the allow-list"},
		{name: "native membership replaced", admin: true, sql: []string{
			`ALTER EXTENSION bulkhead_context DROP FUNCTION bulkhead.member_rooms_native(text)`,
			`CREATE OR REPLACE FUNCTION bulkhead.member_rooms_native(scope text) RETURNS uuid[] LANGUAGE sql STABLE AS $$ SELECT ARRAY(SELECT p.room_id FROM bulkhead.participants p) $$`},
			expect: "function: bulkhead.member_rooms_native(text): body differs from the migrations'"},
		// The functions the policies and the request path call, which no
		// generator writes: a context function reading a setting any role
		// can SET, a revocation check that always passes, an
		// authentication definer returning more than it should.
		{name: "context function reads a forgeable setting", sql: []string{`CREATE OR REPLACE FUNCTION bulkhead.current_tenant() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS $fn$ SELECT nullif(pg_catalog.current_setting('app.tenant_id', true), '')::pg_catalog.uuid $fn$`},
			expect: "function: bulkhead.current_tenant(): body differs from the migrations'"},
		{name: "access check always passes", sql: []string{`CREATE OR REPLACE FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean) RETURNS boolean LANGUAGE sql STABLE AS $fn$ SELECT true $fn$`},
			expect: "function: bulkhead.access_check(uuid,timestamp with time zone,uuid,boolean): body differs from the migrations'"},
		{name: "authentication definer edited", admin: true, sql: []string{`CREATE OR REPLACE FUNCTION bulkhead.auth_api_key(uuid, bytea) RETURNS TABLE (entity_id uuid, scopes text[], expires_at timestamptz, revoked_at timestamptz) LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$ SELECT k.entity_id, k.scopes, k.expires_at, k.revoked_at FROM bulkhead.api_keys k WHERE k.id = $1 $fn$`},
			expect: "function: bulkhead.auth_api_key(uuid,bytea): body differs from the migrations'"},
		{name: "function added to the schema", sql: []string{`CREATE FUNCTION bulkhead.tenant_hint() RETURNS uuid LANGUAGE sql STABLE AS $fn$ SELECT nullif(pg_catalog.current_setting('app.tenant_id', true), '')::pg_catalog.uuid $fn$`},
			expect: "function: bulkhead.tenant_hint(): not made by the migrations"},
		{name: "context function marked LEAKPROOF", admin: true, sql: []string{`ALTER FUNCTION bulkhead.current_tenant() LEAKPROOF`},
			expect: "function: bulkhead.current_tenant(): differs from the migrations' (extension \"\", language sql, returns uuid, security definer false, leakproof true"},
		{name: "function given to another owner", admin: true, sql: []string{`ALTER FUNCTION bulkhead.current_actors(text) OWNER TO bulkhead_definer`},
			expect: "function: bulkhead.current_actors(text): owned by bulkhead_definer, the migrations' owner is bulkhead_owner"},
		{name: "context extension dropped", admin: true, sql: []string{`DROP EXTENSION bulkhead_context`}, expect: "context: bulkhead.enter(bytea): missing"},
		{name: "TRUNCATE granted", sql: []string{`GRANT TRUNCATE ON bulkhead.memories TO bulkhead_app`}, expect: "runtime role has TRUNCATE"},
		{name: "CREATE on schema", admin: true, sql: []string{`GRANT CREATE ON SCHEMA bulkhead TO bulkhead_app`}, expect: "schema bulkhead: runtime role has CREATE"},
		{name: "runtime role BYPASSRLS", admin: true, sql: []string{`ALTER ROLE bulkhead_app BYPASSRLS`}, undo: []string{`ALTER ROLE bulkhead_app NOBYPASSRLS`}, expect: "has BYPASSRLS"},
		{name: "runtime role member of owner", admin: true, sql: []string{`GRANT bulkhead_owner TO bulkhead_app`}, undo: []string{`REVOKE bulkhead_owner FROM bulkhead_app`}, expect: "is a member of role bulkhead_owner"},
		// Issue 11, finding 9.
		{name: "postgres database open to PUBLIC", admin: true, sql: []string{`GRANT CONNECT ON DATABASE postgres TO PUBLIC`}, undo: []string{`REVOKE CONNECT ON DATABASE postgres FROM PUBLIC`},
			expect: "privilege: database postgres: runtime role has CONNECT on another database open to PUBLIC"},
		{name: "TEMP on another database", admin: true, sql: []string{`GRANT TEMPORARY ON DATABASE template1 TO PUBLIC`}, undo: []string{`REVOKE TEMPORARY ON DATABASE template1 FROM PUBLIC`},
			expect: "privilege: database template1: runtime role may create temporary tables in another database"},
		{name: "owner member of definer", admin: true, sql: []string{`GRANT bulkhead_definer TO bulkhead_owner`}, undo: []string{`REVOKE bulkhead_definer FROM bulkhead_owner`},
			expect: "role: bulkhead_owner: is a member of bulkhead_definer, so it can SET ROLE to a role that bypasses row-level security"},
		{name: "owner member of maintenance", admin: true, sql: []string{`GRANT bulkhead_maintenance TO bulkhead_owner`}, undo: []string{`REVOKE bulkhead_maintenance FROM bulkhead_owner`},
			expect: "role: bulkhead_owner: is a member of bulkhead_maintenance"},
		{name: "duplicate index", sql: []string{`CREATE INDEX refresh_tokens_family_idx ON bulkhead.refresh_tokens (tenant_id, family_id)`},
			expect: "index: bulkhead.refresh_tokens_family_id_idx: duplicates index bulkhead.refresh_tokens_family_idx"},
	}
	// Not parallel: several cases change cluster-wide roles and database
	// privileges, and Go runs the parallel tests only after every
	// sequential one has finished.
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := mustDB(t)
			dsn := d.OwnerDSN()
			if c.admin {
				dsn = d.AdminDSN()
			}
			conn := mustConnect(t, dsn)
			ctx := context.Background()
			if c.undo != nil {
				t.Cleanup(func() {
					for _, s := range c.undo {
						if _, err := conn.Exec(context.Background(), s); err != nil {
							t.Errorf("undo %s: %v", s, err)
						}
					}
				})
			}
			for _, s := range c.sql {
				if _, err := conn.Exec(ctx, s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
			findings, err := postgres.SelfCheck(ctx, d.DB.Pool())
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for _, f := range findings {
				all = append(all, f.String())
			}
			joined := strings.Join(all, "\n")
			if !strings.Contains(joined, c.expect) {
				t.Errorf("self-check did not find %q; findings:\n%s", c.expect, joined)
			}
		})
	}
}

// TestCatalogMetaTest walks the catalog of a migrated database: every
// table with a tenant column is declared, forced and covered by the
// generator's policies (the self-check), and tenant_id leads every primary
// key, unique constraint, foreign key and index of every tenant table.
func TestCatalogMetaTest(t *testing.T) {
	t.Parallel()
	d := mustDB(t)
	conn := mustConnect(t, d.AdminDSN())
	ctx := context.Background()
	expected, err := postgres.LoadExpectedPolicies()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range postgres.Tables {
		col := "tenant_id"
		if tb.TenantColumn != "" {
			col = tb.TenantColumn
		}
		var forced, enabled bool
		if err := conn.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass`, "bulkhead."+tb.Name).Scan(&enabled, &forced); err != nil {
			t.Fatal(err)
		}
		if !enabled || !forced {
			t.Errorf("%s: rls enabled %v forced %v", tb.Name, enabled, forced)
		}
		// The reviewed expectations (policies_expected.json), not the
		// generator's own output.
		want := 0
		for _, p := range expected.Policies {
			if p.Table == "bulkhead."+tb.Name {
				want++
			}
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_policy WHERE polrelid = $1::regclass`, "bulkhead."+tb.Name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want || want == 0 {
			t.Errorf("%s: %d policies, the reviewed expectations list %d", tb.Name, n, want)
		}
		// Constraints: the first key column is the tenant column.
		rows, err := conn.Query(ctx, `
			SELECT c.conname, c.contype::text, a.attname
			FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
			WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u', 'f')`, "bulkhead."+tb.Name)
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for rows.Next() {
			var name, typ, first string
			if err := rows.Scan(&name, &typ, &first); err != nil {
				t.Fatal(err)
			}
			n++
			if first != col {
				t.Errorf("%s: constraint %s (%s) leads with %s, not %s", tb.Name, name, typ, first, col)
			}
		}
		if err := rows.Err(); err != nil || n == 0 {
			t.Fatalf("%s: %d constraints read (%v); every tenant table has a primary key", tb.Name, n, err)
		}
		// Indexes: the first column is the tenant column.
		rows, err = conn.Query(ctx, `
			SELECT i.indexrelid::regclass::text, coalesce(a.attname, '(expression)')
			FROM pg_index i LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = $1::regclass`, "bulkhead."+tb.Name)
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for rows.Next() {
			var name, first string
			if err := rows.Scan(&name, &first); err != nil {
				t.Fatal(err)
			}
			n++
			if first != col {
				t.Errorf("%s: index %s leads with %s, not %s", tb.Name, name, first, col)
			}
		}
		if err := rows.Err(); err != nil || n == 0 {
			t.Fatalf("%s: %d indexes read (%v); every tenant table has its primary key's", tb.Name, n, err)
		}
	}
}
