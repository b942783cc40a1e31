package retrieval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// Query limits.
const (
	DefaultK      = 5
	MaxK          = 50
	MaxQueryBytes = 4000
	// rrfK is reciprocal rank fusion's constant (Cormack et al. 2009): a
	// hit at rank r in a list adds 1/(rrfK + r) to its score.
	rrfK = 60
)

// Query is a retrieval request.
type Query struct {
	Text string
	K    int // passages wanted, default DefaultK, at most MaxK
}

// Passage is one retrieved chunk with its scores. TextRank and VectorRank
// are its 1-based ranks in the full-text and vector lists (0: absent from
// that list), both lists holding only chunks the caller can see; Score is
// their reciprocal rank fusion.
type Passage struct {
	bulkhead.Passage
	Score      float64 `json:"score"`
	TextRank   int     `json:"text_rank,omitempty"`
	VectorRank int     `json:"vector_rank,omitempty"`
	Similarity float32 `json:"similarity,omitempty"` // cosine similarity of the vector hit
}

func (q *Query) validate() error {
	q.Text = strings.TrimSpace(q.Text)
	if q.Text == "" || len(q.Text) > MaxQueryBytes || !utf8.ValidString(q.Text) {
		return bulkhead.Invalid("query", fmt.Sprintf("UTF-8 text of 1 to %d bytes", MaxQueryBytes))
	}
	if q.K == 0 {
		q.K = DefaultK
	}
	if q.K < 1 || q.K > MaxK {
		return bulkhead.Invalid("k", fmt.Sprintf("must be in [1, %d]", MaxK))
	}
	return nil
}

// candidates is how many hits each list contributes before fusion: more
// than k, so that fusion has something to choose from. Both lists hold
// only chunks the caller can see (see searchVectors).
func candidates(k int) int { return max(4*k, 20) }

// Query runs a hybrid search for the caller: a lexical search and a
// vector search, both in the tenant's collection with their hits filtered
// to the chunks the caller can see, run concurrently; their rankings are
// fused by reciprocal rank, and the fused candidates are read back with
// Passages in the caller's scope; those it does not return are dropped.
// It returns at most q.K passages, best first. A collection holding points
// stored without lexical terms (before they existed; Reconcile adds them)
// is searched lexically by PostgreSQL's full-text search instead, in the
// caller's scope (postgres.DB.SearchText).
//
// Visibility is decided before fusion: both rankings, and so every rank and
// score returned, are over the chunks the caller can see. A chunk the
// caller can't see (another member's private or confidential document, a
// room it is not in) changes nothing in its answer: not a rank, not a
// score, not how many passages come back (up to vector.MaxK hidden hits
// per list are skipped; docs/SECURITY.md).
//
// It returns bulkhead.ErrInvalid for a bad query, ErrNotProvisioned,
// ErrModel or ErrModelResponse if the question can't be embedded, and
// bulkhead.ErrUnavailable if either search fails: a failed search is an
// error, not a one-sided answer.
func (s *Service) Query(ctx context.Context, q Query) ([]Passage, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	n := candidates(q.K)
	t, err := s.target(ctx)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	type textResult struct {
		hits []postgres.TextHit
		err  error
	}
	textc := make(chan textResult, 1)
	go func() {
		hits, err := s.searchText(ctx, t, q.Text, n)
		textc <- textResult{hits, err}
	}()
	vhits, verr := s.searchVectors(ctx, t, q.Text, n)
	tr := <-textc
	if verr != nil {
		return nil, fmt.Errorf("query: vector search: %w", verr)
	}
	if tr.err != nil {
		return nil, fmt.Errorf("query: full-text search: %w", tr.err)
	}
	fused := fuse(tr.hits, vhits)
	ids := make([]uuid.UUID, len(fused))
	for i, p := range fused {
		ids[i] = p.ID
	}
	visible, err := s.db.Passages(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("query: read passages: %w", err)
	}
	// visible keeps the order of ids, which is the fused order.
	byID := make(map[uuid.UUID]Passage, len(fused))
	for _, p := range fused {
		byID[p.ID] = p
	}
	out := make([]Passage, 0, min(q.K, len(visible)))
	for _, v := range visible[:min(q.K, len(visible))] {
		p := byID[v.ID]
		p.Passage = v
		out = append(out, p)
	}
	return out, nil
}

// SearchText is Query's text side alone, as Query runs it (the tenant's
// collection looked up, then searchText): up to n chunks the caller can
// see that contain a word of text, best first. Benchmarks and tools use
// it; it returns Query's errors.
func (s *Service) SearchText(ctx context.Context, text string, n int) ([]postgres.TextHit, error) {
	if n < 1 || n > vector.MaxK {
		return nil, bulkhead.Invalid("n", fmt.Sprintf("must be in [1, %d]", vector.MaxK))
	}
	t, err := s.target(ctx)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	return s.searchText(ctx, t, text, n)
}

// searchText returns up to n chunks the caller can see that contain a word
// of text, best vector.TermScore first (ties by id): the lexical index of
// the tenant's collection, filtered by visibleTop. A query of stop words
// only matches nothing. When the collection has no complete lexical index
// (vector.ErrNoTermIndex) it is PostgreSQL's full-text search instead.
func (s *Service) searchText(ctx context.Context, t target, text string, n int) ([]postgres.TextHit, error) {
	toks := queryTerms(t.coll.Tenant(), text)
	if len(toks) == 0 {
		return nil, nil
	}
	hits, err := s.visibleTop(ctx, n, 0, func(m int) ([]vector.Hit, error) {
		return s.vectors.SearchTerms(ctx, t.coll, toks, m)
	})
	if errors.Is(err, vector.ErrNoTermIndex) {
		return s.db.SearchText(ctx, text, n)
	}
	if err != nil {
		return nil, err
	}
	out := make([]postgres.TextHit, len(hits))
	for i, h := range hits {
		out[i] = postgres.TextHit{ID: h.ID, Rank: h.Score}
	}
	return out, nil
}

// searchVectors returns up to n vector hits the caller can see, best
// first, none below the similarity threshold (visibleTop).
func (s *Service) searchVectors(ctx context.Context, t target, text string, n int) ([]vector.Hit, error) {
	vecs, err := t.embed.Embed(ctx, []string{text})
	if err != nil {
		return nil, fmt.Errorf("embed query with %s: %w", t.embed.Model(), unavailable(err))
	}
	if len(vecs) != 1 {
		return nil, fmt.Errorf("embedder %s returned %d vectors for 1 text: %w", t.embed.Model(), len(vecs), ErrModelResponse)
	}
	return s.visibleTop(ctx, n, s.minSim, func(m int) ([]vector.Hit, error) {
		return s.vectors.Search(ctx, t.coll, vecs[0], m)
	})
}

// visibleTop returns up to n hits the caller can see, best first, none
// scoring below floor. search(m) returns the best m hits of the tenant's
// collection, which also holds chunks the caller may not see; those are
// dropped before anything is ranked, and the search widens (4× per round,
// up to vector.MaxK hits) until n visible hits are found, or the
// collection or the floor is exhausted. The ranks the caller gets are
// positions in this list: as long as a hit's score depends on that chunk
// alone, they depend only on what the caller can see.
func (s *Service) visibleTop(ctx context.Context, n int, floor float32, search func(m int) ([]vector.Hit, error)) ([]vector.Hit, error) {
	visible := map[uuid.UUID]bool{} // ids checked so far
	for m := n; ; m = min(4*m, vector.MaxK) {
		hits, err := search(m)
		if err != nil {
			return nil, missing(err)
		}
		var unchecked []uuid.UUID
		for _, h := range hits {
			if _, ok := visible[h.ID]; !ok && h.Score >= floor {
				unchecked = append(unchecked, h.ID)
			}
		}
		for len(unchecked) > 0 {
			batch := unchecked[:min(len(unchecked), postgres.MaxTextHits)]
			unchecked = unchecked[len(batch):]
			seen, err := s.db.VisibleChunks(ctx, batch)
			if err != nil {
				return nil, fmt.Errorf("visibility of hits: %w", err)
			}
			for _, id := range batch {
				visible[id] = seen[id]
			}
		}
		// Best first: keep the visible hits down to the floor.
		out := make([]vector.Hit, 0, n)
		below := false
		for _, h := range hits {
			if h.Score < floor {
				below = true
				break
			}
			if visible[h.ID] {
				out = append(out, h)
				if len(out) == n {
					return out, nil
				}
			}
		}
		if below || len(hits) < m || m == vector.MaxK {
			return out, nil
		}
	}
}

// fuse merges the two rankings by reciprocal rank fusion, best first, ties
// by id. Only ids and ranks are set.
func fuse(text []postgres.TextHit, vec []vector.Hit) []Passage {
	m := make(map[uuid.UUID]*Passage, len(text)+len(vec))
	get := func(id uuid.UUID) *Passage {
		p, ok := m[id]
		if !ok {
			p = &Passage{}
			p.ID = id
			m[id] = p
		}
		return p
	}
	for i, h := range text {
		p := get(h.ID)
		if p.TextRank == 0 {
			p.TextRank = i + 1
			p.Score += 1.0 / float64(rrfK+i+1)
		}
	}
	for i, h := range vec {
		p := get(h.ID)
		if p.VectorRank == 0 {
			p.VectorRank = i + 1
			p.Similarity = h.Score
			p.Score += 1.0 / float64(rrfK+i+1)
		}
	}
	out := make([]Passage, 0, len(m))
	for _, p := range m {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Passage) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out
}
