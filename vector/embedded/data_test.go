package embedded

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/uuid"
)

// TestBlocksFollowAModel runs adds, replacements and removals across block
// boundaries (blocks grow, fill, and empty out again) and checks data
// against a map of the points after every few operations: every point's
// vector read back, the block shapes, and the exact search with a dense
// and a sparse query against float64 cosines of the model's vectors.
func TestBlocksFollowAModel(t *testing.T) {
	const dim = 24
	rng := rand.New(rand.NewPCG(5, 6))
	model := map[uuid.UUID][]float32{}
	var ids []uuid.UUID // the model's keys, in no order
	d := newData(dim, 0)
	newVec := func() []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	// Grow past three blocks, shrink to nothing, grow again.
	phases := []struct{ ops, addPct int }{{4*blockRows + 200, 85}, {7 * blockRows, 5}, {blockRows + 400, 70}}
	step, maxBlocks, emptied := 0, 0, false
	for _, ph := range phases {
		for range ph.ops {
			step++
			switch r := rng.IntN(100); {
			case r < ph.addPct || len(ids) == 0:
				p := vector.Point{ID: uuid.New(), Vector: newVec()}
				d.put(p)
				model[p.ID] = slices.Clone(p.Vector)
				ids = append(ids, p.ID)
			case r < ph.addPct+(100-ph.addPct)/3:
				id := ids[rng.IntN(len(ids))]
				v := newVec()
				d.put(vector.Point{ID: id, Vector: v})
				model[id] = slices.Clone(v)
			default:
				at := rng.IntN(len(ids))
				id := ids[at]
				d.remove(id)
				delete(model, id)
				ids[at] = ids[len(ids)-1]
				ids = ids[:len(ids)-1]
			}
			if step%97 == 0 {
				checkAgainstModel(t, d, model, rng)
			}
			maxBlocks = max(maxBlocks, len(d.blocks))
			emptied = emptied || (maxBlocks > 1 && d.len() == 0)
		}
		checkAgainstModel(t, d, model, rng)
	}
	if maxBlocks < 3 || !emptied {
		t.Fatalf("the operations reached %d blocks and emptied them: %v; want at least 3, and emptied", maxBlocks, emptied)
	}
}

func checkAgainstModel(t *testing.T, d *data, model map[uuid.UUID][]float32, rng *rand.Rand) {
	t.Helper()
	if d.len() != len(model) {
		t.Fatalf("%d rows, model has %d", d.len(), len(model))
	}
	for i, b := range d.blocks {
		if i < len(d.blocks)-1 && len(b) != blockRows*d.dim {
			t.Fatalf("block %d of %d holds %d rows, want %d", i, len(d.blocks), len(b)/d.dim, blockRows)
		}
	}
	if c := d.capacity(); c < d.len() || c >= d.len()+blockRows {
		t.Fatalf("capacity %d for %d rows", c, d.len())
	}
	for id, want := range model {
		i, ok := d.index[id]
		if !ok || d.ids[i] != id {
			t.Fatalf("point %s not indexed", id)
		}
		if got := d.point(i).Vector; !slices.Equal(got, want) {
			t.Fatalf("point %s reads back %v, model %v", id, got, want)
		}
	}
	dense := make([]float32, d.dim)
	sparse := make([]float32, d.dim)
	for c := range dense {
		dense[c] = float32(rng.NormFloat64())
	}
	for range 4 {
		sparse[rng.IntN(d.dim)] = float32(rng.NormFloat64())
	}
	if sparseComponents(sparse) == nil || sparseComponents(dense) != nil {
		t.Fatalf("sparse query taken as dense, or dense as sparse")
	}
	for _, q := range [][]float32{dense, sparse} {
		const k = 10
		got, err := d.search(q, k, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		type ref struct {
			id    uuid.UUID
			score float64
		}
		var all []ref
		for id, v := range model {
			all = append(all, ref{id, vectortest.Cosine(q, v)})
		}
		slices.SortFunc(all, func(a, b ref) int {
			if a.score > b.score {
				return -1
			}
			if a.score < b.score {
				return 1
			}
			return 0
		})
		if len(got) != min(k, len(all)) {
			t.Fatalf("%d hits, want %d", len(got), min(k, len(all)))
		}
		for j, h := range got {
			id := d.ids[h.row]
			if math.Abs(float64(h.score)-all[j].score) > 1e-5 || math.Abs(vectortest.Cosine(q, model[id])-float64(h.score)) > 1e-5 {
				t.Fatalf("rank %d: %s scored %v, reference rank %d is %v (that point's cosine %v)",
					j, id, h.score, j, all[j].score, vectortest.Cosine(q, model[id]))
			}
		}
	}
}

// TestSparseScanScoresAsDense holds the sparse scan to the dense one, bit
// for bit: gathering only the nonzero components of the query must not
// change a single score or the order.
func TestSparseScanScoresAsDense(t *testing.T) {
	const dim = 384
	d := newData(dim, 0)
	for _, p := range randomPoints(11, 1000, dim) {
		d.put(p)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{1, 19, 100, dim / 2} {
		q := make([]float32, dim)
		for range n {
			q[rng.IntN(dim)] = float32(rng.NormFloat64())
		}
		nz := sparseComponents(q)
		if nz == nil {
			t.Fatalf("%d nonzero components of %d taken as dense", n, dim)
		}
		sparse, err := d.scan(q, nz, d.len(), func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		dense, err := d.scan(q, nil, d.len(), func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sparse, dense) {
			t.Fatalf("%d nonzero components: the sparse scan's scores differ from the dense scan's", len(nz))
		}
	}
}
