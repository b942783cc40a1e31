package vector_test

import (
	"errors"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
)

// FuzzParseTerms: a point's terms come from a file or a request; whatever
// the input, ParseTerms either refuses it (bulkhead.ErrInvalid) or returns
// terms whose counts add up to at most the word count and that survive an
// Encode/ParseTerms round trip unchanged.
func FuzzParseTerms(f *testing.F) {
	for _, s := range []string{"0", "3 000000000000002a", "5 000000000000002a*2 00000000000000ff", "", "x", "1 0000000000000001*2",
		"2 0000000000000001 0000000000000001", "-1", "1 00000000000000zz", "4 000000000000002a*", "9 000000000000002a*1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := vector.ParseTerms(s)
		if err != nil {
			if !errors.Is(err, bulkhead.ErrInvalid) {
				t.Fatalf("ParseTerms(%q): %v, want ErrInvalid", s, err)
			}
			return
		}
		total := 0
		for _, n := range tm.Counts {
			if n < 1 {
				t.Fatalf("ParseTerms(%q): count %d", s, n)
			}
			total += n
		}
		if total > tm.Words {
			t.Fatalf("ParseTerms(%q): counts add up to %d > %d words", s, total, tm.Words)
		}
		back, err := vector.ParseTerms(tm.Encode())
		if err != nil || back.Words != tm.Words || len(back.Counts) != len(tm.Counts) {
			t.Fatalf("round trip of %q: %+v, %v", s, back, err)
		}
		for tok, n := range tm.Counts {
			if back.Counts[tok] != n {
				t.Fatalf("round trip of %q: token %x count %d, was %d", s, tok, back.Counts[tok], n)
			}
		}
	})
}

// TestTermScore: a point scores the sum of its query tokens' weights,
// distinct tokens counted once; a weight grows with the count and shrinks
// with the length.
func TestTermScore(t *testing.T) {
	tm := vector.Terms{Words: 10, Counts: map[uint64]int{1: 1, 2: 3}}
	if got, want := vector.TermScore(tm, []uint64{1, 2, 2, 9}), vector.TermWeight(1, 10)+vector.TermWeight(3, 10); got != want {
		t.Errorf("score %v, want %v", got, want)
	}
	if vector.TermScore(tm, []uint64{9}) != 0 {
		t.Error("a point without the token scores")
	}
	if !(vector.TermWeight(2, 10) > vector.TermWeight(1, 10)) || !(vector.TermWeight(1, 10) > vector.TermWeight(1, 500)) || vector.TermWeight(0, 10) != 0 {
		t.Error("weights don't grow with the count and shrink with the length")
	}
}
