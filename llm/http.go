package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/bulkhead-dev/bulkhead"
)

// Limits of the HTTP client shared by OpenAIEmbedder and OpenAIChat.
const (
	// MaxResponseBytes bounds a successful response body; a longer one is
	// ErrUnavailable (at 1536 dimensions, 64 embeddings take about 2 MiB
	// of JSON).
	MaxResponseBytes = 32 << 20
	// maxErrorBody bounds how much of an error response is read for its
	// message.
	maxErrorBody = 64 << 10
	// maxMessage bounds, in characters, the server message kept in errors.
	maxMessage = 200
	// firstBackoff and maxBackoff shape the exponential backoff: the n-th
	// retry waits between half and all of min(firstBackoff·2ⁿ, maxBackoff).
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 8 * time.Second
	// MaxRetryAfter is the longest Retry-After the client waits for. A
	// server asking for longer gets no more retries: the call fails at once
	// instead of holding its caller for minutes.
	MaxRetryAfter = time.Minute
)

// StatusError is an HTTP error status from the model endpoint. It matches
// ErrUnavailable under errors.Is; callers that want to tell a rejected
// input (400) or a bad key (401) from an outage can use errors.As.
type StatusError struct {
	StatusCode int
	// Message is the server's error message, with control characters and
	// runs of white space collapsed, the API key redacted and at most 200
	// characters kept.
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("status %d", e.StatusCode)
	}
	return fmt.Sprintf("status %d: %s", e.StatusCode, e.Message)
}

// Is makes errors.Is(err, ErrUnavailable) true for a *StatusError.
func (e *StatusError) Is(target error) bool { return target == ErrUnavailable }

// client is the HTTP client OpenAIEmbedder and OpenAIChat share: JSON over
// POST, a timeout per attempt, retries with backoff, bounded reads.
type client struct {
	hc         *http.Client
	base       string // scheme://host[/path], no trailing slash, no userinfo/query
	key        bulkhead.Secret
	timeout    time.Duration
	maxRetries int
	deadline   time.Duration                                    // bounds a whole call; 0: none
	backoff    time.Duration                                    // firstBackoff; tests shorten it
	sleep      func(ctx context.Context, d time.Duration) error // sleepCtx; tests record
}

// newClient validates the settings common to both clients.
func newClient(cfg OpenAIConfig) (*client, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.Model == "" || strings.TrimSpace(cfg.Model) != cfg.Model || strings.ContainsFunc(cfg.Model, unicode.IsControl) {
		return nil, bulkhead.Invalid("model", "required, without surrounding white space or control characters")
	}
	for _, r := range cfg.APIKey.Reveal() {
		// net/http would refuse such a header anyway; saying so here gives a
		// clear error (a key read from a file often ends in a newline).
		if r <= ' ' || r == 0x7f {
			return nil, bulkhead.Invalid("api key", "contains white space or control characters (a trailing newline?)")
		}
	}
	c := &client{
		hc:         cfg.HTTPClient,
		base:       base,
		key:        cfg.APIKey,
		timeout:    cfg.Timeout,
		maxRetries: cfg.MaxRetries,
		backoff:    firstBackoff,
		sleep:      sleepCtx,
	}
	switch {
	case cfg.Timeout < 0:
		return nil, bulkhead.Invalid("timeout", "must not be negative")
	case cfg.Timeout == 0:
		c.timeout = DefaultTimeout
	}
	if cfg.Deadline < 0 {
		return nil, bulkhead.Invalid("deadline", "must not be negative")
	}
	c.deadline = cfg.Deadline
	switch {
	case cfg.MaxRetries > maxMaxRetries:
		return nil, bulkhead.Invalid("max retries", fmt.Sprintf("at most %d", maxMaxRetries))
	case cfg.MaxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		c.maxRetries = 0
	}
	if c.hc == nil {
		c.hc = &http.Client{
			// A redirected POST becomes a GET (301-303) or re-sends the
			// key to wherever it points (307, 308, same host): a base URL
			// that redirects is a configuration error, reported as such.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c, nil
}

// parseBaseURL checks BaseURL and returns it without a trailing slash. The
// URL appears in error messages, so credentials and query strings (where
// some proxies take keys) are refused: the key goes in APIKey. The detail
// never quotes the URL, which may hold such a credential.
func parseBaseURL(raw string) (string, error) {
	if raw == "" {
		return "", bulkhead.Invalid("base url", "required (e.g. https://api.openai.com/v1)")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", bulkhead.Invalid("base url", "not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", bulkhead.Invalid("base url", "scheme must be http or https")
	case u.Host == "" || u.Opaque != "":
		return "", bulkhead.Invalid("base url", "has no host")
	case u.User != nil:
		return "", bulkhead.Invalid("base url", "must not contain credentials: set the API key instead")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", bulkhead.Invalid("base url", "must not have a query or fragment")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// post sends in as JSON to base/path and decodes a 2xx answer into out.
// Every error it returns matches ErrUnavailable; if ctx ended, it matches
// ctx.Err() as well. Malformed JSON is not retried: a server that answers
// 200 with garbage will most likely do it again.
func (c *client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		// Only strings and numbers are sent, so this cannot happen; err
		// would describe a type, not the request's text.
		return fmt.Errorf("%w: encode request: %v", ErrUnavailable, err)
	}
	endpoint := c.url(path)
	attempts := c.maxRetries + 1
	var last error
	for n := 0; ; n++ {
		data, retryAfter, retry, err := c.attempt(ctx, endpoint, body)
		if err == nil {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("POST %s: %w: %w: %v", endpoint, ErrUnavailable, errBadResponse, err)
			}
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return ended(ctx, endpoint, n, last)
		}
		if !retry || n+1 >= attempts {
			return fmt.Errorf("POST %s: %s: %w", endpoint, plural(n+1, "attempt"), last)
		}
		if retryAfter > MaxRetryAfter {
			return fmt.Errorf("POST %s: %s: %w (the server asks to retry after %s, more than %s)",
				endpoint, plural(n+1, "attempt"), last, retryAfter.Round(time.Second), MaxRetryAfter)
		}
		wait := max(c.backoffDelay(n), retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("POST %s: %s: %w (the context's deadline comes before the next retry, due in %s)",
				endpoint, plural(n+1, "attempt"), last, wait.Round(time.Millisecond))
		}
		if err := c.sleep(ctx, wait); err != nil {
			return ended(ctx, endpoint, n, last)
		}
	}
}

// ended describes a call whose context ended after attempt n+1 failed
// with last. The call's own deadline (Deadline) is ErrUnavailable and
// errDeadline, not context.DeadlineExceeded, which is kept for the
// caller's own deadline or cancellation. A transport error now is the
// cancellation itself; a status the server sent before it is worth keeping.
func ended(ctx context.Context, endpoint string, n int, last error) error {
	var se *StatusError
	if cause := context.Cause(ctx); errors.Is(cause, errDeadline) {
		if errors.As(last, &se) {
			return fmt.Errorf("POST %s: %w (after %s, the last: %v)", endpoint, cause, plural(n+1, "attempt"), se)
		}
		return fmt.Errorf("POST %s: %w (during attempt %d)", endpoint, cause, n+1)
	}
	if errors.As(last, &se) {
		return fmt.Errorf("POST %s: %w: %w (after attempt %d: %v)", endpoint, ErrUnavailable, ctx.Err(), n+1, se)
	}
	return fmt.Errorf("POST %s: %w: %w (during attempt %d)", endpoint, ErrUnavailable, ctx.Err(), n+1)
}

// bound returns ctx limited by the call's Deadline, whose expiry is the
// cause errDeadline.
func (c *client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.deadline <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, c.deadline,
		fmt.Errorf("%w: %w %s", ErrUnavailable, errDeadline, c.deadline))
}

// url is the endpoint for path ("embeddings", "chat/completions").
func (c *client) url(path string) string { return c.base + "/" + path }

// attempt makes one request. On a 2xx answer it returns the body; otherwise
// an error matching ErrUnavailable, whether retrying may help and how long
// the server asked to wait (0 if it did not say).
func (c *client) attempt(ctx context.Context, endpoint string, body []byte) (data []byte, retryAfter time.Duration, retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w: build request: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "bulkhead-llm")
	if k := c.key.Reveal(); k != "" {
		req.Header.Set("Authorization", "Bearer "+k)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, true, c.transportError(ctx, actx, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		se := &StatusError{StatusCode: resp.StatusCode, Message: c.serverMessage(msg)}
		if resp.StatusCode >= 300 && resp.StatusCode <= 399 && se.Message == "" {
			se.Message = "redirects are not followed: check the base URL"
		}
		retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if retry {
			retryAfter = parseRetryAfter(resp.Header, time.Now())
		}
		return nil, retryAfter, retry, se
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, 0, true, c.transportError(ctx, actx, err)
	}
	if len(data) > MaxResponseBytes {
		return nil, 0, false, fmt.Errorf("%w: %w: response larger than %d MiB", ErrUnavailable, errBadResponse, MaxResponseBytes>>20)
	}
	return data, 0, false, nil
}

// transportError describes a failed round trip or body read. A timeout of
// the attempt itself is reported as such, without matching
// context.DeadlineExceeded: that is kept for the caller's own deadline,
// which post checks separately.
func (c *client) transportError(ctx, actx context.Context, err error) error {
	if ctx.Err() == nil && actx.Err() != nil {
		return fmt.Errorf("%w: %w %s", ErrUnavailable, errAttemptTimeout, c.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its URL is already in post's message
	}
	// Wrapped, so that Reason can tell a refused connection from others.
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// serverMessage extracts a readable message from an error body: OpenAI's
// {"error":{"message":...}}, TEI's and Ollama's {"error":"..."}, vLLM's
// {"message":...}, or the text itself. It is trimmed, bounded and the API
// key is redacted from it.
func (c *client) serverMessage(body []byte) string {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	msg := string(body)
	if json.Unmarshal(body, &e) == nil {
		var nested struct {
			Message string `json:"message"`
		}
		var s string
		switch {
		case json.Unmarshal(e.Error, &nested) == nil && nested.Message != "":
			msg = nested.Message
		case json.Unmarshal(e.Error, &s) == nil && s != "":
			msg = s
		case e.Message != "":
			msg = e.Message
		}
	}
	if k := c.key.Reveal(); k != "" {
		msg = strings.ReplaceAll(msg, k, "[redacted]")
	}
	return trimMessage(msg, maxMessage)
}

// trimMessage collapses runs of white space and control characters in s
// into single spaces and keeps at most n characters of it.
func trimMessage(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// backoffDelay is the wait before retry n+1: "equal jitter", between half
// and all of min(backoff·2ⁿ, maxBackoff), so that clients that failed
// together do not retry together.
func (c *client) backoffDelay(n int) time.Duration {
	d := maxBackoff
	if n < 20 && c.backoff<<n < maxBackoff {
		d = c.backoff << n
	}
	return d/2 + rand.N(d/2+1)
}

// parseRetryAfter reads OpenAI's retry-after-ms, or Retry-After in seconds
// or as an HTTP date. It returns 0 if neither is present or valid, and at
// most MaxRetryAfter+1s (enough for post to see that it is too long).
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	const tooLong = MaxRetryAfter + time.Second
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			if ms > float64(tooLong/time.Millisecond) {
				return tooLong
			}
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case s < 0:
			return 0
		case s > int64(tooLong/time.Second):
			return tooLong
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), tooLong)
	}
	return 0
}

// sleepCtx waits for d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
