package retrieval_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/bench"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
)

// TestQueryReadsBackOnce: when the candidates fusion puts first are all
// visible, a query whose tenant settings are remembered is one round trip
// to PostgreSQL, and every passage it returns carries its text and title;
// the answer equals that of another service over the same data.
func TestQueryReadsBackOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	for i := range 12 {
		ingest(t, w.k, w.ua, postgres.NewDocument{Title: fmt.Sprintf("note %d", i),
			Content: fmt.Sprintf("harbour lantern quartz note %d: %s", i, filler), Visibility: bulkhead.VisibilityTenant})
	}
	var trips atomic.Int64
	db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: w.d.AppDSN(), ContextKey: testdb.ContextKey(), MaxConns: 1, Dial: bench.CountingDial(&trips)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc, err := retrieval.New(retrieval.Config{DB: db, Vectors: w.k.Router, Embedders: []llm.Embedder{llm.NewLocal()}, MinSimilarity: retrieval.DefaultMinSimilarity})
	if err != nil {
		t.Fatal(err)
	}
	q := retrieval.Query{Text: "harbour lantern quartz", K: 5}
	for range 2 { // remembers the settings, then prepares the read-back with their check
		if _, err := svc.Query(w.ua, q); err != nil {
			t.Fatal(err)
		}
	}
	before := trips.Load()
	ps, err := svc.Query(w.ua, q)
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.Load() - before; n != 1 {
		t.Errorf("a query with every first candidate visible took %d round trips, want 1", n)
	}
	if len(ps) != q.K {
		t.Fatalf("%d passages, want %d", len(ps), q.K)
	}
	for _, p := range ps {
		if p.Content == "" || p.Title == "" {
			t.Errorf("passage %s returned without its text or title: %+v", p.ID, p)
		}
	}
	ref, err := w.k.Service.Query(w.ua, q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(ps, ref, func(a, b retrieval.Passage) bool { return a.ID == b.ID && a.Content == b.Content && a.Score == b.Score }) {
		t.Errorf("the two services answer differently:\n%+v\n%+v", ps, ref)
	}

}
