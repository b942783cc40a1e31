package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/bulkhead-dev/bulkhead"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// scopedTx is the pgx.Tx that InScope hands to its function. The
// transaction begins lazily: the first statement is sent in one batch with
// BEGIN and the context settings (pgx's Batch.BeginTx), so scoping costs no
// extra round trip. Later statements go straight to the transaction.
type scopedTx struct {
	conn   *pgx.Conn
	key    ContextKey
	scope  bulkhead.Scope
	access *accessState // the credential to check first (WithAccess); nil: none
	inner  pgx.Tx
}

var _ pgx.Tx = (*scopedTx)(nil)

// prelude returns a batch that starts the transaction, sets the context
// and, with an Access to check, checks it, followed by queries.
func (t *scopedTx) prelude(queries ...*pgx.QueuedQuery) *pgx.Batch {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	// Signed now, when it is sent, so the token's short life starts here.
	b.Queue(contextSQL, t.key.token(t.scope, time.Now()))
	if t.access != nil {
		b.Queue(accessSQL, accessArgs(t.access.a)...)
	}
	b.QueuedQueries = append(b.QueuedQueries, queries...)
	return b
}

// send sends b (made by prelude), records the transaction, and returns the
// results positioned after the prelude's results (the context, and the
// access check if any: a refused check fails the transaction before the
// first query runs).
func (t *scopedTx) send(ctx context.Context, b *pgx.Batch) (pgx.BatchResults, error) {
	br := t.conn.SendBatch(ctx, b)
	t.inner = br.Tx()
	n := 2
	if t.access != nil {
		n = 3
	}
	for range n {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, err
		}
	}
	if t.access != nil {
		t.access.checked.Store(true)
	}
	return br, nil
}

// ensure begins the transaction on its own, for operations that can't join
// a batch (COPY, Prepare, nested Begin).
func (t *scopedTx) ensure(ctx context.Context) error {
	if t.inner != nil {
		return nil
	}
	br, err := t.send(ctx, t.prelude())
	if err != nil {
		return err
	}
	return br.Close()
}

func (t *scopedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.ensure(ctx); err != nil {
		return nil, err
	}
	return t.inner.Begin(ctx)
}

// Commit commits; with no statement sent there is nothing to commit.
func (t *scopedTx) Commit(ctx context.Context) error {
	if t.inner == nil {
		return nil
	}
	return t.inner.Commit(ctx)
}

// Rollback rolls back; with no statement sent there is nothing to undo.
func (t *scopedTx) Rollback(ctx context.Context) error {
	if t.inner == nil {
		return nil
	}
	return t.inner.Rollback(ctx)
}

func (t *scopedTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.ensure(ctx); err != nil {
		return 0, err
	}
	return t.inner.CopyFrom(ctx, table, cols, src)
}

func (t *scopedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.inner != nil {
		return t.inner.SendBatch(ctx, b)
	}
	br, err := t.send(ctx, t.prelude(b.QueuedQueries...))
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return br
}

// LargeObjects begins the transaction if needed; if that failed, the
// returned value's calls fail with pgx.ErrTxClosed.
func (t *scopedTx) LargeObjects() pgx.LargeObjects {
	_ = t.ensure(context.Background())
	return t.inner.LargeObjects()
}

func (t *scopedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.ensure(ctx); err != nil {
		return nil, err
	}
	return t.inner.Prepare(ctx, name, sql)
}

func (t *scopedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.inner != nil {
		return t.inner.Exec(ctx, sql, args...)
	}
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	br, err := t.send(ctx, t.prelude(q))
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := br.Exec()
	return ct, errors.Join(err, br.Close())
}

func (t *scopedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.inner != nil {
		return t.inner.Query(ctx, sql, args...)
	}
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	br, err := t.send(ctx, t.prelude(q))
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (t *scopedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := t.Query(ctx, sql, args...)
	return &row{rows: rows, err: err}
}

func (t *scopedTx) Conn() *pgx.Conn { return t.conn }

// batchRows closes the batch that carried the first query along with the rows.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if !r.closed {
		r.closed = true
		r.err = r.br.Close()
	}
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// row is pgx.Row over Rows: the first row, or pgx.ErrNoRows.
type row struct {
	rows pgx.Rows
	err  error
}

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
