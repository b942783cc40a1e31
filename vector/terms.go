package vector

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
)

// Lexical search: a point may carry the terms of its text in its payload,
// under PayloadTerms, and a backend that implements TermSearcher ranks the
// points of one collection by them. The terms are opaque 64-bit tokens
// (the retrieval layer hashes stemmed words with the tenant's id; see
// retrieval.Terms), so the backend never parses text. Scores depend on the
// point and the query only (no collection statistics such as IDF or an
// average length), so a point's score, and the order of any two points,
// does not change with what else the collection holds: filtering the
// ranking to the points a caller may see gives the ranking of the visible
// set (docs/DECISIONS.md, "Full-text search under row-level security").
const (
	// PayloadTerms is the payload key of a point's terms (Terms.Encode).
	// A point without it is not lexically indexed, and a collection
	// holding such points answers SearchTerms with ErrNoTermIndex.
	PayloadTerms = "terms"
	// MaxQueryTerms bounds the distinct tokens of one SearchTerms call.
	MaxQueryTerms = 256
	// MaxPointTerms bounds the distinct tokens of one point.
	MaxPointTerms = 4096
)

// ErrNoTermIndex: the backend has no lexical index, or the collection
// holds points stored without terms (written before lexical search
// existed; re-embedding the tenant adds them). Callers fall back to
// another full-text search; it is never an empty result.
var ErrNoTermIndex = errors.New("vector: no lexical index for this collection")

// TermSearcher is implemented by backends with a lexical index.
type TermSearcher interface {
	// SearchTerms returns the k points with the highest TermScore for
	// the distinct tokens of query (a point matching none is never
	// returned), best first, ties by ascending id. It returns
	// ErrNotFound for a missing collection, ErrNoTermIndex as described
	// there, bulkhead.ErrInvalid for a bad k or query (CheckTermQuery),
	// and ErrUnavailable when the backend fails.
	SearchTerms(ctx context.Context, c Collection, query []uint64, k int) ([]Hit, error)
}

// Terms are the lexical terms of a point: how many words its text has and
// how often each token occurs. A point with Words == 0 (a confidential
// chunk, an empty text) is indexed and matches nothing.
type Terms struct {
	Words  int
	Counts map[uint64]int
}

// Encode returns t as a payload value: the word count, then each token in
// ascending order as 16 hex digits, followed by "*count" when it occurs
// more than once, separated by spaces.
func (t Terms) Encode() string {
	b := make([]byte, 0, 8+20*len(t.Counts))
	b = strconv.AppendInt(b, int64(t.Words), 10)
	for _, tok := range slices.Sorted(maps.Keys(t.Counts)) {
		b = append(b, ' ')
		b = hex.AppendEncode(b, binary.BigEndian.AppendUint64(nil, tok))
		if n := t.Counts[tok]; n > 1 {
			b = append(b, '*')
			b = strconv.AppendInt(b, int64(n), 10)
		}
	}
	return string(b)
}

// ParseTerms parses a value written by Terms.Encode. It returns a
// bulkhead.ErrInvalid error for anything else: a malformed token or
// count, a token given twice, counts that add up to more than the word
// count, or more than MaxPointTerms tokens.
func ParseTerms(s string) (Terms, error) {
	bad := func(why string) (Terms, error) { return Terms{}, bulkhead.Invalid("payload."+PayloadTerms, why) }
	fields := strings.Split(s, " ")
	words, err := strconv.Atoi(fields[0])
	if err != nil || words < 0 || words > MaxPayload {
		return bad("must start with a word count")
	}
	if len(fields)-1 > MaxPointTerms {
		return bad(fmt.Sprintf("more than %d tokens", MaxPointTerms))
	}
	t := Terms{Words: words, Counts: make(map[uint64]int, len(fields)-1)}
	total := 0
	for _, f := range fields[1:] {
		hex, count, many := strings.Cut(f, "*")
		if len(hex) != 16 {
			return bad("a token is 16 hex digits")
		}
		tok, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			return bad("a token is 16 hex digits")
		}
		n := 1
		if many {
			if n, err = strconv.Atoi(count); err != nil || n < 2 {
				return bad("a token's count is an integer of at least 2")
			}
		}
		if _, dup := t.Counts[tok]; dup {
			return bad("a token is given twice")
		}
		t.Counts[tok] = n
		if total += n; total > words {
			return bad("token counts exceed the word count")
		}
	}
	return t, nil
}

// TermScore constants: BM25's term-frequency saturation and length
// normalisation, with a fixed reference length in place of the
// collection's average (which would make scores depend on other points).
const (
	termK1     = 1.2
	termB      = 0.75
	termRefLen = 100
)

// TermWeight is what one query token occurring count times in a point of
// words words adds to its score. It is positive for count ≥ 1, grows with
// count towards termK1+1 and shrinks with words.
func TermWeight(count, words int) float32 {
	if count < 1 {
		return 0
	}
	tf := float64(count)
	norm := termK1 * (1 - termB + termB*float64(max(words, 1))/termRefLen)
	return float32(tf * (termK1 + 1) / (tf + norm))
}

// TermScore is the score of a point with terms t for the distinct tokens
// of query: the sum of TermWeight over the tokens it contains. Backends
// must rank by it (up to float rounding).
func TermScore(t Terms, query []uint64) float32 {
	var s float32
	for _, q := range DistinctTerms(query) {
		s += TermWeight(t.Counts[q], t.Words)
	}
	return s
}

// CheckTermQuery reports whether a SearchTerms for the top k of query can
// run. It returns a bulkhead.ErrInvalid error.
func CheckTermQuery(query []uint64, k int) error {
	if k < 1 || k > MaxK {
		return bulkhead.Invalid("k", fmt.Sprintf("must be in [1, %d]", MaxK))
	}
	if len(query) == 0 || len(DistinctTerms(query)) > MaxQueryTerms {
		return bulkhead.Invalid("query", fmt.Sprintf("1 to %d distinct terms", MaxQueryTerms))
	}
	return nil
}

// DistinctTerms returns the distinct tokens of query in ascending order,
// in a new slice.
func DistinctTerms(query []uint64) []uint64 {
	q := slices.Clone(query)
	slices.Sort(q)
	return slices.Compact(q)
}
