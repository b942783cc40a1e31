package embedded

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/uuid"
)

// lexModel is the lexical test's independent model: the live points'
// terms, ranked by scoring every point with vector.TermScore.
type lexModel map[uuid.UUID]vector.Terms

func (m lexModel) top(query []uint64, k int) []vector.Hit {
	var all []vector.Hit
	for id, t := range m {
		if s := vector.TermScore(t, query); s > 0 {
			all = append(all, vector.Hit{ID: id, Score: s})
		}
	}
	slices.SortFunc(all, func(a, b vector.Hit) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	return all[:min(k, len(all))]
}

func randomTerms(rng *rand.Rand, vocab int) vector.Terms {
	t := vector.Terms{Words: 1 + rng.IntN(200), Counts: map[uint64]int{}}
	if rng.IntN(10) == 0 {
		return vector.Terms{Words: rng.IntN(5)} // no tokens: indexed, never matches
	}
	left := t.Words
	for range 1 + rng.IntN(12) {
		n := 1 + rng.IntN(3)
		if n > left {
			break
		}
		t.Counts[uint64(rng.IntN(vocab))*0x9e3779b97f4a7c15] += n
		left -= n
	}
	return t
}

// TestSearchTermsMatchesTheModel: after random upserts (new and
// replacing), deletes, compactions and a reload from disk, SearchTerms
// returns exactly the model's top k (ids, order and scores), and never a
// point of the other tenant's collection, which holds the same tokens.
func TestSearchTermsMatchesTheModel(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, WithCompactMin(1<<10))
	e := vectortest.NewEnv(t, s)
	const dim, vocab = 4, 40
	rng := rand.New(rand.NewPCG(7, 11))
	model := lexModel{}
	other := lexModel{}
	mustCreate(t, e.CtxA, e.Router, e.CollA, dim, nil)
	mustCreate(t, e.CtxB, e.Router, e.CollB, dim, nil)
	pool := make([]uuid.UUID, 400)
	for i := range pool {
		pool[i] = uuid.New()
	}
	point := func(id uuid.UUID, terms vector.Terms) vector.Point {
		return vector.Point{ID: id, Vector: []float32{1, rng.Float32(), 0, 1}, Payload: map[string]string{vector.PayloadTerms: terms.Encode(), "x": "y"}}
	}
	check := func(t *testing.T, r *vector.Router, ctx context.Context, c vector.Collection, m lexModel, what string) {
		t.Helper()
		for range 20 {
			q := make([]uint64, 1+rng.IntN(4))
			for i := range q {
				q[i] = uint64(rng.IntN(vocab+5)) * 0x9e3779b97f4a7c15 // some tokens nobody has
			}
			k := 1 + rng.IntN(30)
			got, err := r.SearchTerms(ctx, c, q, k)
			if err != nil {
				t.Fatalf("%s: SearchTerms: %v", what, err)
			}
			want := m.top(q, k)
			if len(got) != len(want) {
				t.Fatalf("%s: %d hits, model has %d", what, len(got), len(want))
			}
			for i := range got {
				if got[i].ID != want[i].ID || got[i].Score != want[i].Score || got[i].Tenant != c.Tenant() {
					t.Fatalf("%s: hit %d is %v (%v, tenant %v), model says %v (%v)", what, i, got[i].ID, got[i].Score, got[i].Tenant, want[i].ID, want[i].Score)
				}
			}
		}
	}
	for round := range 30 {
		var batch []vector.Point
		seen := map[uuid.UUID]bool{}
		for range 1 + rng.IntN(20) {
			id := pool[rng.IntN(len(pool))]
			if seen[id] {
				continue
			}
			seen[id] = true
			tm := randomTerms(rng, vocab)
			batch = append(batch, point(id, tm))
			model[id] = tm
		}
		if err := e.Router.Upsert(e.CtxA, e.CollA, batch); err != nil {
			t.Fatal(err)
		}
		// The other tenant stores the same ids and tokens, other counts.
		for i := range batch {
			tm := randomTerms(rng, vocab)
			batch[i] = point(batch[i].ID, tm)
			other[batch[i].ID] = tm
		}
		if err := e.Router.Upsert(e.CtxB, e.CollB, batch); err != nil {
			t.Fatal(err)
		}
		if round%3 == 2 {
			var del []uuid.UUID
			for id := range model {
				if rng.IntN(3) == 0 {
					del = append(del, id)
				}
			}
			if err := e.Router.Delete(e.CtxA, e.CollA, del); err != nil {
				t.Fatal(err)
			}
			for _, id := range del {
				delete(model, id)
			}
		}
		check(t, e.Router, e.CtxA, e.CollA, model, "tenant A")
		check(t, e.Router, e.CtxB, e.CollB, other, "tenant B")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, dir)
	e2 := vectortest.NewEnv(t, s2)
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctx, coll := e2.Scoped(t, e.TenantA)
	check(t, e2.Router, ctx, coll, model, "tenant A after a reload")
}

// TestSearchTermsRefusesAPartialIndex: a collection holding a point stored
// without terms answers vector.ErrNoTermIndex (never a ranking that
// silently leaves that point out) until the point is replaced with terms
// or deleted; malformed terms are refused at Upsert.
func TestSearchTermsRefusesAPartialIndex(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	e := vectortest.NewEnv(t, s)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 2, nil)
	tok := uint64(42)
	with := vector.Point{ID: uuid.New(), Vector: []float32{1, 0}, Payload: map[string]string{vector.PayloadTerms: vector.Terms{Words: 3, Counts: map[uint64]int{tok: 1}}.Encode()}}
	bare := vector.Point{ID: uuid.New(), Vector: []float32{0, 1}}
	if err := e.Router.Upsert(e.CtxA, e.CollA, []vector.Point{with, bare}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Router.SearchTerms(e.CtxA, e.CollA, []uint64{tok}, 5); !errors.Is(err, vector.ErrNoTermIndex) {
		t.Fatalf("with a point without terms: %v, want ErrNoTermIndex", err)
	}
	bare.Payload = map[string]string{vector.PayloadTerms: "0"}
	if err := e.Router.Upsert(e.CtxA, e.CollA, []vector.Point{bare}); err != nil {
		t.Fatal(err)
	}
	hits, err := e.Router.SearchTerms(e.CtxA, e.CollA, []uint64{tok}, 5)
	if err != nil || len(hits) != 1 || hits[0].ID != with.ID {
		t.Fatalf("after the point got terms: %v, %v; want only %v", hits, err, with.ID)
	}
	// A point without terms, then deleted (it was the last row: the bare
	// row moves into the deleted one's place first).
	other := vector.Point{ID: uuid.New(), Vector: []float32{1, 1}}
	if err := e.Router.Upsert(e.CtxA, e.CollA, []vector.Point{other}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Router.SearchTerms(e.CtxA, e.CollA, []uint64{tok}, 5); !errors.Is(err, vector.ErrNoTermIndex) {
		t.Fatalf("with another point without terms: %v, want ErrNoTermIndex", err)
	}
	if err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{bare.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Router.SearchTerms(e.CtxA, e.CollA, []uint64{tok}, 5); !errors.Is(err, vector.ErrNoTermIndex) {
		t.Fatalf("the point without terms moved rows: %v, want ErrNoTermIndex still", err)
	}
	if err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{other.ID}); err != nil {
		t.Fatal(err)
	}
	if hits, err := e.Router.SearchTerms(e.CtxA, e.CollA, []uint64{tok}, 5); err != nil || len(hits) != 1 {
		t.Fatalf("after the point without terms was deleted: %v, %v", hits, err)
	}
	// The other tenant's scope can't search A's collection.
	if _, err := e.Router.SearchTerms(e.CtxB, e.CollA, []uint64{tok}, 5); !errors.Is(err, vector.ErrForbidden) {
		t.Fatalf("A's collection in B's scope: %v, want ErrForbidden", err)
	}
	for _, bad := range []string{"", "x", "-1", "1 0000000000000001*2", "2 0000000000000001 0000000000000001", "1 00000000000000zz", "1 01"} {
		p := vector.Point{ID: uuid.New(), Vector: []float32{1, 1}, Payload: map[string]string{vector.PayloadTerms: bad}}
		if err := e.Router.Upsert(e.CtxA, e.CollA, []vector.Point{p}); !errors.Is(err, bulkhead.ErrInvalid) {
			t.Errorf("terms %q: %v, want ErrInvalid", bad, err)
		}
	}
	for _, k := range []int{0, vector.MaxK + 1} {
		if _, err := e.Router.SearchTerms(e.CtxA, e.CollA, []uint64{tok}, k); !errors.Is(err, bulkhead.ErrInvalid) {
			t.Errorf("k=%d: %v, want ErrInvalid", k, err)
		}
	}
	if _, err := e.Router.SearchTerms(e.CtxA, e.CollA, nil, 5); !errors.Is(err, bulkhead.ErrInvalid) {
		t.Errorf("no terms: %v, want ErrInvalid", err)
	}
}

// BenchmarkLexiconSearch is the lexical search of a retrieval query at
// 10,000 chunks: three tokens of a skewed vocabulary (the common ones in
// most chunks, as bench retrieval's words are), the best 20:
// go test ./vector/embedded -run '^$' -bench LexiconSearch -benchmem
func BenchmarkLexiconSearch(b *testing.B) {
	const n, vocab = 10_000, 150
	rng := rand.New(rand.NewPCG(3, 5))
	tok := func(i int) uint64 { return uint64(i) * 0x9e3779b97f4a7c15 }
	word := func() uint64 { return tok(int(float64(vocab) * rng.Float64() * rng.Float64())) } // skewed to the first words
	d := newData(4, 0)
	for range n {
		t := vector.Terms{Words: 120, Counts: map[uint64]int{}}
		for range t.Words {
			t.Counts[word()]++
		}
		d.put(vector.Point{ID: uuid.New(), Vector: []float32{1, 0, 0, 1}, Payload: map[string]string{vector.PayloadTerms: t.Encode()}})
	}
	query := []uint64{tok(0), tok(1), tok(7)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.lex.search(d.ids, query, 20, func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
