package embedded

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
	"github.com/viterin/vek/vek32"
)

// blockRows is how many rows a block of data's vectors holds.
const blockRows = 1024

// data is one loaded collection. Its vectors are stored in blocks of
// blockRows rows, each block dimension-major: component k of the block's
// row j is at blocks[b][k*c+j], where c = len(blocks[b])/dim is the block's
// capacity. Every block but the last holds blockRows rows; the last one
// starts at 16 rows (a loaded collection's, at what it holds) and grows by
// doubling. A search scores a whole block with one SIMD
// matrix product (the query times the block), and for a sparse query
// reads only the components where the query is not zero. Each row's
// inverse norm is precomputed. Mutations need the collection's write
// lock; searches its read lock.
type data struct {
	dim      int
	ids      []uuid.UUID
	blocks   [][]float32
	inv      []float32
	payloads []map[string]string
	index    map[uuid.UUID]int
	payBytes int64
	lex      *lexicon // the points' terms (vector.PayloadTerms)

	byID atomic.Pointer[[]int32] // row numbers in ascending id order, built by Scroll, reset by writes
}

// newData returns an empty collection with room for capacity rows.
func newData(dim, capacity int) *data {
	d := &data{
		dim:      dim,
		ids:      make([]uuid.UUID, 0, capacity),
		inv:      make([]float32, 0, capacity),
		payloads: make([]map[string]string, 0, capacity),
		index:    make(map[uuid.UUID]int, capacity),
		lex:      newLexicon(),
	}
	for n := capacity; n > 0; n -= blockRows {
		d.blocks = append(d.blocks, make([]float32, min(n, blockRows)*dim))
	}
	return d
}

func (d *data) len() int { return len(d.ids) }

// capacity is how many rows the blocks hold.
func (d *data) capacity() int {
	if len(d.blocks) == 0 {
		return 0
	}
	return (len(d.blocks)-1)*blockRows + len(d.blocks[len(d.blocks)-1])/d.dim
}

// cell returns the block holding row i, its capacity and i's place in it.
func (d *data) cell(i int) (block []float32, c, j int) {
	block = d.blocks[i/blockRows]
	return block, len(block) / d.dim, i % blockRows
}

// appendVector appends row i's vector to dst.
func (d *data) appendVector(dst []float32, i int) []float32 {
	b, c, j := d.cell(i)
	for k := range d.dim {
		dst = append(dst, b[k*c+j])
	}
	return dst
}

// setVector writes v as row i's vector.
func (d *data) setVector(i int, v []float32) {
	b, c, j := d.cell(i)
	for k, x := range v {
		b[k*c+j] = x
	}
}

// grow makes room for one more row: the last block doubles (16 rows
// first) until it holds blockRows, then a new block starts. Doubling, where
// append grows a large slice by a quarter: with ingestion adding a few
// points per write, a quarter meant copying (and faulting in) the
// collection about four times over; 16 rows, so that with thousands of
// small tenants spare capacity isn't most of what resident collections
// hold.
func (d *data) grow() {
	if d.len() < d.capacity() {
		return
	}
	last := len(d.blocks) - 1
	if last < 0 || len(d.blocks[last]) == blockRows*d.dim {
		d.blocks = append(d.blocks, make([]float32, 16*d.dim))
		return
	}
	old := d.blocks[last]
	c := len(old) / d.dim
	nc := min(2*c, blockRows)
	grown := make([]float32, nc*d.dim)
	for k := range d.dim {
		copy(grown[k*nc:k*nc+c], old[k*c:(k+1)*c])
	}
	d.blocks[last] = grown
}

// size estimates the memory d holds, for the eviction budget.
func (d *data) size() int64 {
	const perPoint = 16 + 4 + 8 + 48 // id, inverse norm, payload map pointer, index entry
	return 256 + int64(d.len())*(perPoint+int64(4*d.dim)) + d.payBytes + d.lex.size()
}

// resident is size plus the spare capacity grow keeps, what the memory
// budget counts.
func (d *data) resident() int64 {
	return d.size() + 4*int64(d.dim)*int64(d.capacity()-d.len())
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
// copied. t and ok are its payload's terms (terms).
func (d *data) add(p vector.Point, t vector.Terms, ok bool) {
	d.grow()
	i := d.len()
	d.index[p.ID] = i
	d.lex.add(i, t, ok)
	d.ids = append(d.ids, p.ID)
	d.setVector(i, p.Vector)
	d.inv = append(d.inv, invNorm(p.Vector))
	d.payloads = append(d.payloads, maps.Clone(p.Payload))
	d.payBytes += payloadSize(p.Payload)
	d.byID.Store(nil)
}

// put inserts or replaces p, which must be valid, parsing its terms.
func (d *data) put(p vector.Point) {
	t, ok := terms(p.Payload)
	d.putTerms(p, t, ok)
}

// putTerms is put with p's terms parsed already (terms, or
// vector.Point.ValidateTerms).
func (d *data) putTerms(p vector.Point, t vector.Terms, ok bool) {
	i, found := d.index[p.ID]
	if !found {
		d.add(p, t, ok)
		return
	}
	d.setVector(i, p.Vector)
	d.inv[i] = invNorm(p.Vector)
	d.lex.replace(i, t, ok)
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
		b, c, j := d.cell(i)
		lb, lc, lj := d.cell(last)
		for k := range d.dim {
			b[k*c+j] = lb[k*lc+lj]
		}
		d.inv[i] = d.inv[last]
		d.payloads[i] = d.payloads[last]
		d.index[d.ids[i]] = i
	}
	delete(d.index, id)
	d.ids = d.ids[:last]
	if last%blockRows == 0 {
		d.blocks = d.blocks[:len(d.blocks)-1] // its only row left
	}
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
		t, ok := terms(d.payloads[i])
		d.lex.add(i, t, ok)
	}
}

func (d *data) point(i int) vector.Point {
	return vector.Point{ID: d.ids[i], Vector: d.appendVector(make([]float32, 0, d.dim), i), Payload: maps.Clone(d.payloads[i])}
}

// search is the exact scan: the cosine of query with every row, keeping
// the best k in a bounded heap. check is called every few thousand rows so
// a cancelled context stops a long scan.
func (d *data) search(query []float32, k int, check func() error) ([]scored, error) {
	q := make([]float32, len(query))
	vek32.MulNumber_Into(q, query, invNorm(query))
	return d.scan(q, sparseComponents(q), k, check)
}

// sparseComponents returns the components where q is not zero when they
// are fewer than half (the local embedder's questions have a few dozen of
// 384), nil when q is dense.
func sparseComponents(q []float32) []int {
	var nz []int
	for c, x := range q {
		if x != 0 {
			if 2*(len(nz)+1) > len(q) {
				return nil
			}
			nz = append(nz, c)
		}
	}
	return nz
}

// scanBuffers keeps scan's buffers between queries: a sparse question's
// gathered components are 150 KB at 36 of 384, which allocating and
// zeroing for every query made a cost of its own.
var scanBuffers = sync.Pool{New: func() any { return new([]float32) }}

// scan scores every row against q, normalised, one block at a time with
// one matrix product. Given nz, the components where q is not zero, it
// gathers only the block's rows for those components first. The scores
// are the same either way: a skipped zero component would add 0·x = 0 to
// a running sum, which leaves it unchanged.
func (d *data) scan(q []float32, nz []int, k int, check func() error) ([]scored, error) {
	qnz := make([]float32, len(nz))
	for t, c := range nz {
		qnz[t] = q[c]
	}
	buf := scanBuffers.Get().(*[]float32)
	defer scanBuffers.Put(buf)
	if need := (len(nz) + 1) * blockRows; cap(*buf) < need {
		*buf = make([]float32, need)
	}
	// Both are written before they are read: gathered by copy, scores by
	// the product (MatMul_Into zeroes its destination first).
	gathered, scores := (*buf)[:len(nz)*blockRows], (*buf)[len(nz)*blockRows:(len(nz)+1)*blockRows]
	top := topK{k: min(k, d.len()), ids: d.ids}
	for b, block := range d.blocks {
		if b%16 == 15 {
			if err := check(); err != nil {
				return nil, err
			}
		}
		c := len(block) / d.dim
		if nz != nil {
			for t, comp := range nz {
				copy(gathered[t*c:(t+1)*c], block[comp*c:(comp+1)*c])
			}
			vek32.MatMul_Into(scores, qnz, gathered[:len(nz)*c], len(nz))
		} else {
			vek32.MatMul_Into(scores, q, block, d.dim)
		}
		base := b * blockRows
		for j := range min(c, d.len()-base) {
			s := scores[j] * d.inv[base+j]
			if len(top.h) == top.k && s < top.h[0].score {
				continue // cheaper than the worst kept: the common case
			}
			top.offer(scored{row: int32(base + j), score: s})
		}
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
