package audit

import (
	"context"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/go-cmp/cmp"
)

// scaleSQL makes 1,000 tenant tables in 4 schemas with 5 policies each
// (5,000 policies): a permissive tenant policy and four restrictive ones,
// one of them a correlated membership sub-query.
const scaleSQL = `
CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION fx_owner;
CREATE FUNCTION app.current_tenant() RETURNS uuid LANGUAGE sql STABLE
  AS $f$ SELECT nullif(pg_catalog.current_setting('app.tenant_id', true), '')::pg_catalog.uuid $f$;
CREATE FUNCTION app.current_entity() RETURNS uuid LANGUAGE sql STABLE
  AS $f$ SELECT nullif(pg_catalog.current_setting('app.entity_id', true), '')::pg_catalog.uuid $f$;
CREATE TABLE app.participants (tenant_id uuid NOT NULL, room_id uuid NOT NULL, entity_id uuid NOT NULL, PRIMARY KEY (tenant_id, room_id, entity_id));
DO $$
DECLARE t text;
BEGIN
  FOR s IN 0..3 LOOP
    EXECUTE format('CREATE SCHEMA s%s AUTHORIZATION fx_owner', s);
    EXECUTE format('GRANT USAGE ON SCHEMA s%s TO fx_app', s);
  END LOOP;
  FOR i IN 1..1000 LOOP
    t := format('s%s.t%s', i % 4, i);
    EXECUTE format('CREATE TABLE %s (tenant_id uuid NOT NULL, id uuid NOT NULL, owner_id uuid, room_id uuid, body text, PRIMARY KEY (tenant_id, id))', t);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (tenant_id = (SELECT app.current_tenant())) WITH CHECK (tenant_id = (SELECT app.current_tenant()))', t);
    EXECUTE format('CREATE POLICY sel ON %s AS RESTRICTIVE FOR SELECT USING (EXISTS (SELECT 1 FROM app.participants p WHERE p.tenant_id = t%s.tenant_id AND p.room_id = t%s.room_id AND p.entity_id = (SELECT app.current_entity())))', t, i, i);
    EXECUTE format('CREATE POLICY ins ON %s AS RESTRICTIVE FOR INSERT WITH CHECK (owner_id = (SELECT app.current_entity()))', t);
    EXECUTE format('CREATE POLICY upd ON %s AS RESTRICTIVE FOR UPDATE USING (owner_id = (SELECT app.current_entity())) WITH CHECK (owner_id = (SELECT app.current_entity()))', t);
    EXECUTE format('CREATE POLICY del ON %s AS RESTRICTIVE FOR DELETE USING (owner_id = (SELECT app.current_entity()))', t);
    EXECUTE format('ALTER TABLE %s OWNER TO fx_owner', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO fx_app', t);
  END LOOP;
END $$;`

// scaleDatabase builds the 1,000-table database and returns its name.
func scaleDatabase(t testing.TB) string {
	t.Helper()
	fixture(t) // roles
	db := newDatabase(t)
	conn := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
	start := time.Now()
	if _, err := conn.Exec(context.Background(), scaleSQL); err != nil {
		t.Fatal(err)
	}
	t.Logf("built 1,000 tables and 5,000 policies in %s", time.Since(start).Round(time.Millisecond))
	return db
}

// TestAuditAtScale: on 1,000 tenant tables with 5,000 policies the audit
// sees them all and its cost does not depend on round trips per table
// (the time is reported by BenchmarkAudit1000Tables, never asserted).
func TestAuditAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 1,000 tables")
	}
	db := scaleDatabase(t)
	conn := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
	var before int64
	conn.QueryRow(context.Background(), `SELECT calls FROM pg_stat_user_functions LIMIT 0`).Scan(&before)
	rep, err := Run(context.Background(), conn, Options{RuntimeRole: "fx_app"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tt := range rep.TenantTables {
		if len(tt) > 1 && tt[0] == 's' {
			n++
		}
	}
	if n != 1000 {
		t.Errorf("found %d of the 1,000 tables", n)
	}
	// The generated tables are clean; what fires is the fixture roles'
	// (fx_app's memberships and CREATEROLE) and the placeholder settings.
	want := map[string][]string{
		"BH305": {"role fx_bypass"},
		"BH306": {"role fx_app"},
		"BH802": {"setting app.entity_id", "setting app.tenant_id"},
	}
	if diff := cmp.Diff(want, found(rep)); diff != "" {
		t.Errorf("findings at scale (-want +got):\n%s", diff)
	}
	t.Logf("audit of 1,000 tables / 5,000 policies: %s", rep.Duration)
}

// BenchmarkAudit1000Tables: go test ./audit -run '^$' -bench Audit1000 -benchtime 3x
func BenchmarkAudit1000Tables(b *testing.B) {
	db := scaleDatabase(b)
	conn := testdb.MustConnect(b, testdb.Cluster().SuperuserDSN(db))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Run(context.Background(), conn, Options{RuntimeRole: "fx_app"}); err != nil {
			b.Fatal(err)
		}
	}
}
