package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/bulkhead-dev/bulkhead"
	"github.com/golang-jwt/jwt/v5"
)

// TestJWKSFailuresKeepLastGoodSet: after a good first fetch, every kind of
// failed refetch leaves the key set as it was.
func TestJWKSFailuresKeepLastGoodSet(t *testing.T) {
	t.Parallel()
	timedOut := func(err error) bool {
		var te interface{ Timeout() bool }
		return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) && te.Timeout()
	}
	// Only the timeout case depends on the clock: the others get a budget
	// no loaded machine exhausts, so they fail for their own reason.
	tests := []struct {
		name  string
		mode  int32
		cause func(error) bool // what the logged fetch error must be
	}{
		{"server error", modeDown, func(err error) bool { return errors.Is(err, jwkset.ErrInvalidHTTPStatusCode) }},
		{"response over 1 MiB, streamed", modeHuge, func(err error) bool { return errors.Is(err, errJWKSTooLarge) }},
		{"response over 1 MiB, with Content-Length", modeHugeCL, func(err error) bool { return errors.Is(err, errJWKSTooLarge) }},
		{"timeout", modeSlow, timedOut},
		{"redirect", modeRedirect, func(err error) bool { return errors.Is(err, errNoRedirect) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logged := &errorLog{}
			timeout := 30 * time.Second
			if tt.mode == modeSlow {
				timeout = 300 * time.Millisecond
			}
			e := newEnv(t, func(o *Options) {
				o.JWKSTimeout = timeout
				o.Logger = slog.New(logged)
			})
			evil := newCounter(t)
			e.a.redirectTo = evil.URL
			// The failed response would publish a-2 (the huge one does, under
			// its padding): a success would make the a-2 token verify.
			e.a.setKeys(append(keysA(), jwk{kid: "a-2", alg: "RS256", key: &rsaA2().PublicKey})...)
			e.a.mode.Store(tt.mode)
			start := time.Now()
			wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims(issA)), ReasonUnknownKID)
			// The slow server answers only after 10 s or when the client
			// gives up: returning sooner shows the timeout bounded the wait.
			if d := time.Since(start); tt.mode == modeSlow && d > 9*time.Second {
				t.Fatalf("failed refetch took %v: the timeout did not bound it", d)
			}
			if n := e.a.requests(); n != 2 {
				t.Fatalf("JWKS requests %d, want 2", n)
			}
			mustVerify(t, e.v, signA(t, claims(issA)))
			mustVerify(t, e.v, sign(t, jwt.SigningMethodES256, ecA(), "a-ec", claims(issA)))
			if n := evil.n.Load(); n != 0 {
				t.Fatalf("redirect target got %d requests", n)
			}
			errs := logged.errors()
			if len(errs) != 1 || !tt.cause(errs[0]) {
				t.Fatalf("logged fetch errors %v, want one of the expected kind", errs)
			}
		})
	}
}

func TestJWKSServerGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.a.Close()
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims(issA)), ReasonUnknownKID)
	mustVerify(t, e.v, signA(t, claims(issA)))
}

// TestJWKSDownAtStart: an unreachable issuer does not stop NewVerifier; its
// tokens fail as unavailable (no key of it is known: 503, retry) until a
// fetch succeeds, and other issuers work meanwhile.
func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	a := newJWKSServer(t, keysA()...)
	b := newJWKSServer(t, keysB()...)
	a.mode.Store(modeDown)
	v := mustVerifier(t, issuerConfigs(a, b), testOptions(a))
	mustVerify(t, v, signC(t, claims(issC)))
	mustVerify(t, v, sign(t, jwt.SigningMethodRS256, rsaB(), "b-rsa", claims(issB)))
	wantReject(t, v, signA(t, claims(issA)), ReasonJWKSUnavailable) // refetch fails too
	a.mode.Store(modeOK)
	v2 := mustVerifier(t, issuerConfigs(a, b), testOptions(a))
	a.mode.Store(modeDown)
	mustVerify(t, v2, signA(t, claims(issA)))
}

func TestLimitedBody(t *testing.T) {
	t.Parallel()
	body := func(size int) *limitedBody {
		return &limitedBody{rc: io.NopCloser(bytes.NewReader(make([]byte, size))), left: MaxJWKSSize}
	}
	for _, size := range []int{0, 1, MaxJWKSSize - 1, MaxJWKSSize} {
		if b, err := io.ReadAll(body(size)); err != nil || len(b) != size {
			t.Fatalf("%d bytes: read %d, %v", size, len(b), err)
		}
	}
	if _, err := io.ReadAll(body(MaxJWKSSize + 1)); !errors.Is(err, errJWKSTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}

// errorLog is a slog.Handler keeping the "err" attribute of each record.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *errorLog) WithGroup(string) slog.Handler            { return l }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
			l.mu.Lock()
			l.errs = append(l.errs, err)
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *errorLog) errors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// fetchFailures records Options.FetchFailed calls.
type fetchFailures struct {
	mu   sync.Mutex
	what []string
	errs []error
}

func (f *fetchFailures) record(what string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.what = append(f.what, what)
	f.errs = append(f.errs, err)
}

func (f *fetchFailures) calls() ([]string, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.what), slices.Clone(f.errs)
}

// TestJWKSStoppedReportsFetchFailures (issue 17, scenario 6): the JWKS
// server is stopped after a good first fetch. Tokens with a known kid keep
// verifying from the cached set, with no network call; an unknown kid is
// rejected (401) after one bounded refetch, and that failed refetch is
// reported to Options.FetchFailed (the metric's hook) as "jwks". An issuer
// whose JWKS was never reached answers unavailable (503), reported too.
func TestJWKSStoppedReportsFetchFailures(t *testing.T) {
	t.Parallel()
	failed := &fetchFailures{}
	e := newEnv(t, func(o *Options) { o.FetchFailed = failed.record })
	if what, _ := failed.calls(); len(what) != 0 {
		t.Fatalf("fetch failures reported while the JWKS was up: %v", what)
	}
	e.a.Close() // stopped: connections refused from now on
	mustVerify(t, e.v, signA(t, claims(issA)))
	mustVerify(t, e.v, sign(t, jwt.SigningMethodES256, ecA(), "a-ec", claims(issA)))
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims(issA)), ReasonUnknownKID)
	what, errs := failed.calls()
	if len(what) != 1 || what[0] != "jwks" || errs[0] == nil {
		t.Fatalf("fetch failures reported %v %v, want one jwks failure", what, errs)
	}
	// Known kids still verify after the failed refetch.
	mustVerify(t, e.v, signA(t, claims(issA)))

	down := &fetchFailures{}
	a := newJWKSServer(t, keysA()...)
	b := newJWKSServer(t, keysB()...)
	a.Close()
	opts := testOptions(b)
	opts.FetchFailed = down.record
	v := mustVerifier(t, issuerConfigs(a, b), opts)
	err := wantReject(t, v, signA(t, claims(issA)), ReasonJWKSUnavailable)
	if !errors.Is(err, bulkhead.ErrUnavailable) {
		t.Errorf("an issuer never reached: %v, want bulkhead.ErrUnavailable (503)", err)
	}
	if what, _ := down.calls(); len(what) < 1 || slices.ContainsFunc(what, func(w string) bool { return w != "jwks" }) {
		t.Errorf("fetch failures reported %v, want the failed first fetch (and refetch) as jwks", what)
	}
}
