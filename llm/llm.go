package llm

import (
	"context"
	"errors"
)

// ErrUnavailable: the model endpoint cannot answer (network error, timeout,
// an HTTP error status, 5xx or 429 after retries, a malformed or oversized
// response). Callers map it to 503 and never treat it as an empty result.
// A *StatusError matches it too.
var ErrUnavailable = errors.New("llm: model endpoint unavailable")

// Embedder turns texts into vectors.
type Embedder interface {
	// Model is a stable identifier of the vector space, stored with a
	// collection ("local-lexical-v1", "openai:<model>"): the same input
	// gives the same vector for the same Model.
	Model() string
	// Dimension is the length of every vector Embed returns.
	Dimension() int
	// Embed returns one vector per text, in order, each of Dimension()
	// finite floats and never all-zero, or an error and no vectors.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// Message is one turn of a chat: Role is "system", "user" or "assistant".
type Message struct {
	Role    string
	Content string
}

// Chat answers a conversation.
type Chat interface {
	// Model identifies the chat model ("openai:<model>").
	Model() string
	// Complete returns the model's reply to msgs.
	Complete(ctx context.Context, msgs []Message) (string, error)
}

// unitVector returns the vector every embedder in this package gives a text
// with nothing to embed (no word for Local, only white space for an
// endpoint): a fixed unit vector on dimension 0, so callers never store a
// zero vector.
func unitVector(dim int) []float32 {
	v := make([]float32, dim)
	v[0] = 1
	return v
}
