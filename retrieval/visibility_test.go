package retrieval_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// rawHits searches the caller's tenant collection directly (no visibility
// check): what the vector engine ranks, hidden chunks included.
func rawHits(t *testing.T, k *testdb.Knowledge, ctx context.Context, q string, n int) []vector.Hit {
	t.Helper()
	vecs, err := llm.NewLocal().Embed(ctx, []string{q})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Router.Collection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hits, err := k.Router.Search(ctx, c, vecs[0], n)
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// chunkIDs returns the ids of a document's chunks, read by its owner.
func chunkIDs(t *testing.T, w *world, ctx context.Context, doc uuid.UUID) map[uuid.UUID]bool {
	t.Helper()
	out := map[uuid.UUID]bool{}
	err := w.d.DB.Read(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out[id] = true
		}
		return rows.Err()
	}, `SELECT id FROM bulkhead.chunks WHERE document_id = $1`, doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const filler = `The quarterly planning meeting covered budgets, hiring and the office move.
Everyone agreed to revisit the roadmap after the holidays and to keep the notes short.`

// TestScoresIgnoreHiddenChunks is finding 4 of issue 11, the guess-and-check
// oracle: Charlie stores a document holding a guessed word plus filler and
// queries the word. What he gets back (passages, text and vector ranks,
// similarities, fused scores) is identical whether Alice has no memo, a
// confidential memo without the word, or one full of it, although the
// vector engine ranks her memo above his document.
func TestScoresIgnoreHiddenChunks(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	alice := w.ua
	charlie := w.user(t, w.a, "charlie")
	const word = "zephyrine"
	mine := ingest(t, w.k, charlie, postgres.NewDocument{Title: "notes", Content: word + " " + word + ": budget notes.", Visibility: bulkhead.VisibilityTenant})
	q := func() []retrieval.Passage {
		t.Helper()
		ps := query(t, w.k, charlie, word)
		if len(ps) == 0 || ps[0].DocumentID != mine.ID || ps[0].VectorRank != 1 || ps[0].TextRank != 1 {
			t.Fatalf("Charlie's query: %+v; want his document first in both lists", ps)
		}
		return ps
	}
	before := q()

	ingest(t, w.k, alice, postgres.NewDocument{Title: "memo", Content: filler + " Confidential.", Confidential: true})
	if diff := cmp.Diff(before, q()); diff != "" {
		t.Errorf("Alice's memo without the word changed Charlie's answer (-before +after):\n%s", diff)
	}
	memo := ingest(t, w.k, alice, postgres.NewDocument{Title: "memo", Content: strings.Repeat(word+" ", 20), Confidential: true})
	// The oracle is real: the engine puts her memo above his document.
	hidden := chunkIDs(t, w, alice, memo.ID)
	if hits := rawHits(t, w.k, charlie, word, 1); len(hits) != 1 || !hidden[hits[0].ID] {
		t.Fatalf("the vector engine's best hit for %q is %v, want Alice's memo (else this test proves nothing)", word, hits)
	}
	if diff := cmp.Diff(before, q()); diff != "" {
		t.Errorf("Alice's confidential memo holding the word changed Charlie's ranks or scores (-before +after):\n%s", diff)
	}
}

// TestHiddenNearDuplicatesDoNotStarveRecall: 200 private near-duplicates
// of another user rank above the one passage Charlie can see (found by
// vector search only: it is confidential, so full-text search can't find
// it); he still gets it, ranked first among what he can see.
func TestHiddenNearDuplicatesDoNotStarveRecall(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	alice := w.ua
	charlie := w.user(t, w.a, "charlie")
	const phrase = "zephyrine quartz lantern harbour"
	for i := range 200 {
		ingest(t, w.k, alice, postgres.NewDocument{Title: fmt.Sprintf("copy %d", i), Content: fmt.Sprintf("%s %d", phrase, i)})
	}
	mine := ingest(t, w.k, charlie, postgres.NewDocument{Title: "mine", Content: phrase + " " + filler, Confidential: true})
	own := chunkIDs(t, w, charlie, mine.ID)
	for i, h := range rawHits(t, w.k, charlie, phrase, 200) {
		if own[h.ID] {
			t.Fatalf("Charlie's passage is the engine's hit %d; the test needs 200 hidden ones above it", i+1)
		}
	}
	ps, err := w.k.Service.Query(charlie, retrieval.Query{Text: phrase, K: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].DocumentID != mine.ID || ps[0].VectorRank != 1 {
		t.Errorf("Charlie got %d passages %+v; want his own, vector rank 1", len(ps), ps)
	}
}
