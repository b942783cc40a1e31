package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
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
	// directAppDSN reaches PostgreSQL directly as the runtime role, even
	// when appDSN goes through a pooler.
	directAppDSN string
	maintDSN     string
	keysDSN      string
	keys         *postgres.KeysetStore // set by openDB
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
	env.keysDSN = role(postgres.KeyService, creds.KeyService)
	env.directAppDSN = env.appDSN
	if c.appURL != "" {
		env.appDSN = c.appURL
	}
	return env, nil
}

// close closes the key store and stops the embedded cluster if this
// process started it.
func (e *dbEnv) close() {
	if e.keys != nil {
		e.keys.Close()
	}
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
	m.UseAdmin(e.adminDSN)
	_, err = m.Up(ctx)
	return err
}

// openDB opens the server's pools, with the keyring that seals secrets.
func (e *dbEnv) openDB(ctx context.Context, c *config, log *slog.Logger) (*postgres.DB, error) {
	kr, err := e.openKeyring(ctx, c, log)
	if err != nil {
		return nil, err
	}
	ctxKey, err := e.contextKey(c)
	if err != nil {
		return nil, err
	}
	return postgres.Open(ctx, postgres.Config{AppDSN: e.appDSN, MaintenanceDSN: e.maintDSN, QueryExecMode: c.queryExecMode, MaxConns: c.poolSize, AcquireTimeout: c.acquireTimeout, Keyring: kr, ContextKey: ctxKey, Logger: log})
}

// contextKey loads the key that signs transaction contexts: the embedded
// cluster's own, or --context-key-file with an external database.
func (e *dbEnv) contextKey(c *config) (postgres.ContextKey, error) {
	if c.contextKey != "" {
		return postgres.LoadContextKey(c.contextKey)
	}
	if e.cluster == nil {
		return postgres.ContextKey{}, fmt.Errorf("--context-key-file is required with --database-url: it names the key file the database's bulkhead_context extension verifies contexts with (docs/SECURITY.md)")
	}
	raw, err := e.cluster.ContextKey()
	if err != nil {
		return postgres.ContextKey{}, err
	}
	return postgres.NewContextKey(raw)
}

// openKeyring connects to the wrapped keysets as the key service, loads
// the key-encryption key and checks it is the one that wrapped them: the
// wrong or a missing KEK stops bulkhead here, before it serves anything.
func (e *dbEnv) openKeyring(ctx context.Context, c *config, log *slog.Logger) (*fieldcrypt.Keyring, error) {
	keys, err := postgres.OpenKeysetStore(ctx, e.keysDSN)
	if err != nil {
		return nil, err
	}
	e.keys = keys
	kek, err := c.loadKEK(ctx, keys, log)
	if err != nil {
		return nil, kmsHint(err)
	}
	tkd, err := fieldcrypt.OpenTenantKeyDir(c.tenantKeyPath())
	if err != nil {
		return nil, fmt.Errorf("tenant key directory: %w", err)
	}
	opts := fieldcrypt.Options{LoadKEK: recordedKEKLoader(keys, log, c.kekTimeout), TenantKeys: tkd}
	if err := keys.CheckKEK(ctx, kek); errors.Is(err, fieldcrypt.ErrKMSUnavailable) {
		return nil, kmsHint(err)
	} else if err != nil {
		if next := c.nextKEK; next != nil && errors.Is(err, postgres.ErrWrongKEK) && keys.CheckKEK(ctx, next) == nil {
			// Resuming keys rotate-kek with the old KEK configured: the
			// database records the new one already; keep the old one for
			// keysets not re-wrapped yet.
			kr := fieldcrypt.NewKeyring(kek, keys, opts)
			kr.UseKEK(next)
			return kr, nil
		}
		return nil, fmt.Errorf("%w: start with the key-encryption key that wrapped this database's keys (--kek-file / --kek-uri), or restore it from backup", err)
	}
	return fieldcrypt.NewKeyring(kek, keys, opts), nil
}

// kmsHint adds what to check to a KMS that could not be asked.
func kmsHint(err error) error {
	if errors.Is(err, fieldcrypt.ErrKMSUnavailable) {
		return fmt.Errorf("%w (nothing is served without the key-encryption key: check the KMS address, network and credentials; --kek-timeout bounds each wait)", err)
	}
	return err
}

// recordedKEKLoader loads the KEK the database records, from where it is
// recorded (keys rotate-kek records the file path or KMS URI), and checks
// it against the recorded check value: a running server follows a KEK
// rotation without a restart. It loads only the recorded KEK.
func recordedKEKLoader(keys *postgres.KeysetStore, log *slog.Logger, kekTimeout time.Duration) func(ctx context.Context, id string) (*fieldcrypt.KEK, error) {
	return func(ctx context.Context, id string) (*fieldcrypt.KEK, error) {
		rid, ref, check, ok, err := keys.RecordedKEKRef(ctx)
		if err != nil {
			return nil, err
		}
		if !ok || rid != id || ref == "" {
			return nil, fmt.Errorf("KEK %s is not the database's recorded key-encryption key, or where it is found is not recorded", id)
		}
		var kek *fieldcrypt.KEK
		if strings.Contains(ref, "://") {
			kek, err = fieldcrypt.KMSKEK(ctx, ref, kekTimeout)
		} else {
			kek, _, err = fieldcrypt.LocalKEK(ref, false)
		}
		if err != nil {
			return nil, err
		}
		if kek.ID() != id {
			return nil, fmt.Errorf("%s holds key-encryption key %s, not the recorded %s", ref, kek.ID(), id)
		}
		if err := kek.Check(check); errors.Is(err, fieldcrypt.ErrKMSUnavailable) {
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("%s holds key-encryption key %s, not the recorded %s", ref, kek.ID(), id)
		}
		log.Warn("loaded the database's new key-encryption key (keys rotate-kek); start bulkhead with it from now on", "kek", id, "ref", ref)
		return kek, nil
	}
}

// loadKEK loads the configured KEK. A missing local KEK file is created
// only for a database that has none recorded yet.
func (c *config) loadKEK(ctx context.Context, keys *postgres.KeysetStore, log *slog.Logger) (*fieldcrypt.KEK, error) {
	if c.kekURI != "" {
		return fieldcrypt.KMSKEK(ctx, c.kekURI, c.kekTimeout)
	}
	path := c.kekPath()
	recorded, has, err := keys.RecordedKEK(ctx)
	if err != nil {
		return nil, err
	}
	kek, created, err := fieldcrypt.LocalKEK(path, !has)
	if err != nil {
		if has {
			return nil, fmt.Errorf("%w (this database's keys are wrapped by %s: restore that key-encryption key, or pass --kek-file / --kek-uri)", err, recorded)
		}
		return nil, err
	}
	if created {
		log.Warn("created a key-encryption key: back it up; without it no tenant's sealed data can be read", "path", path)
		fmt.Fprintf(os.Stderr, "bulkhead: created key-encryption key %s (mode 0600): back it up\n", path)
	}
	return kek, nil
}

// tenantKeyPath is where tenant keys live: --tenant-key-dir, or
// DATA_DIR/tenant-keys.
func (c *config) tenantKeyPath() string {
	if c.tenantKeyDir != "" {
		return c.tenantKeyDir
	}
	return filepath.Join(c.dataDir, "tenant-keys")
}

func (c *config) kekPath() string {
	if c.kekFile != "" {
		return c.kekFile
	}
	return filepath.Join(c.dataDir, "kek.json")
}
