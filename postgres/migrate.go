package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres/migrations"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrator applies bulkhead's migrations with goose, over a direct
// connection as the owner role (never through PgBouncer), one transaction
// per migration. A table lock serialises concurrent migrators.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
	adminDSN string
}

// UseAdmin makes Up, DownTo and Down run inside WithDefinerMembership over
// adminDSN (a superuser or CREATEROLE connection string, Bootstrap's):
// migrations that hand SECURITY DEFINER functions to the definer role need
// the owner to be its member while they run, and only then. Without it
// such migrations fail (nothing is half-applied: each runs in one
// transaction).
func (m *Migrator) UseAdmin(adminDSN string) { m.adminDSN = adminDSN }

// window runs fn inside WithDefinerMembership when an admin is configured.
func (m *Migrator) window(ctx context.Context, fn func() error) error {
	if m.adminDSN == "" {
		return fn()
	}
	return WithDefinerMembership(ctx, m.adminDSN, fn)
}

// NewMigrator connects to ownerDSN and prepares goose. The caller must Close it.
func NewMigrator(ownerDSN string, log *slog.Logger) (*Migrator, error) {
	cfg, err := pgx.ParseConfig(ownerDSN)
	if err != nil {
		return nil, fmt.Errorf("migrator: parse owner connection string: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	pingCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrator: connect as %s to %s:%d: %w", cfg.User, cfg.Host, cfg.Port, err)
	}
	locker, err := lock.NewPostgresTableLocker(
		lock.WithTableName(Schema+".goose_lock"),
		lock.WithTableLockTimeout(250*time.Millisecond, 2400), // up to 10 minutes behind another migrator
	)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrator: locker: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithTableName(Schema + ".goose_db_version"), goose.WithLocker(locker)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrator: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Up applies every pending migration; each runs in its own transaction, so a
// failure (a policy that can't be created, say) leaves the database at the
// last good version.
func (m *Migrator) Up(ctx context.Context) ([]*goose.MigrationResult, error) {
	var res []*goose.MigrationResult
	err := m.window(ctx, func() (err error) {
		res, err = m.provider.Up(ctx)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("migrate up: %w", err)
	}
	return res, nil
}

// DownTo rolls back to version (0: everything).
func (m *Migrator) DownTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	var res []*goose.MigrationResult
	err := m.window(ctx, func() (err error) {
		res, err = m.provider.DownTo(ctx, version)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("migrate down to %d: %w", version, err)
	}
	return res, nil
}

// Down rolls back the newest applied migration.
func (m *Migrator) Down(ctx context.Context) (*goose.MigrationResult, error) {
	var res *goose.MigrationResult
	err := m.window(ctx, func() (err error) {
		res, err = m.provider.Down(ctx)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("migrate down: %w", err)
	}
	return res, nil
}

// Status lists every migration and whether it is applied.
func (m *Migrator) Status(ctx context.Context) ([]*goose.MigrationStatus, error) {
	return m.provider.Status(ctx)
}

// Version returns the current schema version.
func (m *Migrator) Version(ctx context.Context) (int64, error) {
	return m.provider.GetDBVersion(ctx)
}

// Latest returns the newest version the binary knows.
func (m *Migrator) Latest() int64 {
	srcs := m.provider.ListSources()
	if len(srcs) == 0 {
		return 0
	}
	return srcs[len(srcs)-1].Version
}

// Close closes the connection.
func (m *Migrator) Close() error { return m.db.Close() }
