package adopt

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRuntimeRole: the application switched to the runtime role adopt
// creates (the operator gives it LOGIN) sees everything in shadow, only
// its tenant once enforced, can't write for another tenant, and can't
// touch a table the plan leaves global; rollback keeps a role that can log
// in and says so.
func TestRuntimeRole(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	if _, err := op.Exec(ctx, fmt.Sprintf("ALTER ROLE %s LOGIN PASSWORD 'rt-pw'", d.runtime())); err != nil {
		t.Fatal(err)
	}
	rt := mustConnect(t, cluster.DSN(d.runtime(), "rt-pw", d.name))
	all := count(t, op, "SELECT count(*) FROM rooms")
	own := count(t, op, "SELECT count(*) FROM rooms WHERE server_id = $1", server(3))
	rooms := func() int64 {
		var n int64
		err := appTx(ctx, rt, server(3), func(tx pgx.Tx) error { return tx.QueryRow(ctx, "SELECT count(*) FROM rooms").Scan(&n) })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rooms(); n != all {
		t.Fatalf("shadow: the runtime role sees %d rooms, want all %d (nothing blocked)", n, all)
	}
	if err := Enforce(ctx, op, p, nil, EnforceOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, op, p, nil); err != nil {
		t.Fatal(err)
	}
	if n := rooms(); n != own {
		t.Fatalf("enforced: the runtime role sees %d rooms, want its tenant's %d", n, own)
	}
	err := appTx(ctx, rt, server(3), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO worlds (id, server_id, name) VALUES (gen_random_uuid(), $1, 'x')", server(4))
		return err
	})
	if sqlState(err) != "42501" {
		t.Fatalf("cross-tenant insert as the runtime role: %v", err)
	}
	err = appTx(ctx, rt, server(3), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT count(*) FROM servers")
		return err
	})
	if sqlState(err) != "42501" {
		t.Fatalf("a global table the plan didn't grant: %v", err)
	}
	notes, err := Rollback(ctx, op, p, nil, PhaseOriginal, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "kept") {
		t.Fatalf("rollback notes %v", notes)
	}
	if n := count(t, op, "SELECT count(*) FROM pg_policy"); n != 0 {
		t.Fatalf("%d policies left", n)
	}
}

// TestConcurrentDDL: a table held by another session's DDL (an ACCESS
// EXCLUSIVE lock) makes a step wait lock_timeout per try, give up cleanly
// after its retries and leave the phase as it was; released, the step
// goes through. A column renamed under the plan is caught before any
// change.
func TestConcurrentDDL(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	other := mustConnect(t, d.adminDSN())
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE rooms IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	o := EnforceOptions{Options: Options{LockTimeout: 100 * time.Millisecond, Retries: 2}}
	err = Enforce(ctx, op, p, []string{"rooms"}, o)
	if err == nil || !strings.Contains(err.Error(), "lock timeouts") {
		t.Fatalf("enforce under a held lock: %v", err)
	}
	if ph := phases(t, op, p)["rooms"]; ph != PhaseShadow {
		t.Fatalf("rooms is %s after a refused enforce", ph)
	}
	tx.Rollback(ctx)
	if err := Enforce(ctx, op, p, []string{"rooms"}, o); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "ALTER TABLE worlds RENAME COLUMN server_id TO tenant"); err != nil {
		t.Fatal(err)
	}
	if err := Enforce(ctx, op, p, nil, o); err == nil || !strings.Contains(err.Error(), "worlds has no column server_id") {
		t.Fatalf("enforce after a rename: %v", err)
	}
	if ph := phases(t, op, p)["memories"]; ph != PhaseShadow {
		t.Fatalf("memories is %s after a refused enforce", ph)
	}
}

// TestExistingRolePrivilegesKept: an existing runtime role's privileges
// are neither widened by shadow nor lost by rollback (review finding:
// shadow granted every DML privilege on the table, so a role whose SELECT
// was confined to two columns read them all, and rollback's REVOKE ALL
// took its column grants and grant option away). Shadow grants only what
// the role holds neither on the table nor on a column; rollback revokes
// exactly that, and the table's and columns' ACL entries for the role are
// what they were.
func TestExistingRolePrivilegesKept(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	rt := d.runtime()
	if _, err := op.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN;
GRANT SELECT (id, content) ON memories TO %[1]s WITH GRANT OPTION;
GRANT INSERT ON memories TO %[1]s`, rt)); err != nil {
		t.Fatal(err)
	}
	acl := func() string {
		t.Helper()
		return id(t, op, `SELECT coalesce(string_agg(x, ' ' ORDER BY x), '') FROM (
  SELECT 'table:' || a.privilege_type || ':' || a.is_grantable AS x FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = 'memories'::regclass AND a.grantee = $1::regrole
  UNION ALL
  SELECT at.attname || ':' || a.privilege_type || ':' || a.is_grantable FROM pg_attribute at, aclexplode(at.attacl) a
    WHERE at.attrelid = 'memories'::regclass AND a.grantee = $1::regrole) s`, rt)
	}
	before := acl()
	if before == "" {
		t.Fatal("no privileges granted")
	}
	if _, err := Backfill(ctx, op, p, []string{"memories"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, []string{"memories"}, Options{}); err != nil {
		t.Fatal(err)
	}
	has := func(priv, column string) bool {
		t.Helper()
		var ok bool
		if err := op.QueryRow(ctx, "SELECT has_column_privilege($1, 'memories', $2, $3)", rt, column, priv).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if has("SELECT", "room_id") {
		t.Errorf("shadow widened the role's SELECT to room_id")
	}
	if !has("SELECT", "content") || !has("UPDATE", "room_id") || !has("INSERT", "room_id") {
		t.Errorf("shadow: the role lacks what it held or what the application needs (SELECT content, UPDATE, INSERT)")
	}
	var del bool
	if err := op.QueryRow(ctx, "SELECT has_table_privilege($1, 'memories', 'DELETE')", rt).Scan(&del); err != nil || !del {
		t.Errorf("shadow did not grant DELETE: %v", err)
	}
	if _, err := Rollback(ctx, op, p, []string{"memories"}, PhaseBackfilled, Options{}); err != nil {
		t.Fatal(err)
	}
	if after := acl(); after != before {
		t.Errorf("the role's privileges on memories after rollback:\n%s\nwant, as before shadow:\n%s", after, before)
	}
	// State an earlier version recorded (the role's table-level privileges,
	// not what shadow granted) rolls back as that version did: the table's
	// privileges as recorded, the rest revoked.
	if err := Shadow(ctx, op, p, []string{"memories"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, `UPDATE bulkhead_adopt.tables SET original = (original - 'granted_privileges') || '{"runtime_privileges": ["INSERT"]}' WHERE rel = 'public.memories'`); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, p, []string{"memories"}, PhaseBackfilled, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := acl(); got != "table:INSERT:false" {
		t.Errorf("rolled back from an earlier version's state: %q, want the recorded table-level INSERT only", got)
	}
}
