package adopt

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func toShadow(t testing.TB, op *pgx.Conn, p *Plan) {
	t.Helper()
	ctx := context.Background()
	if _, err := Backfill(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
}

func id(t testing.TB, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func count(t testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestShadowExact: clean traffic records nothing; each write strict mode
// would refuse or not reach is recorded once, with its key and the
// caller's tenant; a replayed read records exactly the foreign rows it
// returned, not the rows its own filters dropped; READ ONLY transactions
// and parallel plans keep working; a storm keeps at most the cap of keys.
func TestShadowExact(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	app := mustConnect(t, d.appDSN())
	s1, s2 := server(1), server(2)
	room1 := md5UUID("r1.1")
	room2 := md5UUID("r2.1")
	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rp := NewReplayer(pool, 1)

	// Clean traffic: the application's own filters, its own tenant.
	err = appTx(ctx, app, s1, func(tx pgx.Tx) error {
		if _, err := rp.Query(ctx, tx, "SELECT id, content FROM memories WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 20", s1, room1); err != nil {
			return err
		}
		// A non-leakproof filter after the tenant filter: an in-policy
		// counter would count every foreign row the policy saw; replay
		// compares results and records nothing.
		if _, err := rp.Query(ctx, tx, "SELECT id FROM memories WHERE server_id = $1 AND content LIKE 'hello 7%'", s1); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, type, content) VALUES (gen_random_uuid(), $1, $2, 'message', 'hi')", s1, room1); err != nil {
			return err
		}
		// The junction's added column takes the tenant from the context.
		if _, err := tx.Exec(ctx, "INSERT INTO message_server_agents (message_server_id, agent_id) VALUES ($1, $2)", md5UUID("ms3"), md5UUID("a1.2")); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE rooms SET name = 'renamed' WHERE server_id = $1 AND id = $2", s1, room1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rp.Close()
	if n := count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count"); n != 0 {
		rep, _ := Read(ctx, op, p, timeZero)
		t.Fatalf("clean traffic recorded %d violations: %+v", n, rep.Violations)
	}

	// Forgetful traffic.
	rp = NewReplayer(pool, 1)
	foreignRoom := room2
	foreignPart := id(t, op, "SELECT id::text FROM participants WHERE server_id = $1 LIMIT 1", s2)
	wantRead := count(t, op, "SELECT count(*) FROM memories WHERE content = 'hello 7' AND server_id <> $1", s1)
	err = appTx(ctx, app, s1, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE rooms SET name = name WHERE id = $1", foreignRoom); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, type, content) VALUES (gen_random_uuid(), $1, $2, 'message', 'x')", s2, room2); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM participants WHERE id = $1", foreignPart); err != nil {
			return err
		}
		_, err := rp.Query(ctx, tx, "SELECT id FROM memories WHERE content = 'hello 7'")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// READ ONLY: the replay writes nothing in the caller's transaction.
	err = pgx.BeginTxFunc(ctx, app, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", s1); err != nil {
			return err
		}
		_, err := rp.Query(ctx, tx, "SELECT id FROM rooms WHERE name = 'room 3'")
		return err
	})
	if err != nil {
		t.Fatalf("READ ONLY transaction in shadow: %v", err)
	}
	rp.Close()
	rep, err := Read(ctx, op, p, timeZero)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, v := range rep.Violations {
		if v.Tenant != s1 {
			t.Errorf("violation recorded for tenant %q, want the caller %s: %+v", v.Tenant, s1, v)
		}
		got[v.Table+" "+v.Op] += v.Count
	}
	want := map[string]int64{"public.rooms UPDATE": 1, "public.memories INSERT": 1, "public.participants DELETE": 1,
		"query SELECT": wantRead + fixtureServers - 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: recorded %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
	for _, v := range rep.Violations {
		if v.Table == "public.rooms" && (len(v.Keys) != 1 || v.Keys[0] != foreignRoom) {
			t.Errorf("rooms violation keys %v, want [%s]", v.Keys, foreignRoom)
		}
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "public.rooms") {
		t.Errorf("text report: %v\n%s", err, text.String())
	}

	// Parallel plans survive the shadow policy (every helper is PARALLEL SAFE).
	err = appTx(ctx, app, s1, func(tx pgx.Tx) error {
		for _, s := range []string{"SET LOCAL parallel_setup_cost = 0", "SET LOCAL parallel_tuple_cost = 0", "SET LOCAL min_parallel_table_scan_size = 0"} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		plan, err := textRows(ctx, tx, "EXPLAIN SELECT count(*) FROM memories WHERE content = 'x'")
		if err != nil {
			return err
		}
		var all []string
		for _, r := range plan {
			all = append(all, r[0])
		}
		if !strings.Contains(strings.Join(all, "\n"), "Parallel") {
			t.Errorf("no parallel plan under the shadow policy:\n%s", strings.Join(all, "\n"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Enforce refuses while violations are recent; --force enforces.
	err = Enforce(ctx, op, p, []string{"rooms"}, EnforceOptions{})
	if !errors.Is(err, ErrViolations) {
		t.Fatalf("enforce with violations: %v", err)
	}
	if ph := phases(t, op, p)["rooms"]; ph != PhaseShadow {
		t.Fatalf("refused enforce left rooms %s", ph)
	}
	if err := Enforce(ctx, op, p, []string{"rooms"}, EnforceOptions{Force: true}); err != nil {
		t.Fatal(err)
	}

	// A storm: one statement touching every foreign row of a table keeps
	// counting exactly but stores at most the cap of keys.
	if _, err := op.Exec(ctx, "UPDATE bulkhead_adopt.settings SET value = CASE name WHEN 'keys_per_transaction' THEN '5' ELSE '10' END"); err != nil {
		t.Fatal(err)
	}
	err = appTx(ctx, app, s1, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE memories SET type = type WHERE room_id = $1", room2)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stormRows := count(t, op, "SELECT count(*) FROM memories WHERE room_id = $1", room2)
	n := count(t, op, "SELECT n FROM bulkhead_adopt.violation_count WHERE rel = 'public.memories' AND op = 'UPDATE'")
	keys := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation WHERE rel = 'public.memories' AND op = 'UPDATE' AND row_key IS NOT NULL")
	stored := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation WHERE rel = 'public.memories' AND op = 'UPDATE'")
	// 5 keyed rows, then one row of weight 10 per 10 violations.
	if n > stormRows || stormRows-n >= 10 || keys != 5 || stored != 5+(stormRows-5)/10 {
		t.Fatalf("storm: counted %d of %d rows, kept %d keys (cap 5), stored %d rows", n, stormRows, keys, stored)
	}
	rep, err = Read(ctx, op, p, timeZero)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		if v.Table == "public.memories" && v.Op == "UPDATE" && !v.Approximate {
			t.Errorf("a sampled storm is not marked approximate: %+v", v)
		}
	}
	// An insert storm: the INSERT recorder fires BEFORE, and every row it
	// samples past, records or skips still goes in (nothing is blocked).
	before := count(t, op, "SELECT count(*) FROM memories WHERE server_id = $1", s2)
	counted := "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count WHERE rel = 'public.memories' AND op = 'INSERT'"
	countedBefore := count(t, op, counted)
	const stormIns = 37
	err = appTx(ctx, app, s1, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, type, content) SELECT gen_random_uuid(), $1, $2, 'storm', 'x' FROM generate_series(1, $3)", s2, room2, stormIns)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := count(t, op, "SELECT count(*) FROM memories WHERE server_id = $1", s2) - before; got != stormIns {
		t.Errorf("insert storm in shadow: %d of %d rows written", got, stormIns)
	}
	if n := count(t, op, counted) - countedBefore; n > stormIns || stormIns-n >= 10 {
		t.Errorf("insert storm: counted %d of %d", n, stormIns)
	}
}

// TestRecorderRunsNoCallerCode: the write recorder is SECURITY DEFINER
// (it runs as the operator, often a superuser), and backfill and rollback
// run as the operator, so they must run nothing the application defined. The application owns its tables and their
// types, and may define a cast from its own type: a recorder that turned
// the row's key into text through a cast (to_jsonb, ::text) would run it
// as the operator. Here the key is an enum with casts to json, jsonb and
// text, each noting who ran it; a violation is recorded with the key's
// label and no cast ran as anyone but the application. Nor may any role
// but the operator attach the recorder to a table of its own (it would
// write violations at will).
func TestRecorderRunsNoCallerCode(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	app := mustConnect(t, d.appDSN())
	if _, err := app.Exec(ctx, `CREATE TYPE mood AS ENUM ('calm', 'cross');
CREATE TABLE cast_runs (by_role text, super boolean);
CREATE FUNCTION mood_text(m mood) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.cast_runs SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
  RETURN 'cast';
END $$;
CREATE FUNCTION mood_json(m mood) RETURNS json LANGUAGE sql AS $$ SELECT to_json(public.mood_text(m)) $$;
CREATE FUNCTION mood_jsonb(m mood) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb(public.mood_text(m)) $$;
CREATE CAST (mood AS text) WITH FUNCTION mood_text(mood);
CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood);
CREATE CAST (mood AS jsonb) WITH FUNCTION mood_jsonb(mood);
CREATE TABLE moods (server_id uuid, mood mood PRIMARY KEY);
INSERT INTO moods VALUES (NULL, 'calm')`); err != nil {
		t.Fatal(err)
	}
	q := planWith(t, p, "", nil, Table{Name: "moods", Kind: KindTenant, TenantColumn: "server_id",
		Backfill: []Rule{{Name: "first", Constant: server(1)}}})
	if _, err := Backfill(ctx, op, q, []string{"moods"}, Options{}); err != nil {
		t.Fatal(err)
	}
	// As an earlier version left it: the recorder executable by anyone.
	// Shadow installs this version's.
	if _, err := op.Exec(ctx, "GRANT EXECUTE ON FUNCTION bulkhead_adopt.record_violation() TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, q, []string{"moods"}, Options{}); err != nil {
		t.Fatal(err)
	}
	// As tenant 1, a row of tenant 2: strict mode would refuse it.
	err := appTx(ctx, app, server(1), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO moods VALUES ($1, 'cross')", server(2))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if key := id(t, op, "SELECT coalesce(string_agg(row_key, ' '), '') FROM bulkhead_adopt.violation WHERE rel = 'public.moods'"); key != "cross" {
		t.Errorf("recorded key %q, want the enum's label cross", key)
	}
	// Backfill and rollback, as the operator, read the key too.
	if _, err := Rollback(ctx, op, q, []string{"moods"}, PhaseOriginal, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, op, "SELECT count(*) FROM moods WHERE server_id IS NULL AND mood = 'calm'"); n != 1 {
		t.Errorf("rollback left %d rows as they were, want the one backfill filled", n)
	}
	if n := count(t, op, "SELECT count(*) FROM cast_runs WHERE by_role <> 'eliza' OR super"); n != 0 {
		t.Errorf("the application's cast ran %d times as another role inside adopt", n)
	}
	// Attaching the recorder needs EXECUTE, which only the operator has.
	_, err = app.Exec(ctx, "CREATE TEMP TABLE mine (server_id uuid, id int PRIMARY KEY); CREATE TRIGGER forge AFTER INSERT ON mine FOR EACH ROW EXECUTE FUNCTION bulkhead_adopt.record_violation('server_id', 'id')")
	if sqlState(err) != "42501" {
		t.Errorf("the application attached the recorder to its own table: %v, want 42501", err)
	}
}
