package embedded

import (
	"sync"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// lexicon is a collection's lexical index: for each token, the rows whose
// terms hold it, with the token's vector.TermWeight in that row. It is
// built from the points' vector.PayloadTerms as they are added (at load
// too), so it is exactly as durable as the points: nothing of it is
// written to disk.
//
// Postings name slots, not rows: rows move when a point is removed (the
// last row takes its place), slots never do. A removed or replaced point's
// slot is marked dead (slotRow -1) and its postings are skipped by
// searches until more slots are dead than alive, when the index is rebuilt.
type lexicon struct {
	post      map[uint64][]posting
	slotRow   []int32 // slot → row, -1 when dead
	rowSlot   []int32 // row → slot, or noTokens, or unindexedRow
	dead      int     // dead slots
	postings  int     // postings held, dead ones included
	unindexed int     // rows stored without terms
}

// rowSlot values of rows without a slot.
const (
	noTokens     = -1 // terms without tokens (a confidential chunk): indexed, never matches
	unindexedRow = -2 // stored without terms: counted in unindexed
)

type posting struct {
	slot int32
	w    float32
}

func newLexicon() *lexicon { return &lexicon{post: make(map[uint64][]posting)} }

// terms returns the terms of a payload, and false when it has none that
// parse (a point written without terms; a bad value can't be stored, as
// Upsert validates it, but a file is not trusted to that extent).
func terms(payload map[string]string) (vector.Terms, bool) {
	s, ok := payload[vector.PayloadTerms]
	if !ok {
		return vector.Terms{}, false
	}
	t, err := vector.ParseTerms(s)
	return t, err == nil
}

// add indexes row, which must be the next row (len(rowSlot)), with the
// terms of its payload: t, or none (unindexed) unless ok.
func (l *lexicon) add(row int, t vector.Terms, ok bool) {
	l.rowSlot = append(l.rowSlot, l.index(row, t, ok))
}

// index gives row's tokens t a new slot and returns it, or noTokens, or
// unindexedRow unless ok.
func (l *lexicon) index(row int, t vector.Terms, ok bool) int32 {
	if !ok {
		l.unindexed++
		return unindexedRow
	}
	if len(t.Counts) == 0 {
		return noTokens
	}
	slot := int32(len(l.slotRow))
	l.slotRow = append(l.slotRow, int32(row))
	for tok, n := range t.Counts {
		l.post[tok] = append(l.post[tok], posting{slot: slot, w: vector.TermWeight(n, t.Words)})
	}
	l.postings += len(t.Counts)
	return slot
}

// drop forgets row's terms; the row's entry stays, without tokens.
func (l *lexicon) drop(row int) {
	switch slot := l.rowSlot[row]; {
	case slot == unindexedRow:
		l.unindexed--
	case slot >= 0:
		l.slotRow[slot] = -1
		l.dead++
	}
	l.rowSlot[row] = noTokens
}

// replace re-indexes row with its new payload's terms (add's t, ok).
func (l *lexicon) replace(row int, t vector.Terms, ok bool) {
	l.drop(row)
	l.rowSlot[row] = l.index(row, t, ok)
}

// remove deletes row's entry after drop, moving the last row's entry into
// its place (as data.remove moves the row).
func (l *lexicon) remove(row int) {
	last := len(l.rowSlot) - 1
	if row != last {
		slot := l.rowSlot[last]
		l.rowSlot[row] = slot
		if slot >= 0 {
			l.slotRow[slot] = int32(row)
		}
	}
	l.rowSlot = l.rowSlot[:last]
}

// stale reports whether more slots are dead than alive, and enough of
// them to be worth rebuilding the index (data.reindex).
func (l *lexicon) stale() bool { return l.dead > 64 && l.dead > len(l.slotRow)-l.dead }

// size estimates the memory l holds.
func (l *lexicon) size() int64 {
	return int64(l.postings)*8 + int64(len(l.post))*64 + int64(len(l.slotRow)+len(l.rowSlot))*4
}

// lexScratch is search's accumulator, one score per slot (0: untouched,
// as every weight is positive), and the slots it touched.
type lexScratch struct {
	acc     []float32
	touched []int32
}

// lexBuffers keeps search's scratch between queries, every score back at
// 0: at 10,000 points a query allocated and zeroed 80 KB.
var lexBuffers = sync.Pool{New: func() any { return new(lexScratch) }}

// search scores every live slot holding a token of query, summing the
// weights in ascending token order (as vector.TermScore does, so scores
// are equal to it), and keeps the k best rows; ids are the rows' ids, for
// ties. check is called every few thousand postings so that a cancelled
// context stops a long search.
func (l *lexicon) search(ids []uuid.UUID, query []uint64, k int, check func() error) ([]scored, error) {
	sc := lexBuffers.Get().(*lexScratch)
	if len(sc.acc) < len(l.slotRow) {
		sc.acc = make([]float32, len(l.slotRow))
	}
	acc, touched := sc.acc, sc.touched[:0]
	defer func() {
		for _, slot := range touched {
			acc[slot] = 0
		}
		sc.touched = touched[:0]
		lexBuffers.Put(sc)
	}()
	n := 0
	for _, q := range vector.DistinctTerms(query) {
		for _, p := range l.post[q] {
			if n++; n&4095 == 0 {
				if err := check(); err != nil {
					return nil, err
				}
			}
			if acc[p.slot] == 0 {
				touched = append(touched, p.slot)
			}
			acc[p.slot] += p.w
		}
	}
	top := topK{k: k, ids: ids}
	for _, slot := range touched {
		if len(top.h) == top.k && acc[slot] < top.h[0].score {
			continue // cheaper than the worst kept: the common case
		}
		if row := l.slotRow[slot]; row >= 0 {
			top.offer(scored{row: row, score: acc[slot]})
		}
	}
	return top.sorted(), nil
}
