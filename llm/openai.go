package llm

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
)

// Defaults and bounds of OpenAIConfig.
const (
	DefaultBatchSize  = 64
	DefaultTimeout    = 30 * time.Second
	DefaultMaxRetries = 3
	// MaxBatchSize is OpenAI's limit on inputs per embeddings request.
	MaxBatchSize = 2048
	// MaxDimension matches the vector package's limit.
	MaxDimension  = 16384
	maxMaxRetries = 10
)

// OpenAIConfig configures OpenAIEmbedder and OpenAIChat. Printing it never
// shows the key (bulkhead.Secret redacts itself).
type OpenAIConfig struct {
	// BaseURL is the API root the paths "embeddings" and
	// "chat/completions" are appended to: https://api.openai.com/v1,
	// http://localhost:11434/v1 (Ollama), a vLLM, TEI or LiteLLM server.
	// http or https; no credentials, query or fragment (it appears in
	// error messages).
	BaseURL string
	// APIKey, if set, is sent as "Authorization: Bearer <key>". Use https
	// whenever a key is sent.
	APIKey bulkhead.Secret
	// Model is the model name the server knows. Required.
	Model string
	// Dimension is the embedding length (embeddings only, required, at
	// most MaxDimension). A response with vectors of another length is
	// ErrUnavailable: the client never truncates or pads, and sends no
	// "dimensions" parameter (which not every server accepts).
	Dimension int
	// BatchSize is the number of texts per embeddings request: 0 means
	// DefaultBatchSize (64), at most MaxBatchSize.
	BatchSize int
	// Timeout bounds each attempt (request and response body): 0 means
	// DefaultTimeout (30s).
	Timeout time.Duration
	// MaxRetries is the number of retries after a first failed attempt, on
	// 429, 5xx and network errors only: 0 means DefaultMaxRetries (3), a
	// negative value means none, at most 10. Retries wait with exponential
	// backoff and jitter, or as long as the server's Retry-After (or
	// retry-after-ms) asks if that is longer, up to MaxRetryAfter.
	MaxRetries int
	// Deadline, if set, bounds one Embed or Complete call as a whole:
	// every batch, attempt and wait between attempts (a Retry-After
	// included). Past it the call fails with ErrUnavailable (Reason
	// "deadline"), which does not match context.DeadlineExceeded. 0: the
	// call is bounded only by Timeout, MaxRetries, the backoff and the
	// server's Retry-After (up to MaxRetryAfter), and by ctx.
	Deadline time.Duration
	// HTTPClient, if set, makes the requests (proxies, TLS settings). The
	// default client does not follow redirects.
	HTTPClient *http.Client
}

// OpenAIEmbedder embeds texts with an OpenAI-compatible POST
// {BaseURL}/embeddings endpoint. It is safe for concurrent use.
type OpenAIEmbedder struct {
	c     *client
	model string
	dim   int
	batch int
}

var _ Embedder = (*OpenAIEmbedder)(nil)

// NewOpenAIEmbedder validates cfg (URL, model, dimension, batch size,
// timeout, retries, key) and returns an embedder. It makes no request. A
// bad cfg is a *bulkhead.ValidationError (matching bulkhead.ErrInvalid)
// that never quotes the key or the URL.
func NewOpenAIEmbedder(cfg OpenAIConfig) (*OpenAIEmbedder, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Dimension < 1 || cfg.Dimension > MaxDimension {
		return nil, bulkhead.Invalid("dimension", fmt.Sprintf("required, between 1 and %d", MaxDimension))
	}
	e := &OpenAIEmbedder{c: c, model: cfg.Model, dim: cfg.Dimension, batch: cfg.BatchSize}
	switch {
	case cfg.BatchSize < 0 || cfg.BatchSize > MaxBatchSize:
		return nil, bulkhead.Invalid("batch size", fmt.Sprintf("between 1 and %d (0 for %d)", MaxBatchSize, DefaultBatchSize))
	case cfg.BatchSize == 0:
		e.batch = DefaultBatchSize
	}
	return e, nil
}

// Model returns "openai:" followed by the configured model name.
func (e *OpenAIEmbedder) Model() string { return "openai:" + e.model }

// Dimension returns the configured dimension.
func (e *OpenAIEmbedder) Dimension() int { return e.dim }

// Embed sends texts in batches of BatchSize, one request after another, and
// returns their vectors in input order, matched by the index the server
// gives each (not by the order it lists them). A text that is empty or only
// white space is not sent (OpenAI refuses empty input): it gets the same
// fixed unit vector on dimension 0 as Local gives it.
//
// Any failure is ErrUnavailable and returns no vectors: the endpoint cannot
// be reached or times out (after retries), answers an error status (a
// *StatusError), or its answer is oversized, not JSON, has the wrong
// number of embeddings, missing, duplicate or out-of-range indexes, vectors
// of another length than Dimension, or an all-zero vector. If ctx ends, the
// error also matches ctx.Err().
func (e *OpenAIEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	ctx, cancel := e.c.bound(ctx)
	defer cancel()
	out := make([][]float32, len(texts))
	var pending []int // indexes of the texts to send
	for i, t := range texts {
		if strings.TrimSpace(t) == "" {
			out[i] = unitVector(e.dim)
		} else {
			pending = append(pending, i)
		}
	}
	batches := (len(pending) + e.batch - 1) / e.batch
	for b := range batches {
		idx := pending[b*e.batch : min((b+1)*e.batch, len(pending))]
		input := make([]string, len(idx))
		for j, i := range idx {
			input[j] = texts[i]
		}
		vecs, err := e.embedBatch(ctx, input)
		if err != nil {
			return nil, fmt.Errorf("llm: embeddings (%s, batch %d of %d): %w", e.Model(), b+1, batches, err)
		}
		for j, i := range idx {
			out[i] = vecs[j]
		}
	}
	return out, nil
}

type embeddingRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
}

// embeddingResponse holds the only fields read. Pointers tell a missing
// field from a zero one.
type embeddingResponse struct {
	Data *[]struct {
		Index     *int          `json:"index"`
		Embedding []float32JSON `json:"embedding"`
	} `json:"data"`
}

// float32JSON is a float32 that must be a JSON number in float32's range:
// encoding/json would decode null as 0 into a plain float32.
type float32JSON float32

func (f *float32JSON) UnmarshalJSON(b []byte) error {
	x, err := strconv.ParseFloat(string(b), 32)
	if err != nil {
		return fmt.Errorf("not a float32: %.20s", b)
	}
	*f = float32JSON(x)
	return nil
}

// embedBatch makes one request and checks the answer.
func (e *OpenAIEmbedder) embedBatch(ctx context.Context, input []string) ([][]float32, error) {
	var resp embeddingResponse
	req := embeddingRequest{Model: e.model, Input: input, EncodingFormat: "float"}
	if err := e.c.post(ctx, "embeddings", req, &resp); err != nil {
		return nil, err
	}
	out, err := e.check(resp, len(input))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", e.c.url("embeddings"), err)
	}
	return out, nil
}

// check validates an answer for n inputs and returns its vectors in input
// order.
func (e *OpenAIEmbedder) check(resp embeddingResponse, n int) ([][]float32, error) {
	if resp.Data == nil {
		return nil, malformed("no data")
	}
	data := *resp.Data
	if len(data) != n {
		return nil, malformed("%d embeddings for %d inputs", len(data), n)
	}
	out := make([][]float32, n)
	for _, d := range data {
		switch {
		case d.Index == nil:
			return nil, malformed("an embedding without index")
		case *d.Index < 0 || *d.Index >= n:
			return nil, malformed("index %d out of range [0, %d)", *d.Index, n)
		case out[*d.Index] != nil:
			return nil, malformed("index %d given twice", *d.Index)
		case len(d.Embedding) != e.dim:
			return nil, malformed("embedding %d has %d dimensions, want %d", *d.Index, len(d.Embedding), e.dim)
		}
		v := make([]float32, len(d.Embedding))
		zero := true
		for i, x := range d.Embedding {
			v[i] = float32(x)
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, malformed("embedding %d is not finite", *d.Index)
			}
			zero = zero && x == 0
		}
		if zero {
			return nil, malformed("embedding %d is all zeros", *d.Index)
		}
		out[*d.Index] = v
	}
	return out, nil
}

// OpenAIChat completes conversations with an OpenAI-compatible POST
// {BaseURL}/chat/completions endpoint, at temperature 0. It is safe for
// concurrent use.
type OpenAIChat struct {
	c     *client
	model string
}

var _ Chat = (*OpenAIChat)(nil)

// NewOpenAIChat validates cfg (URL, model, timeout, retries, key; Dimension
// and BatchSize are ignored) and returns a chat client. It makes no
// request. A bad cfg is a *bulkhead.ValidationError (matching
// bulkhead.ErrInvalid) that never quotes the key or the URL.
func NewOpenAIChat(cfg OpenAIConfig) (*OpenAIChat, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return &OpenAIChat{c: c, model: cfg.Model}, nil
}

// Model returns "openai:" followed by the configured model name.
func (c *OpenAIChat) Model() string { return "openai:" + c.model }

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model       string        `json:"model"`
	Messages    []chatMessage `json:"messages"`
	Temperature float64       `json:"temperature"` // no omitempty: 0 is sent
}

type chatResponse struct {
	Choices *[]struct {
		Message *struct {
			Content *string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// Complete sends msgs with temperature 0 and returns the first choice's
// message content.
//
// It returns bulkhead.ErrInvalid, before any request, if msgs is empty or
// a role is not "system", "user" or "assistant". Any other failure is
// ErrUnavailable: as for Embed (network, timeout, error status, oversized
// or malformed answer), and also an answer with no choice or with an empty
// or null content (a model that stopped at its token limit or was
// filtered: the finish reason is in the error). If ctx ends, the error
// also matches ctx.Err().
func (c *OpenAIChat) Complete(ctx context.Context, msgs []Message) (string, error) {
	if len(msgs) == 0 {
		return "", bulkhead.Invalid("messages", "at least one message")
	}
	req := chatRequest{Model: c.model, Messages: make([]chatMessage, len(msgs))}
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return "", bulkhead.Invalid(fmt.Sprintf("messages[%d].role", i), `must be "system", "user" or "assistant"`)
		}
		req.Messages[i] = chatMessage(m)
	}
	ctx, cancel := c.c.bound(ctx)
	defer cancel()
	var resp chatResponse
	if err := c.c.post(ctx, "chat/completions", req, &resp); err != nil {
		return "", fmt.Errorf("llm: chat (%s): %w", c.Model(), err)
	}
	answer, err := resp.answer()
	if err != nil {
		return "", fmt.Errorf("llm: chat (%s): POST %s: %w", c.Model(), c.c.url("chat/completions"), err)
	}
	return answer, nil
}

// answer returns the first choice's content.
func (resp chatResponse) answer() (string, error) {
	switch {
	case resp.Choices == nil || len(*resp.Choices) == 0:
		return "", malformed("no choices")
	case (*resp.Choices)[0].Message == nil:
		return "", malformed("a choice without message")
	}
	first := (*resp.Choices)[0]
	if first.Message.Content == nil || strings.TrimSpace(*first.Message.Content) == "" {
		return "", malformed("empty answer (finish reason %q)", trimMessage(first.FinishReason, 40))
	}
	return *first.Message.Content, nil
}

// malformed reports an answer that parsed but breaks the protocol.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrUnavailable, errBadResponse, fmt.Sprintf(format, args...))
}
