package adopt

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// checksums is every table's full checksum (as the superuser: no RLS).
func checksums(t testing.TB, conn *pgx.Conn, p *Plan) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range p.Tables {
		c, err := Checksum(context.Background(), conn, p, tb.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[tb.Name] = c
	}
	return out
}

func diffMaps(a, b map[string]string) string {
	var s string
	for k, v := range a {
		if b[k] != v {
			s += fmt.Sprintf("%s: %s != %s\n", k, v, b[k])
		}
	}
	return s
}

func phases(t testing.TB, conn *pgx.Conn, p *Plan) map[string]Phase {
	t.Helper()
	st, err := Status(context.Background(), conn, p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Phase{}
	for _, s := range st {
		out[s.Table] = s.Phase
	}
	return out
}

func allIn(t testing.TB, conn *pgx.Conn, p *Plan, want Phase) {
	t.Helper()
	for name, ph := range phases(t, conn, p) {
		if ph != want {
			t.Fatalf("%s is %s, want %s", name, ph, want)
		}
	}
}

// appTx runs fn as the legacy application: connected as the owner, the
// tenant in its setting, transaction-local.
func appTx(ctx context.Context, conn *pgx.Conn, tenant string, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", tenant); err != nil {
			return err
		}
		return fn(tx)
	})
}

// TestCycle runs every transition forwards and backwards on the fixture,
// quiescent, with checksums: data adopt didn't write never changes, and
// rollback to the original restores every table exactly.
func TestCycle(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	o := Options{BatchSize: 1000}
	orig := checksums(t, op, p)
	allIn(t, op, p, PhaseOriginal)

	res, err := Backfill(ctx, op, p, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Uncovered != 0 || r.Phase != PhaseBackfilled {
			t.Errorf("backfill %s: %+v", r.Table, r)
		}
		if r.ChecksumBefore != r.ChecksumAfter {
			t.Errorf("backfill %s changed other columns: %s -> %s", r.Table, r.ChecksumBefore, r.ChecksumAfter)
		}
	}
	var nulls int
	if err := op.QueryRow(ctx, "SELECT (SELECT count(*) FROM memories WHERE server_id IS NULL) + (SELECT count(*) FROM participants WHERE server_id IS NULL) + (SELECT count(*) FROM message_server_agents WHERE server_id IS NULL)").Scan(&nulls); err != nil || nulls != 0 {
		t.Fatalf("rows without a tenant after backfill: %d %v", nulls, err)
	}
	// The rule's tenant is the room's.
	var wrong int
	if err := op.QueryRow(ctx, "SELECT count(*) FROM memories m JOIN rooms r ON r.id = m.room_id WHERE m.server_id <> r.server_id").Scan(&wrong); err != nil || wrong != 0 {
		t.Fatalf("memories with another tenant than their room: %d %v", wrong, err)
	}
	allIn(t, op, p, PhaseBackfilled)
	filled := checksums(t, op, p)

	if err := Shadow(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	allIn(t, op, p, PhaseShadow)
	if s := diffMaps(filled, checksums(t, op, p)); s != "" {
		t.Fatalf("shadow changed data:\n%s", s)
	}
	if err := Enforce(ctx, op, p, nil, EnforceOptions{Options: o}); err != nil {
		t.Fatal(err)
	}
	allIn(t, op, p, PhaseEnforced)
	if err := Verify(ctx, op, p, nil); err != nil {
		t.Fatal(err)
	}
	if s := diffMaps(filled, checksums(t, op, p)); s != "" {
		t.Fatalf("enforce changed data:\n%s", s)
	}
	// Enforced: the owner-connected application sees only its tenant,
	// even in a query that forgets the filter; without context, nothing.
	app := mustConnect(t, d.appDSN())
	var n, foreign int
	err = appTx(ctx, app, server(1), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE server_id <> $1) FROM memories", server(1)).Scan(&n, &foreign)
	})
	if err != nil || n == 0 || foreign != 0 {
		t.Fatalf("enforced forgetful read: %d rows, %d foreign, %v", n, foreign, err)
	}
	if err := app.QueryRow(ctx, "SELECT count(*) FROM memories").Scan(&n); err != nil || n != 0 {
		t.Fatalf("no context: %d rows, %v", n, err)
	}
	// A write for another tenant is refused.
	err = appTx(ctx, app, server(1), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO rooms (id, server_id, name) VALUES (gen_random_uuid(), $1, 'x')", server(2))
		return err
	})
	if sqlState(err) != "42501" {
		t.Fatalf("cross-tenant insert when enforced: %v", err)
	}

	// Backwards, one phase at a time, then forwards again.
	for _, want := range []Phase{PhaseShadow, PhaseBackfilled, PhaseOriginal} {
		if _, err := Rollback(ctx, op, p, nil, "", o); err != nil {
			t.Fatalf("rollback to %s: %v", want, err)
		}
		allIn(t, op, p, want)
		ref := filled
		if want == PhaseOriginal {
			ref = orig
		}
		if s := diffMaps(ref, checksums(t, op, p)); s != "" {
			t.Fatalf("rollback to %s: data differs:\n%s", want, s)
		}
	}
	assertOriginalCatalog(t, op, d)

	// And all the way again, then straight back to the original.
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Enforce(ctx, op, p, []string{"memories", "rooms"}, EnforceOptions{Options: o}); err != nil {
		t.Fatal(err)
	}
	ph := phases(t, op, p)
	if ph["memories"] != PhaseEnforced || ph["agents"] != PhaseShadow {
		t.Fatalf("partial enforce: %v", ph)
	}
	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, o); err != nil {
		t.Fatal(err)
	}
	allIn(t, op, p, PhaseOriginal)
	if s := diffMaps(orig, checksums(t, op, p)); s != "" {
		t.Fatalf("rollback to original: data differs:\n%s", s)
	}
	assertOriginalCatalog(t, op, d)
}

// assertOriginalCatalog: no policy, no RLS, no adopt trigger, constraint,
// default or column, and no runtime role left.
func assertOriginalCatalog(t testing.TB, conn *pgx.Conn, d *db) {
	t.Helper()
	var policies, rlsTables, triggers, checks, defaults, roles, cols, notNull int
	err := conn.QueryRow(context.Background(), `SELECT
  (SELECT count(*) FROM pg_policy),
  (SELECT count(*) FROM pg_class WHERE relrowsecurity OR relforcerowsecurity),
  (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'bulkhead_adopt%'),
  (SELECT count(*) FROM pg_constraint WHERE conname LIKE 'bulkhead_adopt%'),
  (SELECT count(*) FROM pg_attrdef a JOIN pg_class c ON c.oid = a.adrelid WHERE c.relnamespace = 'public'::regnamespace),
  (SELECT count(*) FROM pg_roles WHERE rolname = $1),
  (SELECT count(*) FROM pg_attribute WHERE attrelid = 'message_server_agents'::regclass AND attname = 'server_id' AND NOT attisdropped),
  (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attname = 'server_id' AND a.attnotnull)`, d.runtime()).
		Scan(&policies, &rlsTables, &triggers, &checks, &defaults, &roles, &cols, &notNull)
	if err != nil {
		t.Fatal(err)
	}
	// memories.created_at has the fixture's own default.
	if policies != 0 || rlsTables != 0 || triggers != 0 || checks != 0 || defaults != 1 || roles != 0 || cols != 0 || notNull != 4 {
		t.Fatalf("catalog not original: policies %d, rls %d, triggers %d, checks %d, defaults %d, roles %d, added column %d, NOT NULL server_id %d (want 4)",
			policies, rlsTables, triggers, checks, defaults, roles, cols, notNull)
	}
}
