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
// only chunks the caller can see (see visibleTop).
func candidates(k int) int { return max(4*k, 20) }

// Query runs a hybrid search for the caller: a lexical search and a
// vector search of the tenant's collection run concurrently; the caller's
// visible chunks among both lists' candidates are read back in one
// statement (Passages, in the caller's scope), each list is ranked over
// those alone (widened while hidden chunks crowd its top), the two
// rankings are fused by reciprocal rank, and the first q.K fused passages
// are returned, best first. A collection holding points stored without
// lexical terms (before they existed; Reconcile adds them) is searched
// lexically by PostgreSQL's full-text search instead, in the caller's
// scope (postgres.DB.SearchText).
//
// Visibility is decided before fusion: both rankings, and so every rank and
// score returned, are over the chunks the caller can see. A chunk the
// caller can't see (another member's private or confidential document, a
// room it is not in) changes nothing in its answer: not a rank, not a
// score, not how many passages come back (up to vector.MaxK hidden hits
// per list are skipped; docs/SECURITY.md). A visible chunk whose text is
// damaged is left out like a hidden one (and reported by Passages).
//
// The tenant's settings (generation and model) are remembered from its
// last query or ingest, so a query costs no round trip for them: the
// read-back checks, in its own transaction, that the tenant's row still
// holds them (postgres.DB.Passages with expect). When they moved (a
// Reembed switched generations) the answer is dropped and the query runs
// again with the settings read afresh; no answer is ever given from a
// generation the tenant had left when its passages were read.
//
// It returns bulkhead.ErrUnauthenticated without a scope,
// bulkhead.ErrInvalid for a bad query, ErrNotProvisioned, ErrModel or
// ErrModelResponse if the question can't be embedded, and
// bulkhead.ErrUnavailable if either search fails: a failed search is an
// error, not a one-sided answer.
func (s *Service) Query(ctx context.Context, q Query) ([]Passage, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	out, err := withKnowledge(ctx, s, func(k postgres.Knowledge, remembered bool) ([]Passage, error) {
		return s.query(ctx, q, k, remembered)
	})
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return out, nil
}

// query is Query with the tenant's settings k, checked by the read-back
// when remembered is true (false: they were read by this call).
func (s *Service) query(ctx context.Context, q Query, k postgres.Knowledge, remembered bool) ([]Passage, error) {
	n := candidates(q.K)
	t, err := s.targetAt(ctx, k.Generation, k.Model)
	if err != nil {
		return nil, err
	}
	var expect *postgres.Knowledge
	if remembered {
		expect = &k
	}
	var text *ranking
	var terr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		text, terr = s.textRanking(ctx, t, q.Text, n)
	}()
	vec, verr := s.vectorRanking(ctx, t, q.Text, n)
	<-done
	if verr != nil {
		return nil, fmt.Errorf("vector search: %w", verr)
	}
	if terr != nil {
		return nil, fmt.Errorf("full-text search: %w", terr)
	}
	// One statement reads back what the caller can see among both lists'
	// first candidates: it decides their visibility and fetches the
	// passages fusion will pick from.
	visible := map[uuid.UUID]bool{}
	got := map[uuid.UUID]bulkhead.Passage{}
	if err := s.readPassages(ctx, union(text.unchecked(visible), vec.unchecked(visible)), expect, visible, got); err != nil {
		return nil, err
	}
	th, err := s.visibleTop(ctx, n, text, visible)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	vh, err := s.visibleTop(ctx, n, vec, visible)
	if err != nil {
		return nil, fmt.Errorf("vector search: %w", err)
	}
	fused := fuse(textHits(th), vh)
	var need []uuid.UUID // visible hits found by widening, not read yet
	for _, p := range fused {
		if _, ok := got[p.ID]; !ok {
			need = append(need, p.ID)
		}
	}
	if err := s.readPassages(ctx, need, nil, visible, got); err != nil {
		return nil, err
	}
	out := make([]Passage, 0, q.K)
	for _, p := range fused {
		v, ok := got[p.ID]
		if !ok {
			continue
		}
		p.Passage = v
		if out = append(out, p); len(out) == q.K {
			break
		}
	}
	return out, nil
}

// readPassages reads the passages among ids the caller can see into got
// and records every id's visibility; with expect, it fails with
// postgres.ErrKnowledgeChanged unless the tenant's settings still are
// expect's (checked even for no ids).
func (s *Service) readPassages(ctx context.Context, ids []uuid.UUID, expect *postgres.Knowledge, visible map[uuid.UUID]bool, got map[uuid.UUID]bulkhead.Passage) error {
	if len(ids) == 0 && expect == nil {
		return nil
	}
	ps, err := s.db.Passages(ctx, ids, expect)
	if err != nil {
		return fmt.Errorf("read passages: %w", err)
	}
	for _, id := range ids {
		visible[id] = false
	}
	for _, p := range ps {
		visible[p.ID] = true
		got[p.ID] = p
	}
	return nil
}

// union returns the ids of a and b, each once.
func union(a, b []uuid.UUID) []uuid.UUID {
	out := slices.Clone(a)
	for _, id := range b {
		if !slices.Contains(a, id) {
			out = append(out, id)
		}
	}
	return out
}

// textHits returns hits as full-text hits.
func textHits(hits []vector.Hit) []postgres.TextHit {
	out := make([]postgres.TextHit, len(hits))
	for i, h := range hits {
		out[i] = postgres.TextHit{ID: h.ID, Rank: h.Score}
	}
	return out
}

// SearchText is Query's text side alone, as Query runs it (the tenant's
// collection looked up, the lexical search, visibility by id): up to n
// chunks the caller can see that contain a word of text, best first.
// Benchmarks and tools use it; it returns Query's errors.
func (s *Service) SearchText(ctx context.Context, text string, n int) ([]postgres.TextHit, error) {
	if n < 1 || n > postgres.MaxTextHits { // the bound of the fallback, and of a read-back
		return nil, bulkhead.Invalid("n", fmt.Sprintf("must be in [1, %d]", postgres.MaxTextHits))
	}
	t, err := s.target(ctx)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	r, err := s.textRanking(ctx, t, text, n)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	hits, err := s.visibleTop(ctx, n, r, map[uuid.UUID]bool{})
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	return textHits(hits), nil
}

// ranking is one list's candidates from the tenant's collection, which
// also holds chunks the caller may not see: search(m) returns its best m
// hits, floor is the lowest usable score. A ranking without search holds
// final hits (PostgreSQL's full-text search, already in the caller's
// scope).
type ranking struct {
	search func(m int) ([]vector.Hit, error)
	floor  float32
	m      int
	hits   []vector.Hit
}

// fetch runs r's first search, for n hits.
func (r *ranking) fetch(n int) error {
	r.m = n
	var err error
	r.hits, err = r.search(n)
	return missing(err)
}

// unchecked returns the usable hits whose visibility is not known yet.
func (r *ranking) unchecked(visible map[uuid.UUID]bool) []uuid.UUID {
	var out []uuid.UUID
	for _, h := range r.hits {
		if _, ok := visible[h.ID]; !ok && h.Score >= r.floor {
			out = append(out, h.ID)
		}
	}
	return out
}

// top returns up to n visible hits, best first, down to the floor, and
// whether they are final: n found, the floor reached, or nothing more to
// search (the collection or vector.MaxK exhausted).
func (r *ranking) top(visible map[uuid.UUID]bool, n int) ([]vector.Hit, bool) {
	out := make([]vector.Hit, 0, n)
	for _, h := range r.hits {
		if h.Score < r.floor {
			return out, true
		}
		if visible[h.ID] {
			if out = append(out, h); len(out) == n {
				return out, true
			}
		}
	}
	return out, r.search == nil || len(r.hits) < r.m || r.m == vector.MaxK
}

// textRanking is the lexical list's first n candidates: the lexical index
// of the tenant's collection (scores per chunk, vector.TermScore), or,
// when the collection has no complete one (vector.ErrNoTermIndex),
// PostgreSQL's full-text search in the caller's scope. A query of stop
// words only has no candidates.
func (s *Service) textRanking(ctx context.Context, t target, text string, n int) (*ranking, error) {
	toks := queryTerms(t.coll.Tenant(), text)
	if len(toks) == 0 {
		return &ranking{}, nil
	}
	r := &ranking{search: func(m int) ([]vector.Hit, error) { return s.vectors.SearchTerms(ctx, t.coll, toks, m) }}
	err := r.fetch(n)
	if !errors.Is(err, vector.ErrNoTermIndex) {
		return r, err
	}
	th, err := s.db.SearchText(ctx, text, n)
	if err != nil {
		return nil, err
	}
	r = &ranking{hits: make([]vector.Hit, len(th))}
	for i, h := range th {
		r.hits[i] = vector.Hit{ID: h.ID, Score: h.Rank}
	}
	return r, nil
}

// vectorRanking is the vector list's first n candidates, hits below the
// similarity threshold unusable.
func (s *Service) vectorRanking(ctx context.Context, t target, text string, n int) (*ranking, error) {
	vecs, err := t.embed.Embed(ctx, []string{text})
	if err != nil {
		return nil, fmt.Errorf("embed query with %s: %w", t.embed.Model(), unavailable(err))
	}
	if len(vecs) != 1 {
		return nil, fmt.Errorf("embedder %s returned %d vectors for 1 text: %w", t.embed.Model(), len(vecs), ErrModelResponse)
	}
	r := &ranking{floor: s.minSim, search: func(m int) ([]vector.Hit, error) { return s.vectors.Search(ctx, t.coll, vecs[0], m) }}
	return r, r.fetch(n)
}

// visibleTop returns up to n of r's hits the caller can see, best first.
// visible holds what is known already; the rest is checked with
// VisibleChunks (ids only, in the caller's scope), and the search widens
// (4× per round, up to vector.MaxK hits) until n visible hits are found,
// or the collection or the floor is exhausted. The ranks the caller gets
// are positions in this list: as long as a hit's score depends on that
// chunk alone, they depend only on what the caller can see.
func (s *Service) visibleTop(ctx context.Context, n int, r *ranking, visible map[uuid.UUID]bool) ([]vector.Hit, error) {
	for {
		unchecked := r.unchecked(visible)
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
		if out, final := r.top(visible, n); final {
			return out, nil
		}
		if err := r.fetch(min(4*r.m, vector.MaxK)); err != nil {
			return nil, err
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
