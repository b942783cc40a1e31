package testdb

import (
	"fmt"
	"testing"

	"github.com/bulkhead-dev/bulkhead/pgbouncer"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// PgBouncerEnv names the environment variable that runs a test package's
// servers through PgBouncer: when it is "1", Main starts a real PgBouncer
// 1.18+ in transaction mode in front of the package's cluster, and every
// DB that New and Database.Open return connects through it (runtime and
// maintenance roles) with pgx's "exec" query mode, as the README advises
// for PgBouncer before 1.21. Migrations, superuser and role-specific
// connections (AppDSN, OwnerDSN...) stay direct. CI runs the HTTP suite
// both ways.
const PgBouncerEnv = "BULKHEAD_TEST_PGBOUNCER"

// bouncerPort is the package-wide PgBouncer's port (0: not started).
var bouncerPort int

// ThroughPgBouncer reports whether this test binary's DBs go through
// PgBouncer (see PgBouncerEnv).
func ThroughPgBouncer() bool { return bouncerPort != 0 }

// PgBouncer starts a real PgBouncer in transaction mode in front of the
// package's cluster, for database name, with a server pool of poolSize,
// and returns the runtime role's DSN through it. It is stopped when t ends.
// The test fails (never skips) if PgBouncer is not installed.
func PgBouncer(t testing.TB, name string, poolSize int) string {
	t.Helper()
	port, stop, err := startPgBouncer(name, poolSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return bouncerDSN(port, postgres.Runtime, creds.Runtime, name)
}

func bouncerDSN(port int, role, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, password, port, db)
}

// startPgBouncer starts PgBouncer for database name ("*": every database),
// knowing the runtime and maintenance roles. It fails, never skips,
// without a pgbouncer binary.
func startPgBouncer(name string, poolSize int) (port int, stop func(), err error) {
	b, err := pgbouncer.Start(pgbouncer.Config{
		Host:          cluster.SocketDir(),
		Port:          cluster.Port(),
		Database:      name,
		Users:         map[string]string{postgres.Runtime: creds.Runtime, postgres.Maintenance: creds.Maintenance},
		PoolSize:      poolSize,
		MaxClientConn: 500,
	})
	if err != nil {
		return 0, nil, err
	}
	return b.Port(), b.Stop, nil
}
