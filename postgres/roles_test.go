package postgres_test

import (
	"context"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

func TestRoleAttributesReadBack(t *testing.T) {
	t.Parallel()
	d := mustDB(t)
	conn := mustConnect(t, d.AdminDSN())
	type attrs struct {
		super, bypass, inherit, login, createrole, createdb bool
	}
	want := map[string]attrs{
		postgres.Runtime:     {login: true},
		postgres.Owner:       {login: true, inherit: true},
		postgres.Maintenance: {login: true, bypass: true},
		postgres.Definer:     {bypass: true},
	}
	for role, w := range want {
		var a attrs
		err := conn.QueryRow(context.Background(), `SELECT rolsuper, rolbypassrls, rolinherit, rolcanlogin, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1`, role).
			Scan(&a.super, &a.bypass, &a.inherit, &a.login, &a.createrole, &a.createdb)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if a != w {
			t.Errorf("%s: attributes %+v, want %+v", role, a, w)
		}
	}
	// The runtime role owns nothing and is a member of nothing.
	var owned, member int
	if err := conn.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
		     + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) + (SELECT count(*) FROM pg_type WHERE typowner = r.oid),
		       (SELECT count(*) FROM pg_auth_members WHERE member = r.oid)
		FROM pg_roles r WHERE rolname = $1`, postgres.Runtime).Scan(&owned, &member); err != nil {
		t.Fatal(err)
	}
	if owned != 0 || member != 0 {
		t.Errorf("runtime role owns %d objects and is a member of %d roles; want 0 and 0", owned, member)
	}
	// No forbidden privilege on any table; DML only where declared.
	rows, err := conn.Query(context.Background(), `
		SELECT c.relname, p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
		       unnest(ARRAY['TRUNCATE', 'TRIGGER', 'REFERENCES']) p
		WHERE n.nspname = 'bulkhead' AND c.relkind = 'r' AND has_table_privilege($1, c.oid, p)`, postgres.Runtime)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil || len(bad) != 0 {
		t.Errorf("runtime role holds forbidden table privileges: %v (%v)", bad, err)
	}
	var canCreate, publicUsage, temp bool
	if err := conn.QueryRow(context.Background(), `SELECT
		EXISTS (SELECT 1 FROM pg_namespace WHERE has_schema_privilege($1, oid, 'CREATE')),
		has_schema_privilege($1, 'public', 'USAGE'),
		has_database_privilege($1, current_database(), 'TEMP')`, postgres.Runtime).Scan(&canCreate, &publicUsage, &temp); err != nil {
		t.Fatal(err)
	}
	if canCreate || publicUsage || temp {
		t.Errorf("runtime role: CREATE on some schema %v, USAGE on public %v, TEMP %v; want all false", canCreate, publicUsage, temp)
	}
}

// TestRuntimeRoleCannotEscape tries, as the runtime role inside a tenant's
// scope, every way out of row-level security it might have.
func TestRuntimeRoleCannotEscape(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	conn := mustConnect(t, d.AppDSN())
	ctx := context.Background()
	attempts := []string{
		`TRUNCATE bulkhead.memories`,
		`ALTER TABLE bulkhead.memories DISABLE ROW LEVEL SECURITY`,
		`ALTER TABLE bulkhead.memories NO FORCE ROW LEVEL SECURITY`,
		`DROP POLICY bulkhead_tenant ON bulkhead.memories`,
		`CREATE POLICY open ON bulkhead.memories USING (true)`,
		`CREATE FUNCTION bulkhead.f() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		`CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		`CREATE TEMP TABLE t (x int)`,
		`CREATE TRIGGER tr AFTER INSERT ON bulkhead.memories FOR EACH ROW EXECUTE FUNCTION bulkhead.current_tenant()`,
		`SET ROLE ` + postgres.Owner,
		`SET ROLE ` + postgres.Maintenance,
		`SET ROLE ` + postgres.Definer,
		`ALTER ROLE ` + postgres.Runtime + ` BYPASSRLS`,
		`GRANT ` + postgres.Owner + ` TO ` + postgres.Runtime,
		`ALTER FUNCTION bulkhead.member_rooms(text) OWNER TO ` + postgres.Runtime,
	}
	for _, sql := range attempts {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		enter(t, tx, bulkhead.Scope{Tenant: demo.T2.Tenant.ID})
		_, err = tx.Exec(ctx, sql)
		tx.Rollback(ctx)
		if code := sqlState(err); code != "42501" && code != "42804" {
			t.Errorf("%s: %v; want permission denied", sql, err)
		}
	}
	// Planner statistics (most common values) of RLS tables are hidden from it.
	admin := mustConnect(t, d.AdminDSN())
	if _, err := admin.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	var stats, adminStats int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stats WHERE schemaname = 'bulkhead'`).Scan(&stats); err != nil {
		t.Fatal(err)
	}
	admin.QueryRow(ctx, `SELECT count(*) FROM pg_stats WHERE schemaname = 'bulkhead'`).Scan(&adminStats)
	if stats != 0 || adminStats == 0 {
		t.Errorf("pg_stats rows for bulkhead tables: runtime role %d (want 0), superuser %d (want > 0)", stats, adminStats)
	}
	// row_security = off makes a query that RLS would filter fail, not leak.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL row_security = off`); err != nil {
		t.Fatal(err)
	}
	var n int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM bulkhead.memories`).Scan(&n)
	if sqlState(err) != "42501" {
		t.Errorf("row_security = off: counted %d rows, err %v; want an error", n, err)
	}
}
