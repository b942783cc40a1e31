package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// BenchmarkContextStatement compares, on one connection, a trivial
// statement alone, after the old plain set_config statement (on settings
// of another prefix, same cost), and after bulkhead.enter(token), each in
// one batch (one round trip, one implicit transaction).
func BenchmarkContextStatement(b *testing.B) {
	d := testdb.New(b)
	conn := testdb.MustConnect(b, d.AppDSN())
	ctx := context.Background()
	s := bulkhead.Scope{Tenant: uuid.New(), Entity: uuid.New()}
	key := testdb.ContextKey()
	cases := []struct {
		name  string
		queue func(*pgx.Batch)
	}{
		{"none", func(*pgx.Batch) {}},
		{"set_config", func(bt *pgx.Batch) {
			bt.Queue(`SELECT set_config('bench.tenant_id', $1, true), set_config('bench.entity_id', $2, true), set_config('bench.acting_for', $3, true)`, s.Tenant.String(), s.Entity.String(), "")
		}},
		{"enter", func(bt *pgx.Batch) {
			sql, args, _ := key.EnterSQL(s)
			bt.Queue(sql, args...)
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				bt := &pgx.Batch{}
				c.queue(bt)
				bt.Queue(`SELECT 1`)
				if err := conn.SendBatch(ctx, bt).Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkToken is the Go side alone: signing one context.
func BenchmarkToken(b *testing.B) {
	key := testdb.ContextKey()
	s := bulkhead.Scope{Tenant: uuid.New(), Entity: uuid.New()}
	now := time.Now()
	for b.Loop() {
		key.TokenAt(s, now)
	}
}
