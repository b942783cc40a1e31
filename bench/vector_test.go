package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRunVectorSmall runs the vector benchmark on 20,000 vectors: the
// harness completes, and the exact searches (the embedded backend through
// the Router, and the shared filter scan) find the float64 top 10 of every
// query, which exact search must. It never checks a timing.
func TestRunVectorSmall(t *testing.T) {
	res, err := RunVector(context.Background(), VectorConfig{Vectors: 20_000, Dim: 384, Queries: 40, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Shares) != 3 {
		t.Fatalf("%d tenant shares, want 3", len(res.Shares))
	}
	for _, s := range res.Shares {
		if s.Own.Recall != 1 || s.Filter.Recall != 1 || s.Index.Recall != 1 {
			t.Errorf("share %g: recall@10 per-tenant %v, shared+filter %v, row index %v; exact search must find the float64 top 10",
				s.Share, s.Own.Recall, s.Filter.Recall, s.Index.Recall)
		}
		if s.Own.P50 <= 0 || s.Filter.P50 <= 0 || s.Index.P50 <= 0 {
			t.Errorf("share %g: empty measurement %+v", s.Share, s)
		}
	}
	if got := res.Shares[0].Size; got != 20 {
		t.Errorf("0.1 %% tenant holds %d vectors, want 20", got)
	}
	if res.MeasureReloads != 0 {
		t.Errorf("%d collection files read while measuring; every collection should stay resident", res.MeasureReloads)
	}
	if res.Scan.Rows != 2000 || res.Scan.Search <= 0 || res.Scan.DotA <= 0 || res.Scan.DotB <= 0 {
		t.Errorf("scan: %+v", res.Scan)
	}
	var b bytes.Buffer
	res.Markdown(&b, "test")
	if !strings.HasPrefix(b.String(), "## Vector search (`test`)") || !strings.Contains(b.String(), "| 0.1 % | 20 |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}

// TestRunVectorRefusesOddSizes: the layout needs whole 0.1 % tenants.
func TestRunVectorRefusesOddSizes(t *testing.T) {
	for _, n := range []int{5000, 20_500} {
		if _, err := RunVector(context.Background(), VectorConfig{Vectors: n}); err == nil {
			t.Errorf("%d vectors: no error", n)
		}
	}
}
