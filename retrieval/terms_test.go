package retrieval

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"strings"
	"testing"
	"unicode"

	"github.com/kljensen/snowball/english"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// TestTerms: inflections share a stem's token, stop words and case don't
// count, the same word gives different tokens in two tenants, a
// confidential chunk has no tokens, and what chunkTerms stores parses back.
func TestTerms(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	text := "The runner was Running; runs RUN, and the runners ran."
	ct := chunkTerms(a, text, false)
	if ct.Words != 10 {
		t.Errorf("words = %d, want 10", ct.Words)
	}
	run := queryTerms(a, "running")
	if len(run) != 1 || ct.Counts[run[0]] != 3 {
		t.Errorf("'running' occurs %d times as its stem, want 3 (Running, runs, RUN): %v", ct.Counts[run[0]], ct.Counts)
	}
	if q := queryTerms(a, "the and was"); len(q) != 0 {
		t.Errorf("stop words gave tokens %v", q)
	}
	if qa, qb := queryTerms(a, "runner"), queryTerms(b, "runner"); qa[0] == qb[0] {
		t.Error("the same word gave the same token in two tenants")
	}
	if c := chunkTerms(a, text, true); c.Words != 0 || len(c.Counts) != 0 {
		t.Errorf("confidential chunk terms %+v, want none", c)
	}
	back, err := vector.ParseTerms(ct.Encode())
	if err != nil || back.Words != ct.Words || len(back.Counts) != len(ct.Counts) {
		t.Fatalf("round trip: %+v, %v; want %+v", back, err, ct)
	}
	for tok, n := range ct.Counts {
		if back.Counts[tok] != n {
			t.Errorf("token %x: %d after the round trip, %d before", tok, back.Counts[tok], n)
		}
	}
	if q := queryTerms(a, "runner runner runners"); len(q) != 1 {
		t.Errorf("a query's tokens are distinct: %v", q)
	}
}

// TestChunkTermsIsTheDefinition: chunkTerms (which hashes each distinct
// stem once) gives exactly the terms of the definition in terms.go, applied
// word by word with the stemmer itself (no remembered stems): the same
// tokens, counts and word count, and past vector.MaxPointTerms distinct
// tokens the first ones kept, counted over the whole chunk.
func TestChunkTermsIsTheDefinition(t *testing.T) {
	tenant := uuid.New()
	model := func(text string) vector.Terms {
		want := vector.Terms{Counts: map[uint64]int{}}
		for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			if len(w) > maxWordBytes {
				continue
			}
			w = strings.ToLower(w)
			want.Words++
			if english.IsStopWord(w) {
				continue
			}
			sum := sha256.Sum256(append(append([]byte(nil), tenant[:]...), english.Stem(w, false)...))
			tok := binary.BigEndian.Uint64(sum[:8])
			if _, seen := want.Counts[tok]; seen || len(want.Counts) < vector.MaxPointTerms {
				want.Counts[tok]++
			}
		}
		return want
	}
	var many strings.Builder
	for i := range vector.MaxPointTerms + 500 {
		fmt.Fprintf(&many, "w%dx runs ", i) // "runs" repeats before and after the cap
	}
	many.WriteString("w1x w4200x Running")
	for _, text := range []string{
		"The runner was Running; runs RUN, and the runners ran.",
		"Ünïcödé wörds, ÉCOLE école; 東京 東京 and digits 42 42b " + strings.Repeat("x", maxWordBytes+1) + " " + strings.Repeat("Y", maxWordBytes),
		many.String(),
		// ASCII (its own path): digits, case, separators, the length bound.
		"ABC123def x_y-z 42 " + strings.Repeat("Q", maxWordBytes) + " " + strings.Repeat("q", maxWordBytes+1) + "\tEnd.",
		"",
	} {
		got, want := chunkTerms(tenant, text, false), model(text)
		if got.Words != want.Words || !maps.Equal(got.Counts, want.Counts) {
			t.Errorf("%.40q: chunkTerms gives %d words, %d tokens; the definition %d words, %d tokens", text, got.Words, len(got.Counts), want.Words, len(want.Counts))
		}
	}
}
