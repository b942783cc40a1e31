package embedded

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/uuid"
)

// bruteForce is the float64 reference: every cosine, fully sorted.
func bruteForce(pts []vector.Point, q []float32, k int) ([]uuid.UUID, []float64) {
	type s struct {
		id    uuid.UUID
		score float64
	}
	all := make([]s, len(pts))
	for i, p := range pts {
		all[i] = s{p.ID, vectortest.Cosine(q, p.Vector)}
	}
	slices.SortFunc(all, func(a, b s) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	ids, scores := make([]uuid.UUID, k), make([]float64, k)
	for i := range k {
		ids[i], scores[i] = all[i].id, all[i].score
	}
	return ids, scores
}

func TestRecallEqualsBruteForce(t *testing.T) {
	const n, dim, k, queries = 5000, 96, 10, 25
	s := mustOpen(t, t.TempDir())
	e := vectortest.NewEnv(t, s)
	pts := randomPoints(42, n, dim)
	mustCreate(t, e.CtxA, e.Router, e.CollA, dim, pts)
	found, total := 0, 0
	for i, q := range randomPoints(7, queries, dim) {
		wantIDs, wantScores := bruteForce(pts, q.Vector, k)
		hits := mustSearch(t, e.CtxA, e.Router, e.CollA, q.Vector, k)
		want := make(map[uuid.UUID]bool, k)
		for _, id := range wantIDs {
			want[id] = true
		}
		for j, h := range hits {
			if want[h.ID] {
				found++
			}
			if d := math.Abs(float64(h.Score) - wantScores[j]); d > 1e-5 {
				t.Errorf("query %d rank %d: score %v, reference %v", i, j, h.Score, wantScores[j])
			}
		}
		total += k
	}
	if recall := float64(found) / float64(total); recall != 1 {
		t.Fatalf("recall@%d = %v, want 1.0 (exact search)", k, recall)
	}
}

func TestTopKMatchesSort(t *testing.T) {
	d := newData(8, 0)
	pts := randomPoints(3, 500, 8)
	// Duplicated vectors make exact ties, broken by id.
	for i := 0; i < 100; i++ {
		pts[i+100].Vector = slices.Clone(pts[i].Vector)
	}
	for _, p := range pts {
		d.put(p)
	}
	q := pts[5].Vector
	for _, k := range []int{1, 2, 7, 100, 499, 500} {
		got, err := d.search(q, k, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		all, _ := d.search(q, d.len(), func() error { return nil })
		if len(got) != k {
			t.Fatalf("k=%d: %d results", k, len(got))
		}
		for i := range got {
			if got[i] != all[i] {
				t.Fatalf("k=%d rank %d: %+v, full sort has %+v", k, i, got[i], all[i])
			}
			if i > 0 && (&topK{ids: d.ids}).better(got[i], got[i-1]) {
				t.Fatalf("k=%d: not sorted at %d", k, i)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	k := key{tenant: uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), gen: 3}
	for _, n := range []int{0, 1, 3} {
		d := newData(3, 0)
		for _, p := range randomPoints(uint64(n), n, 3) {
			d.put(p)
		}
		var b bytes.Buffer
		if err := encode(&b, k, d); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes(), false)
		f.Add(b.Bytes()[:b.Len()-trailerSize], true)
	}
	f.Fuzz(func(t *testing.T, b []byte, fixChecksum bool) {
		if fixChecksum { // reach the structural parser behind the checksum
			sum := sha256.Sum256(b)
			b = append(b[:len(b):len(b)], sum[:]...)
		}
		d, err := decode(b, k)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		var out bytes.Buffer
		if err := encode(&out, k, d); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("decode/encode not a round trip")
		}
	})
}

// BenchmarkSearch measures one exact top-10 query, dense and sparse,
// through the router against a resident collection of n
// normalised-Gaussian vectors.
//
//	go test ./vector/embedded -run '^$' -bench BenchmarkSearch -benchtime 100x
func BenchmarkSearch(b *testing.B) {
	for _, size := range []struct{ n, dim int }{{10_000, 384}, {100_000, 384}} {
		b.Run(fmt.Sprintf("%dx%d", size.n, size.dim), func(b *testing.B) {
			s, err := New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tenant := uuid.New()
			regions := vector.NewStaticRegions(map[uuid.UUID]string{tenant: "bench"})
			r := vector.NewRouter(regions, map[string]vector.Store{"bench": s})
			ctx, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant})
			c, err := r.Collection(ctx)
			if err != nil {
				b.Fatal(err)
			}
			pts := randomPoints(1, size.n, size.dim)
			for i := range pts {
				pts[i].Payload = nil
			}
			if err := r.CreateCollection(ctx, c, size.dim); err != nil {
				b.Fatal(err)
			}
			if err := r.Upsert(ctx, c, pts); err != nil {
				b.Fatal(err)
			}
			// A dense query (a model's embedding), and a sparse one: the
			// local embedder's questions have a few dozen nonzero
			// components (16 for "tenant isolation", 87 for a 17-word
			// question).
			dense := randomPoints(2, 1, size.dim)[0].Vector
			sparse := make([]float32, size.dim)
			for i := range 36 {
				sparse[i*size.dim/36] = dense[i]
			}
			for _, q := range []struct {
				name string
				v    []float32
			}{{"dense", dense}, {"36nonzero", sparse}} {
				b.Run(q.name, func(b *testing.B) {
					b.SetBytes(int64(size.n * size.dim * 4))
					for b.Loop() {
						if _, err := r.Search(ctx, c, q.v, 10); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
