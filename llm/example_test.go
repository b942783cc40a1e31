package llm_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
)

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// The local embedder sees shared words, not meaning.
func ExampleLocal() {
	e := llm.NewLocal()
	vs, err := e.Embed(context.Background(), []string{
		"row level security for tenants",
		"tenants are isolated by row-level security",
		"car",
		"automobile",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Local's vectors have length 1: the dot product is the cosine.
	fmt.Println(e.Model(), e.Dimension())
	fmt.Println("shared words related:", dot(vs[0], vs[1]) > 0.5)
	fmt.Println("synonyms related:", dot(vs[2], vs[3]) > 0.5)
	// Output:
	// local-lexical-v1 384
	// shared words related: true
	// synonyms related: false
}

// A semantic embedder served by a local Ollama (compiled, not run: it needs
// the server).
func ExampleNewOpenAIEmbedder() {
	e, err := llm.NewOpenAIEmbedder(llm.OpenAIConfig{
		BaseURL:   "http://localhost:11434/v1",
		Model:     "nomic-embed-text",
		Dimension: 768,
		Timeout:   10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	vs, err := e.Embed(context.Background(), []string{"car", "automobile"})
	if err != nil {
		log.Fatal(err) // errors.Is(err, llm.ErrUnavailable): report 503
	}
	fmt.Println(e.Model(), len(vs[0]))
}

// Chat against OpenAI; the key is a bulkhead.Secret, so printing the config
// never shows it.
func ExampleNewOpenAIChat() {
	c, err := llm.NewOpenAIChat(llm.OpenAIConfig{
		BaseURL: "https://api.openai.com/v1",
		APIKey:  bulkhead.Secret("sk-..."),
		Model:   "gpt-4o-mini",
	})
	if err != nil {
		log.Fatal(err)
	}
	answer, err := c.Complete(context.Background(), []llm.Message{
		{Role: "system", Content: "Answer from the context only."},
		{Role: "user", Content: "Context: ...\n\nQuestion: ..."},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(answer)
}
