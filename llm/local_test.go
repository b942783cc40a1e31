package llm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustEmbed(t testing.TB, e Embedder, texts ...string) [][]float32 {
	t.Helper()
	vs, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatalf("Embed(%d texts): %v", len(texts), err)
	}
	if len(vs) != len(texts) {
		t.Fatalf("Embed(%d texts) returned %d vectors", len(texts), len(vs))
	}
	return vs
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestLocalModelAndDimension(t *testing.T) {
	l := NewLocal()
	if got := l.Model(); got != "local-lexical-v1" {
		t.Errorf("Model() = %q, want local-lexical-v1", got)
	}
	if got := l.Dimension(); got != 384 {
		t.Errorf("Dimension() = %d, want 384", got)
	}
	if vs := mustEmbed(t, l); len(vs) != 0 {
		t.Errorf("Embed(no texts) = %d vectors", len(vs))
	}
}

// The same text gives bit-identical vectors across calls, embedder values,
// batch positions and batch companions (the scratch buffers reused between
// texts of a batch must not leak from one text into the next).
func TestLocalDeterministic(t *testing.T) {
	texts := []string{
		"Row-level security isolates tenants.",
		"",
		"a much longer text about vector search, with repeated words: vector vector vector",
		"Row-level security isolates tenants.",
		"東京タワーと नमस्ते दुनिया",
	}
	first := mustEmbed(t, NewLocal(), texts...)
	second := mustEmbed(t, &Local{}, texts...)
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("two calls differ (-first +second):\n%s", diff)
	}
	for i, text := range texts {
		alone := mustEmbed(t, NewLocal(), text)[0]
		if diff := cmp.Diff(first[i], alone); diff != "" {
			t.Errorf("text %d in a batch and alone differ (-batch +alone):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(first[0], first[3]); diff != "" {
		t.Errorf("the same text at positions 0 and 3 differs:\n%s", diff)
	}
}

// goldenLocal holds every non-zero component of a few vectors. "é" has
// two features, the word (weight 1) and the trigram "<é>" (weight 0.5), so
// its vector is (1, 0.5)/√1.25 ≈ (0.894, 0.447) wherever they hash; "go go
// go stop" pins the 1+ln(tf) weighting.
var goldenLocal = []struct {
	text string
	want map[int]float32
}{
	{"Tenant isolation", map[int]float32{18: -0.22941573, 67: -0.22941573, 107: -0.22941573, 111: 0.22941573, 158: 0.22941573, 164: -0.22941573, 178: -0.45883146, 186: 0.22941573, 268: 0.22941573, 280: -0.22941573, 290: -0.22941573, 300: 0.22941573, 330: 0.22941573, 341: 0.22941573, 380: 0.22941573, 381: -0.22941573}},
	{"é", map[int]float32{179: 0.8944272, 221: 0.4472136}},
	{"go go go stop", map[int]float32{10: -0.17043656, 17: -0.34087312, 110: 0.7153605, 210: -0.17043656, 247: -0.35768026, 294: 0.17043656, 331: 0.17043656, 372: -0.35768026}},
}

// Pins a few vectors so that any change to tokenisation, hashing or
// weighting is seen: such a change must come with a new LocalModel, since
// stored vectors would no longer compare with new ones. The values were
// computed once by this implementation (amd64); the tolerance absorbs
// last-bit differences between architectures.
func TestLocalGolden(t *testing.T) {
	for _, tc := range goldenLocal {
		v := mustEmbed(t, NewLocal(), tc.text)[0]
		got := map[int]float32{}
		for i, x := range v {
			if x != 0 {
				got[i] = x
			}
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float32) bool {
			return math.Abs(float64(a-b)) < 1e-6
		})); diff != "" {
			t.Errorf("Embed(%q) non-zero components changed (-want +got):\n%s", tc.text, diff)
		}
	}
}

func TestLocalNormalised(t *testing.T) {
	long := strings.Repeat("Tenants share one cluster but never one row. ", 200)
	tests := map[string]string{
		"one letter":     "a",
		"one word":       "isolation",
		"sentence":       "Every tenant table has row-level security forced on.",
		"repeated word":  strings.Repeat("vector ", 1000),
		"long":           long,
		"digits":         "2024 10 42",
		"mixed scripts":  "Straße 東京 Αθήνα Москва नमस्ते",
		"one huge token": strings.Repeat("x", 100000),
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			v := mustEmbed(t, NewLocal(), text)[0]
			if len(v) != LocalDimension {
				t.Fatalf("len = %d, want %d", len(v), LocalDimension)
			}
			nonzero := 0
			for i, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					t.Fatalf("component %d = %v", i, x)
				}
				if x != 0 {
					nonzero++
				}
			}
			if n := norm(v); math.Abs(n-1) > 1e-5 {
				t.Errorf("norm = %v, want 1", n)
			}
			// A real text has several features (a word and its trigrams):
			// a single non-zero component would mean it fell back to the
			// empty-text vector.
			if nonzero < 2 {
				t.Errorf("%d non-zero components, want a word's features", nonzero)
			}
		})
	}
}

// A text with nothing to embed gets the fixed unit vector, never zeros.
func TestLocalEmptyText(t *testing.T) {
	want := unitVector(LocalDimension)
	for _, text := range []string{"", "   \t\n", "!!! ... ---", "\xff\xfe\xfd", "\u0301\u0301"} {
		v := mustEmbed(t, NewLocal(), text)[0]
		if diff := cmp.Diff(want, v); diff != "" {
			t.Errorf("Embed(%q) (-want +got):\n%s", text, diff)
		}
	}
	if v := mustEmbed(t, NewLocal(), "a")[0]; cmp.Equal(want, v) {
		t.Errorf(`Embed("a") is the empty-text vector`)
	}
}

// Texts that share words or word pieces score higher than unrelated texts.
func TestLocalSimilarity(t *testing.T) {
	tests := []struct {
		name, text, near, far string
	}{
		{"shared words",
			"how does row level security isolate each tenant",
			"row level security policies isolate tenant rows",
			"a chocolate cake recipe with butter and sugar"},
		{"morphology",
			"embedding vectors",
			"embedded vector",
			"kitchen sink"},
		{"typo",
			"retreival augmented generation",
			"retrieval augmented generation",
			"cooking pasta tonight"},
		{"case and punctuation",
			"PostgreSQL: Row-Level Security!",
			"postgresql row level security",
			"the weather in paris"},
		{"accented words",
			"café crème brûlée",
			"une crème brûlée au café",
			"le vélo de ma sœur"},
		{"cyrillic",
			"безопасность данных арендатора",
			"данные арендатора и их безопасность",
			"рецепт борща со сметаной"},
		{"japanese (no spaces: one token, trigrams)",
			"東京タワーの高さ",
			"東京タワーは赤い",
			"大阪城の歴史"},
	}
	l := NewLocal()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := mustEmbed(t, l, tc.text, tc.near, tc.far)
			near, far := cosine(v[0], v[1]), cosine(v[0], v[2])
			t.Logf("cos(text, near) = %.3f, cos(text, far) = %.3f", near, far)
			if near <= far {
				t.Errorf("cos(text, near) = %.3f <= cos(text, far) = %.3f", near, far)
			}
			if near < 0.2 {
				t.Errorf("cos(text, near) = %.3f, want clearly related (>= 0.2)", near)
			}
		})
	}
}

// The embedder is lexical: synonyms are unrelated to it. This pins the
// documented limitation (a lexical embedder that found them related would
// have a bug, or the documentation would be wrong).
func TestLocalIsNotSemantic(t *testing.T) {
	v := mustEmbed(t, NewLocal(), "car", "automobile", "cars")
	if c := cosine(v[0], v[1]); c > 0.2 {
		t.Errorf("cos(car, automobile) = %.3f: a lexical embedder should see no relation", c)
	}
	if syn, plural := cosine(v[0], v[1]), cosine(v[0], v[2]); plural <= syn {
		t.Errorf("cos(car, cars) = %.3f <= cos(car, automobile) = %.3f", plural, syn)
	}
}

// Case, punctuation and white space do not change a vector; the script's
// own letters do.
func TestLocalUnicode(t *testing.T) {
	same := []struct{ a, b string }{
		{"ÉCOLE Normale", "école, normale!"},
		{"ΑΘΗΝΑ", "αθηνα"},
		{"МОСКВА", "москва"},
		{"hello world", "  hello\u00a0\u3000world\t"}, // no-break and ideographic spaces
		{"नमस्ते दुनिया", "नमस्ते, दुनिया!"},
		{"x1 y2", "X1-Y2"},
	}
	l := NewLocal()
	for _, tc := range same {
		v := mustEmbed(t, l, tc.a, tc.b)
		if diff := cmp.Diff(v[0], v[1]); diff != "" {
			t.Errorf("Embed(%q) and Embed(%q) differ:\n%s", tc.a, tc.b, diff)
		}
	}
	different := []struct{ a, b string }{
		{"école", "ecole"},
		{"東京", "京東"},
		{"नमस्ते", "नमस्त"}, // without the final vowel sign (a combining mark)
	}
	for _, tc := range different {
		v := mustEmbed(t, l, tc.a, tc.b)
		if cmp.Equal(v[0], v[1]) {
			t.Errorf("Embed(%q) and Embed(%q) are equal", tc.a, tc.b)
		}
	}
}

func TestLocalTokenize(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"", nil},
		{"Hello, Wörld! 42x", []string{"hello", "wörld", "42x"}},
		{"row-level_security", []string{"row", "level", "security"}},
		// Devanagari vowel signs and the virama are combining marks: the
		// word stays whole.
		{"नमस्ते दुनिया", []string{"नमस्ते", "दुनिया"}},
		// A decomposed accent stays in its word; a mark with no word
		// before it is dropped.
		{"e\u0301te\u0301 \u0301x", []string{"e\u0301te\u0301", "x"}},
		{"東京タワー。大阪", []string{"東京タワー", "大阪"}},
		{"a\xffb", []string{"a", "b"}},
		{"ǅemal İstanbul", []string{"ǆemal", "istanbul"}},
	}
	for _, tc := range tests {
		var s localScratch
		var got []string
		s.tokenize(tc.text, func(w []byte) { got = append(got, string(w)) })
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("tokenize(%q) (-want +got):\n%s", tc.text, diff)
		}
	}
}

func TestLocalTrigrams(t *testing.T) {
	var s localScratch
	s.addWord([]byte("car"))
	s.addWord([]byte("é"))
	want := []uint64{
		featureHash(kindTrigram, []byte("<ca")),
		featureHash(kindTrigram, []byte("car")),
		featureHash(kindTrigram, []byte("ar>")),
		featureHash(kindTrigram, []byte("<é>")),
	}
	if diff := cmp.Diff(want, s.grams); diff != "" {
		t.Errorf("trigrams of car, é (-want +got):\n%s", diff)
	}
	wantWords := []uint64{featureHash(kindWord, []byte("car")), featureHash(kindWord, []byte("é"))}
	if diff := cmp.Diff(wantWords, s.words); diff != "" {
		t.Errorf("word features (-want +got):\n%s", diff)
	}
}

// featureHash is the standard FNV-1a (as hash/fnv computes it) of the kind
// byte and the feature, through the fmix64 finaliser.
func TestFeatureHashIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "a", "car", "東京", strings.Repeat("long", 100)} {
		for _, kind := range []byte{kindWord, kindTrigram} {
			h := fnv.New64a()
			h.Write([]byte{kind})
			h.Write([]byte(s))
			if got, want := featureHash(kind, []byte(s)), fmix64(h.Sum64()); got != want {
				t.Errorf("featureHash(%c, %q) = %x, want %x", kind, s, got, want)
			}
		}
	}
	if featureHash(kindWord, []byte("abc")) == featureHash(kindTrigram, []byte("abc")) {
		t.Error("word and trigram features with the same text hash alike")
	}
}

// Features spread over the dimensions and both signs: a broken hash (low
// bits not mixed, sign bit constant) would pile them up.
func TestLocalHashSpread(t *testing.T) {
	dims := make([]int, LocalDimension)
	neg := 0
	const n = 20000
	for i := range n {
		h := featureHash(kindWord, []byte(strings.Repeat("w", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('0'+i/676%10))))
		dims[h%LocalDimension]++
		if h>>63 == 1 {
			neg++
		}
	}
	// Expected n/384 ≈ 52 per dimension.
	if lo, hi := slices.Min(dims), slices.Max(dims); lo < 15 || hi > 110 {
		t.Errorf("features per dimension range over [%d, %d], want about 52 each", lo, hi)
	}
	if neg < n*45/100 || neg > n*55/100 {
		t.Errorf("%d of %d features negative, want about half", neg, n)
	}
}

func TestLocalCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	vs, err := NewLocal().Embed(ctx, []string{"a"})
	if !errors.Is(err, context.Canceled) || vs != nil {
		t.Errorf("Embed(cancelled) = %d vectors, %v; want none, context.Canceled", len(vs), err)
	}
}

// benchChunk is about 1 KB of English prose, a typical RAG chunk.
var benchChunk = strings.Repeat("Bulkhead keeps each tenant's rows, vectors and keys apart: "+
	"row-level security in PostgreSQL, one vector collection per tenant, "+
	"and envelope encryption with a key per tenant. ", 6)[:1024]

func BenchmarkLocalEmbed(b *testing.B) {
	l := NewLocal()
	ctx := context.Background()
	for _, batch := range []int{1, 64} {
		texts := make([]string, batch)
		for i := range texts {
			texts[i] = benchChunk
		}
		b.Run(map[int]string{1: "1x1KB", 64: "64x1KB"}[batch], func(b *testing.B) {
			b.SetBytes(int64(batch * len(benchChunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Embed(ctx, texts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAccumulateSumsInHashOrder holds accumulate to its definition: each
// dimension's features added in ascending hash order, so that the vectors
// stay bit for bit those of a plain sort of all the hashes (the order the
// golden vectors and every stored collection were computed in).
func TestAccumulateSumsInHashOrder(t *testing.T) {
	texts := []string{"", "a", benchChunk, strings.Repeat("vector ", 1000), "Straße 東京 Αθήνα Москва नमस्ते"}
	for _, tc := range goldenLocal {
		texts = append(texts, tc.text)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("tenant row policy vector collection key chunk query embed index Zürich naïve 数据 the a of")
	for i := range 200 {
		var b strings.Builder
		n := rng.IntN(400)
		if i == 0 {
			n = 5000 // buckets of ~100 hashes: sortBucket's slices.Sort
		}
		for range n {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteString(" ")
			if rng.IntN(10) == 0 {
				fmt.Fprintf(&b, "%x ", rng.Uint64()) // a rare word
			}
		}
		texts = append(texts, b.String())
	}
	for _, text := range texts {
		var s localScratch
		s.tokenize(text, s.addWord)
		want := sortedSums(slices.Clone(s.words), slices.Clone(s.grams))
		s.accumulate(s.words, 1)
		s.accumulate(s.grams, trigramWeight)
		for d := range s.acc {
			if math.Float64bits(s.acc[d]) != math.Float64bits(want[d]) {
				t.Fatalf("text %.40q: dimension %d = %v, summed in hash order %v", text, d, s.acc[d], want[d])
			}
		}
	}
}

// sortedSums is accumulate as first written: all hashes sorted, each
// distinct one added to its dimension in that order.
func sortedSums(words, grams []uint64) (acc [LocalDimension]float64) {
	for _, f := range []struct {
		hashes []uint64
		w      float64
	}{{words, 1}, {grams, trigramWeight}} {
		slices.Sort(f.hashes)
		for i := 0; i < len(f.hashes); {
			j := i + 1
			for j < len(f.hashes) && f.hashes[j] == f.hashes[i] {
				j++
			}
			x := float64(f.w * (1 + math.Log(float64(j-i))))
			if f.hashes[i]>>63 == 1 {
				x = -x
			}
			acc[f.hashes[i]%LocalDimension] += x
			i = j
		}
	}
	return acc
}

// TestLocalConcurrent embeds different texts from several goroutines at
// once (Embed reuses pooled buffers) and expects each text's vector to be
// the one it gets alone.
func TestLocalConcurrent(t *testing.T) {
	texts := []string{"a", benchChunk, strings.Repeat("x", 100000), "Straße 東京", "tenant isolation by row-level security"}
	want := make([][]float32, len(texts))
	for i, text := range texts {
		want[i] = mustEmbed(t, NewLocal(), text)[0]
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(texts))
	for g := range 8 {
		wg.Go(func() {
			for r := range 50 {
				i := (g + r) % len(texts)
				got, err := NewLocal().Embed(context.Background(), []string{texts[i], texts[(i+1)%len(texts)]})
				if err != nil {
					errs <- err.Error()
					return
				}
				if !slices.Equal(got[0], want[i]) || !slices.Equal(got[1], want[(i+1)%len(texts)]) {
					errs <- fmt.Sprintf("goroutine %d round %d: text %d's vector differs from its vector alone", g, r, i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
