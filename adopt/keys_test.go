package adopt

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/audit"
	"github.com/jackc/pgx/v5"
)

// foreignKeyDefs is every foreign key of the public schema: "table.name"
// → its definition.
func foreignKeyDefs(t testing.TB, conn *pgx.Conn) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT c.conrelid::regclass::text || '.' || c.conname, pg_get_constraintdef(c.oid)
  FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var k, v string
	if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error { out[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// crossTenantFindings counts the audit's BH702 findings (a foreign key
// between tenant tables without the tenant column).
func crossTenantFindings(t testing.TB, conn *pgx.Conn, p *Plan) int {
	t.Helper()
	rep, err := audit.Run(context.Background(), conn, audit.Options{RuntimeRole: p.Runtime.Name, TenantColumn: "server_id"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range rep.Findings {
		if f.Check == "BH702" {
			n++
		}
	}
	return n
}

// TestKeys: once enforced, a tenant can still attach its rows to another
// tenant's row through a foreign key (checks ignore row-level security);
// after Keys it can't, its own rows still can, the audit's BH702 findings
// are gone, the data is unchanged, and rollback to the original restores
// every foreign key exactly. Keys before backfill is refused; a rerun
// changes nothing.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	o := Options{BatchSize: 1000}
	origKeys := foreignKeyDefs(t, op)
	orig := checksums(t, op, p)
	if _, err := Keys(ctx, op, p, nil, o); !errors.Is(err, ErrPhase) {
		t.Fatalf("keys before backfill: %v, want ErrPhase", err)
	}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Enforce(ctx, op, p, nil, EnforceOptions{Options: o, Force: true}); err != nil {
		t.Fatal(err)
	}
	filled := checksums(t, op, p)
	app := mustConnect(t, d.appDSN())
	s1 := server(1)
	own, theirs := md5UUID("r1.1"), md5UUID("r2.1")
	attach := func(room string) error {
		return appTx(ctx, app, s1, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO memories (id, room_id, type, content) VALUES (gen_random_uuid(), $1, 'message', 'attached')", room)
			return err
		})
	}
	// The hole: enforced, and still s1 attaches a memory to s2's room.
	if err := attach(theirs); err != nil {
		t.Fatalf("enforced, before keys: a memory in another tenant's room was refused (%v): the test shows nothing", err)
	}
	if _, err := op.Exec(ctx, "DELETE FROM memories WHERE content = 'attached'"); err != nil {
		t.Fatal(err)
	}
	before := crossTenantFindings(t, op, p)
	if before == 0 {
		t.Fatal("the audit finds no foreign key without the tenant: the test shows nothing")
	}

	res, err := Keys(ctx, op, p, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	replaced := 0
	for _, r := range res {
		if r.Replacement != "" {
			replaced++
		}
	}
	if replaced != before || replaced != 8 {
		t.Errorf("keys replaced %d foreign keys, audit found %d, the fixture has 8 between tenant tables: %+v", replaced, before, res)
	}
	if n := crossTenantFindings(t, op, p); n != 0 {
		t.Errorf("after keys the audit still finds %d foreign keys without the tenant", n)
	}
	if err := attach(theirs); sqlState(err) != "23503" {
		t.Errorf("after keys, a memory in another tenant's room: %v, want a foreign key violation", err)
	}
	if err := attach(own); err != nil {
		t.Errorf("after keys, a memory in its own room: %v", err)
	}
	if _, err := op.Exec(ctx, "DELETE FROM memories WHERE content = 'attached'"); err != nil {
		t.Fatal(err)
	}
	if s := diffMaps(filled, checksums(t, op, p)); s != "" {
		t.Errorf("keys changed data:\n%s", s)
	}
	// Status says which keys carry the tenant: memories has two.
	st, err := Status(ctx, op, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Table == "memories" && (len(s.Keys) != 2 || !s.Keys[0].Validated || s.Keys[0].Replaced != "memories_entity_id_fkey") {
			t.Errorf("status of memories: keys %+v, want its two, validated", s.Keys)
		}
	}
	// A key a kill left unvalidated (added NOT VALID, the old one dropped):
	// status says so, and a rerun validates it.
	var pending string
	for _, s := range st {
		for _, k := range s.Keys {
			if k.Replaced == "memories_room_id_fkey" {
				pending = k.Replacement
			}
		}
	}
	var def string
	if err := op.QueryRow(ctx, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", pending).Scan(&def); err != nil {
		t.Fatal(err)
	}
	// Meanwhile a row crossing tenants was written (before the key was
	// added): the rerun refuses to validate, says why, and changes nothing.
	crossing := "'00000000-0000-0000-0000-0000000000c5'"
	for _, q := range []string{"ALTER TABLE memories DROP CONSTRAINT " + pending,
		"INSERT INTO memories (id, server_id, room_id, type, content) VALUES (" + crossing + ", '" + s1 + "', '" + theirs + "', 'message', 'crossing')",
		"ALTER TABLE memories ADD CONSTRAINT " + pending + " " + def + " NOT VALID",
		"UPDATE bulkhead_adopt.keys SET validated = false WHERE name = '" + pending + "'"} {
		if _, err := op.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := Keys(ctx, op, p, nil, o); !errors.Is(err, ErrCrossTenant) {
		t.Errorf("keys with %s unvalidated over a crossing row: %v, want ErrCrossTenant", pending, err)
	}
	if _, err := op.Exec(ctx, "DELETE FROM memories WHERE id = "+crossing); err != nil {
		t.Fatal(err)
	}
	res, err = Keys(ctx, op, p, nil, o)
	if err != nil || len(res) != 1 || res[0].Replacement != pending {
		t.Errorf("keys with %s unvalidated: %+v, %v; want it validated", pending, res, err)
	}
	if n := count(t, op, "SELECT count(*) FROM pg_constraint WHERE conname = $1 AND convalidated", pending); n != 1 {
		t.Errorf("%s not validated by the rerun", pending)
	}
	// A rerun finds every key done.
	if again, err := Keys(ctx, op, p, nil, o); err != nil || len(again) != 0 {
		t.Errorf("keys again: %+v, %v; want nothing left to do", again, err)
	}

	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, o); err != nil {
		t.Fatal(err)
	}
	if s := diffMaps(origKeys, foreignKeyDefs(t, op)); s != "" {
		t.Errorf("rollback to original: foreign keys differ:\n%s", s)
	}
	if s := diffMaps(orig, checksums(t, op, p)); s != "" {
		t.Errorf("rollback to original: data differs:\n%s", s)
	}
	assertOriginalCatalog(t, op, d)
	if n := count(t, op, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'bulkhead_adopt%'"); n != 0 {
		t.Errorf("rollback left %d of adopt's indexes", n)
	}
}

// TestKeysRefuseCrossTenantRows: a row that already points at another
// tenant's row keeps its foreign key as it is and is reported with its
// value; every other key is replaced.
func TestKeysRefuseCrossTenantRows(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	o := Options{BatchSize: 1000}
	theirs := md5UUID("r2.1")
	if _, err := op.Exec(ctx, "UPDATE memories SET room_id = $1 WHERE id = (SELECT id FROM memories WHERE server_id = $2 ORDER BY id LIMIT 1)", theirs, server(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	origKeys := foreignKeyDefs(t, op)
	res, err := Keys(ctx, op, p, nil, o)
	if !errors.Is(err, ErrCrossTenant) || !strings.Contains(err.Error(), theirs) {
		t.Fatalf("keys over a cross-tenant row: %v, want ErrCrossTenant naming %s", err, theirs)
	}
	now := foreignKeyDefs(t, op)
	if def := now["memories.memories_room_id_fkey"]; def == "" || def != origKeys["memories.memories_room_id_fkey"] {
		t.Errorf("memories_room_id_fkey: %q, want it unchanged (%q)", def, origKeys["memories.memories_room_id_fkey"])
	}
	replaced := 0
	for _, r := range res {
		if r.Replacement != "" {
			replaced++
			if _, ok := now[r.Table+"."+r.Constraint]; ok {
				t.Errorf("%s.%s replaced but still there", r.Table, r.Constraint)
			}
		}
	}
	if replaced != 7 {
		t.Errorf("replaced %d keys, want the other 7: %+v", replaced, res)
	}
}

// TestKeysUnderAHeldLock: a parent table held by another session's lock
// makes keys wait lock_timeout per try and give up after its retries,
// leaving the application's keys as they were and no index behind;
// released, keys goes through, rebuilding the invalid index an earlier
// build left.
func TestKeysUnderAHeldLock(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	o := Options{BatchSize: 1000, LockTimeout: 100 * time.Millisecond, Retries: 2}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	origKeys := foreignKeyDefs(t, op)
	other := mustConnect(t, d.adminDSN())
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE agents IN SHARE UPDATE EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	_, err = Keys(ctx, op, p, []string{"worlds"}, o)
	if err == nil || !strings.Contains(err.Error(), "lock timeouts") {
		t.Fatalf("keys under a held lock: %v", err)
	}
	if s := diffMaps(origKeys, foreignKeyDefs(t, op)); s != "" {
		t.Errorf("a refused keys changed foreign keys:\n%s", s)
	}
	if n := count(t, op, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'bulkhead_adopt%'"); n != 0 {
		t.Errorf("a refused keys left %d indexes", n)
	}
	tx.Rollback(ctx)
	// An index build a kill cut short leaves the index invalid: keys drops
	// and builds it again.
	var oid uint32
	if err := op.QueryRow(ctx, "SELECT 'agents'::regclass::oid").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	index := tenantKeyIndex(oid)
	if _, err := op.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY "+index+" ON agents ((1))"); err == nil {
		t.Fatal("a unique index on a constant over several rows was built: the test shows nothing")
	}
	if n := count(t, op, "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid", index); n != 1 {
		t.Fatalf("no invalid index %s to start from", index)
	}
	res, err := Keys(ctx, op, p, []string{"worlds"}, o)
	if err != nil || len(res) != 1 || res[0].Replacement == "" {
		t.Fatalf("keys once released: %+v, %v", res, err)
	}
	if n := count(t, op, "SELECT count(*) FROM pg_index i JOIN pg_indexes x ON x.indexname = $1 WHERE i.indexrelid = to_regclass($1) AND i.indisvalid AND x.indexdef LIKE '%(server_id, id)'", index); n != 1 {
		t.Errorf("%s is not the valid (server_id, id) index after keys", index)
	}
}

// TestKeysLeaveWhatTheyCannotCarry: a key to a unique key that isn't the
// primary key, a key of several columns and a key whose ON UPDATE SET NULL
// would clear the tenant are listed with the reason and left exactly as
// they were; the plain key beside them is replaced.
func TestKeysLeaveWhatTheyCannotCarry(t *testing.T) {
	ctx := context.Background()
	d := newEmptyDB(t)
	op := mustConnect(t, d.adminDSN())
	app := mustConnect(t, d.appDSN())
	if _, err := app.Exec(ctx, `
CREATE TABLE parents (id bigint PRIMARY KEY, org_id text NOT NULL, code text NOT NULL UNIQUE);
CREATE TABLE pairs (a bigint, b bigint, org_id text NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE children (id bigint PRIMARY KEY, org_id text NOT NULL, parent_id bigint REFERENCES parents (id),
  parent_code text REFERENCES parents (code), moved_id bigint REFERENCES parents (id) ON UPDATE SET NULL,
  a bigint, b bigint, FOREIGN KEY (a, b) REFERENCES pairs (a, b));
INSERT INTO parents VALUES (1, 'acme', 'p1');
INSERT INTO pairs VALUES (1, 1, 'acme');
INSERT INTO children VALUES (1, 'acme', 1, 'p1', 1, 1, 1);`); err != nil {
		t.Fatal(err)
	}
	p, err := Inspect(ctx, op, InspectOptions{TenantColumns: []string{"org_id"}, TenantSetting: "app.org", RuntimeRole: d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{BatchSize: 100}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	before := foreignKeyDefs(t, op)
	res, err := Keys(ctx, op, p, []string{"children"}, o)
	if err != nil {
		t.Fatal(err)
	}
	notes := map[string]string{}
	for _, r := range res {
		notes[r.Constraint] = r.Note
		if r.Constraint == "children_parent_id_fkey" && r.Replacement == "" {
			t.Errorf("the plain key was not replaced: %+v", r)
		}
	}
	for con, want := range map[string]string{"children_parent_code_fkey": "unique key", "children_a_b_fkey": "several columns", "children_moved_id_fkey": "ON UPDATE SET NULL"} {
		if !strings.Contains(notes[con], want) {
			t.Errorf("%s: note %q, want it left alone because of %q", con, notes[con], want)
		}
		if now := foreignKeyDefs(t, op)["children."+con]; now != before["children."+con] || now == "" {
			t.Errorf("%s: %q, want it unchanged (%q)", con, now, before["children."+con])
		}
	}
}

// TestRollbackWithAStateFromBeforeKeys: a database adopted before keys
// existed has no keys table in its state schema; rollback to the original
// still works, and status reads it.
func TestRollbackWithAStateFromBeforeKeys(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	o := Options{BatchSize: 1000}
	orig := checksums(t, op, p)
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "DROP TABLE bulkhead_adopt.keys"); err != nil {
		t.Fatal(err)
	}
	if _, err := Status(ctx, op, p); err != nil {
		t.Errorf("status without a keys table: %v", err)
	}
	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, o); err != nil {
		t.Fatalf("rollback without a keys table: %v", err)
	}
	if s := diffMaps(orig, checksums(t, op, p)); s != "" {
		t.Errorf("rollback to original: data differs:\n%s", s)
	}
}

// TestKeysAfterAnInterruptedUndo: an undo cut short after putting the
// application's key back (NOT VALID, its replacement dropped) leaves the
// state row behind; keys takes the key over again, and rollback still
// restores the key exactly as first recorded (validated).
func TestKeysAfterAnInterruptedUndo(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	o := Options{BatchSize: 1000}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	origKeys := foreignKeyDefs(t, op)
	if _, err := Keys(ctx, op, p, []string{"memories"}, o); err != nil {
		t.Fatal(err)
	}
	var name, def string
	if err := op.QueryRow(ctx, "SELECT name, replaced_def FROM bulkhead_adopt.keys WHERE replaced = 'memories_room_id_fkey'").Scan(&name, &def); err != nil {
		t.Fatal(err)
	}
	// The first step of undo, as undoKeysOf runs it, then a kill.
	for _, q := range []string{"ALTER TABLE memories ADD CONSTRAINT memories_room_id_fkey " + def + " NOT VALID",
		"ALTER TABLE memories DROP CONSTRAINT " + name, "UPDATE bulkhead_adopt.keys SET kind = 'restored' WHERE name = '" + name + "'"} {
		if _, err := op.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	res, err := Keys(ctx, op, p, []string{"memories"}, o)
	if err != nil || len(res) != 1 || res[0].Replacement != name {
		t.Fatalf("keys after an interrupted undo: %+v, %v; want %s replaced again", res, err, name)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.keys WHERE name = $1 AND kind = 'fk' AND validated", name); n != 1 {
		t.Errorf("state of %s: not a validated fk row", name)
	}
	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, o); err != nil {
		t.Fatal(err)
	}
	if s := diffMaps(origKeys, foreignKeyDefs(t, op)); s != "" {
		t.Errorf("rollback to original: foreign keys differ:\n%s", s)
	}
}

// TestStepsRetryADeadlock: an application transaction that writes agents
// and then message_server_agents, while undoing keys locks them in the
// other order, deadlocks with it; PostgreSQL aborts the step (it waited
// first), which is retried whole and goes through, and the application's
// transaction commits.
func TestStepsRetryADeadlock(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	o := Options{BatchSize: 1000}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if _, err := Keys(ctx, op, p, []string{"message_server_agents"}, o); err != nil {
		t.Fatal(err)
	}
	var ms, agent, srv string
	if err := op.QueryRow(ctx, `SELECT ms.id::text, a.id::text, a.server_id::text FROM message_servers ms, agents a
  WHERE NOT EXISTS (SELECT 1 FROM message_server_agents x WHERE x.message_server_id = ms.id AND x.agent_id = a.id) LIMIT 1`).Scan(&ms, &agent, &srv); err != nil {
		t.Fatal(err)
	}
	app := mustConnect(t, d.adminDSN())
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE agents SET name = name WHERE id = $1", agent); err != nil {
		t.Fatal(err)
	}
	undone := make(chan error, 1)
	go func() { undone <- UndoKeys(ctx, op, p, []string{"message_server_agents"}, o) }()
	// The undo holds message_server_agents and waits for agents; then the
	// application waits for message_server_agents: a cycle.
	for deadline := time.Now().Add(5 * time.Second); count(t, mustConnect(t, d.adminDSN()), "SELECT count(*) FROM pg_locks WHERE NOT granted") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the undo never waited for the application's lock")
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO message_server_agents (message_server_id, agent_id, server_id) VALUES ($1, $2, $3)", ms, agent, srv); err != nil {
		t.Fatalf("the application's insert: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the application's commit: %v", err)
	}
	if err := <-undone; err != nil {
		t.Fatalf("undo after a deadlock: %v", err)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.keys WHERE kind <> 'index'"); n != 0 {
		t.Errorf("%d keys left to undo", n)
	}
}
