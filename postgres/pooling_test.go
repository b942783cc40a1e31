package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/bench"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// alternate runs iterations of T1 / T2 / no-scope reads on db, through
// both InScope and Read, and reports every row that belongs to a tenant
// other than the scope's (and any row at all without a scope).
func alternate(t *testing.T, db *postgres.DB, demo postgres.Demo, iterations int) (wrong int) {
	t.Helper()
	tenants := []postgres.DemoTenant{demo.T1, demo.T2}
	for i := range iterations {
		switch i % 3 {
		case 0, 1:
			tn := tenants[i%3]
			ctx := as(t, tn.Tenant.ID, tn.Bob, uuid.Nil)
			var got []uuid.UUID
			var err error
			if i%2 == 0 {
				err = db.InScope(ctx, func(tx pgx.Tx) error {
					rows, err := tx.Query(ctx, `SELECT tenant_id FROM bulkhead.memories`)
					if err != nil {
						return err
					}
					got, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
					return err
				})
			} else {
				err = db.Read(ctx, func(rows pgx.Rows) error {
					got, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
					return err
				}, `SELECT tenant_id FROM bulkhead.memories`)
			}
			if err != nil {
				t.Fatalf("iteration %d: %v", i, err)
			}
			if len(got) != 4 {
				t.Fatalf("iteration %d: Bob of %s sees %d memories, want his 4", i, tn.Tenant.Name, len(got))
			}
			for _, id := range got {
				if id != tn.Tenant.ID {
					wrong++
				}
			}
		case 2:
			var n int
			if err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM bulkhead.memories`).Scan(&n); err != nil {
				t.Fatalf("iteration %d: %v", i, err)
			}
			wrong += n
		}
	}
	return wrong
}

func TestContextNeverOutlivesTransactionInPool(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: d.AppDSN(), ContextKey: testdb.ContextKey(), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if wrong := alternate(t, db, demo, 3000); wrong != 0 {
		t.Fatalf("%d rows from the wrong tenant (or without scope) through a pool of one connection", wrong)
	}
	// An error inside InScope rolls back and leaves no context behind.
	ctx := as(t, demo.T1.Tenant.ID, demo.T1.Bob, uuid.Nil)
	if err := db.InScope(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT 1/0`)
		return err
	}); err == nil {
		t.Fatal("a scoped transaction dividing by zero succeeded")
	}
	var n int
	if err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM bulkhead.memories`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after a failed scoped transaction, an unscoped read sees %d rows (%v)", n, err)
	}
}

func TestContextNeverLeaksThroughPgBouncer(t *testing.T) {
	d, demo := seeded(t)
	dsn := testdb.PgBouncer(t, d.Name, 1) // one server connection for everyone
	const clients = 40
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for _, mode := range []string{"exec", "cache_describe"} {
		db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: dsn, QueryExecMode: mode, ContextKey: testdb.ContextKey(), MaxConns: clients})
		if err != nil {
			t.Fatal(err)
		}
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(fmt.Sprintf("%s/client%d", mode, c), func(t *testing.T) {
					wrong.Add(int64(alternate(t, db, demo, 75)))
				})
			}()
		}
		wg.Wait()
		db.Close()
	}
	if wrong.Load() != 0 {
		t.Fatalf("%d wrong-tenant or unscoped rows through PgBouncer (transaction mode, pool size 1, %d clients)", wrong.Load(), clients)
	}
}

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	var trips atomic.Int64
	db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: d.AppDSN(), ContextKey: testdb.ContextKey(), MaxConns: 1, Dial: bench.CountingDial(&trips)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tn := demo.T1
	ctx := as(t, tn.Tenant.ID, tn.Bob, uuid.Nil)
	// The per-request revocation check travels in the same batch.
	checked := postgres.WithAccess(ctx, postgres.Access{IssuedAt: time.Now()})
	measure := func(f func() error) int64 {
		t.Helper()
		if err := f(); err != nil { // warm the statement cache
			t.Fatal(err)
		}
		before := trips.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return trips.Load() - before
	}
	cases := []struct {
		name string
		want int64
		f    func() error
	}{
		{"Read (one statement)", 1, func() error { _, err := db.Room(ctx, tn.Room1); return err }},
		{"IsRoomParticipant", 1, func() error { _, err := db.IsRoomParticipant(ctx, tn.Room1, tn.Alice); return err }},
		{"InScope, one statement", 2, func() error {
			return db.InScope(ctx, func(tx pgx.Tx) error {
				var n int
				return tx.QueryRow(ctx, `SELECT count(*) FROM bulkhead.rooms`).Scan(&n)
			})
		}},
		{"Read with the access check", 1, func() error { _, err := db.Room(checked, tn.Room1); return err }},
		{"InScope with the access check, one statement", 2, func() error {
			return db.InScope(checked, func(tx pgx.Tx) error {
				var n int
				return tx.QueryRow(checked, `SELECT count(*) FROM bulkhead.rooms`).Scan(&n)
			})
		}},
		{"InScope, two statements", 3, func() error {
			return db.InScope(ctx, func(tx pgx.Tx) error {
				var n int
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM bulkhead.rooms`).Scan(&n); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE bulkhead.memories SET metadata = '{}' WHERE id = $1`, tn.Memories["room1/bob"])
				return err
			})
		}},
	}
	for _, c := range cases {
		if got := measure(c.f); got != c.want {
			t.Errorf("%s: %d round trips, want %d", c.name, got, c.want)
		}
	}
}
