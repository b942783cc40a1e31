package llm

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestReason: each fault of the endpoint gets its own Reason label, and
// every one of them is ErrUnavailable.
func TestReason(t *testing.T) {
	wrongDim := func(_ int, w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"data":[{"index":0,"embedding":[1,2]}]}`)
	}
	status := func(code int) func(int, http.ResponseWriter, *http.Request) {
		return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close() // nothing listens there now

	for _, tc := range []struct {
		name string
		h    func(*server) func(int, http.ResponseWriter, *http.Request)
		want string
	}{
		{"hang", func(s *server) func(int, http.ResponseWriter, *http.Request) {
			return func(_ int, w http.ResponseWriter, r *http.Request) { s.hang(w, r) }
		}, ReasonTimeout},
		{"500", func(*server) func(int, http.ResponseWriter, *http.Request) { return status(500) }, ReasonStatus5xx},
		{"429", func(*server) func(int, http.ResponseWriter, *http.Request) { return status(429) }, ReasonStatus429},
		{"401", func(*server) func(int, http.ResponseWriter, *http.Request) { return status(401) }, ReasonStatus4xx},
		{"wrong dimension", func(*server) func(int, http.ResponseWriter, *http.Request) { return wrongDim }, ReasonBadResponse},
		{"refused", nil, ReasonRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := refused
			if tc.h != nil {
				var s *server
				s = newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { tc.h(s)(n, w, r) })
				url = s.URL
			}
			e, err := NewOpenAIEmbedder(OpenAIConfig{BaseURL: url, Model: "m", Dimension: testDim, Timeout: 100 * time.Millisecond, MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Embed(context.Background(), []string{"a text"})
			if got := Reason(err); got != tc.want || !errors.Is(err, ErrUnavailable) {
				t.Errorf("Reason(%v) = %q (unavailable: %v), want %q", err, got, errors.Is(err, ErrUnavailable), tc.want)
			}
		})
	}
}

// TestDeadlineBoundsTheCall: Deadline cuts a call short even when the
// server asks for a long Retry-After or hangs through retries; the error is
// ErrUnavailable with Reason "deadline", and not context.DeadlineExceeded
// (kept for the caller's own deadline).
func TestDeadlineBoundsTheCall(t *testing.T) {
	var s *server
	s = newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(503)
			return
		}
		s.hang(w, r)
	})
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		want     string
	}{
		// Without a deadline the call waits the 2 s Retry-After, then the
		// second attempt's timeout: at least 2.5 s.
		{"no deadline", 0, ReasonTimeout},
		{"deadline", 300 * time.Millisecond, ReasonStatus5xx}, // the retry would come after the deadline: fail now
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.requests.Store(0)
			e, err := NewOpenAIEmbedder(OpenAIConfig{BaseURL: s.URL, Model: "m", Dimension: testDim, Timeout: 500 * time.Millisecond, MaxRetries: 1, Deadline: tc.deadline})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = e.Embed(context.Background(), []string{"a text"})
			took := time.Since(start)
			if got := Reason(err); got != tc.want || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Reason(%v) = %q, want %q (matches DeadlineExceeded: %v)", err, got, tc.want, errors.Is(err, context.DeadlineExceeded))
			}
			if tc.deadline > 0 && took > 2*time.Second {
				t.Errorf("took %s with a %s deadline", took, tc.deadline)
			}
		})
	}
	// A hang within the deadline: cut at the deadline, not at Timeout.
	s2 := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { s.hang(w, r) })
	e, err := NewOpenAIEmbedder(OpenAIConfig{BaseURL: s2.URL, Model: "m", Dimension: testDim, Timeout: 5 * time.Second, Deadline: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Embed(context.Background(), []string{"a text"})
	if Reason(err) != ReasonDeadline || errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) || time.Since(start) > 4*time.Second {
		t.Errorf("hang with a 200ms deadline: %v (%q) after %s", err, Reason(err), time.Since(start))
	}
	// The caller's own deadline stays the caller's.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e, _ = NewOpenAIEmbedder(OpenAIConfig{BaseURL: s2.URL, Model: "m", Dimension: testDim, Timeout: 5 * time.Second, Deadline: 3 * time.Second})
	if _, err := e.Embed(ctx, []string{"a text"}); Reason(err) != ReasonCanceled || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller's deadline: %v (%q)", err, Reason(err))
	}
}
