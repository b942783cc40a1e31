package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the server's connection pools.
type Config struct {
	// AppDSN connects as the runtime role, directly or through PgBouncer.
	AppDSN string
	// MaintenanceDSN connects as the maintenance role; empty disables
	// InMaintenance.
	MaintenanceDSN string
	// QueryExecMode overrides pgx's statement handling: "cache_statement"
	// (default, direct connections), "cache_describe" or "exec" (PgBouncer
	// 1.18–1.20 in transaction mode, whose lack of prepared-statement
	// support breaks the statement cache), "describe_exec", "simple_protocol".
	// The DSN parameter default_query_exec_mode does the same.
	QueryExecMode string
	// MaxConns bounds each pool; 0 means pgxpool's default.
	MaxConns int32
	// AcquireTimeout bounds how long a transaction waits for a pool
	// connection; past it, bulkhead.ErrUnavailable (503 with Retry-After)
	// instead of a wait until the caller's own deadline. Zero:
	// DefaultAcquireTimeout.
	AcquireTimeout time.Duration
	// Keyring seals the columns in SealedColumns; nil stores them in
	// plaintext (for migration from unencrypted data and for benchmarks).
	Keyring *fieldcrypt.Keyring
	// ContextKey signs each transaction's context; required. The server's
	// PostgreSQL must hold the same key (bulkhead_context extension).
	ContextKey ContextKey
	// Dial, when set, opens the network connections (for instrumentation,
	// such as counting round trips).
	Dial   pgconn.DialFunc
	Logger *slog.Logger
}

// DefaultAcquireTimeout is Config.AcquireTimeout's default.
const DefaultAcquireTimeout = 2 * time.Second

// DB is the server's handle on PostgreSQL. It is safe for concurrent use.
type DB struct {
	app   *pgxpool.Pool
	maint *pgxpool.Pool
	// acquireTimeout bounds a wait for a connection (Config.AcquireTimeout);
	// acquireTimeouts counts the waits it ended.
	acquireTimeout  time.Duration
	acquireTimeouts atomic.Uint64
	keyring         *fieldcrypt.Keyring
	ctxKey          ContextKey
	log             *slog.Logger
	damaged         map[SealedColumn]*atomic.Uint64 // values found damaged, by column (damaged.go)
}

var execModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// Open creates the pools and checks that the runtime role can connect.
// Without cfg.ContextKey it fails before connecting.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.ContextKey.IsZero() {
		return nil, errNoContextKey
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	app, err := newPool(ctx, cfg.AppDSN, cfg)
	if err != nil {
		return nil, fmt.Errorf("open runtime pool: %w", err)
	}
	db := &DB{app: app, log: log, keyring: cfg.Keyring, ctxKey: cfg.ContextKey, damaged: map[SealedColumn]*atomic.Uint64{},
		acquireTimeout: cfg.AcquireTimeout}
	if db.acquireTimeout <= 0 {
		db.acquireTimeout = DefaultAcquireTimeout
	}
	for _, c := range SealedColumns {
		db.damaged[c] = new(atomic.Uint64)
	}
	if cfg.MaintenanceDSN != "" {
		if db.maint, err = newPool(ctx, cfg.MaintenanceDSN, cfg); err != nil {
			app.Close()
			return nil, fmt.Errorf("open maintenance pool: %w", err)
		}
	}
	if err := app.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect as the runtime role: %w", err)
	}
	return db, nil
}

func newPool(ctx context.Context, dsn string, cfg Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err)
	}
	if cfg.QueryExecMode != "" {
		m, ok := execModes[cfg.QueryExecMode]
		if !ok {
			return nil, fmt.Errorf("%w: unknown query exec mode %q", bulkhead.ErrInvalid, cfg.QueryExecMode)
		}
		pc.ConnConfig.DefaultQueryExecMode = m
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.Dial != nil {
		pc.ConnConfig.DialFunc = cfg.Dial
	}
	pc.AfterConnect = registerTypes
	return pgxpool.NewWithConfig(ctx, pc)
}

// registerTypes teaches each connection's type map google/uuid's UUID and
// slices of it. pgx knows their PostgreSQL types only from a statement's
// description, which the "exec" and "simple_protocol" modes (PgBouncer
// before 1.21) never fetch: without this, an []uuid.UUID argument (c.id =
// ANY($2)) can't be encoded there. It runs locally, with no round trip.
func registerTypes(_ context.Context, c *pgx.Conn) error {
	uuidTypes(c.TypeMap())
	return nil
}

// Close closes the pools.
func (db *DB) Close() {
	db.app.Close()
	if db.maint != nil {
		db.maint.Close()
	}
}

// Keyring returns the keyring sealing SealedColumns (nil in plaintext mode).
func (db *DB) Keyring() *fieldcrypt.Keyring { return db.keyring }

// Pool returns the runtime role's pool, for health checks and metrics. Any
// query through it without a scope sees no tenant rows.
func (db *DB) Pool() *pgxpool.Pool { return db.app }

func scopeFrom(ctx context.Context) (bulkhead.Scope, error) {
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok {
		return bulkhead.Scope{}, bulkhead.ErrUnauthenticated
	}
	if err := s.Validate(); err != nil {
		return bulkhead.Scope{}, bulkhead.ErrUnauthenticated
	}
	return s, nil
}

// InScope runs fn in one transaction whose tenant, entity and acting-for
// settings come from ctx, entered with a token signed by the context key.
// The settings are transaction-local (they can't
// outlive the transaction on a pooled connection) and are sent in the same
// round trip as fn's first statement, together with BEGIN. fn must use only
// the tx it is given. If fn returns an error the transaction is rolled back
// and that error returned (translated when it came from the driver).
//
// It returns bulkhead.ErrUnauthenticated, before any SQL is sent, if ctx
// has no scope.
func (db *DB) InScope(ctx context.Context, fn func(pgx.Tx) error) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	conn, err := db.acquire(ctx, db.app)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx := &scopedTx{conn: conn.Conn(), key: db.ctxKey, scope: s}
	tx.access, _ = ctx.Value(accessKey{}).(*accessState)
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(ctx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			// The connection is in an unknown state: don't return it to the pool.
			conn.Hijack().Close(context.Background())
		}
		return translate(err)
	}
	return translate(tx.Commit(ctx))
}

// Read runs one read statement in the scope from ctx in a single round trip:
// the settings and the statement travel in one batch and run in one
// implicit transaction, which ends with the batch. fn reads the rows.
//
// It returns bulkhead.ErrUnauthenticated, before any SQL is sent, if ctx
// has no scope.
func (db *DB) Read(ctx context.Context, fn func(pgx.Rows) error, sql string, args ...any) error {
	return db.readBatch(ctx, func(b *pgx.Batch) { b.Queue(sql, args...).Query(fn) })
}

// readBatch is Read for the read statements queue adds to the batch: they
// run after the settings, in order, in the same implicit transaction and
// round trip.
func (db *DB) readBatch(ctx context.Context, queue func(*pgx.Batch)) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(contextSQL, db.ctxKey.token(s, time.Now()))
	st := queueAccess(ctx, b)
	queue(b)
	conn, err := db.acquire(ctx, db.app)
	if err != nil {
		return err
	}
	defer conn.Release() // a connection left busy or mid-transaction is destroyed, not reused
	err = translate(conn.SendBatch(ctx, b).Close())
	if st != nil && err == nil {
		st.checked.Store(true)
	}
	return err
}

// ReadRow is Read for a statement that returns one row, scanned into dest.
// No row is bulkhead.ErrNotFound.
func (db *DB) ReadRow(ctx context.Context, sql string, args []any, dest ...any) error {
	return db.Read(ctx, func(rows pgx.Rows) error {
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return pgx.ErrNoRows
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}, sql, args...)
}

// ErrNoMaintenance means cross-tenant work was attempted without
// bulkhead.AsMaintenance or without a maintenance connection.
var ErrNoMaintenance = errors.New("maintenance path not available: mark the context with bulkhead.AsMaintenance and configure the maintenance role")

// InMaintenance runs fn in one transaction as the maintenance role, which
// bypasses row-level security: the only cross-tenant path. ctx must be
// marked with bulkhead.AsMaintenance; the reason is logged.
// It returns ErrNoMaintenance otherwise.
func (db *DB) InMaintenance(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.inMaintenance(ctx, pgx.TxOptions{}, fn)
}

// inMaintenance is InMaintenance with transaction options (a snapshot for
// exports).
func (db *DB) inMaintenance(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	m, ok := bulkhead.MaintenanceFrom(ctx)
	if !ok || db.maint == nil {
		return ErrNoMaintenance
	}
	db.log.InfoContext(ctx, "maintenance transaction", "reason", m.Reason)
	conn, err := db.acquire(ctx, db.maint)
	if err != nil {
		return err
	}
	defer conn.Release()
	err = pgx.BeginTxFunc(ctx, conn, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('application_name', $1, true)", truncateName("bulkhead maintenance: "+m.Reason)); err != nil {
			return err
		}
		return fn(tx)
	})
	return translate(err)
}

// errAcquireTimeout is the cause of an acquire's context when the wait
// for a connection ran out.
var errAcquireTimeout = errors.New("no database connection free within the acquire timeout")

// acquire takes a connection from pool, waiting at most db.acquireTimeout:
// past it, bulkhead.ErrUnavailable (the pool is saturated: 503 with
// Retry-After), rather than a wait until ctx's own deadline. ctx's own
// cancellation or deadline is returned as is; a refused dial is
// ErrUnavailable too (translate).
func (db *DB) acquire(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Conn, error) {
	actx, cancel := context.WithTimeoutCause(ctx, db.acquireTimeout, errAcquireTimeout)
	defer cancel()
	conn, err := pool.Acquire(actx)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() == nil && errors.Is(context.Cause(actx), errAcquireTimeout) {
		db.acquireTimeouts.Add(1)
		return nil, fmt.Errorf("acquire connection: %w (%w)", bulkhead.ErrUnavailable, errAcquireTimeout)
	}
	return nil, translate(fmt.Errorf("acquire connection: %w", err))
}

// AcquireTimeouts returns how many waits for a connection ran out
// (Config.AcquireTimeout) since Open. Safe for concurrent use.
func (db *DB) AcquireTimeouts() uint64 { return db.acquireTimeouts.Load() }

func truncateName(s string) string {
	if len(s) > 63 {
		return s[:63]
	}
	return s
}
