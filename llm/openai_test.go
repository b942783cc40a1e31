package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/go-cmp/cmp"
)

// These tests run our client against a real HTTP server (httptest) that
// speaks the OpenAI wire format: they test the protocol as we send and read
// it, not a particular server. TestOpenAIContract runs the same client
// against a real endpoint.

const testDim = 3

// server starts an httptest server whose handler h gets the number (from 1)
// of each request; it counts them.
type server struct {
	*httptest.Server
	requests atomic.Int32
	stop     chan struct{} // closed when the test ends, to release hang
}

func newServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{stop: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(int(s.requests.Add(1)), w, r)
	}))
	t.Cleanup(func() {
		close(s.stop)
		s.Close()
	})
	return s
}

// hang never answers. It reads the request first: the server notices the
// client hanging up (and cancels r.Context()) only once the body is read.
func (s *server) hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-s.stop:
	}
}

// sleeps records the waits between retries instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// fastRetries makes c retry without waiting (recording the waits).
func fastRetries(c *client) *sleeps {
	s := &sleeps{}
	c.backoff = time.Millisecond
	c.sleep = s.sleep
	return s
}

func mustEmbedder(t *testing.T, cfg OpenAIConfig) (*OpenAIEmbedder, *sleeps) {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = "test-embed"
	}
	if cfg.Dimension == 0 {
		cfg.Dimension = testDim
	}
	e, err := NewOpenAIEmbedder(cfg)
	if err != nil {
		t.Fatalf("NewOpenAIEmbedder: %v", err)
	}
	return e, fastRetries(e.c)
}

// vecFor is the vector the fake server gives "text <n>": its first
// component identifies the text, so a mix-up shows.
func vecFor(text string) []float32 {
	n, err := strconv.Atoi(strings.TrimPrefix(text, "text "))
	if err != nil {
		n = -2
	}
	return []float32{float32(n + 1), float32(len(text)), 0.25}
}

type wireEmbedRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
}

// decodeStrict reads a request body, refusing unknown fields: the client
// must send exactly what the tests expect.
func decodeStrict(t *testing.T, r *http.Request, v any) {
	t.Helper()
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("decode request body: %v", err)
	}
}

// answerEmbeddings answers a well-formed embeddings request, listing the
// embeddings in reverse order (their indexes say where they belong).
func answerEmbeddings(t *testing.T, w http.ResponseWriter, r *http.Request) wireEmbedRequest {
	t.Helper()
	var req wireEmbedRequest
	decodeStrict(t, r, &req)
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	var resp struct {
		Object string         `json:"object"`
		Data   []item         `json:"data"`
		Model  string         `json:"model"`
		Usage  map[string]int `json:"usage"`
	}
	resp.Object, resp.Model, resp.Usage = "list", req.Model, map[string]int{"prompt_tokens": 1, "total_tokens": 1}
	for i := len(req.Input) - 1; i >= 0; i-- {
		resp.Data = append(resp.Data, item{"embedding", i, vecFor(req.Input[i])})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
	return req
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("text %d", i)
	}
	return out
}

func TestOpenAIEmbedBatchesAndIndexes(t *testing.T) {
	var mu sync.Mutex
	var got []wireEmbedRequest
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/embeddings" {
			t.Errorf("request %d: %s %s, want POST /v1/embeddings", n, r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		req := answerEmbeddings(t, w, r)
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
	})
	e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL + "/v1/", Model: "emb-1", BatchSize: 64})

	in := texts(150)
	// Blank texts are not sent (OpenAI refuses empty input) and get the
	// fixed unit vector.
	in[10], in[149] = "", " \n\t"
	out, err := e.Embed(context.Background(), in)
	if err != nil {
		t.Fatalf("Embed: %v", err)
	}
	want := make([][]float32, len(in))
	var sent []string
	for i, text := range in {
		if i == 10 || i == 149 {
			want[i] = unitVector(testDim)
			continue
		}
		want[i] = vecFor(text)
		sent = append(sent, text)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("vectors (-want +got):\n%s", diff)
	}
	wantReqs := []wireEmbedRequest{
		{Model: "emb-1", Input: sent[:64], EncodingFormat: "float"},
		{Model: "emb-1", Input: sent[64:128], EncodingFormat: "float"},
		{Model: "emb-1", Input: sent[128:], EncodingFormat: "float"},
	}
	if diff := cmp.Diff(wantReqs, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if e.Model() != "openai:emb-1" || e.Dimension() != testDim {
		t.Errorf("Model, Dimension = %q, %d", e.Model(), e.Dimension())
	}

	// Nothing to send: no request at all.
	before := srv.requests.Load()
	out, err = e.Embed(context.Background(), []string{"", "  "})
	if err != nil || len(out) != 2 || srv.requests.Load() != before {
		t.Errorf("Embed(blank texts) = %d vectors, %v, %d requests", len(out), err, srv.requests.Load()-before)
	}
}

// Answers that parse but break the protocol are ErrUnavailable, return no
// vectors and are not retried.
func TestOpenAIEmbedMalformed(t *testing.T) {
	tests := map[string]string{
		"not json":           `<html>Bad Gateway</html>`,
		"empty body":         ``,
		"trailing garbage":   `{"data":[{"index":0,"embedding":[1,2,3]},{"index":1,"embedding":[1,2,3]}]} x`,
		"no data":            `{"object":"list"}`,
		"null data":          `{"data":null}`,
		"too few":            `{"data":[{"index":0,"embedding":[1,2,3]}]}`,
		"too many":           `{"data":[{"index":0,"embedding":[1,2,3]},{"index":1,"embedding":[1,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
		"duplicate index":    `{"data":[{"index":0,"embedding":[1,2,3]},{"index":0,"embedding":[1,2,3]}]}`,
		"index out of range": `{"data":[{"index":0,"embedding":[1,2,3]},{"index":2,"embedding":[1,2,3]}]}`,
		"negative index":     `{"data":[{"index":-1,"embedding":[1,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
		"missing index":      `{"data":[{"embedding":[1,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
		"string index":       `{"data":[{"index":"0","embedding":[1,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
		"short vector":       `{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[1,2,3]}]}`,
		"long vector":        `{"data":[{"index":0,"embedding":[1,2,3,4]},{"index":1,"embedding":[1,2,3]}]}`,
		"missing vector":     `{"data":[{"index":0},{"index":1,"embedding":[1,2,3]}]}`,
		"all-zero vector":    `{"data":[{"index":0,"embedding":[0,0,0]},{"index":1,"embedding":[1,2,3]}]}`,
		"base64 vector":      `{"data":[{"index":0,"embedding":"AACAPwAAAEAAAEBA"},{"index":1,"embedding":[1,2,3]}]}`,
		"beyond float32":     `{"data":[{"index":0,"embedding":[1e39,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
		"NaN literal":        `{"data":[{"index":0,"embedding":[NaN,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
		"null in vector":     `{"data":[{"index":0,"embedding":[null,2,3]},{"index":1,"embedding":[1,2,3]}]}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, body)
			})
			e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL})
			out, err := e.Embed(context.Background(), texts(2))
			if !errors.Is(err, ErrUnavailable) || out != nil {
				t.Fatalf("Embed = %v, %v; want no vectors, ErrUnavailable", out, err)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (a malformed answer is not retried)", n)
			}
			t.Logf("error: %v", err)
		})
	}
}

// respond is one canned answer of a retry scenario.
type respond struct {
	status int
	header map[string]string
	body   string
}

var okEmbeddings = respond{status: 200}

func TestOpenAIRetries(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int
		answers    []respond // the last one repeats
		wantN      int       // requests
		wantStatus int       // 0: success
		wantWaits  []time.Duration
		wantInErr  string
	}{
		{name: "500 twice then ok", answers: []respond{{status: 500}, {status: 502}, okEmbeddings}, wantN: 3},
		{name: "network error then ok", answers: []respond{{status: -1}, okEmbeddings}, wantN: 2},
		{name: "429 with Retry-After seconds",
			answers: []respond{{status: 429, header: map[string]string{"Retry-After": "2"}}, okEmbeddings},
			wantN:   2, wantWaits: []time.Duration{2 * time.Second}},
		{name: "503 with retry-after-ms",
			answers: []respond{{status: 503, header: map[string]string{"retry-after-ms": "1500"}}, okEmbeddings},
			wantN:   2, wantWaits: []time.Duration{1500 * time.Millisecond}},
		{name: "5xx until retries run out", maxRetries: 2,
			answers: []respond{{status: 503, body: `{"error":{"message":"overloaded"}}`}},
			wantN:   3, wantStatus: 503, wantInErr: "3 attempts: status 503: overloaded"},
		{name: "no retries when negative", maxRetries: -1, answers: []respond{{status: 500}}, wantN: 1, wantStatus: 500},
		{name: "default is 3 retries", answers: []respond{{status: 500}}, wantN: 4, wantStatus: 500},
		{name: "400 is not retried",
			answers: []respond{{status: 400, body: `{"error":{"message":"maximum context length is 8192 tokens","type":"invalid_request_error"}}`}},
			wantN:   1, wantStatus: 400, wantInErr: "status 400: maximum context length is 8192 tokens"},
		{name: "401 is not retried", answers: []respond{{status: 401, body: `{"error":"unauthorized"}`}}, wantN: 1, wantStatus: 401, wantInErr: "status 401: unauthorized"},
		{name: "404 is not retried", answers: []respond{{status: 404, body: "model not found"}}, wantN: 1, wantStatus: 404},
		{name: "408 is not retried", answers: []respond{{status: 408}}, wantN: 1, wantStatus: 408},
		{name: "redirect is not followed", answers: []respond{{status: 308, header: map[string]string{"Location": "/elsewhere"}}},
			wantN: 1, wantStatus: 308, wantInErr: "redirects are not followed"},
		{name: "Retry-After beyond the bound ends retries",
			answers: []respond{{status: 429, header: map[string]string{"Retry-After": "3600"}}, okEmbeddings},
			wantN:   1, wantStatus: 429, wantInErr: "retry after 1m1s, more than 1m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				a := tc.answers[min(n, len(tc.answers))-1]
				switch a.status {
				case 200:
					answerEmbeddings(t, w, r)
					return
				case -1: // drop the connection without an answer
					conn, _, err := w.(http.Hijacker).Hijack()
					if err != nil {
						t.Errorf("hijack: %v", err)
						return
					}
					conn.Close()
					return
				}
				for k, v := range a.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(a.status)
				io.WriteString(w, a.body)
			})
			e, slept := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL, MaxRetries: tc.maxRetries})
			out, err := e.Embed(context.Background(), texts(2))
			if n := int(srv.requests.Load()); n != tc.wantN {
				t.Errorf("%d requests, want %d", n, tc.wantN)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Embed: %v", err)
				}
				if diff := cmp.Diff([][]float32{vecFor("text 0"), vecFor("text 1")}, out); diff != "" {
					t.Errorf("vectors (-want +got):\n%s", diff)
				}
			} else {
				var se *StatusError
				if !errors.As(err, &se) || se.StatusCode != tc.wantStatus || !errors.Is(err, ErrUnavailable) || out != nil {
					t.Fatalf("Embed = %d vectors, %v; want a *StatusError %d matching ErrUnavailable", len(out), err, tc.wantStatus)
				}
				if !strings.Contains(err.Error(), tc.wantInErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantInErr)
				}
			}
			waits := slept.waits()
			if len(waits) != tc.wantN-1 {
				t.Errorf("%d waits for %d requests: %v", len(waits), tc.wantN, waits)
			}
			if tc.wantWaits != nil {
				if diff := cmp.Diff(tc.wantWaits, waits); diff != "" {
					t.Errorf("waits (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"absent", nil, 0},
		{"seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{"zero", map[string]string{"Retry-After": "0"}, 0},
		{"negative", map[string]string{"Retry-After": "-5"}, 0},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"huge", map[string]string{"Retry-After": "99999999999999999"}, MaxRetryAfter + time.Second},
		{"date", map[string]string{"Retry-After": now.Add(20 * time.Second).Format(http.TimeFormat)}, 20 * time.Second},
		{"past date", map[string]string{"Retry-After": now.Add(-time.Hour).Format(http.TimeFormat)}, 0},
		{"far date", map[string]string{"Retry-After": now.Add(24 * time.Hour).Format(http.TimeFormat)}, MaxRetryAfter + time.Second},
		{"milliseconds win", map[string]string{"Retry-After": "7", "Retry-After-Ms": "250"}, 250 * time.Millisecond},
		{"bad milliseconds fall back", map[string]string{"Retry-After": "7", "Retry-After-Ms": "NaN"}, 7 * time.Second},
		{"huge milliseconds", map[string]string{"Retry-After-Ms": "1e300"}, MaxRetryAfter + time.Second},
	}
	for _, tc := range tests {
		h := http.Header{}
		for k, v := range tc.header {
			h.Set(k, v)
		}
		if got := parseRetryAfter(h, now); got != tc.want {
			t.Errorf("%s: parseRetryAfter = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The n-th retry waits between half and all of min(500ms·2ⁿ, 8s), with
// jitter.
func TestBackoffDelay(t *testing.T) {
	c := &client{backoff: firstBackoff}
	for n, full := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := c.backoffDelay(n)
			if d < full/2 || d > full {
				t.Fatalf("backoffDelay(%d) = %v, want within [%v, %v]", n, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoffDelay(%d): %d distinct delays in 50, want jitter", n, len(seen))
		}
	}
	if d := c.backoffDelay(1000); d > maxBackoff {
		t.Errorf("backoffDelay(1000) = %v", d)
	}
}

// An attempt that gets no answer within Timeout fails and is retried; the
// error does not claim the caller's deadline passed.
func TestOpenAITimeout(t *testing.T) {
	var srv *server
	srv = newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { srv.hang(w, r) })
	e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL, Timeout: 50 * time.Millisecond, MaxRetries: 1})
	out, err := e.Embed(context.Background(), texts(1))
	if !errors.Is(err, ErrUnavailable) || out != nil {
		t.Fatalf("Embed = %v, %v; want ErrUnavailable", out, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v matches context.DeadlineExceeded, but the caller's context did not end", err)
	}
	if !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Errorf("error %q does not say the attempt timed out", err)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (timeouts are retried)", n)
	}
}

// Cancelling the caller's context interrupts the wait before a retry.
func TestOpenAICancelDuringBackoff(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
		arrived <- struct{}{}
	})
	e, err := NewOpenAIEmbedder(OpenAIConfig{BaseURL: srv.URL, Model: "m", Dimension: testDim}) // real sleep
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Embed(ctx, texts(1))
		done <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
			t.Errorf("Embed = %v, want context.Canceled and ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		// Not a timing assertion: the server asked for 30s, so returning at
		// all before then shows the wait was interrupted.
		t.Fatal("Embed still waiting to retry 10s after its context was cancelled")
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// A retry that could not happen before the context's deadline is not
// waited for.
func TestOpenAIDeadlineBeforeRetry(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	e, slept := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := e.Embed(ctx, texts(1))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "deadline comes before the next retry") {
		t.Errorf("Embed = %v, want ErrUnavailable saying the deadline is too near", err)
	}
	if n, w := srv.requests.Load(), slept.waits(); n != 1 || len(w) != 0 {
		t.Errorf("%d requests, waits %v; want 1 request, no wait", n, w)
	}
}

func TestOpenAICancelledBeforeStart(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { answerEmbeddings(t, w, r) })
	e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Embed(ctx, texts(1))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Embed = %v, want context.Canceled and ErrUnavailable", err)
	}
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server, want 0", n)
	}
}

// A body beyond MaxResponseBytes is refused after reading MaxResponseBytes+1
// bytes, not read to its end.
func TestOpenAIOversizedBody(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":[{"index":0,"embedding":[`)
		chunk := []byte(strings.Repeat("0.125,", 1<<14))
		for written := 0; written < MaxResponseBytes+(4<<20); written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // the client hung up, as it should
			}
		}
		io.WriteString(w, `1]}]}`)
	})
	e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL})
	out, err := e.Embed(context.Background(), texts(1))
	if !errors.Is(err, ErrUnavailable) || out != nil {
		t.Fatalf("Embed = %d vectors, %v; want ErrUnavailable", len(out), err)
	}
	if !strings.Contains(err.Error(), "response larger than 32 MiB") {
		t.Errorf("error %q does not name the limit", err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1 (an oversized answer is not retried)", n)
	}
}

// An error body is read only up to a bound and its message trimmed.
func TestOpenAIServerMessageBounded(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "first line\n\t\x1b[31m"+strings.Repeat("é", 5<<20))
	})
	e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL})
	_, err := e.Embed(context.Background(), texts(1))
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Embed = %v, want a *StatusError", err)
	}
	if r := []rune(se.Message); len(r) != maxMessage+1 || !strings.HasPrefix(se.Message, "first line [31mééé") {
		t.Errorf("Message = %q (%d characters), want the trimmed first %d characters and …", se.Message[:min(40, len(se.Message))], len(r), maxMessage)
	}
}

const testKey = "sk-test-0123456789abcdefSECRET"

// The key is sent as a bearer token, only when set, and never appears in an
// error or a printed config.
func TestOpenAIAPIKey(t *testing.T) {
	var auth atomic.Value
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			w.WriteHeader(http.StatusUnauthorized)
			// Servers do quote keys back (OpenAI masks most of it; a
			// proxy may not).
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s."}}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			return
		}
		answerEmbeddings(t, w, r)
	})

	cfg := OpenAIConfig{BaseURL: srv.URL, APIKey: testKey, Model: "m", Dimension: testDim}
	e, _ := mustEmbedder(t, cfg)
	if _, err := e.Embed(context.Background(), texts(1)); err != nil {
		t.Fatalf("Embed with the right key: %v", err)
	}
	if got := auth.Load(); got != "Bearer "+testKey {
		t.Errorf("Authorization = %q", got)
	}

	noKey, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL})
	noKey.Embed(context.Background(), texts(1))
	if got := auth.Load(); got != "" {
		t.Errorf("Authorization without a key = %q, want none", got)
	}

	// The server echoes the (wrong) key it got in its error message.
	wrong, _ := mustEmbedder(t, OpenAIConfig{BaseURL: srv.URL, APIKey: testKey + "x"})
	_, err := wrong.Embed(context.Background(), texts(1))
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 401 {
		t.Fatalf("Embed with a wrong key = %v, want status 401", err)
	}
	if strings.Contains(err.Error(), testKey) || !strings.Contains(err.Error(), "Incorrect API key provided: [redacted].") {
		t.Errorf("error %q: want the key redacted from the server's message", err)
	}

	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, cfg); strings.Contains(s, testKey) {
			t.Errorf("Sprintf(%q, cfg) shows the key: %s", format, s)
		}
	}
	if b, _ := json.Marshal(cfg); bytes.Contains(b, []byte(testKey)) {
		t.Errorf("json.Marshal(cfg) shows the key: %s", b)
	}
}

// Our errors quote neither the key nor the texts being embedded, whatever
// went wrong.
func TestOpenAIErrorsDoNotLeak(t *testing.T) {
	const marker = "PRIVATE-CUSTOMER-TEXT-4711"
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	handlers := map[string]func(int, http.ResponseWriter, *http.Request){
		"500":       func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
		"malformed": func(_ int, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"data":[`) },
		"count":     func(_ int, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"data":[]}`) },
	}
	urls := map[string]string{"connection refused": closed.URL}
	for name, h := range handlers {
		urls[name] = newServer(t, h).URL
	}
	var hanging *server
	hanging = newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { hanging.hang(w, r) })
	urls["timeout"] = hanging.URL
	for name, u := range urls {
		e, _ := mustEmbedder(t, OpenAIConfig{BaseURL: u, APIKey: testKey, Timeout: 50 * time.Millisecond, MaxRetries: 1})
		_, err := e.Embed(context.Background(), []string{"about " + marker})
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Embed = %v, want ErrUnavailable", name, err)
			continue
		}
		if s := fmt.Sprintf("%+v", err); strings.Contains(s, marker) || strings.Contains(s, testKey) {
			t.Errorf("%s: error leaks the text or the key: %s", name, s)
		}
	}
}

func TestNewOpenAIConfigValidation(t *testing.T) {
	good := OpenAIConfig{BaseURL: "https://api.openai.com/v1", Model: "text-embedding-3-small", Dimension: 1536}
	tests := []struct {
		name  string
		mod   func(*OpenAIConfig)
		field string
	}{
		{"no url", func(c *OpenAIConfig) { c.BaseURL = "" }, "base url"},
		{"ftp", func(c *OpenAIConfig) { c.BaseURL = "ftp://example.com/v1" }, "base url"},
		{"no scheme", func(c *OpenAIConfig) { c.BaseURL = "api.openai.com/v1" }, "base url"},
		{"no host", func(c *OpenAIConfig) { c.BaseURL = "http:///v1" }, "base url"},
		{"unparsable", func(c *OpenAIConfig) { c.BaseURL = "http://[::1" }, "base url"},
		{"credentials", func(c *OpenAIConfig) { c.BaseURL = "https://user:" + testKey + "@example.com/v1" }, "base url"},
		{"query", func(c *OpenAIConfig) { c.BaseURL = "https://example.com/v1?key=" + testKey }, "base url"},
		{"fragment", func(c *OpenAIConfig) { c.BaseURL = "https://example.com/v1#x" }, "base url"},
		{"no model", func(c *OpenAIConfig) { c.Model = "" }, "model"},
		{"model with space", func(c *OpenAIConfig) { c.Model = " gpt " }, "model"},
		{"no dimension", func(c *OpenAIConfig) { c.Dimension = 0 }, "dimension"},
		{"negative dimension", func(c *OpenAIConfig) { c.Dimension = -1 }, "dimension"},
		{"huge dimension", func(c *OpenAIConfig) { c.Dimension = MaxDimension + 1 }, "dimension"},
		{"negative batch", func(c *OpenAIConfig) { c.BatchSize = -1 }, "batch size"},
		{"huge batch", func(c *OpenAIConfig) { c.BatchSize = MaxBatchSize + 1 }, "batch size"},
		{"negative timeout", func(c *OpenAIConfig) { c.Timeout = -time.Second }, "timeout"},
		{"too many retries", func(c *OpenAIConfig) { c.MaxRetries = 11 }, "max retries"},
		{"key with newline", func(c *OpenAIConfig) { c.APIKey = testKey + "\n" }, "api key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			_, err := NewOpenAIEmbedder(cfg)
			var ve *bulkhead.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, bulkhead.ErrInvalid) || ve.Problems[0].Field != tc.field {
				t.Fatalf("NewOpenAIEmbedder = %v, want a ValidationError on %q", err, tc.field)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error quotes the key: %v", err)
			}
		})
	}
	for _, u := range []string{"http://localhost:11434/v1", "https://api.openai.com/v1/", "http://10.0.0.5:8080"} {
		cfg := good
		cfg.BaseURL = u
		if _, err := NewOpenAIEmbedder(cfg); err != nil {
			t.Errorf("NewOpenAIEmbedder(%s): %v", u, err)
		}
	}
	// Chat needs no dimension.
	chatCfg := good
	chatCfg.Dimension = 0
	if _, err := NewOpenAIChat(chatCfg); err != nil {
		t.Errorf("NewOpenAIChat without a dimension: %v", err)
	}
	chatCfg.Model = ""
	if _, err := NewOpenAIChat(chatCfg); !errors.Is(err, bulkhead.ErrInvalid) {
		t.Errorf("NewOpenAIChat without a model = %v, want ErrInvalid", err)
	}
}

func mustChat(t *testing.T, cfg OpenAIConfig) (*OpenAIChat, *sleeps) {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = "test-chat"
	}
	c, err := NewOpenAIChat(cfg)
	if err != nil {
		t.Fatalf("NewOpenAIChat: %v", err)
	}
	return c, fastRetries(c.c)
}

func chatAnswer(content string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "model": "test-chat",
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": content},
			"finish_reason": "stop",
		}},
		"usage": map[string]int{"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
	})
	return string(b)
}

func TestOpenAIChat(t *testing.T) {
	var got map[string]any
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			t.Errorf("%s %s, want POST /v1/chat/completions", r.Method, r.URL.Path)
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decode: %v", err)
		}
		io.WriteString(w, chatAnswer("Paris."))
	})
	c, _ := mustChat(t, OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "llama3"})
	answer, err := c.Complete(context.Background(), []Message{
		{Role: "system", Content: "Answer briefly."},
		{Role: "user", Content: "Capital of France?"},
	})
	if err != nil || answer != "Paris." {
		t.Fatalf("Complete = %q, %v; want Paris.", answer, err)
	}
	want := map[string]any{
		"model": "llama3",
		"messages": []any{
			map[string]any{"role": "system", "content": "Answer briefly."},
			map[string]any{"role": "user", "content": "Capital of France?"},
		},
		"temperature": 0.0, // present, not omitted
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if c.Model() != "openai:llama3" {
		t.Errorf("Model() = %q", c.Model())
	}
}

func TestOpenAIChatBadAnswers(t *testing.T) {
	tests := map[string]string{
		"empty choices":    `{"choices":[]}`,
		"no choices":       `{"id":"x"}`,
		"null choices":     `{"choices":null}`,
		"no message":       `{"choices":[{"index":0,"finish_reason":"stop"}]}`,
		"null content":     `{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"tool_calls"}]}`,
		"empty content":    `{"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"length"}]}`,
		"content not text": `{"choices":[{"index":0,"message":{"role":"assistant","content":42}}]}`,
		"not json":         `Internal error`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })
			c, _ := mustChat(t, OpenAIConfig{BaseURL: srv.URL})
			answer, err := c.Complete(context.Background(), []Message{{Role: "user", Content: "hi"}})
			if !errors.Is(err, ErrUnavailable) || answer != "" {
				t.Errorf("Complete = %q, %v; want ErrUnavailable", answer, err)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestOpenAIChatInvalidInput(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, chatAnswer("x")) })
	c, _ := mustChat(t, OpenAIConfig{BaseURL: srv.URL})
	for name, msgs := range map[string][]Message{
		"none":         nil,
		"unknown role": {{Role: "user", Content: "hi"}, {Role: "tool", Content: "x"}},
		"empty role":   {{Content: "hi"}},
	} {
		if _, err := c.Complete(context.Background(), msgs); !errors.Is(err, bulkhead.ErrInvalid) {
			t.Errorf("%s: Complete = %v, want ErrInvalid", name, err)
		}
	}
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("%d requests for invalid input, want 0", n)
	}
}

// Chat goes through the same retrying client as embeddings.
func TestOpenAIChatRetries(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, chatAnswer("ok"))
	})
	c, slept := mustChat(t, OpenAIConfig{BaseURL: srv.URL})
	answer, err := c.Complete(context.Background(), []Message{{Role: "user", Content: "hi"}})
	if err != nil || answer != "ok" {
		t.Fatalf("Complete = %q, %v", answer, err)
	}
	if diff := cmp.Diff([]time.Duration{time.Second}, slept.waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}
