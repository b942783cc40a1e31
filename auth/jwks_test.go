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
