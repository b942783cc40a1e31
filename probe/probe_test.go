package probe_test

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/probe"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

//go:embed testdata/broken.sql
var brokenSQL string

var (
	dbCounter atomic.Int64
	rolesOnce sync.Once
	rolesErr  error
)

// brokenDB creates a database holding testdata/broken.sql and returns a
// superuser connection to it.
func brokenDB(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("broken_%d_%d", os.Getpid(), dbCounter.Add(1))
	admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	conn := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(name))
	// Roles are cluster-wide: created once, for every database.
	roles := []string{"CREATE ROLE probe_owner NOLOGIN;", "CREATE ROLE probe_app NOLOGIN NOSUPERUSER NOBYPASSRLS;"}
	rolesOnce.Do(func() { _, rolesErr = admin.Exec(ctx, strings.Join(roles, " ")) })
	if rolesErr != nil {
		t.Fatal(rolesErr)
	}
	sql := brokenSQL
	for _, r := range roles {
		sql = strings.Replace(sql, r, "", 1)
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("broken.sql: %v", err)
	}
	return conn, name
}

// checksums returns a digest of every row of every table in the
// database's non-system schemas, read as the superuser.
func checksums(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		var sum string
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM %s x", n)).Scan(&sum); err != nil {
			t.Fatalf("checksum %s: %v", n, err)
		}
		out[n] = sum
	}
	return out
}

func sameChecksums(t *testing.T, before, after map[string]string) {
	t.Helper()
	for n, b := range before {
		if after[n] != b {
			t.Errorf("table %s changed: %s → %s (the probe left something behind)", n, b, after[n])
		}
	}
}

func classes(rep *probe.Report) map[string][]string {
	out := map[string][]string{}
	for _, f := range rep.Findings {
		if !slices.Contains(out[f.Table], f.Class) {
			out[f.Table] = append(out[f.Table], f.Class)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// Each broken table leaks in its own way; the probe finds every one, with
// a reproduction, and nothing on the good tables; no row is left behind.
func TestProbeFindsEveryBrokenTable(t *testing.T) {
	t.Parallel()
	conn, _ := brokenDB(t)
	// A committed row of another tenant in every broken table is not
	// needed: the canaries are the evidence.
	before := checksums(t, conn)
	var progress []int
	rep, err := probe.Run(context.Background(), conn, probe.Config{
		Context:  probe.Context{TenantSetting: "app.tenant_id"},
		Role:     "probe_app",
		Progress: func(done, total int, _ string) { progress = append(progress, done) },
	})
	if err != nil {
		t.Fatal(err)
	}
	sameChecksums(t, before, checksums(t, conn))
	got := classes(rep)
	want := map[string]string{
		"acme.b_rls_off":       "read-id",
		"acme.b_owner_noforce": "read-id",
		"acme.b_true_policy":   "read-id",
		"acme.b_no_check":      "move-tenant",
		"acme.b_update_open":   "blind-update",
		"acme.b_delete_open":   "blind-delete",
		"acme.b_nocontext":     "read-id",
		"acme.b_malformed":     "read-id",
		"acme.b_parent":        "unique-oracle",
		"acme.b_child":         "fk-oracle",
		"acme.b_explain":       "explain-count",
		"acme.b_parted":        "read-partition",
		"(database)":           "forgeable-context",
	}
	for table, class := range want {
		if !slices.Contains(got[table], class) {
			t.Errorf("%s: no %s finding (got %v)", table, class, got[table])
		}
	}
	if !slices.ContainsFunc(rep.Findings, func(f probe.Finding) bool {
		return f.Table == "acme.b_parent" && strings.Contains(f.Detail, "fails with 23505")
	}) {
		t.Error("acme.b_parent: the plain INSERT's 23505 was not the oracle found")
	}
	for _, class := range []string{"read-scan", "copy-out", "copy-in", "write-into-a"} {
		if !slices.Contains(got["acme.b_rls_off"], class) {
			t.Errorf("acme.b_rls_off: no %s finding (got %v)", class, got["acme.b_rls_off"])
		}
	}
	if !slices.Contains(got["acme.b_child"], "move-parent") {
		t.Errorf("acme.b_child: no move-parent finding (got %v)", got["acme.b_child"])
	}
	attackers := map[string]string{"acme.b_nocontext": "no-context", "acme.b_malformed": "malformed"}
	for _, f := range rep.Findings {
		if f.Repro == "" || !strings.HasPrefix(f.Repro, "BEGIN; ") || !strings.HasSuffix(f.Repro, "; ROLLBACK;") || strings.Contains(f.Repro, "\n") {
			t.Errorf("%s %s: repro is not one rolled-back line: %q", f.Table, f.Class, f.Repro)
		}
		if w, ok := attackers[f.Table]; ok && strings.HasPrefix(f.Class, "read-") && f.Attacker != w {
			t.Errorf("%s: found by %s, want only %s", f.Table, f.Attacker, w)
		}
	}
	for _, good := range []string{"acme.good", "acme.good_child", `"Mixed Case"."Good Items"`, "acme.good_parted"} {
		if len(got[good]) > 0 {
			t.Errorf("good table %s: false findings %v", good, got[good])
		}
	}
	var skipped []string
	for _, r := range rep.Skipped() {
		skipped = append(skipped, r.Table)
	}
	if !slices.Equal(skipped, []string{"acme.no_tenant"}) {
		t.Errorf("skipped %v, want only acme.no_tenant (RLS without a tenant column)", rep.Skipped())
	}
	if len(progress) == 0 || progress[len(progress)-1] != len(rep.Tables) {
		t.Errorf("progress %v for %d tables", progress, len(rep.Tables))
	}
	for _, f := range rep.Findings {
		t.Logf("%s [%s] as %s: %s", f.Table, f.Class, f.Attacker, f.Detail)
	}
}

// Read-only mode writes nothing (READ ONLY transactions, no canaries) and
// still finds the tables that show rows to a tenant that has none.
func TestProbeReadOnly(t *testing.T) {
	t.Parallel()
	conn, _ := brokenDB(t)
	ctx := context.Background()
	// Committed rows of a real tenant, for the read-only probe to find.
	for _, tb := range []string{"acme.b_rls_off", "acme.b_true_policy", "acme.b_nocontext", "acme.good"} {
		if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (tenant_id, id%s) VALUES (gen_random_uuid(), gen_random_uuid()%s)", tb,
			map[bool]string{true: ", body, tag", false: ""}[tb == "acme.good"], map[bool]string{true: ", 'b', 't'", false: ""}[tb == "acme.good"])); err != nil {
			t.Fatal(err)
		}
	}
	// Statistics of a table the runtime role reads past RLS name tenants.
	for _, sql := range []string{
		"INSERT INTO acme.b_rls_off SELECT ('00000000-0000-4000-8000-00000000000' || (i % 3))::uuid, gen_random_uuid() FROM generate_series(1, 300) i",
		"INSERT INTO acme.good SELECT ('00000000-0000-4000-8000-00000000000' || (i % 3))::uuid, gen_random_uuid(), 'b', 't' FROM generate_series(1, 300) i",
		"ANALYZE acme.b_rls_off, acme.good",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	before := checksums(t, conn)
	rep, err := probe.Run(ctx, conn, probe.Config{Context: probe.Context{TenantSetting: "app.tenant_id"}, Role: "probe_app", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	sameChecksums(t, before, checksums(t, conn))
	got := classes(rep)
	for _, tb := range []string{"acme.b_rls_off", "acme.b_true_policy", "acme.b_nocontext"} {
		if !slices.Contains(got[tb], "read-scan") {
			t.Errorf("%s: read-only probe found nothing (got %v)", tb, got)
		}
	}
	if len(got["acme.good"]) > 0 {
		t.Errorf("acme.good: false findings %v", got["acme.good"])
	}
	if !slices.Contains(got["acme.b_rls_off"], "stats-visible") {
		t.Errorf("acme.b_rls_off: statistics readable, not found (got %v)", got["acme.b_rls_off"])
	}
	for _, f := range rep.Findings {
		if !strings.HasPrefix(f.Repro, "BEGIN READ ONLY; ") || strings.Contains(f.Repro, "INSERT") {
			t.Errorf("read-only repro writes or is not read-only: %s", f.Repro)
		}
	}
}

// bulkhead's own database, probed as its runtime role through its signed
// context: nothing leaks, every table is probed, nothing is left behind.
func TestProbeFindsNothingOnBulkhead(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	conn := testdb.MustConnect(t, d.AdminDSN())
	before := checksums(t, conn)
	cols := map[string]string{}
	for _, tb := range postgres.Tables {
		if tb.TenantColumn != "" {
			cols[postgres.Schema+"."+tb.Name] = tb.TenantColumn
		}
	}
	start := time.Now()
	rep, err := probe.Run(context.Background(), conn, probe.Config{
		Context:       probe.Context{Bulkhead: true, Key: testdb.ContextKey()},
		Role:          postgres.Runtime,
		Schemas:       []string{postgres.Schema},
		TenantColumns: cols,
	})
	if err != nil {
		t.Fatal(err)
	}
	sameChecksums(t, before, checksums(t, conn))
	for _, f := range rep.Findings {
		t.Errorf("bulkhead leaks: %s [%s] as %s: %s\n  %s", f.Table, f.Class, f.Attacker, f.Detail, f.Repro)
	}
	for _, s := range rep.Skipped() {
		t.Errorf("not probed: %s: %s", s.Table, s.Skipped)
	}
	probed := 0
	for _, r := range rep.Tables {
		if r.Skipped == "" && r.Note == "" {
			probed++
		}
	}
	if probed < len(postgres.Tables) {
		t.Errorf("probed %d tables, bulkhead has %d tenant tables", probed, len(postgres.Tables))
	}
	t.Logf("probed %d tables in %s", probed, time.Since(start))
}

// The probe is not silent on bulkhead's schema because it can't reach it:
// the same run on a copy with two tables broken finds both.
func TestProbeFindsBrokenBulkheadTables(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	conn := testdb.MustConnect(t, d.AdminDSN())
	ctx := context.Background()
	for _, sql := range []string{
		"ALTER TABLE bulkhead.chunks DISABLE ROW LEVEL SECURITY",
		"ALTER TABLE bulkhead.audit_log DISABLE ROW LEVEL SECURITY",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := probe.Run(ctx, conn, probe.Config{
		Context:       probe.Context{Bulkhead: true, Key: testdb.ContextKey()},
		Role:          postgres.Runtime,
		Schemas:       []string{postgres.Schema},
		TenantColumns: map[string]string{"bulkhead.tenants": "id"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := classes(rep)
	if !slices.Contains(got["bulkhead.chunks"], "read-id") {
		t.Errorf("bulkhead.chunks without RLS: no read-id finding (got %v)", got)
	}
	if !slices.Contains(got["bulkhead.audit_log"], "write-into-a") {
		t.Errorf("bulkhead.audit_log without RLS: no write-into-a finding (got %v)", got)
	}
	for table := range got {
		if table != "bulkhead.chunks" && table != "bulkhead.audit_log" {
			t.Errorf("%s: findings %v on an intact table", table, got[table])
		}
	}
	for _, r := range rep.Tables {
		if r.Skipped == "" && r.Note == "" && r.Attempts < 10 {
			t.Errorf("%s: only %d attempts", r.Table, r.Attempts)
		}
	}
}

// A deadline stops the probe between tables (or inside one): the report
// says what was not reached, nothing is left behind, nothing panics.
func TestProbeDeadline(t *testing.T) {
	t.Parallel()
	conn, _ := brokenDB(t)
	before := checksums(t, conn)
	// The deadline strikes after three tables, whatever the machine's speed.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	rep, err := probe.Run(ctx, conn, probe.Config{Context: probe.Context{TenantSetting: "app.tenant_id"}, Role: "probe_app",
		Progress: func(done, _ int, _ string) {
			if done == 3 {
				cancel(fmt.Errorf("--max-duration reached"))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Incomplete == "" || !strings.Contains(rep.Incomplete, "--max-duration reached") {
		t.Errorf("incomplete = %q, want the deadline named", rep.Incomplete)
	}
	if len(rep.Skipped()) == 0 {
		t.Error("no table reported as not reached")
	}
	sameChecksums(t, before, checksums(t, testdb.MustConnect(t, conn.Config().ConnString())))
}

// A connecting role that does not bypass row-level security writes the
// canaries through tenant A's own context (a plain setting allows it) and
// finds the same leaks.
func TestProbeWritesThroughTheContext(t *testing.T) {
	t.Parallel()
	conn, name := brokenDB(t)
	ctx := context.Background()
	login := "probe_login_" + name
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw' IN ROLE probe_app; GRANT CONNECT ON DATABASE %s TO %s", login, name, login)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
		admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+login)
	})
	before := checksums(t, conn)
	app := testdb.MustConnect(t, testdb.Cluster().DSN(login, "pw", name))
	rep, err := probe.Run(ctx, app, probe.Config{Context: probe.Context{TenantSetting: "app.tenant_id"}, Role: "probe_app", Schemas: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	sameChecksums(t, before, checksums(t, conn))
	got := classes(rep)
	for table, class := range map[string]string{"acme.b_true_policy": "read-id", "acme.b_no_check": "move-tenant", "acme.b_parent": "unique-oracle", "acme.b_update_open": "blind-update"} {
		if !slices.Contains(got[table], class) {
			t.Errorf("%s: no %s finding (got %v)", table, class, got[table])
		}
	}
	if len(got["acme.good"]) > 0 || len(got["acme.good_child"]) > 0 {
		t.Errorf("false findings on good tables: %v", got)
	}
	for _, s := range rep.Skipped() {
		t.Logf("not probed: %s: %s", s.Table, s.Skipped)
	}
}

// An attempt that waits behind the application's locks gives up after
// lock_timeout and is reported as inconclusive, never as "no leak".
func TestProbeTimeoutIsInconclusive(t *testing.T) {
	t.Parallel()
	conn, name := brokenDB(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "INSERT INTO acme.b_update_open (tenant_id, id) VALUES (gen_random_uuid(), gen_random_uuid())"); err != nil {
		t.Fatal(err)
	}
	holder := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(name))
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT * FROM acme.b_update_open FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	rep, err := probe.Run(ctx, conn, probe.Config{Context: probe.Context{TenantSetting: "app.tenant_id"}, Role: "probe_app",
		Schemas: []string{"acme"}, AllowForgeableContext: true})
	if err != nil {
		t.Fatal(err)
	}
	var inc []string
	for _, r := range rep.Inconclusive() {
		inc = append(inc, r.Table)
		if !strings.Contains(strings.Join(r.Inconclusive, "\n"), "lock timeout") {
			t.Errorf("%s: %v, want the lock timeout named", r.Table, r.Inconclusive)
		}
	}
	if !slices.Equal(inc, []string{"acme.b_update_open"}) {
		t.Errorf("inconclusive tables %v, want acme.b_update_open", inc)
	}
}
