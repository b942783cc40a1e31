package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/postgres/migrations"
)

func TestGeneratedMigrationsUpToDate(t *testing.T) {
	t.Parallel()
	files, err := postgres.GeneratedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := migrations.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("migrations/%s is out of date with postgres.Tables: run go generate ./postgres", name)
		}
	}
}

func TestEveryMigrationHasDown(t *testing.T) {
	t.Parallel()
	entries, err := migrations.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, _ := migrations.FS.ReadFile(e.Name())
		_, down, ok := strings.Cut(string(b), "-- +goose Down")
		if !ok || strings.TrimSpace(down) == "" {
			t.Errorf("%s has no down migration", e.Name())
		}
	}
}

func newMigratedDB(t *testing.T) (name string, m *postgres.Migrator) {
	t.Helper()
	name = fmt.Sprintf("mig%d_%s", os.Getpid(), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_")))
	ctx := context.Background()
	if err := postgres.Bootstrap(ctx, testdb.Cluster().SuperuserDSN("postgres"), name, testdb.Credentials(), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin := mustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
		admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	m, err := postgres.NewMigrator(testdb.Cluster().DSN(postgres.Owner, testdb.Credentials().Owner, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	m.UseAdmin(testdb.Cluster().SuperuserDSN("postgres"))
	return name, m
}

func TestMigrationsUpDownUp(t *testing.T) {
	// Not parallel: migrating makes the owner a member of the definer role
	// for a while, which parallel tests' self-checks would report.
	name, m := newMigratedDB(t)
	ctx := context.Background()
	tables := func() int {
		conn := mustConnect(t, testdb.Cluster().SuperuserDSN(name))
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'bulkhead' AND tablename NOT LIKE 'goose%' AND tablename <> 'notify_key'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		return n
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Version(ctx); v != m.Latest() || tables() != len(postgres.Tables) {
		t.Fatalf("after up: version %d (latest %d), %d tables", v, m.Latest(), tables())
	}
	if _, err := m.DownTo(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Version(ctx); v != 0 || tables() != 0 {
		t.Fatalf("after down to 0: version %d, %d tables left", v, tables())
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Version(ctx); v != m.Latest() || tables() != len(postgres.Tables) {
		t.Fatalf("after up again: version %d, %d tables", v, tables())
	}
	// The re-migrated database passes the self-check as the runtime role.
	conn := mustConnect(t, testdb.Cluster().DSN(postgres.Runtime, testdb.Credentials().Runtime, name))
	if f, err := postgres.SelfCheck(ctx, conn); err != nil || len(f) != 0 {
		t.Fatalf("self-check after up/down/up: %v %v", f, err)
	}
}

func TestConcurrentMigratorsSerialise(t *testing.T) {
	// Not parallel: migrating makes the owner a member of the definer role
	// for a while, which parallel tests' self-checks would report.
	name, first := newMigratedDB(t)
	second, err := postgres.NewMigrator(testdb.Cluster().DSN(postgres.Owner, testdb.Credentials().Owner, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.UseAdmin(testdb.Cluster().SuperuserDSN("postgres"))
	var wg sync.WaitGroup
	applied := make([]int, 2)
	errs := make([]error, 2)
	for i, m := range []*postgres.Migrator{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := m.Up(context.Background())
			applied[i], errs[i] = len(res), err
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent migrators: %v / %v", errs[0], errs[1])
	}
	st, err := first.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if applied[0]+applied[1] != len(st) {
		t.Fatalf("migrations applied %d + %d times, want each of the %d once", applied[0], applied[1], len(st))
	}
}

// TestPoliciesDownUpKeepsData rolls the policies migration back and forth
// on the seeded fixture: every row survives (checksums before and after),
// and isolation is back afterwards.
func TestPoliciesDownUpKeepsData(t *testing.T) {
	// Not parallel: migrating makes the owner a member of the definer role
	// for a while, which parallel tests' self-checks would report.
	d, demo := seeded(t)
	before := checksum(t, d.DB)
	m, err := postgres.NewMigrator(d.OwnerDSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.UseAdmin(testdb.Cluster().SuperuserDSN("postgres"))
	ctx := context.Background()
	if _, err := m.DownTo(ctx, policiesVersion-1); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	after := checksum(t, d.DB)
	for table, sum := range before {
		if after[table] != sum {
			t.Errorf("table %s changed across down/up of the policies migration", table)
		}
	}
	if got := ids(t, d.DB, as(t, demo.T2.Tenant.ID, demo.T2.Bob, [16]byte{}), `SELECT tenant_id FROM bulkhead.memories`); len(got) != 4 {
		t.Errorf("after down/up T2 Bob sees %d memories, want his 4", len(got))
	}
}

// TestConcurrentBootstraps: several processes bootstrapping one cluster at
// once (two first starts, parallel migrators) all succeed, also while other
// databases of the cluster are being prepared (their ACLs change in the
// shared pg_database catalog that the bootstraps' closing of other
// databases also updates: it failed with "tuple concurrently updated").
func TestConcurrentBootstraps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := fmt.Sprintf("boot%d", os.Getpid())
	admin := mustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
	var others []string
	for i := range 4 {
		other := fmt.Sprintf("boot%d_other%d", os.Getpid(), i)
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+other); err != nil {
			t.Fatal(err)
		}
		others = append(others, other)
	}
	t.Cleanup(func() {
		for _, n := range append(others, name) {
			admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
		}
	})
	errs := make(chan error, 4+4*10)
	for range 4 {
		go func() {
			errs <- postgres.Bootstrap(ctx, testdb.Cluster().SuperuserDSN("postgres"), name, testdb.Credentials(), true)
		}()
	}
	for _, other := range others {
		go func() {
			for range 10 {
				errs <- postgres.PrepareDatabase(ctx, testdb.Cluster().SuperuserDSN("postgres"), other)
			}
		}()
	}
	for range 4 + 4*10 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent bootstrap: %v", err)
		}
	}
}

// policiesVersion is the version of the generated policies migration.
var policiesVersion = func() int64 {
	files, err := postgres.GeneratedMigrations()
	if err != nil {
		panic(err)
	}
	for name := range files {
		if strings.HasSuffix(name, "_policies.sql") {
			v, err := strconv.ParseInt(name[:strings.IndexByte(name, '_')], 10, 64)
			if err != nil {
				panic(err)
			}
			return v
		}
	}
	panic("no policies migration")
}()

// TestDefinerMembershipOnlyWhileMigrating (issue 11, finding 9): the owner
// is a member of the BYPASSRLS definer role only inside
// WithDefinerMembership, which revokes it when fn returns, even with an
// error; Bootstrap revokes a membership left behind.
func TestDefinerMembershipOnlyWhileMigrating(t *testing.T) {
	// Not parallel: migrating makes the owner a member of the definer role
	// for a while, which parallel tests' self-checks would report.
	ctx := context.Background()
	admin := testdb.Cluster().SuperuserDSN("postgres")
	conn := mustConnect(t, admin)
	member := func() bool {
		var m bool
		if err := conn.QueryRow(ctx, `SELECT pg_has_role($1, $2, 'MEMBER')`, postgres.Owner, postgres.Definer).Scan(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if member() {
		t.Fatal("the owner is a member of the definer role outside migrations")
	}
	failed := errors.New("migration failed")
	var during bool
	err := postgres.WithDefinerMembership(ctx, admin, func() error {
		during = member()
		return failed
	})
	if !errors.Is(err, failed) || !during || member() {
		t.Errorf("WithDefinerMembership: err %v, member during %v, after %v; want the error, true, false", err, during, member())
	}
	// A membership granted by hand (or by an older bootstrap) is revoked by
	// the next bootstrap.
	if _, err := conn.Exec(ctx, "GRANT "+postgres.Definer+" TO "+postgres.Owner); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("membership_%d", os.Getpid())
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	if err := postgres.Bootstrap(ctx, admin, name, testdb.Credentials(), true); err != nil {
		t.Fatal(err)
	}
	if member() {
		t.Error("Bootstrap left the owner a member of the definer role")
	}
}
