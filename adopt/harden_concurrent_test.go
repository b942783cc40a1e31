package adopt

import (
	"context"
	"testing"
	"time"
)

// waitForSettingsLock waits until a transaction waits for a lock on the
// state's settings table (the one Harden and every step's mode read
// meet on).
func waitForSettingsLock(t *testing.T, w *hardenWorld, who string) {
	t.Helper()
	watch := mustConnect(t, w.d.adminDSN())
	q := "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '" + StateSchema + ".settings'::regclass"
	for deadline := time.Now().Add(10 * time.Second); count(t, watch, q) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never waited for the settings table", who)
		}
	}
}

// TestHardenAndAConcurrentStep: Harden and a step that writes SQL reading
// the tenant never interleave. A step that starts while Harden holds the
// switch waits, then writes with the signed setting (its shadow recorder
// records the signed tenant, not the legacy one); Harden started while a
// step's transaction has read the mode waits for that step to commit.
func TestHardenAndAConcurrentStep(t *testing.T) {
	ctx := context.Background()
	w := newHardenWorld(t)
	o := Options{BatchSize: 4, LockTimeout: 20 * time.Second}
	if _, err := Rollback(ctx, w.op, w.p, []string{"notes"}, PhaseBackfilled, o); err != nil {
		t.Fatal(err)
	}

	// Harden first: its transaction holds the settings table, then
	// switches, as Harden does (less the key's proof), while a shadow step
	// on notes starts.
	hold := mustConnect(t, w.d.adminDSN())
	tx, err := hold.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if mode, err := lockedMode(ctx, tx, w.p); err != nil || mode != ContextLegacy {
		t.Fatalf("locked mode: %q, %v", mode, err)
	}
	stepConn := mustConnect(t, w.d.adminDSN())
	shadowed := make(chan error, 1)
	go func() { shadowed <- Shadow(ctx, stepConn, w.p, []string{"notes"}, o) }()
	waitForSettingsLock(t, w, "the shadow step")
	select {
	case err := <-shadowed:
		t.Fatalf("the shadow step finished while harden held the switch: %v", err)
	default:
	}
	// The step waits for the settings before it locks notes' phase row,
	// which harden locks next: the other order deadlocks, and PostgreSQL
	// then aborts whichever transaction's deadlock_timeout ends first,
	// harden's included.
	if _, err := tx.Exec(ctx, "SELECT phase FROM "+StateSchema+".tables WHERE rel = $1 FOR UPDATE NOWAIT", qualified(w.p, "notes")); err != nil {
		t.Fatalf("the shadow step holds notes' phase row while it waits for the settings (a lock-order inversion with harden): %v", err)
	}
	if err := ensureContextExtension(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := switchContext(ctx, tx, w.p, ContextSigned); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-shadowed; err != nil {
		t.Fatalf("the shadow step after harden: %v", err)
	}
	checkHardened(t, w)
	checkShadowRecordsSigned(t, w, 0)

	// A step first: its transaction has read the mode (as each step does
	// before it writes) when harden --undo starts; the undo waits for it.
	tx, err = hold.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mode, err := ContextMode(ctx, tx, w.p); err != nil || mode != ContextSigned {
		t.Fatalf("the step's mode: %q, %v", mode, err)
	}
	undone := make(chan error, 1)
	go func() {
		_, err := Unharden(ctx, stepConn, w.p, o)
		undone <- err
	}()
	waitForSettingsLock(t, w, "harden --undo")
	var mode string
	if mode, err = ContextMode(ctx, tx, w.p); err != nil || mode != ContextSigned {
		t.Fatalf("the step's mode, read again while the undo waits: %q, %v", mode, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-undone; err != nil {
		t.Fatalf("harden --undo after the step: %v", err)
	}
	if mode, err := ContextMode(ctx, w.op, w.p); err != nil || mode != ContextLegacy {
		t.Errorf("mode after the undo: %q, %v", mode, err)
	}
}
