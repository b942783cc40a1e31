package llm

import (
	"context"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
)

// TestOpenAIContract runs the clients against a real OpenAI-compatible
// endpoint, which the protocol tests (a server of our own) cannot stand in
// for. Set:
//
//	BULKHEAD_TEST_OPENAI_URL          base URL, e.g. https://api.openai.com/v1 or http://localhost:11434/v1
//	BULKHEAD_TEST_OPENAI_KEY          API key, if the server needs one
//	BULKHEAD_TEST_OPENAI_EMBED_MODEL  and BULKHEAD_TEST_OPENAI_DIM, e.g. text-embedding-3-small and 1536
//	BULKHEAD_TEST_OPENAI_CHAT_MODEL   e.g. gpt-4o-mini
//
// at least one of the two models. The semantic check assumes a real
// embedding model (not a lexical one).
func TestOpenAIContract(t *testing.T) {
	base := os.Getenv("BULKHEAD_TEST_OPENAI_URL")
	if base == "" {
		t.Skip("not run: set BULKHEAD_TEST_OPENAI_URL (e.g. http://localhost:11434/v1 for Ollama) with " +
			"BULKHEAD_TEST_OPENAI_EMBED_MODEL and BULKHEAD_TEST_OPENAI_DIM and/or BULKHEAD_TEST_OPENAI_CHAT_MODEL " +
			"(and BULKHEAD_TEST_OPENAI_KEY if the server needs one) to run the contract test against a real endpoint")
	}
	key := bulkhead.Secret(os.Getenv("BULKHEAD_TEST_OPENAI_KEY"))
	embedModel, chatModel := os.Getenv("BULKHEAD_TEST_OPENAI_EMBED_MODEL"), os.Getenv("BULKHEAD_TEST_OPENAI_CHAT_MODEL")
	if embedModel == "" && chatModel == "" {
		t.Fatal("BULKHEAD_TEST_OPENAI_URL is set but neither BULKHEAD_TEST_OPENAI_EMBED_MODEL nor BULKHEAD_TEST_OPENAI_CHAT_MODEL: set at least one")
	}
	ctx := context.Background()

	t.Run("embeddings", func(t *testing.T) {
		if embedModel == "" {
			t.Skip("not run: set BULKHEAD_TEST_OPENAI_EMBED_MODEL and BULKHEAD_TEST_OPENAI_DIM")
		}
		dim, err := strconv.Atoi(os.Getenv("BULKHEAD_TEST_OPENAI_DIM"))
		if err != nil || dim < 1 {
			t.Fatalf("BULKHEAD_TEST_OPENAI_DIM=%q: set it to the model's embedding length (e.g. 1536 for text-embedding-3-small, 768 for nomic-embed-text)", os.Getenv("BULKHEAD_TEST_OPENAI_DIM"))
		}
		cfg := OpenAIConfig{BaseURL: base, APIKey: key, Model: embedModel, Dimension: dim, BatchSize: 2, Timeout: time.Minute}
		e, err := NewOpenAIEmbedder(cfg)
		if err != nil {
			t.Fatalf("NewOpenAIEmbedder: %v", err)
		}
		in := []string{
			"The cat sat on the mat.",
			"A kitten was sitting on the rug.",
			"Quarterly revenue grew by twelve percent.",
			"",
			"Row-level security keeps each tenant's rows apart.",
		}
		batched := mustEmbed(t, e, in...)
		for i, v := range batched {
			if len(v) != dim {
				t.Fatalf("vector %d has %d dimensions, want %d", i, len(v), dim)
			}
			if n := norm(v); n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
				t.Errorf("vector %d has norm %v", i, n)
			}
		}
		// Batched (BatchSize 2, three requests) and one by one must agree:
		// the index mapping is right against a real server. GPU batching
		// may change the last digits, hence a cosine, not equality.
		for i, text := range in {
			alone := mustEmbed(t, e, text)[0]
			if c := cosine(batched[i], alone); c < 0.99 {
				t.Errorf("text %d: cosine(batched, alone) = %.4f, want the same vector", i, c)
			}
		}
		related, unrelated := cosine(batched[0], batched[1]), cosine(batched[0], batched[2])
		t.Logf("cos(cat, kitten) = %.3f, cos(cat, revenue) = %.3f", related, unrelated)
		if related <= unrelated {
			t.Errorf("cos(cat, kitten) = %.3f <= cos(cat, revenue) = %.3f: not a semantic embedding model?", related, unrelated)
		}

		// No shared word at all: only a semantic model relates these.
		syn := mustEmbed(t, e, "car", "automobile", "banana")
		related, unrelated = cosine(syn[0], syn[1]), cosine(syn[0], syn[2])
		t.Logf("cos(car, automobile) = %.3f, cos(car, banana) = %.3f", related, unrelated)
		if related <= unrelated {
			t.Errorf("cos(car, automobile) = %.3f <= cos(car, banana) = %.3f: not a semantic embedding model?", related, unrelated)
		}

		wrong := cfg
		wrong.Dimension = dim + 1
		we, err := NewOpenAIEmbedder(wrong)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := we.Embed(ctx, in[:1]); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "dimensions") {
			t.Errorf("Embed with Dimension %d = %v, want ErrUnavailable naming the dimension", dim+1, err)
		}

		unknown := cfg
		unknown.Model = "bulkhead-no-such-model"
		unknown.MaxRetries = -1
		ue, err := NewOpenAIEmbedder(unknown)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ue.Embed(ctx, in[:1])
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("Embed with an unknown model = %v, want ErrUnavailable", err)
		}
		if k := key.Reveal(); k != "" && err != nil && strings.Contains(err.Error(), k) {
			t.Errorf("error shows the API key")
		}
		t.Logf("unknown model: %v", err)
	})

	t.Run("chat", func(t *testing.T) {
		if chatModel == "" {
			t.Skip("not run: set BULKHEAD_TEST_OPENAI_CHAT_MODEL")
		}
		c, err := NewOpenAIChat(OpenAIConfig{BaseURL: base, APIKey: key, Model: chatModel, Timeout: 2 * time.Minute})
		if err != nil {
			t.Fatalf("NewOpenAIChat: %v", err)
		}
		answer, err := c.Complete(ctx, []Message{
			{Role: "system", Content: "You answer with exactly one lower-case word and nothing else."},
			{Role: "user", Content: "I say ping, you say ...?"},
		})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		t.Logf("answer: %q", answer)
		if !strings.Contains(strings.ToLower(answer), "pong") {
			t.Errorf("Complete = %q, want pong", answer)
		}
	})
}
