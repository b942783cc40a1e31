package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// dbEnv is where bulkhead's database is and how each role reaches it.
type dbEnv struct {
	cluster  *pgcluster.Cluster // nil with an external database
	adminDSN string
	database string
	creds    postgres.Credentials
	ownerDSN string
	appDSN   string
	maintDSN string
}

// startMode says what to do with the embedded cluster.
type startMode int

const (
	attachOnly  startMode = iota // use a running cluster, start nothing
	startOwned                   // start (or reuse) and stop on exit
	inspectOnly                  // describe, running or not
)

// openEnv resolves the database: the embedded cluster in the data dir, or
// --database-url. The caller must call close.
func (c *config) openEnv(ctx context.Context, log *slog.Logger, mode startMode) (*dbEnv, error) {
	if err := os.MkdirAll(c.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir %s is not usable: %w", c.dataDir, err)
	}
	creds, err := postgres.LoadOrCreateCredentials(filepath.Join(c.dataDir, "credentials.json"))
	if err != nil {
		return nil, err
	}
	env := &dbEnv{creds: creds}
	if c.databaseURL != "" {
		u, err := url.Parse(c.databaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, fmt.Errorf("--database-url must be a postgres:// URL")
		}
		env.adminDSN = c.databaseURL
		env.database = strings.TrimPrefix(u.Path, "/")
		if env.database == "" {
			return nil, fmt.Errorf("--database-url must name a database (postgres://host/DBNAME)")
		}
	} else {
		pcfg := pgcluster.Config{DataDir: c.dataDir, Port: c.pgPort, Logger: log}
		var cl *pgcluster.Cluster
		switch mode {
		case startOwned:
			cl, err = pgcluster.Start(ctx, pcfg)
		case attachOnly:
			cl, err = pgcluster.Attach(pcfg)
		default:
			cl, err = pgcluster.Inspect(pcfg)
		}
		if err != nil {
			return nil, err
		}
		env.cluster = cl
		env.adminDSN = cl.SuperuserDSN("postgres")
		env.database = postgres.Database
	}
	role := func(user, pw string) string {
		dsn, _ := postgres.RoleDSN(env.adminDSN, user, pw, env.database)
		return dsn
	}
	env.ownerDSN = role(postgres.Owner, creds.Owner)
	env.appDSN = role(postgres.Runtime, creds.Runtime)
	env.maintDSN = role(postgres.Maintenance, creds.Maintenance)
	if c.appURL != "" {
		env.appDSN = c.appURL
	}
	return env, nil
}

// close stops the embedded cluster if this process started it.
func (e *dbEnv) close() {
	if e.cluster != nil {
		if err := e.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bulkhead:", err)
		}
	}
}

// migrate bootstraps roles and the database, then applies migrations.
func (e *dbEnv) migrate(ctx context.Context, log *slog.Logger) error {
	if err := postgres.Bootstrap(ctx, e.adminDSN, e.database, e.creds, e.cluster != nil); err != nil {
		return err
	}
	m, err := postgres.NewMigrator(e.ownerDSN, log)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Up(ctx)
	return err
}

// openDB opens the server's pools.
func (e *dbEnv) openDB(ctx context.Context, c *config, log *slog.Logger) (*postgres.DB, error) {
	return postgres.Open(ctx, postgres.Config{AppDSN: e.appDSN, MaintenanceDSN: e.maintDSN, QueryExecMode: c.queryExecMode, Logger: log})
}
