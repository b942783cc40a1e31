package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/golang-jwt/jwt/v5"
)

// discoveryServer is a real HTTPS OpenID Provider configuration endpoint.
// It serves {"issuer": issuer, "jwks_uri": jwksURI} at DiscoveryPath,
// 404 elsewhere, or 500 while down.
type discoveryServer struct {
	*httptest.Server
	mu      sync.Mutex
	issuer  string // "" means the server's own URL
	jwksURI string
	down    atomic.Bool
	hits    atomic.Int64
}

func newDiscoveryServer(t testing.TB, jwksURI string) *discoveryServer {
	t.Helper()
	d := &discoveryServer{jwksURI: jwksURI}
	d.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		if r.URL.Path != DiscoveryPath {
			http.NotFound(w, r)
			return
		}
		if d.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		d.mu.Lock()
		doc := map[string]any{"issuer": d.issuer, "jwks_uri": d.jwksURI, "id_token_signing_alg_values_supported": []string{"RS256", "ES256"}}
		if d.issuer == "" {
			doc["issuer"] = d.URL
		}
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *discoveryServer) set(issuer, jwksURI string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.issuer, d.jwksURI = issuer, jwksURI
}

// discoveryVerifier trusts one issuer configured by its URL alone.
func discoveryVerifier(t *testing.T, d *discoveryServer, tweak func(*Options)) *Verifier {
	t.Helper()
	opts := Options{Now: func() time.Time { return testNow }, HTTPClient: d.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	opts.JWKSRefetchInterval = 20 * time.Millisecond
	opts.JWKSTimeout = 300 * time.Millisecond
	if tweak != nil {
		tweak(&opts)
	}
	return mustVerifier(t, []IssuerConfig{{Issuer: d.URL, Audience: testAudience}}, opts)
}

// TestDiscovery: an issuer URL alone finds the JWKS; RS256 and ES256 tokens
// verify; a rotated key is picked up without a restart.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	keys := newJWKSServer(t, keysA()...)
	d := newDiscoveryServer(t, keys.URL+"/jwks.json")
	v := discoveryVerifier(t, d, nil)
	for _, tok := range []string{
		sign(t, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(d.URL)),
		sign(t, jwt.SigningMethodES256, ecA(), "a-ec", claims(d.URL)),
	} {
		if p := mustVerify(t, v, tok); p.Issuer != d.URL || p.Entity != EntityID(d.URL, "user-42") || p.Name != "user-42" {
			t.Fatalf("principal %+v", p)
		}
	}
	// Rotation: the provider publishes a new key and drops the old one.
	keys.setKeys(jwk{kid: "a-2", alg: "RS256", key: &rsaA2().PublicKey})
	time.Sleep(30 * time.Millisecond) // past the refetch interval
	mustVerify(t, v, sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims(d.URL)))
	// The rightful refusal next to it: a key nobody published.
	wantReject(t, v, sign(t, jwt.SigningMethodRS256, attacker(), "a-3", claims(d.URL)), ReasonUnknownKID)
	// Another issuer's token is not this issuer's, discovery or not.
	wantReject(t, v, sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims("https://other.test")), ReasonUnknownIssuer)
}

// TestDiscoveryRefusesADocument: a document naming another issuer, or an
// http jwks_uri to a remote host, is never used: no key is fetched from it,
// tokens are unavailable (503), not accepted, not "bad token".
func TestDiscoveryRefusesADocument(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name             string
		issuer, jwksPath string
		plainRemote      bool
	}{
		{name: "another issuer", issuer: "https://evil.test"},
		{name: "issuer with a trailing slash added", issuer: "/"},
		{name: "http jwks_uri to a remote host", plainRemote: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			keys := newJWKSServer(t, keysA()...)
			d := newDiscoveryServer(t, keys.URL+"/jwks.json")
			switch {
			case c.issuer == "/":
				d.set(d.URL+"/", keys.URL+"/jwks.json")
			case c.issuer != "":
				d.set(c.issuer, keys.URL+"/jwks.json")
			case c.plainRemote:
				d.set("", "http://idp.example.com/jwks.json")
			}
			v := discoveryVerifier(t, d, nil)
			err := wantReject(t, v, signA(t, claims(d.URL)), ReasonJWKSUnavailable)
			if !errors.Is(err, bulkhead.ErrUnavailable) {
				t.Fatalf("%v does not wrap ErrUnavailable", err)
			}
			if n := keys.requests(); n != 0 {
				t.Fatalf("the refused document's jwks_uri got %d requests", n)
			}
			// The same provider, fixed: accepted (on the next allowed attempt).
			d.set("", keys.URL+"/jwks.json")
			time.Sleep(30 * time.Millisecond)
			mustVerify(t, v, signA(t, claims(d.URL)))
		})
	}
}

// TestDiscoveryDownOrSlow: with the provider down at start, tokens are
// unavailable (503), each attempt bounded by the timeout; once keys are
// known, a JWKS that hangs or fails costs known keys nothing, and an
// unknown kid waits at most the timeout.
func TestDiscoveryDownOrSlow(t *testing.T) {
	t.Parallel()
	keys := newJWKSServer(t, keysA()...)
	d := newDiscoveryServer(t, keys.URL+"/jwks.json")
	d.down.Store(true)
	const timeout = 300 * time.Millisecond
	v := discoveryVerifier(t, d, func(o *Options) { o.JWKSTimeout = timeout })
	wantReject(t, v, signA(t, claims(d.URL)), ReasonJWKSUnavailable)

	// Discovery up, JWKS hanging: still no key; the wait is bounded.
	d.down.Store(false)
	keys.mode.Store(modeSlow)
	time.Sleep(30 * time.Millisecond)
	start := time.Now()
	wantReject(t, v, signA(t, claims(d.URL)), ReasonJWKSUnavailable)
	if el := time.Since(start); el > 3*timeout+time.Second {
		t.Fatalf("a hanging JWKS held a request for %s (timeout %s)", el, timeout)
	}

	// JWKS back: keys known.
	keys.mode.Store(modeOK)
	time.Sleep(30 * time.Millisecond)
	mustVerify(t, v, signA(t, claims(d.URL)))

	// JWKS hanging again, discovery down: cached keys keep working at once.
	keys.mode.Store(modeSlow)
	d.down.Store(true)
	start = time.Now()
	mustVerify(t, v, sign(t, jwt.SigningMethodES256, ecA(), "a-ec", claims(d.URL)))
	if el := time.Since(start); el > timeout {
		t.Fatalf("a cached key waited %s for a hanging JWKS", el)
	}
	// An unknown kid: keys are known, so it is a bad token (401), after at
	// most the bounded wait.
	time.Sleep(30 * time.Millisecond)
	start = time.Now()
	wantReject(t, v, sign(t, jwt.SigningMethodRS256, rsaA2(), "a-new", claims(d.URL)), ReasonUnknownKID)
	if el := time.Since(start); el > 3*timeout+time.Second {
		t.Fatalf("an unknown kid waited %s (timeout %s)", el, timeout)
	}
}

// TestDiscoveryMovesJWKS: a rediscovery that names a new jwks_uri switches
// key sets; one naming the same keeps the running set.
func TestDiscoveryMovesJWKS(t *testing.T) {
	t.Parallel()
	oldKeys := newJWKSServer(t, keysA()...)
	newKeys := newJWKSServer(t, jwk{kid: "a-2", alg: "RS256", key: &rsaA2().PublicKey})
	d := newDiscoveryServer(t, oldKeys.URL+"/jwks.json")
	v := discoveryVerifier(t, d, func(o *Options) { o.JWKSRefreshInterval = 50 * time.Millisecond })
	mustVerify(t, v, signA(t, claims(d.URL)))
	d.set("", newKeys.URL+"/jwks.json")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims(d.URL)))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the moved jwks_uri was never used: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if newKeys.requests() == 0 {
		t.Fatal("no request reached the new JWKS")
	}
}

// TestMapClaims: the name and email an external entity gets, and which
// claims make no usable name.
func TestMapClaims(t *testing.T) {
	is := &issuer{nameClaim: "name", emailClaim: "email"}
	long := make([]byte, 10<<10)
	for i := range long {
		long[i] = 'n'
	}
	for _, c := range []struct {
		claims      map[string]any
		name, email string
	}{
		{map[string]any{"name": "Ada Lovelace", "email": "ada@example.com"}, "Ada Lovelace", "ada@example.com"},
		{map[string]any{}, "sub-1", ""}, // no name claim: the subject
		{map[string]any{"name": ""}, "", ""},
		{map[string]any{"name": "   "}, "", ""},
		{map[string]any{"name": string(long)}, "", ""},
		{map[string]any{"name": "a\nb"}, "", ""},
		{map[string]any{"name": 42}, "", ""},
		{map[string]any{"name": "Ok", "email": "not-an-email"}, "Ok", ""},
		{map[string]any{"name": string(long[:200])}, string(long[:200]), ""},
	} {
		if n, e := is.mapClaims(c.claims, "sub-1"); n != c.name || e != c.email {
			t.Errorf("%.60v: got %.60q, %q; want %.60q, %q", c.claims, n, e, c.name, c.email)
		}
	}
}
