package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSoakCI runs the pooling soak at CI size: 50,000 transactions per path
// from 32 clients over one server connection, directly through pgxpool and
// through a real PgBouncer in transaction mode. It fails on any
// wrong-tenant row, any context carried over and any failed transaction;
// the timings are only reported.
func TestSoakCI(t *testing.T) {
	res, err := RunSoak(context.Background(), SoakConfig{Transactions: 50_000, Clients: 32, PoolSize: 1, Through: "both"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	res.Table(&b)
	t.Log("\n" + b.String())
	if len(res.Paths) != 2 {
		t.Fatalf("%d paths, want direct and pgbouncer", len(res.Paths))
	}
	for _, p := range res.Paths {
		if p.Transactions != 50_000 || p.Unscoped == 0 || p.Scoped == 0 || p.Rows == 0 {
			t.Errorf("%s: ran %d transactions (%d scoped, %d no-scope, %d rows), want 50,000 of both kinds", p.Name, p.Transactions, p.Scoped, p.Unscoped, p.Rows)
		}
		if p.WrongTenant != 0 || p.CarriedOver != 0 {
			t.Errorf("%s: %d wrong-tenant rows, %d calls with context carried over", p.Name, p.WrongTenant, p.CarriedOver)
		}
		if p.Errors != 0 {
			t.Errorf("%s: %d failed transactions, first: %s", p.Name, p.Errors, p.FirstError)
		}
	}
	b.Reset()
	res.Markdown(&b, "test")
	if !strings.Contains(b.String(), "| pgbouncer |") {
		t.Errorf("markdown lacks the pgbouncer row:\n%s", b.String())
	}
}
