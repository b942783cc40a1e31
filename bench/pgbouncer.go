package bench

import (
	"github.com/bulkhead-dev/bulkhead/pgbouncer"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// startBouncer starts a real PgBouncer in transaction mode in front of
// database db of cl, knowing the runtime role, with a server pool of
// poolSize. It fails, never skips, without a pgbouncer binary.
func startBouncer(cl *pgcluster.Cluster, creds postgres.Credentials, db string, poolSize int) (*pgbouncer.Bouncer, error) {
	return pgbouncer.Start(pgbouncer.Config{
		Host:     cl.SocketDir(),
		Port:     cl.Port(),
		Database: db,
		Users:    map[string]string{postgres.Runtime: creds.Runtime},
		PoolSize: poolSize,
	})
}
