package postgres_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// seeded returns a fresh database holding the two-tenant demo fixture.
func seeded(t *testing.T) (*testdb.Database, postgres.Demo) {
	t.Helper()
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test fixture"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	return d, demo
}

// as returns a context scoped to tenant/entity/actingFor.
func as(t testing.TB, tenant, entity, actingFor uuid.UUID) context.Context {
	t.Helper()
	ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant, Entity: entity, ActingFor: actingFor})
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// ids runs sql in ctx's scope (through InScope, as the runtime role) and
// returns the first column of every row.
func ids(t testing.TB, db *postgres.DB, ctx context.Context, sql string, args ...any) []uuid.UUID {
	t.Helper()
	var out []uuid.UUID
	err := db.InScope(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// exec runs sql in ctx's scope and returns the rows affected.
func exec(t testing.TB, db *postgres.DB, ctx context.Context, sql string, args ...any) (int64, error) {
	t.Helper()
	var n int64
	err := db.InScope(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, sql, args...)
		n = ct.RowsAffected()
		return err
	})
	return n, err
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// sameSet reports whether got holds exactly want (in any order).
func sameSet(got, want []uuid.UUID) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// checksum returns an md5 over every row of every bulkhead table, read on
// the maintenance path (all tenants).
func checksum(t testing.TB, db *postgres.DB) map[string]string {
	t.Helper()
	ctx := bulkhead.AsMaintenance(context.Background(), "test checksum")
	out := map[string]string{}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		for _, tb := range postgres.Tables {
			var sum string
			var n int
			q := "SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM bulkhead." + tb.Name + " x"
			if err := tx.QueryRow(ctx, q).Scan(&n, &sum); err != nil {
				return err
			}
			out[tb.Name] = sum
			if n == 0 && tb.Name != "audit_log" {
				t.Errorf("checksum: table %s is empty; the fixture should fill it", tb.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustConnect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustDB(t *testing.T) *testdb.Database {
	t.Helper()
	return testdb.New(t)
}
