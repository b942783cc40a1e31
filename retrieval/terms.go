package retrieval

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
	"github.com/kljensen/snowball/english"
)

// Lexical terms (docs/DECISIONS.md, "Full-text search under row-level
// security"). A chunk's words are split on anything that is not a letter
// or a digit, lower-cased, stripped of English stop words and stemmed
// (Snowball's English stemmer, the algorithm of PostgreSQL's 'english'
// configuration); each stem becomes a token, the first 8 bytes of
// SHA-256(tenant id, stem). The point stores the tokens and their counts,
// never the words: a token is not a secret (anyone holding the tenant's id
// and the vector files can test a dictionary of words against them), but
// it is not readable text, and the same word gives unrelated tokens in
// two tenants. Confidential chunks get no tokens at all: their words are
// stored only sealed, and they never match a lexical search (as they
// never matched PostgreSQL's full-text search).

// maxWordBytes: longer "words" (base64, hashes) are not indexed.
const maxWordBytes = 64

// eachWord calls fn with each word of text, lower-cased: each maximal run
// of letters and digits (unicode.IsLetter, unicode.IsDigit) of at most
// maxWordBytes bytes, through strings.ToLower. ASCII text takes a path of
// its own that gives the same words without allocating for the split.
func eachWord(text string, fn func(string)) {
	if !isASCII(text) {
		for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			if len(w) <= maxWordBytes {
				fn(strings.ToLower(w))
			}
		}
		return
	}
	var buf [maxWordBytes]byte
	for i := 0; i < len(text); {
		if !isASCIIWordByte(text[i]) {
			i++
			continue
		}
		j, upper := i, false
		for ; j < len(text) && isASCIIWordByte(text[j]); j++ {
			upper = upper || ('A' <= text[j] && text[j] <= 'Z')
		}
		if w := text[i:j]; len(w) <= maxWordBytes {
			if upper {
				for k := range len(w) {
					c := w[k]
					if 'A' <= c && c <= 'Z' {
						c += 'a' - 'A'
					}
					buf[k] = c
				}
				w = string(buf[:len(w)])
			}
			fn(w)
		}
		i = j
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isASCIIWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// token is the token of one lower-cased word of tenant, and false for a
// stop word.
func token(tenant uuid.UUID, word string) (uint64, bool) {
	if english.IsStopWord(word) {
		return 0, false
	}
	return stemToken(tenant, stem(word), nil), true
}

// stemToken is the token of a stem of tenant; buf is scratch space.
func stemToken(tenant uuid.UUID, stem string, buf []byte) uint64 {
	buf = append(append(buf[:0], tenant[:]...), stem...)
	sum := sha256.Sum256(buf)
	return binary.BigEndian.Uint64(sum[:8])
}

// stems remembers the stems of up to maxStems words: stemming is most of
// what indexing a chunk costs, and a language's common words are few.
var (
	stems     sync.Map // word → stem
	stemCount atomic.Int64
)

const maxStems = 1 << 16

// stem is english.Stem, remembered for the first maxStems words seen.
func stem(word string) string {
	if s, ok := stems.Load(word); ok {
		return s.(string)
	}
	s := english.Stem(word, false)
	if stemCount.Load() < maxStems {
		if _, loaded := stems.LoadOrStore(strings.Clone(word), s); !loaded {
			stemCount.Add(1)
		}
	}
	return s
}

// chunkTerms returns the terms of a chunk of tenant: none for a
// confidential chunk (Words 0).
func chunkTerms(tenant uuid.UUID, text string, confidential bool) vector.Terms {
	t := vector.Terms{Counts: map[uint64]int{}}
	if confidential {
		return t
	}
	// Count each stem, then hash each distinct stem once, in the order of
	// first occurrence (which decides the tokens kept past MaxPointTerms).
	n := map[string]int{}
	var order []string
	eachWord(text, func(w string) {
		t.Words++
		if english.IsStopWord(w) {
			return
		}
		s := stem(w)
		if n[s] == 0 {
			order = append(order, s)
		}
		n[s]++
	})
	buf := make([]byte, 0, 16+maxWordBytes)
	for _, s := range order {
		tok := stemToken(tenant, s, buf)
		if _, seen := t.Counts[tok]; seen || len(t.Counts) < vector.MaxPointTerms {
			t.Counts[tok] += n[s]
		}
	}
	return t
}

// queryTerms returns the distinct tokens of a query's words for tenant,
// at most vector.MaxQueryTerms (the first ones), in the order they occur;
// none if it has only stop words.
func queryTerms(tenant uuid.UUID, text string) []uint64 {
	var out []uint64
	seen := map[uint64]bool{}
	eachWord(text, func(w string) {
		if tok, ok := token(tenant, w); ok && !seen[tok] && len(out) < vector.MaxQueryTerms {
			seen[tok] = true
			out = append(out, tok)
		}
	})
	return out
}
