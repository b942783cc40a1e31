package embedded

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"sync/atomic"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
	"github.com/viterin/vek/vek32"
)

// data is one loaded collection: vectors stored contiguously, row i at
// vecs[i*dim:(i+1)*dim], with the inverse of its norm precomputed so that a
// cosine score costs one SIMD dot product and one multiply. Mutations need
// the collection's write lock; searches its read lock.
type data struct {
	dim      int
	ids      []uuid.UUID
	vecs     []float32
	inv      []float32
	payloads []map[string]string
	index    map[uuid.UUID]int
	payBytes int64
	lex      *lexicon // the points' terms (vector.PayloadTerms)

	byID atomic.Pointer[[]int32] // row numbers in ascending id order, built by Scroll, reset by writes
}

func newData(dim, capacity int) *data {
	return &data{
		dim:      dim,
		ids:      make([]uuid.UUID, 0, capacity),
		vecs:     make([]float32, 0, capacity*dim),
		inv:      make([]float32, 0, capacity),
		payloads: make([]map[string]string, 0, capacity),
		index:    make(map[uuid.UUID]int, capacity),
		lex:      newLexicon(),
	}
}

func (d *data) len() int { return len(d.ids) }

func (d *data) vector(i int) []float32 { return d.vecs[i*d.dim : (i+1)*d.dim : (i+1)*d.dim] }

// size estimates the memory d holds, for the eviction budget.
func (d *data) size() int64 {
	const perPoint = 16 + 4 + 8 + 48 // id, inverse norm, payload map pointer, index entry
	return 256 + int64(d.len())*(perPoint+int64(4*d.dim)) + d.payBytes + d.lex.size()
}

// resident is size plus the spare capacity add keeps for growth, what the
// memory budget counts.
func (d *data) resident() int64 {
	return d.size() + 4*int64(cap(d.vecs)-len(d.vecs))
}

func payloadSize(m map[string]string) int64 {
	if m == nil {
		return 0
	}
	n := int64(48)
	for k, v := range m {
		n += int64(len(k)+len(v)) + 32
	}
	return n
}

func invNorm(v []float32) float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return float32(1 / math.Sqrt(s))
}

// add appends p, which must be valid and new; its vector and payload are
// copied.
func (d *data) add(p vector.Point) {
	if len(d.vecs)+d.dim > cap(d.vecs) {
		// Double, where append grows a large slice by a quarter: with
		// ingestion adding a few points per write, a quarter meant copying
		// (and faulting in) the whole collection about four times over.
		// Start at 16 rows: with thousands of small tenants a larger first
		// step (it was 64 rows, 96 KiB at 384 dimensions) made spare
		// capacity most of what resident collections held.
		grown := make([]float32, len(d.vecs), max(2*cap(d.vecs), 16*d.dim))
		copy(grown, d.vecs)
		d.vecs = grown
	}
	d.index[p.ID] = len(d.ids)
	d.lex.add(len(d.ids), p.Payload)
	d.ids = append(d.ids, p.ID)
	d.vecs = append(d.vecs, p.Vector...)
	d.inv = append(d.inv, invNorm(p.Vector))
	d.payloads = append(d.payloads, maps.Clone(p.Payload))
	d.payBytes += payloadSize(p.Payload)
	d.byID.Store(nil)
}

// put inserts or replaces p, which must be valid.
func (d *data) put(p vector.Point) {
	i, ok := d.index[p.ID]
	if !ok {
		d.add(p)
		return
	}
	copy(d.vector(i), p.Vector)
	d.inv[i] = invNorm(p.Vector)
	d.lex.replace(i, p.Payload)
	d.payBytes += payloadSize(p.Payload) - payloadSize(d.payloads[i])
	d.payloads[i] = maps.Clone(p.Payload)
	d.reindexIfStale()
}

// remove deletes the point id, which must exist, by moving the last row
// into its place.
func (d *data) remove(id uuid.UUID) {
	i := d.index[id]
	last := d.len() - 1
	d.lex.drop(i)
	d.lex.remove(i)
	d.payBytes -= payloadSize(d.payloads[i])
	if i != last {
		d.ids[i] = d.ids[last]
		copy(d.vector(i), d.vector(last))
		d.inv[i] = d.inv[last]
		d.payloads[i] = d.payloads[last]
		d.index[d.ids[i]] = i
	}
	delete(d.index, id)
	d.ids = d.ids[:last]
	d.vecs = d.vecs[:last*d.dim]
	d.inv = d.inv[:last]
	d.payloads[last] = nil
	d.payloads = d.payloads[:last]
	d.byID.Store(nil)
	d.reindexIfStale()
}

// reindexIfStale rebuilds the lexical index once more of its slots are
// dead than alive, so that removals and replacements cost amortised
// O(their terms) and dead postings never outnumber live ones for long.
func (d *data) reindexIfStale() {
	if !d.lex.stale() {
		return
	}
	d.lex = newLexicon()
	for i := range d.ids {
		d.lex.add(i, d.payloads[i])
	}
}

func (d *data) point(i int) vector.Point {
	return vector.Point{ID: d.ids[i], Vector: slices.Clone(d.vector(i)), Payload: maps.Clone(d.payloads[i])}
}

// search is the exact scan: the cosine of query with every row, keeping
// the best k in a bounded heap. check is called every few thousand rows so
// a cancelled context stops a long scan.
func (d *data) search(query []float32, k int, check func() error) ([]scored, error) {
	q := make([]float32, len(query))
	vek32.MulNumber_Into(q, query, invNorm(query))
	top := topK{k: min(k, d.len()), ids: d.ids}
	for i := range d.len() {
		if i&4095 == 4095 {
			if err := check(); err != nil {
				return nil, err
			}
		}
		s := vek32.Dot(q, d.vecs[i*d.dim:(i+1)*d.dim]) * d.inv[i]
		if len(top.h) == top.k && s < top.h[0].score {
			continue // cheaper than the worst kept: the common case
		}
		top.offer(scored{row: int32(i), score: s})
	}
	return top.sorted(), nil
}

// scroll returns up to limit points with id > after in ascending id order.
func (d *data) scroll(after uuid.UUID, limit int) []vector.Point {
	order := d.byID.Load()
	if order == nil {
		o := make([]int32, d.len())
		for i := range o {
			o[i] = int32(i)
		}
		slices.SortFunc(o, func(a, b int32) int { return bytes.Compare(d.ids[a][:], d.ids[b][:]) })
		d.byID.Store(&o)
		order = &o
	}
	rows := *order
	start, _ := slices.BinarySearchFunc(rows, after, func(r int32, t uuid.UUID) int {
		if c := bytes.Compare(d.ids[r][:], t[:]); c != 0 {
			return c
		}
		return -1 // equal to after: still before the start
	})
	end := min(start+limit, len(rows))
	out := make([]vector.Point, 0, end-start)
	for _, r := range rows[start:end] {
		out = append(out, d.point(int(r)))
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

type scored struct {
	row   int32
	score float32
}

// topK keeps the k best offers in a min-heap whose root is the worst kept.
// Order: higher score first, then lower id, so results are deterministic.
type topK struct {
	k   int
	ids []uuid.UUID
	h   []scored
}

func (t *topK) better(a, b scored) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return bytes.Compare(t.ids[a.row][:], t.ids[b.row][:]) < 0
}

func (t *topK) offer(s scored) {
	if t.k == 0 {
		return
	}
	if len(t.h) < t.k {
		t.h = append(t.h, s)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !t.better(t.h[p], t.h[i]) {
				break
			}
			t.h[p], t.h[i] = t.h[i], t.h[p]
			i = p
		}
		return
	}
	if !t.better(s, t.h[0]) {
		return
	}
	t.h[0] = s
	for i := 0; ; {
		l, r, w := 2*i+1, 2*i+2, i
		if l < len(t.h) && t.better(t.h[w], t.h[l]) {
			w = l
		}
		if r < len(t.h) && t.better(t.h[w], t.h[r]) {
			w = r
		}
		if w == i {
			return
		}
		t.h[i], t.h[w] = t.h[w], t.h[i]
		i = w
	}
}

func (t *topK) sorted() []scored {
	slices.SortFunc(t.h, func(a, b scored) int {
		if t.better(a, b) {
			return -1
		}
		if t.better(b, a) {
			return 1
		}
		return 0
	})
	return t.h
}
