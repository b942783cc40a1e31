package policylock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Options say what a lock covers.
type Options struct {
	// Matrix adds the observed visibility matrix of bulkhead's schema.
	Matrix bool
	// ContextKey is the database's context key (FromURL with Matrix only;
	// FromMigrations uses its cluster's).
	ContextKey postgres.ContextKey
	// Now is the fixture's clock (zero: time.Now). Delegation expiries are
	// relative to it, so any value gives the same matrix.
	Now time.Time
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
}

// FromURL reads the lock of the database at url. With opts.Matrix the URL
// must be a superuser's (see ObserveMatrix); otherwise any role that can
// read the catalogs will do. Nothing is written.
func FromURL(ctx context.Context, url string, opts Options) (*Lock, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect to %s:%d as %s: %w", cfg.Host, cfg.Port, cfg.User, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	l, err := ReadCatalog(ctx, conn)
	if err != nil {
		return nil, err
	}
	if opts.Matrix {
		if opts.ContextKey.IsZero() {
			return nil, errors.New("the matrix enters bulkhead's signed context and needs the database's context key (--context-key-file); or lock the catalog only (--no-matrix)")
		}
		now := opts.Now
		if now.IsZero() {
			now = time.Now()
		}
		l.Matrix, err = ObserveMatrix(ctx, conn, opts.ContextKey, postgres.Tables, model.NewFixture(now))
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// FromMigrations applies the migrations in dir (goose *.sql files, the
// layout of postgres/migrations) to a throwaway PostgreSQL cluster started
// from the local binaries in a temporary directory, bootstrapped with
// bulkhead's roles, and reads its lock. The cluster and its directory are
// removed before it returns. A migration that fails is an error naming it.
func FromMigrations(ctx context.Context, dir string, opts Options) (*Lock, error) {
	fsys := os.DirFS(dir)
	if m, _ := fs.Glob(fsys, "*.sql"); len(m) == 0 {
		return nil, fmt.Errorf("migrations directory %s holds no *.sql migration", dir)
	}
	tmp, err := os.MkdirTemp("", "bhlock")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755) // PostgreSQL runs as another user when this runs as root
	cl, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: tmp, Ephemeral: true, Logger: opts.Log})
	if err != nil {
		return nil, fmt.Errorf("start a throwaway PostgreSQL: %w", err)
	}
	defer cl.Stop()
	raw, err := cl.ContextKey()
	if err != nil {
		return nil, err
	}
	key, err := postgres.NewContextKey(raw)
	if err != nil {
		return nil, err
	}
	creds := postgres.Credentials{Owner: randomPassword(), Runtime: randomPassword(), Maintenance: randomPassword(), KeyService: randomPassword()}
	admin := cl.SuperuserDSN("postgres")
	if err := postgres.Bootstrap(ctx, admin, postgres.Database, creds, true); err != nil {
		return nil, err
	}
	if err := migrateDir(ctx, fsys, dir, cl.DSN(postgres.Owner, creds.Owner, postgres.Database), admin); err != nil {
		return nil, err
	}
	opts.ContextKey = key
	return FromURL(ctx, cl.SuperuserDSN(postgres.Database), opts)
}

// migrateDir applies the migrations of fsys as the owner, with the definer
// membership window bulkhead's migrator opens.
func migrateDir(ctx context.Context, fsys fs.FS, dir, ownerDSN, adminDSN string) error {
	cfg, err := pgx.ParseConfig(ownerDSN)
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithTableName(postgres.Schema+".goose_db_version"))
	if err != nil {
		return fmt.Errorf("migrations %s: %w", dir, err)
	}
	return postgres.WithDefinerMembership(ctx, adminDSN, func() error {
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("apply migrations %s: %w", dir, err)
		}
		return nil
	})
}

func randomPassword() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
