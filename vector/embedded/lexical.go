package embedded

import (
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

// add indexes row, which must be the next row (len(rowSlot)).
func (l *lexicon) add(row int, payload map[string]string) {
	l.rowSlot = append(l.rowSlot, l.index(row, payload))
}

// index gives row's tokens a new slot and returns it, or noTokens, or
// unindexedRow.
func (l *lexicon) index(row int, payload map[string]string) int32 {
	t, ok := terms(payload)
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

// replace re-indexes row with its new payload.
func (l *lexicon) replace(row int, payload map[string]string) {
	l.drop(row)
	l.rowSlot[row] = l.index(row, payload)
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

// search scores every live slot holding a token of query, summing the
// weights in ascending token order (as vector.TermScore does, so scores
// are equal to it), and keeps the k best rows; ids are the rows' ids, for
// ties. check is called every few thousand postings so that a cancelled
// context stops a long search.
func (l *lexicon) search(ids []uuid.UUID, query []uint64, k int, check func() error) ([]scored, error) {
	acc := make([]float32, len(l.slotRow))
	touched := make([]int32, 0, len(l.slotRow)) // a slot at most once: one allocation
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
