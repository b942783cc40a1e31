package adopt

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRuntimeRole: the application switched to the runtime role adopt
// creates (the operator gives it LOGIN) sees everything in shadow, only
// its tenant once enforced, can't write for another tenant, and can't
// touch a table the plan leaves global; rollback keeps a role that can log
// in and says so.
func TestRuntimeRole(t *testing.T) {
	ctx := context.Background()
	d := newDB(t)
	op := mustConnect(t, d.adminDSN())
	p := reviewedPlan(t, op, d)
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
