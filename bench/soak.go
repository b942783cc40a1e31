package bench

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/pgbouncer"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SoakConfig sizes the pooling soak.
type SoakConfig struct {
	Transactions int    // per path; default 1,000,000
	Clients      int    // concurrent clients; default 32
	PoolSize     int    // server connections (pgxpool MaxConns, or PgBouncer's pool); default 2
	Through      string // "direct", "pgbouncer" or "both" (default)
	Tenants      int    // default 8
	Progress     io.Writer
	// OnProgress, when set, is called with each path's count of finished
	// transactions about every 1 % of the run.
	OnProgress func(path string, done, total int64)
}

// SoakPath is one path's outcome.
type SoakPath struct {
	Name                   string
	Transactions           int64 // finished, checked or failed
	Scoped, Unscoped, Rows int64 // scoped and no-scope calls, rows checked
	Elapsed                time.Duration
	P50, P99               time.Duration
	// WrongTenant counts rows of a tenant other than the call's (for a
	// no-scope call, every row).
	WrongTenant int64
	// CarriedOver counts calls that saw a context they didn't set: a
	// no-scope call that saw a row or a non-empty bulkhead setting, or a
	// scoped call whose rows of its own tenant were not exactly the set
	// its tenant and entity may see.
	CarriedOver int64
	Errors      int64  // transactions that failed
	FirstError  string // the first failure, for the report
}

// TPS is transactions per second over the whole path.
func (p SoakPath) TPS() float64 { return float64(p.Transactions) / p.Elapsed.Seconds() }

// Clean reports whether the path saw no wrong row, no leftover context and
// no failure.
func (p SoakPath) Clean() bool { return p.WrongTenant == 0 && p.CarriedOver == 0 && p.Errors == 0 }

// SoakResult is one run.
type SoakResult struct {
	Config     SoakConfig
	PGVersion  string
	PgBouncer  string // version line of the PgBouncer used, if any
	Tenants    int
	Identities int // (tenant, entity) pairs scoped as, tenant-only scopes included
	Paths      []SoakPath
}

// Clean reports whether every path is clean.
func (r *SoakResult) Clean() bool {
	for _, p := range r.Paths {
		if !p.Clean() {
			return false
		}
	}
	return len(r.Paths) > 0
}

// identity is a scope to run as and the exact set of rows it may see.
type identity struct {
	tenant, entity uuid.UUID // entity Nil: tenant-only scope
	want           map[uuid.UUID]struct{}
}

// The one statement every call sends, without a WHERE: only RLS decides
// what comes back. The first part returns a row with a NULL tenant when a
// bulkhead setting is left in the session (it must never be, with or
// without a scope: InScope and Read set it transaction-local).
const soakSQL = `SELECT NULL::uuid, NULL::uuid WHERE coalesce(current_setting('bulkhead.tenant_id', true), '') <> ''
		AND ` + "$1" + `::bool
	UNION ALL SELECT tenant_id, id FROM bulkhead.memories
	UNION ALL SELECT tenant_id, id FROM bulkhead.entities
	UNION ALL SELECT id, id FROM bulkhead.tenants`

// RunSoak drives cfg.Transactions scoped and unscoped transactions from
// cfg.Clients clients over cfg.PoolSize server connections, directly
// through pgxpool and/or through a real PgBouncer in transaction mode,
// and checks every row returned. It starts its own throwaway cluster (and
// PgBouncer) and removes them afterwards.
func RunSoak(ctx context.Context, cfg SoakConfig) (*SoakResult, error) {
	if cfg.Transactions <= 0 {
		cfg.Transactions = 1_000_000
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 32
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 2
	}
	if cfg.Tenants <= 0 {
		cfg.Tenants = 8
	}
	if cfg.Through == "" {
		cfg.Through = "both"
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	var paths []string
	switch cfg.Through {
	case "direct", "pgbouncer":
		paths = []string{cfg.Through}
	case "both":
		paths = []string{"direct", "pgbouncer"}
	default:
		return nil, fmt.Errorf("--through %q: want direct, pgbouncer or both", cfg.Through)
	}
	res := &SoakResult{Config: cfg}
	env, err := newCluster(ctx, cfg.Progress, map[string]string{"max_connections": "200"})
	if err != nil {
		return nil, err
	}
	defer env.close()
	const dbName = "bench_soak"
	if err := env.migrated(ctx, dbName); err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, env.cl.SuperuserDSN(dbName))
	if err != nil {
		return nil, err
	}
	admin.QueryRow(ctx, "SHOW server_version").Scan(&res.PGVersion)
	// 10 users, 10 rooms of 5 participants and 2 memories per room per
	// tenant: each user sees 10 memories of 5 rooms, and another user of
	// the same tenant a different set.
	err = generate(ctx, admin, Config{Tenants: cfg.Tenants, Memories: cfg.Tenants * 10 * 2, BigRoom: 1, Progress: cfg.Progress}, &Result{Rows: map[string]int64{}})
	var ids []identity
	if err == nil {
		ids, err = soakIdentities(ctx, admin)
	}
	admin.Close(ctx)
	if err != nil {
		return nil, err
	}
	res.Tenants, res.Identities = cfg.Tenants, len(ids)

	for _, path := range paths {
		pc := postgres.Config{ContextKey: env.ctxKey}
		var bnc *pgbouncer.Bouncer
		switch path {
		case "direct":
			pc.AppDSN = env.cl.DSN(postgres.Runtime, env.creds.Runtime, dbName)
			pc.MaxConns = int32(cfg.PoolSize) // the clients queue for the pool's connections
		case "pgbouncer":
			if bnc, err = startBouncer(env.cl, env.creds, dbName, cfg.PoolSize); err != nil {
				return nil, err
			}
			res.PgBouncer = bnc.Version()
			pc.AppDSN = bnc.DSN(postgres.Runtime, env.creds.Runtime, dbName)
			pc.QueryExecMode = "exec"        // PgBouncer 1.18 has no prepared statements
			pc.MaxConns = int32(cfg.Clients) // a client connection each; PgBouncer multiplexes them
		}
		db, err := postgres.Open(ctx, pc)
		if err != nil {
			if bnc != nil {
				bnc.Stop()
			}
			return nil, err
		}
		fmt.Fprintf(cfg.Progress, "soak %s: %d transactions, %d clients, %d server connections\n", path, cfg.Transactions, cfg.Clients, cfg.PoolSize)
		p := soak(ctx, db, ids, path, cfg)
		db.Close()
		if bnc != nil {
			bnc.Stop()
		}
		res.Paths = append(res.Paths, p)
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// soakIdentities lists every (tenant, entity) pair and every tenant alone,
// with the rows each may see, computed as the superuser from the design's
// rules (not from the policies): its tenant's row, every entity of its
// tenant, and with an entity, the memories of the rooms it participates in.
func soakIdentities(ctx context.Context, conn *pgx.Conn) ([]identity, error) {
	rows, err := conn.Query(ctx, `SELECT t.id, e.id,
		ARRAY(SELECT m.id FROM bulkhead.memories m JOIN bulkhead.participants p
			ON p.tenant_id = m.tenant_id AND p.room_id = m.room_id
			WHERE p.tenant_id = t.id AND p.entity_id = e.id)
		FROM bulkhead.tenants t JOIN bulkhead.entities e ON e.tenant_id = t.id
		UNION ALL SELECT t.id, NULL, '{}' FROM bulkhead.tenants t`)
	if err != nil {
		return nil, err
	}
	var out []identity
	for rows.Next() {
		var id identity
		var entity uuid.NullUUID
		var mems []uuid.UUID
		if err := rows.Scan(&id.tenant, &entity, &mems); err != nil {
			return nil, err
		}
		id.entity = entity.UUID
		id.want = map[uuid.UUID]struct{}{id.tenant: {}}
		for _, m := range mems {
			id.want[m] = struct{}{}
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Every entity of the tenant is in its directory.
	byTenant := map[uuid.UUID][]uuid.UUID{}
	erows, err := conn.Query(ctx, `SELECT tenant_id, id FROM bulkhead.entities`)
	if err != nil {
		return nil, err
	}
	for erows.Next() {
		var t, e uuid.UUID
		if err := erows.Scan(&t, &e); err != nil {
			return nil, err
		}
		byTenant[t] = append(byTenant[t], e)
	}
	if err := erows.Err(); err != nil {
		return nil, err
	}
	for _, id := range out {
		for _, e := range byTenant[id.tenant] {
			id.want[e] = struct{}{}
		}
	}
	return out, nil
}

// soak runs one path. Each client takes, in turn: an entity scope through
// InScope, an entity scope through Read, a no-scope call, a tenant-only
// scope through Read, a tenant-only scope through InScope and another
// no-scope call, each scope on a random tenant and entity; with more
// clients than server connections, consecutive transactions on a
// connection belong to different tenants, entities or none.
func soak(ctx context.Context, db *postgres.DB, ids []identity, name string, cfg SoakConfig) SoakPath {
	p := SoakPath{Name: name}
	var next, finished, wrong, carried, errs, scoped, unscoped, nrows atomic.Int64
	var firstErr sync.Once
	total := int64(cfg.Transactions)
	var entityIDs, tenantIDs []int
	for i, id := range ids {
		if id.entity == uuid.Nil {
			tenantIDs = append(tenantIDs, i)
		} else {
			entityIDs = append(entityIDs, i)
		}
	}
	var mu sync.Mutex
	var lats []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	step := max(1, total/100)
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(c), 0x50a4))
			mine := make([]time.Duration, 0, total/int64(cfg.Clients)+1)
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= total {
					break
				}
				kind := (i + int64(c)) % 6
				var id *identity
				switch kind {
				case 0, 1:
					id = &ids[entityIDs[rnd.IntN(len(entityIDs))]]
				case 3, 4:
					id = &ids[tenantIDs[rnd.IntN(len(tenantIDs))]]
				}
				t0 := time.Now()
				got, err := soakCall(ctx, db, id, kind)
				d := time.Since(t0)
				if err != nil {
					errs.Add(1)
					firstErr.Do(func() { p.FirstError = err.Error() })
				} else {
					mine = append(mine, d)
					nrows.Add(int64(len(got)))
					w, co := check(id, got)
					wrong.Add(w)
					if co {
						carried.Add(1)
					}
				}
				if id == nil {
					unscoped.Add(1)
				} else {
					scoped.Add(1)
				}
				if n := finished.Add(1); cfg.OnProgress != nil && (n%step == 0 || n == total) {
					cfg.OnProgress(name, n, total)
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.Elapsed = time.Since(start)
	p.Transactions, p.Scoped, p.Unscoped, p.Rows = finished.Load(), scoped.Load(), unscoped.Load(), nrows.Load()
	p.WrongTenant, p.CarriedOver, p.Errors = wrong.Load(), carried.Load(), errs.Load()
	p.P50, p.P99 = pct(lats, 50), pct(lats, 99)
	return p
}

// soakRow is one row of soakSQL: a NULL tenant stands for a leftover setting.
type soakRow struct{ tenant, id uuid.NullUUID }

// soakCall runs one call as id (nil: no scope) the way kind says.
func soakCall(ctx context.Context, db *postgres.DB, id *identity, kind int64) ([]soakRow, error) {
	collect := func(rows pgx.Rows) ([]soakRow, error) {
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (soakRow, error) {
			var s soakRow
			err := r.Scan(&s.tenant, &s.id)
			return s, err
		})
	}
	if id == nil {
		// A plain query on the runtime role's pool, as a health check or a
		// library user's forgotten scope would send it. Here any setting
		// at all is a leftover.
		rows, err := db.Pool().Query(ctx, soakSQL, true)
		if err != nil {
			return nil, err
		}
		return collect(rows)
	}
	sctx, err := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: id.tenant, Entity: id.entity})
	if err != nil {
		return nil, err
	}
	var got []soakRow
	if kind%3 == 0 { // InScope: BEGIN + context + statement, then COMMIT
		err = db.InScope(sctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(sctx, soakSQL, false)
			if err != nil {
				return err
			}
			got, err = collect(rows)
			return err
		})
	} else { // Read: context + statement in one implicit transaction
		err = db.Read(sctx, func(rows pgx.Rows) error {
			got, err = collect(rows)
			return err
		}, soakSQL, false)
	}
	return got, err
}

// check counts got's rows of a tenant other than id's (every row without
// a scope) and reports whether the call saw a context it didn't set: a row
// or a setting without a scope, or not exactly id's set of its own tenant.
func check(id *identity, got []soakRow) (wrongTenant int64, carried bool) {
	if id == nil {
		for _, r := range got {
			if r.tenant.Valid {
				wrongTenant++
			}
		}
		return wrongTenant, len(got) > 0
	}
	seen := 0
	for _, r := range got {
		switch {
		case !r.tenant.Valid:
			carried = true
		case r.tenant.UUID != id.tenant:
			wrongTenant++
		default:
			if _, ok := id.want[r.id.UUID]; !ok {
				carried = true
			} else {
				seen++
			}
		}
	}
	return wrongTenant, carried || seen != len(id.want)
}

// Markdown writes r as the docs/RELIABILITY.md pooling section.
func (r *SoakResult) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## Pooling soak (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores (%s/%s), PostgreSQL %s", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, r.PGVersion)
	if r.PgBouncer != "" {
		fmt.Fprintf(w, ", %s (transaction mode, no reset query, pgx exec mode `exec`)", r.PgBouncer)
	}
	fmt.Fprintf(w, ", private cluster (fsync off). %d clients share %d server connections: a pgxpool of %d connections (direct), or a pgxpool of %d client connections to a PgBouncer whose server pool is %d.\n\n",
		r.Config.Clients, r.Config.PoolSize, r.Config.PoolSize, r.Config.Clients, r.Config.PoolSize)
	fmt.Fprintf(w, "Every call sends the same statement with no `WHERE` (memories, entities and tenants, plus a row if a `bulkhead.tenant_id` setting is left in the session), so RLS alone decides what comes back. Each client cycles through an entity scope via `InScope`, an entity scope via `Read`, a no-scope query on the runtime role's pool, a tenant-only scope via `Read` and via `InScope`, and another no-scope query, each time on a random one of %d identities over %d tenants. Every row is checked against the set the identity may see, computed by the superuser from the design's rules (its tenant's row, its tenant's directory, the memories of its rooms). A **wrong-tenant row** is a row of another tenant (for a no-scope call, any row); **context carried over** counts calls that saw a setting or a row without a scope, or a set of their own tenant other than exactly theirs (another entity's rooms).\n\n",
		r.Identities, r.Tenants)
	fmt.Fprintln(w, "| path | transactions | scoped / no-scope | rows checked | transactions/s | p50 | p99 | wrong-tenant rows | context carried over | failed |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range r.Paths {
		fmt.Fprintf(w, "| %s | %d | %d / %d | %d | %.0f | %s µs | %s µs | **%d** | **%d** | %d |\n",
			p.Name, p.Transactions, p.Scoped, p.Unscoped, p.Rows, p.TPS(), us(p.P50), us(p.P99), p.WrongTenant, p.CarriedOver, p.Errors)
	}
	for _, p := range r.Paths {
		if p.FirstError != "" {
			fmt.Fprintf(w, "\nFirst failure (%s): `%s`\n", p.Name, p.FirstError)
		}
	}
	fmt.Fprintln(w)
}

// Table prints a terminal summary.
func (r *SoakResult) Table(w io.Writer) {
	for _, p := range r.Paths {
		fmt.Fprintf(w, "%-10s %9d transactions (%d scoped, %d no-scope) %10d rows  %8.0f tx/s  p50 %8s µs  p99 %8s µs  wrong-tenant rows %d  context carried over %d  failed %d\n",
			p.Name, p.Transactions, p.Scoped, p.Unscoped, p.Rows, p.TPS(), us(p.P50), us(p.P99), p.WrongTenant, p.CarriedOver, p.Errors)
		if p.FirstError != "" {
			fmt.Fprintf(w, "%-10s first failure: %s\n", "", p.FirstError)
		}
	}
}
