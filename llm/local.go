package llm

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"
)

const (
	// LocalModel is Local's Model(). Any change to how Local computes a
	// vector must change it, since collections rely on it to know that
	// stored vectors and new ones are comparable.
	LocalModel = "local-lexical-v1"
	// LocalDimension is Local's Dimension().
	LocalDimension = 384

	// trigramWeight scales trigram features against whole words: a
	// six-letter word has six trigrams, so at half weight they carry about
	// 1.5 times the word's own squared weight. Shared words dominate,
	// shared word pieces still count.
	trigramWeight = 0.5

	// Feature kinds, hashed as the first byte so that the word "abc" and
	// the trigram "abc" are different features.
	kindWord    = 'w'
	kindTrigram = 't'
)

// Local is the built-in lexical embedder (see the package documentation:
// bag of words and character trigrams, not semantic). It needs no network
// and its vectors are deterministic. The zero value is ready to use; it is
// safe for concurrent use.
type Local struct{}

var _ Embedder = (*Local)(nil)

// NewLocal returns the built-in lexical embedder.
func NewLocal() *Local { return &Local{} }

// Model returns LocalModel ("local-lexical-v1").
func (*Local) Model() string { return LocalModel }

// Dimension returns LocalDimension (384).
func (*Local) Dimension() int { return LocalDimension }

// Embed returns one L2-normalised vector per text. A text without any word
// (empty, white space, punctuation only) gets a fixed unit vector on
// dimension 0. The only error is ctx's, checked between texts.
func (*Local) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	backing := make([]float32, len(texts)*LocalDimension)
	s := scratchPool.Get().(*localScratch)
	defer s.release()
	for i, text := range texts {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("llm: local embed: %w", err)
		}
		v := backing[i*LocalDimension : (i+1)*LocalDimension : (i+1)*LocalDimension]
		s.embed(text, v)
		out[i] = v
	}
	return out, nil
}

// scratchPool keeps localScratch buffers between Embed calls: a query
// embeds one short text, and allocating the buffers was most of its cost.
var scratchPool = sync.Pool{New: func() any { return new(localScratch) }}

// localScratch holds the buffers of one Embed call, reused across its texts.
type localScratch struct {
	word   []byte   // the current word, lower-cased, UTF-8
	pad    []byte   // "<" + word + ">"
	offs   []int    // rune start offsets in pad, plus len(pad)
	words  []uint64 // hashes of word features
	grams  []uint64 // hashes of trigram features
	sorted []uint64 // accumulate's hashes, bucketed by dimension
	acc    [LocalDimension]float64
}

// release returns s to scratchPool, unless a long text grew its buffers
// past what a typical chunk needs: those are left to the collector.
func (s *localScratch) release() {
	if cap(s.grams) <= 1<<14 && cap(s.word) <= 1<<12 {
		scratchPool.Put(s)
	}
}

// embed writes text's vector into v (len LocalDimension, all zero).
func (s *localScratch) embed(text string, v []float32) {
	s.words, s.grams = s.words[:0], s.grams[:0]
	s.tokenize(text, s.addWord)
	clear(s.acc[:])
	s.accumulate(s.words, 1)
	s.accumulate(s.grams, trigramWeight)

	var sum float64
	for _, a := range s.acc {
		// The conversion stops the compiler fusing the multiply into an
		// FMA on architectures that have one, which would change the
		// rounding and so the vector.
		sum += float64(a * a)
	}
	norm := math.Sqrt(sum)
	if norm == 0 || math.IsInf(norm, 0) || math.IsNaN(norm) {
		// No word, or (vanishingly unlikely) every feature cancelled out
		// under signed hashing: never return a zero vector.
		v[0] = 1
		return
	}
	for i, a := range s.acc {
		v[i] = float32(a / norm)
	}
}

// tokenize calls fn with each lower-cased word of text: a maximal run of
// letters and digits, with combining marks (Devanagari vowel signs, a
// decomposed accent) kept inside the word they follow. Anything else,
// including invalid UTF-8, separates words. The slice fn gets is reused.
func (s *localScratch) tokenize(text string, fn func(word []byte)) {
	s.word = s.word[:0]
	for _, r := range text {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			s.word = utf8.AppendRune(s.word, unicode.ToLower(r))
		case len(s.word) > 0 && unicode.IsMark(r):
			s.word = utf8.AppendRune(s.word, r)
		case len(s.word) > 0:
			fn(s.word)
			s.word = s.word[:0]
		}
	}
	if len(s.word) > 0 {
		fn(s.word)
	}
}

// addWord records word's features: the word itself and the character
// trigrams of "<word>" (so "car" gives "<ca", "car", "ar>").
func (s *localScratch) addWord(word []byte) {
	s.words = append(s.words, featureHash(kindWord, word))
	s.pad = append(append(append(s.pad[:0], '<'), word...), '>')
	s.offs = s.offs[:0]
	for i, b := range s.pad {
		if utf8.RuneStart(b) {
			s.offs = append(s.offs, i)
		}
	}
	s.offs = append(s.offs, len(s.pad))
	runes := len(s.offs) - 1
	for i := 0; i+3 <= runes; i++ {
		s.grams = append(s.grams, featureHash(kindTrigram, s.pad[s.offs[i]:s.offs[i+3]]))
	}
}

// accumulate adds each distinct feature of hashes once, with weight
// w·(1+ln tf) and the sign its hash gives, to its hashed dimension. The
// features of each dimension are added in ascending hash order, which makes
// the order of the floating-point additions, and so the result, independent
// of anything but the input. Only the order within a dimension matters, so
// the hashes are bucketed by dimension (a counting sort) and each small
// bucket is sorted on its own: the same sums as sorting all of them
// (TestAccumulateSumsInHashOrder), for less (docs/BENCHMARKS.md).
func (s *localScratch) accumulate(hashes []uint64, w float64) {
	var start [LocalDimension + 1]int32
	for _, h := range hashes {
		start[h%LocalDimension+1]++
	}
	for d := 1; d <= LocalDimension; d++ {
		start[d] += start[d-1]
	}
	s.sorted = slices.Grow(s.sorted[:0], len(hashes))[:len(hashes)]
	next := start
	for _, h := range hashes {
		d := h % LocalDimension
		s.sorted[next[d]] = h
		next[d]++
	}
	for d := range LocalDimension {
		bucket := s.sorted[start[d]:start[d+1]]
		sortBucket(bucket)
		for i := 0; i < len(bucket); {
			h := bucket[i]
			j := i + 1
			for j < len(bucket) && bucket[j] == h {
				j++
			}
			// Rounded explicitly, like the squares in embed, so that it is
			// never fused into the addition below.
			x := float64(w * (1 + logCount(j-i)))
			if h>>63 == 1 {
				x = -x
			}
			s.acc[d] += x
			i = j
		}
	}
}

// logs holds math.Log(n) for the small counts most features have, so that
// accumulate takes them from a table: the same values, without the call.
var logs = func() (t [64]float64) {
	for n := range t {
		t[n] = math.Log(float64(n))
	}
	return t
}()

// logCount is math.Log(float64(n)) for n ≥ 1.
func logCount(n int) float64 {
	if n < len(logs) {
		return logs[n]
	}
	return math.Log(float64(n))
}

// sortBucket sorts a bucket of accumulate in place. A bucket usually holds
// a few hashes (a 1 KB chunk has about 1,000 features over 384 buckets),
// which an insertion sort orders for less than slices.Sort's call; past 16
// (a long text, or features that hash alike) slices.Sort, so that a bucket
// is never sorted in quadratic time.
func sortBucket(a []uint64) {
	if len(a) > 16 {
		slices.Sort(a)
		return
	}
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// featureHash is 64-bit FNV-1a over kind and b, followed by MurmurHash3's
// fmix64 finaliser: FNV-1a's low bits depend only on the low bits of the
// input bytes, and the dimension is taken from the low bits. Both have no
// seed, so vectors are the same in every process.
func featureHash(kind byte, b []byte) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	h ^= uint64(kind)
	h *= prime64
	for _, c := range b {
		h ^= uint64(c)
		h *= prime64
	}
	return fmix64(h)
}

// fmix64 is MurmurHash3's 64-bit finaliser.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9b64e3e1f5f
	h ^= h >> 33
	return h
}
