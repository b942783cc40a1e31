package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// execer is a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// enter puts s into q's current transaction exactly as bulkhead does: with
// a token signed by the cluster's context key.
func enter(t testing.TB, q execer, s bulkhead.Scope) {
	t.Helper()
	sql, args, err := testdb.ContextKey().EnterSQL(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("enter %v: %v", s.Tenant, err)
	}
}

// visible counts the memories and rooms q sees, and what it reads as the
// tenant setting.
func visible(t testing.TB, q pgx.Tx) (rows int, tenant string) {
	t.Helper()
	if err := q.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM bulkhead.memories) + (SELECT count(*) FROM bulkhead.rooms),
		current_setting('bulkhead.tenant_id', true)`).Scan(&rows, &tenant); err != nil {
		t.Fatal(err)
	}
	return rows, tenant
}

// TestRuntimeRoleCannotSetContext tries, as the runtime role, every way to
// set the context settings by hand to another tenant's ids (an entity of
// that tenant included, so a forged context would see its rows): each is
// refused, and the next transaction sees nothing.
func TestRuntimeRoleCannotSetContext(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	ctx := context.Background()
	t2, bob := demo.T2.Tenant.ID.String(), demo.T2.Bob.String()
	conn := mustConnect(t, d.AppDSN())
	forge := []string{
		fmt.Sprintf(`SELECT set_config('bulkhead.tenant_id', '%s', false), set_config('bulkhead.entity_id', '%s', false)`, t2, bob),
		fmt.Sprintf(`SELECT set_config('bulkhead.tenant_id', '%s', true), set_config('bulkhead.entity_id', '%s', true)`, t2, bob),
		fmt.Sprintf(`SET bulkhead.tenant_id = '%s'`, t2),
		fmt.Sprintf(`SET LOCAL bulkhead.tenant_id = '%s'`, t2),
		fmt.Sprintf(`SET SESSION bulkhead.entity_id = '%s'`, bob),
		fmt.Sprintf(`SET LOCAL bulkhead.acting_for = '%s'`, bob),
		fmt.Sprintf(`ALTER ROLE %s SET bulkhead.tenant_id = '%s'`, postgres.Runtime, t2),
		fmt.Sprintf(`ALTER ROLE %s IN DATABASE %s SET bulkhead.tenant_id = '%s'`, postgres.Runtime, d.Name, t2),
		`RESET bulkhead.tenant_id`,
		fmt.Sprintf(`UPDATE pg_settings SET setting = '%s' WHERE name = 'bulkhead.tenant_id'`, t2),
	}
	for _, sql := range forge {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, sql)
		if code := sqlState(err); code != "42501" {
			t.Errorf("%s: %v; want permission denied (42501)", sql, err)
		}
		if err == nil {
			n, tenant := visible(t, tx)
			t.Errorf("%s: accepted; the transaction then sees %d rows as tenant %q", sql, n, tenant)
		}
		tx.Rollback(ctx)
		// Whatever happened, the next transaction has no context.
		tx, err = conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n, tenant := visible(t, tx); n != 0 || tenant != "" {
			t.Errorf("after %s: %d rows visible, tenant setting %q; want 0 and none", sql, n, tenant)
		}
		tx.Rollback(ctx)
	}
	// Nor in the connection's start-up packet (a DSN's options).
	cfg, err := pgx.ParseConfig(d.AppDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["bulkhead.tenant_id"] = t2
	if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		var tenant string
		c.QueryRow(ctx, `SELECT current_setting('bulkhead.tenant_id', true)`).Scan(&tenant)
		c.Close(ctx)
		t.Errorf("connected with bulkhead.tenant_id=%s in the start-up packet (setting reads %q); want permission denied", t2, tenant)
	} else if sqlState(err) != "42501" {
		t.Errorf("start-up packet with bulkhead.tenant_id: %v; want permission denied (42501)", err)
	}
	// The key is out of reach: not a setting it can read, not a file it can open.
	for _, sql := range []string{`SHOW bulkhead.context_key_file`, `SELECT pg_read_file('bulkhead_context.key')`} {
		if _, err := conn.Exec(ctx, sql); sqlState(err) != "42501" {
			t.Errorf("%s: %v; want permission denied (42501)", sql, err)
		}
	}
}

// TestEnterChecksTheToken enters a context only with an intact, fresh
// token signed with the cluster's key, once per transaction.
func TestEnterChecksTheToken(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	ctx := context.Background()
	conn := mustConnect(t, d.AppDSN())
	key := testdb.ContextKey()
	t1 := bulkhead.Scope{Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Bob}
	t2 := bulkhead.Scope{Tenant: demo.T2.Tenant.ID, Entity: demo.T2.Bob}
	other, err := postgres.NewContextKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	try := func(token []byte) (n int, tenant string, err error) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT bulkhead.enter($1::bytea)`, token); err != nil {
			return 0, "", err
		}
		n, tenant = visible(t, tx)
		return n, tenant, nil
	}

	// A valid token enters its scope: T1's Bob sees his rooms and memories.
	n, tenant, err := try(key.TokenAt(t1, time.Now()))
	if err != nil || n == 0 || tenant != t1.Tenant.String() {
		t.Fatalf("valid token: %d rows, tenant %q, err %v; want rows of %s", n, tenant, err, t1.Tenant)
	}

	now := time.Now()
	relabel := func(tok []byte, at int, id [16]byte) []byte {
		out := append([]byte(nil), tok...)
		copy(out[at:], id[:])
		return out
	}
	valid := key.TokenAt(t1, now)
	truncated := valid[:len(valid)-1]
	flipped := append([]byte(nil), valid...)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name  string
		token []byte
	}{
		{"tenant relabelled to T2", relabel(valid, 1, t2.Tenant)},
		{"entity relabelled", relabel(valid, 17, t2.Entity)},
		{"acting-for added", relabel(valid, 33, demo.T1.Alice)},
		{"MAC flipped", flipped},
		{"truncated", truncated},
		{"empty", []byte{}},
		{"signed with another key", other.TokenAt(t2, now)},
		{"expired", key.TokenAt(t1, now.Add(-11*time.Second))},
		{"expiry too far ahead", key.TokenAt(t1, now.Add(time.Hour))},
	} {
		n, tenant, err := try(c.token)
		if sqlState(err) != "28000" {
			t.Errorf("%s: %d rows, tenant %q, err %v; want refused (28000)", c.name, n, tenant, err)
		}
	}

	// NULL (enter is STRICT) enters nothing.
	if n, tenant, err := try(nil); err != nil || n != 0 || tenant != "" {
		t.Errorf("NULL token: %d rows, tenant %q, err %v; want nothing entered", n, tenant, err)
	}

	// Once per transaction: after bulkhead's enter(), SQL in the same
	// transaction can't switch to another context, even with a valid token.
	// Not after emptying the settings either (RESET ALL leaves them alone;
	// ROLLBACK TO SAVEPOINT empties them when enter ran inside the savepoint).
	for _, c := range []struct {
		name   string
		before []string
		after  []string
	}{
		{"second enter", nil, nil},
		{"RESET ALL, then enter", nil, []string{"RESET ALL"}},
		{"enter in a savepoint, ROLLBACK TO it, enter", []string{"SAVEPOINT s"}, []string{"ROLLBACK TO SAVEPOINT s"}},
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range c.before {
			if _, err := tx.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		enter(t, tx, t1)
		for _, q := range c.after {
			if _, err := tx.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %s: %v", c.name, q, err)
			}
		}
		sql, args, _ := key.EnterSQL(t2)
		if _, err := tx.Exec(ctx, sql, args...); sqlState(err) != "28000" {
			n, tenant := visible(t, tx)
			t.Errorf("%s: %v, then %d rows as tenant %q; want refused (28000)", c.name, err, n, tenant)
		}
		tx.Rollback(ctx)
	}
	// RESET ALL doesn't clear an entered context (nor could it grant one).
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enter(t, tx, t1)
	if _, err := tx.Exec(ctx, "RESET ALL"); err != nil {
		t.Fatal(err)
	}
	if _, tenant := visible(t, tx); tenant != t1.Tenant.String() {
		t.Errorf("after RESET ALL the tenant reads %q, want %s", tenant, t1.Tenant)
	}
	tx.Rollback(ctx)
}

// TestEnteredContextEndsWithTransaction: a context entered with a valid
// token is gone after COMMIT, after ROLLBACK, after an implicit
// transaction (a batch, as Read sends), for the next borrower of a pool of
// one connection and for the next client of a PgBouncer in transaction mode.
func TestEnteredContextEndsWithTransaction(t *testing.T) {
	d, demo := seeded(t)
	ctx := context.Background()
	t1 := bulkhead.Scope{Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Bob}
	none := func(t *testing.T, conn *pgx.Conn, after string) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if n, tenant := visible(t, tx); n != 0 || tenant != "" {
			t.Errorf("after %s: %d rows visible, tenant %q; want 0 and none", after, n, tenant)
		}
	}
	scoped := func(t *testing.T, conn *pgx.Conn, end func(pgx.Tx) error) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		enter(t, tx, t1)
		if n, _ := visible(t, tx); n == 0 {
			t.Fatal("entered context sees nothing")
		}
		if err := end(tx); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("direct", func(t *testing.T) {
		conn := mustConnect(t, d.AppDSN())
		scoped(t, conn, func(tx pgx.Tx) error { return tx.Commit(ctx) })
		none(t, conn, "COMMIT")
		scoped(t, conn, func(tx pgx.Tx) error { return tx.Rollback(ctx) })
		none(t, conn, "ROLLBACK")
		// An implicit transaction: one batch, no BEGIN.
		sql, args, _ := testdb.ContextKey().EnterSQL(t1)
		b := &pgx.Batch{}
		b.Queue(sql, args...)
		var n int
		b.Queue(`SELECT count(*) FROM bulkhead.memories`).QueryRow(func(r pgx.Row) error { return r.Scan(&n) })
		if err := conn.SendBatch(ctx, b).Close(); err != nil || n == 0 {
			t.Fatalf("batch: %d rows, %v", n, err)
		}
		none(t, conn, "an implicit transaction")
	})
	t.Run("pgxpool", func(t *testing.T) {
		db, err := postgres.Open(ctx, postgres.Config{AppDSN: d.AppDSN(), ContextKey: testdb.ContextKey(), MaxConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		sctx := as(t, t1.Tenant, t1.Entity, t1.ActingFor)
		if got := ids(t, db, sctx, `SELECT id FROM bulkhead.rooms`); len(got) == 0 {
			t.Fatal("InScope sees no room")
		}
		c, err := db.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		none(t, c.Conn(), "InScope, on the pool's one connection")
	})
	t.Run("pgbouncer", func(t *testing.T) {
		dsn := testdb.PgBouncer(t, d.Name, 1) // every client shares one server connection
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		connect := func() *pgx.Conn {
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close(ctx) })
			return c
		}
		a, b := connect(), connect()
		scoped(t, a, func(tx pgx.Tx) error { return tx.Commit(ctx) })
		none(t, b, "another client's COMMIT through PgBouncer")
		scoped(t, b, func(tx pgx.Tx) error { return tx.Rollback(ctx) })
		none(t, a, "another client's ROLLBACK through PgBouncer")
	})
}

// FuzzEnter sends arbitrary bytes to bulkhead.enter as the runtime role:
// nothing but a token signed with the cluster's key enters a context, a
// refusal is always 28000 (never a crash or another error), and the
// connection stays usable.
func FuzzEnter(f *testing.F) {
	d := testdb.New(f)
	conn := testdb.MustConnect(f, d.AppDSN())
	key := testdb.ContextKey()
	valid := key.TokenAt(bulkhead.Scope{Tenant: uuid.New(), Entity: uuid.New()}, time.Now())
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(append(append([]byte(nil), valid...), 0))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(make([]byte, len(valid)))
	f.Fuzz(func(t *testing.T, token []byte) {
		ctx := context.Background()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, `SELECT bulkhead.enter($1::bytea)`, token)
		if err != nil {
			if sqlState(err) != "28000" {
				t.Fatalf("enter(%x): %v; want 28000", token, err)
			}
			return
		}
		// Accepted: it must be exactly a token this process signed, still fresh.
		if !bytes.Equal(token, valid) {
			t.Fatalf("enter accepted %x, which bulkhead never signed", token)
		}
	})
}
