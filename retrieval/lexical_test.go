package retrieval_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// TestLexicalRanksIgnoreHiddenChunks is the guess-and-check oracle of
// issue 11, finding 4, against the lexical index: Alice's private (not
// confidential, so lexically indexed) memos full of a word score above
// Charlie's document in the tenant's collection, more of them than a
// query's first round of candidates; Charlie's answer (passages, ranks,
// scores) is the same with and without them, and his document is first in
// the text list. Alice, who can see her memos, gets them.
func TestLexicalRanksIgnoreHiddenChunks(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	alice := w.ua
	charlie := w.user(t, w.a, "charlie")
	const word = "zephyrine"
	mine := ingest(t, w.k, charlie, postgres.NewDocument{Title: "notes", Content: word + ": " + filler, Visibility: bulkhead.VisibilityTenant})
	q := func() []retrieval.Passage {
		t.Helper()
		ps := query(t, w.k, charlie, word)
		if len(ps) == 0 || ps[0].DocumentID != mine.ID || ps[0].TextRank != 1 {
			t.Fatalf("Charlie's query: %+v; want his document first in the text list", ps)
		}
		return ps
	}
	before := q()
	hidden := map[uuid.UUID]bool{}
	for i := range 30 {
		d := ingest(t, w.k, alice, postgres.NewDocument{Title: fmt.Sprintf("memo %d", i), Content: strings.Repeat(word+" ", 5+i), Visibility: bulkhead.VisibilityPrivate})
		for id := range chunkIDs(t, w, alice, d.ID) {
			hidden[id] = true
		}
	}
	// The oracle is real: the lexical index ranks her memos first.
	c, err := w.k.Router.Collection(charlie)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.k.Router.SearchTerms(charlie, c, retrieval.QueryTerms(w.a, word), 40)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range raw[:30] {
		if !hidden[h.ID] {
			t.Fatalf("lexical hit %d is %v, not one of Alice's memos: the test needs 30 hidden hits first", i+1, h.ID)
		}
	}
	if diff := cmp.Diff(before, q()); diff != "" {
		t.Errorf("Alice's private memos changed Charlie's answer (-before +after):\n%s", diff)
	}
	// The other side: Alice sees her memos, first in the text list (read
	// alone: which passages survive fusion into her top 10 depends on
	// vector ties broken by random ids).
	if th, err := w.k.Service.SearchText(alice, word, 40); err != nil || len(th) != 31 || !hidden[th[0].ID] {
		t.Errorf("Alice's text list: %d hits, %v; want her 30 memos and Charlie's chunk, a memo first", len(th), err)
	}
	// And the other tenant, with the same word, finds nothing of either.
	ingest(t, w.k, w.ub, postgres.NewDocument{Title: "globex", Content: word + " " + word, Visibility: bulkhead.VisibilityTenant})
	for _, p := range query(t, w.k, w.ub, word) {
		if hidden[p.ID] || p.DocumentID == mine.ID {
			t.Errorf("tenant B got tenant A's chunk %v", p.ID)
		}
	}
}

// TestConfidentialWordsNeverMatch: a confidential document's words are
// not in the lexical index (its points carry no tokens): its owner finds
// it by vector search only, with no text rank; a plain document with the
// same word has one.
func TestConfidentialWordsNeverMatch(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	const word = "quillwort"
	secret := ingest(t, w.k, w.ua, postgres.NewDocument{Title: "secret", Content: word + " " + word + " " + filler, Confidential: true})
	plain := ingest(t, w.k, w.ua, postgres.NewDocument{Title: "plain", Content: word + " " + filler})
	var sawSecret, sawPlain bool
	for _, p := range query(t, w.k, w.ua, word) {
		switch p.DocumentID {
		case secret.ID:
			sawSecret = true
			if p.TextRank != 0 {
				t.Errorf("the confidential chunk has text rank %d", p.TextRank)
			}
		case plain.ID:
			sawPlain = true
			if p.TextRank != 1 {
				t.Errorf("the plain chunk has text rank %d, want 1", p.TextRank)
			}
		}
	}
	if !sawSecret || !sawPlain {
		t.Errorf("owner's query found secret=%v plain=%v, want both", sawSecret, sawPlain)
	}
}

// TestPointsWithoutTermsFallBackAndReconcile: a collection holding a point
// stored without terms (as before lexical search existed) is searched
// lexically by PostgreSQL instead, with the same documents found; a
// Reconcile stores that point again with its terms, and the lexical index
// answers again.
func TestPointsWithoutTermsFallBackAndReconcile(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	const word = "marram"
	d := ingest(t, w.k, w.ua, postgres.NewDocument{Title: "dunes", Content: word + " grass holds the dunes. " + filler, Visibility: bulkhead.VisibilityTenant})
	c, err := w.k.Router.Collection(w.ua)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for id := range chunkIDs(t, w, w.ua, d.ID) {
		ids = append(ids, id)
	}
	pts, err := w.k.Router.Scroll(w.ua, c, uuid.Nil, vector.MaxScrollLimit)
	if err != nil || len(pts) != len(ids) {
		t.Fatalf("scroll: %d points, %v; want %d", len(pts), err, len(ids))
	}
	delete(pts[0].Payload, vector.PayloadTerms)
	if err := w.k.Router.Upsert(w.ua, c, pts[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.k.Router.SearchTerms(w.ua, c, retrieval.QueryTerms(w.a, word), 5); !errors.Is(err, vector.ErrNoTermIndex) {
		t.Fatalf("SearchTerms with a point without terms: %v, want ErrNoTermIndex", err)
	}
	found := func() {
		t.Helper()
		ps := query(t, w.k, w.ua, word)
		if len(ps) == 0 || ps[0].DocumentID != d.ID || ps[0].TextRank != 1 {
			t.Fatalf("query: %+v; want the dunes document, text rank 1", ps)
		}
	}
	found()
	st, err := w.k.Service.Reconcile(maint, w.a)
	if err != nil || st.Terms != 1 || st.Added != 1 {
		t.Fatalf("Reconcile: %+v, %v; want one point stored again with terms", st, err)
	}
	hits, err := w.k.Router.SearchTerms(w.ua, c, retrieval.QueryTerms(w.a, word), 5)
	if err != nil || len(hits) == 0 {
		t.Fatalf("SearchTerms after Reconcile: %v, %v", hits, err)
	}
	found()
}

// TestSearchTextAlone: Query's text side alone returns the chunks of the
// caller's visible documents holding the word, never another member's
// private one; a bad n is refused before anything is searched.
func TestSearchTextAlone(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	bob := w.user(t, w.a, "bob")
	const word = "saltmarsh"
	mine := ingest(t, w.k, w.ua, postgres.NewDocument{Title: "mine", Content: word + " " + filler, Visibility: bulkhead.VisibilityTenant})
	hidden := ingest(t, w.k, bob, postgres.NewDocument{Title: "bob's", Content: word + " " + word, Visibility: bulkhead.VisibilityPrivate})
	own, private := chunkIDs(t, w, w.ua, mine.ID), chunkIDs(t, w, bob, hidden.ID)
	hits, err := w.k.Service.SearchText(w.ua, word, 10)
	if err != nil || len(hits) != len(own) {
		t.Fatalf("SearchText: %v, %v; want the %d chunks of the caller's document", hits, err, len(own))
	}
	for _, h := range hits {
		if !own[h.ID] || private[h.ID] {
			t.Errorf("hit %v is not a chunk of the caller's document", h.ID)
		}
	}
	if hits, err := w.k.Service.SearchText(bob, word, 10); err != nil || len(hits) != len(own)+len(private) {
		t.Errorf("Bob's SearchText: %d hits, %v; want his and the tenant's (%d)", len(hits), err, len(own)+len(private))
	}
	for _, n := range []int{0, postgres.MaxTextHits + 1} {
		if _, err := w.k.Service.SearchText(w.ua, word, n); !errors.Is(err, bulkhead.ErrInvalid) {
			t.Errorf("n=%d: %v, want ErrInvalid", n, err)
		}
	}
	for _, n := range []int{1, postgres.MaxTextHits} {
		if hits, err := w.k.Service.SearchText(w.ua, word, n); err != nil || len(hits) != min(n, len(own)) {
			t.Errorf("n=%d: %d hits, %v", n, len(hits), err)
		}
	}
}
