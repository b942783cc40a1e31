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
