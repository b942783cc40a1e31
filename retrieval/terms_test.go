package retrieval

import (
	"testing"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// TestTerms: inflections share a stem's token, stop words and case don't
// count, the same word gives different tokens in two tenants, a
// confidential chunk has no tokens, and what chunkTerms stores parses back.
func TestTerms(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	text := "The runner was Running; runs RUN, and the runners ran."
	ct := chunkTerms(a, text, false)
	if ct.Words != 10 {
		t.Errorf("words = %d, want 10", ct.Words)
	}
	run := queryTerms(a, "running")
	if len(run) != 1 || ct.Counts[run[0]] != 3 {
		t.Errorf("'running' occurs %d times as its stem, want 3 (Running, runs, RUN): %v", ct.Counts[run[0]], ct.Counts)
	}
	if q := queryTerms(a, "the and was"); len(q) != 0 {
		t.Errorf("stop words gave tokens %v", q)
	}
	if qa, qb := queryTerms(a, "runner"), queryTerms(b, "runner"); qa[0] == qb[0] {
		t.Error("the same word gave the same token in two tenants")
	}
	if c := chunkTerms(a, text, true); c.Words != 0 || len(c.Counts) != 0 {
		t.Errorf("confidential chunk terms %+v, want none", c)
	}
	back, err := vector.ParseTerms(ct.Encode())
	if err != nil || back.Words != ct.Words || len(back.Counts) != len(ct.Counts) {
		t.Fatalf("round trip: %+v, %v; want %+v", back, err, ct)
	}
	for tok, n := range ct.Counts {
		if back.Counts[tok] != n {
			t.Errorf("token %x: %d after the round trip, %d before", tok, back.Counts[tok], n)
		}
	}
	if q := queryTerms(a, "runner runner runners"); len(q) != 1 {
		t.Errorf("a query's tokens are distinct: %v", q)
	}
}
