package adopt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Replayer is the read side of shadow mode: the application (or a driver
// wrapper) runs its reads through Query, which, for a sampled fraction,
// runs the statement again in strict mode inside a savepoint and records
// the rows the first run returned that strict mode would not. It is exact
// (it compares what the statement really returned, after all its own
// filters), writes nothing in the caller's transaction (so it works in
// READ ONLY transactions) and records through its own pool, bounded:
// when the queue is full, records are dropped and counted (Dropped).
// Safe for concurrent use.
type Replayer struct {
	*recorder
	rate   float64
	failed atomic.Int64
}

// NewReplayer samples rate (0..1) of reads and records into pool's
// database (as a role that may write bulkhead_adopt; the operator's).
func NewReplayer(pool *pgxpool.Pool, rate float64) *Replayer {
	return &Replayer{recorder: newRecorder(pool), rate: rate}
}

// recorder writes what replays found into the violation table, from its
// own goroutine and pool, so a replay never waits for the write. Replayer
// and Proxy record through one.
type recorder struct {
	out     chan observation
	dropped atomic.Int64
	wg      sync.WaitGroup
	pool    *pgxpool.Pool

	mu     sync.RWMutex // held for reading while sending to out
	closed bool
}

func newRecorder(pool *pgxpool.Pool) *recorder {
	r := &recorder{out: make(chan observation, 1024), pool: pool}
	r.wg.Add(1)
	go r.record()
	return r
}

// Close flushes pending records. A replay still running, or started later,
// keeps working; its record is dropped (and counted in Dropped).
func (r *recorder) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.out)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Dropped is the number of records lost to a full queue, a closed
// recorder, or a write of the record that failed.
func (r *recorder) Dropped() int64 { return r.dropped.Load() }

func (r *recorder) record() {
	defer r.wg.Done()
	keyCols := map[column]bool{} // this goroutine's only
	for o := range r.out {
		v := o.v
		if len(v.Keys) > 0 {
			isKey, known := keyCols[o.first]
			if !known {
				var err error
				if isKey, err = r.primaryKeyColumn(o.first); err != nil {
					r.dropped.Add(1)
					continue
				}
				keyCols[o.first] = isKey
			}
			if !isKey {
				v.Keys = nil // the count only: the values are not row ids
			}
		}
		// One row per key (weight 1), and the rest of the count in one row.
		_, err := r.pool.Exec(context.Background(), `INSERT INTO `+StateSchema+`.violation (rel, op, tenant, entity, fingerprint, row_key, weight)
  SELECT 'query', 'SELECT', $1, $5, $2, k, 1 FROM unnest($4::text[]) k
  UNION ALL SELECT 'query', 'SELECT', $1, $5, $2, NULL, $3 - coalesce(cardinality($4::text[]), 0) WHERE $3 > coalesce(cardinality($4::text[]), 0)`, v.Tenant, v.Fingerprint, v.Count, v.Keys, v.Entity)
		if err != nil {
			r.dropped.Add(1) // counted, never silently lost
		}
	}
}

// primaryKeyColumn reports whether c is a column of its table's primary
// key (false for a computed column: table 0).
func (r *recorder) primaryKeyColumn(c column) (bool, error) {
	if c.table == 0 || c.attnum <= 0 {
		return false, nil
	}
	var ok bool
	err := r.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
  WHERE i.indrelid = $1::pg_catalog.oid AND i.indisprimary AND $2::pg_catalog.int2 = ANY (i.indkey))`, c.table, c.attnum).Scan(&ok)
	return ok, err
}

// column is where a result column comes from, as the protocol's row
// description says: its table's OID and its attribute number, or 0 for a
// computed one.
type column struct {
	table  uint32
	attnum int16
}

// observation is a replay's finding on its way to the recorder: the
// first column's values are recorded as row keys only when that column is
// part of its table's primary key. Anything else (a message's content, a
// name, an expression) would put another tenant's data in the report,
// which holds counts and row ids, never contents.
type observation struct {
	v     Violation
	first column
}

var literalRE = regexp.MustCompile(`'[^']*'|\b[0-9]+\b`)

// Fingerprint is a statement's text with literals replaced, hashed.
func Fingerprint(sql string) string {
	h := sha256.Sum256([]byte(literalRE.ReplaceAllString(sql, "?")))
	return hex.EncodeToString(h[:8])
}

// Query runs sql in tx and returns its rows as text values. When sampled,
// it replays the statement in strict mode (SET LOCAL
// bulkhead_adopt.strict = on inside a read-only savepoint, rolled back),
// then once more in shadow mode, and records the rows both shadow runs
// returned that strict mode hides, under the tenant in context: their
// count, and their first column's values as keys when it is a primary-key
// column (see observation). Replay needs tx to be a transaction the caller
// owns; it adds four round trips to sampled statements only. A replay
// that fails (a timeout, a function that writes) records nothing and is
// counted in Failed; the application's read still succeeds. Query returns
// an error for the read itself, or when the savepoint can't be rolled
// back (tx is then unusable).
func (r *Replayer) Query(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([][]string, error) {
	rows, first, err := describedRows(ctx, tx, sql, args...)
	if err != nil || r == nil || r.rate <= 0 || rand.Float64() >= r.rate {
		return rows, err
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return rows, fmt.Errorf("replay: savepoint: %w", err)
	}
	var tenant, entity string
	var present bool
	var strict, again [][]string
	err = func() error {
		// Read-only, as the proxy's replay: a write behind a function
		// fails the replay instead of running twice more.
		err := sp.QueryRow(ctx, "SELECT "+statePresent+", pg_catalog.set_config('transaction_read_only', 'on', true), pg_catalog.set_config('bulkhead_adopt.strict', 'on', true)").Scan(&present, nil, nil)
		if err != nil || !present {
			return err
		}
		if strict, err = textRows(ctx, sp, sql, args...); err != nil {
			return err
		}
		if err := sp.QueryRow(ctx, "SELECT pg_catalog.set_config('bulkhead_adopt.strict', 'off', true), "+contextInReplay).Scan(nil, &tenant, &entity); err != nil {
			return err
		}
		again, err = textRows(ctx, sp, sql, args...)
		return err
	}()
	if rerr := sp.Rollback(ctx); rerr != nil {
		return rows, fmt.Errorf("replay: rollback to savepoint: %w", rerr)
	}
	if err != nil {
		r.failed.Add(1)
		return rows, nil
	}
	if !present {
		return rows, nil
	}
	r.observe(tenant, entity, sql, first, hiddenRows(rows, strict, again))
	return rows, nil
}

// contextInReplay is the SQL of the tenant and the entity a replay records
// its hidden rows under, two text columns (empty for none): what the
// policies read, so the application's settings before adopt harden and
// the signed context after it, whatever was in force when the proxy or
// Replayer started. The context functions come from rls.ContextFunctions,
// which has always made both.
const contextInReplay = "coalesce(" + StateSchema + ".current_tenant()::text, ''), coalesce(" + StateSchema + ".current_entity()::text, '')"

// statePresent is an SQL expression, true when adopt's state (the function
// contextInReplay calls) exists. Without it no table is in shadow, so a
// replay could find nothing: it is not run.
const statePresent = "pg_catalog.to_regprocedure('" + StateSchema + ".current_tenant()') IS NOT NULL"

// Failed is the number of replays that failed and recorded nothing.
func (r *Replayer) Failed() int64 { return r.failed.Load() }

// hiddenRows is what a replay records: the rows both shadow runs returned
// (first and again) that the strict run did not. In READ COMMITTED each
// run has its own snapshot, and a row a concurrent transaction changed
// between the runs is missing from one shadow run: not a policy effect,
// not recorded.
func hiddenRows(first, strict, again [][]string) [][]string {
	return diff(intersect(first, again), strict)
}

// nullText stands for SQL NULL in a replay's text rows: text output never
// holds a NUL byte.
const nullText = "\x00NULL"

// observe queues the record of hidden, the rows a read by tenant and
// entity returned that strict mode hides, keyed by their first column when
// first is a primary-key column (at most 100 keys; the count is exact).
func (r *recorder) observe(tenant, entity, sql string, first column, hidden [][]string) {
	if len(hidden) == 0 {
		return
	}
	v := Violation{Tenant: tenant, Entity: entity, Fingerprint: Fingerprint(sql), Count: int64(len(hidden))}
	for _, h := range hidden {
		if len(v.Keys) < 100 && len(h) > 0 {
			k := h[0]
			if k == nullText {
				k = "NULL"
			}
			v.Keys = append(v.Keys, k)
		}
	}
	r.send(observation{v: v, first: first})
}

// diff returns the rows of a not in b, as multisets.
func diff(a, b [][]string) [][]string { return multiset(a, b, false) }

// intersect returns the rows of a also in b, as multisets.
func intersect(a, b [][]string) [][]string { return multiset(a, b, true) }

func multiset(a, b [][]string, keepCommon bool) [][]string {
	count := map[string]int{}
	key := func(row []string) string { return fmt.Sprintf("%q", row) }
	for _, row := range b {
		count[key(row)]++
	}
	var out [][]string
	for _, row := range a {
		k := key(row)
		inB := count[k] > 0
		if inB {
			count[k]--
		}
		if inB == keepCommon {
			out = append(out, row)
		}
	}
	return out
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func textRows(ctx context.Context, q querier, sql string, args ...any) ([][]string, error) {
	rows, _, err := describedRows(ctx, q, sql, args...)
	return rows, err
}

// describedRows is textRows and where the first result column comes from.
func describedRows(ctx context.Context, q querier, sql string, args ...any) ([][]string, column, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, column{}, err
	}
	defer rows.Close()
	out, err := collectText(rows)
	var first column
	if fd := rows.FieldDescriptions(); len(fd) > 0 {
		first = column{table: fd[0].TableOID, attnum: int16(fd[0].TableAttributeNumber)}
	}
	return out, first, err
}

func collectText(rows pgx.Rows) ([][]string, error) {
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = text(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// text renders a value; a uuid (pgx gives [16]byte) in its usual form.
func text(v any) string {
	if u, ok := v.([16]byte); ok {
		return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	return fmt.Sprint(v)
}

// send queues o without blocking; a full queue or a closed recorder drops it.
func (r *recorder) send(o observation) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		r.dropped.Add(1)
		return
	}
	select {
	case r.out <- o:
	default:
		r.dropped.Add(1)
	}
}
