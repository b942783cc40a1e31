package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulkhead-dev/bulkhead"
)

// testNow is the fixed clock of every verifier in these tests (2027-01-15).
var testNow = time.Unix(1_800_000_000, 0)

const (
	testAudience = "bulkhead"
	issA         = "https://idp-a.test"               // JWKS, RS256+ES256, trusted for tenancy ("tid")
	issB         = "https://idp-b.test"               // JWKS, RS256 only, not trusted for tenancy
	issC         = "https://idp-c.test"               // HS256 secret, trusted for tenancy ("org")
	secretC      = "0123456789abcdef0123456789abcdef" // 32 bytes: the minimum
)

// Keys are generated once per test binary: RSA generation is the slow part.
var (
	rsaA     = sync.OnceValue(loadRSAA) // fixed, so fuzz seeds stay valid in every fuzz worker
	rsaB     = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaA2    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaWeak  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
	ecA      = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	ecA384   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	attacker = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
)

// loadRSAA reads issuer A's key: a throwaway 2048-bit key made for these
// tests with openssl genpkey, trusted by nothing.
func loadRSAA() *rsa.PrivateKey {
	b, err := os.ReadFile("testdata/issuer_a_test_only_key.pem")
	if err != nil {
		panic(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		panic("testdata/issuer_a_test_only_key.pem: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	return k.(*rsa.PrivateKey)
}

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

var b64 = base64.RawURLEncoding

// jwk is one public key as an issuer publishes it.
type jwk struct {
	kid string
	alg string // "" to omit
	key crypto.PublicKey
}

func (k jwk) MarshalJSON() ([]byte, error) {
	m := map[string]string{"kid": k.kid, "use": "sig"}
	if k.alg != "" {
		m["alg"] = k.alg
	}
	switch pub := k.key.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64.EncodeToString(pub.N.Bytes())
		m["e"] = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		ecdh, err := pub.ECDH()
		if err != nil {
			return nil, err
		}
		raw := ecdh.Bytes() // 0x04 || X || Y
		size := (len(raw) - 1) / 2
		m["kty"] = "EC"
		m["crv"] = pub.Curve.Params().Name
		m["x"] = b64.EncodeToString(raw[1 : 1+size])
		m["y"] = b64.EncodeToString(raw[1+size:])
	default:
		return nil, fmt.Errorf("jwk: unsupported key %T", pub)
	}
	return json.Marshal(m)
}

func jwksJSON(keys ...jwk) []byte {
	b, err := json.Marshal(map[string][]jwk{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// Modes of a jwksServer.
const (
	modeOK       = iota
	modeDown     // 500
	modeHuge     // a valid JWKS padded past MaxJWKSSize, streamed (chunked)
	modeHugeCL   // the same with Content-Length
	modeSlow     // answers only when the client gives up
	modeRedirect // 302 to redirectTo
)

// jwksServer is a real HTTPS server publishing a JWKS. It counts requests
// and records when they arrived.
type jwksServer struct {
	*httptest.Server
	mu         sync.Mutex
	body       []byte
	times      []time.Time
	mode       atomic.Int32
	redirectTo string
}

func newJWKSServer(t testing.TB, keys ...jwk) *jwksServer {
	t.Helper()
	s := &jwksServer{body: jwksJSON(keys...)}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	body := s.body
	s.mu.Unlock()
	switch s.mode.Load() {
	case modeDown:
		http.Error(w, "down", http.StatusInternalServerError)
	case modeHuge, modeHugeCL:
		// {"keys":[...],"padding":"xxxx..."}: valid JSON a decoder would accept.
		pad := strings.Repeat("x", MaxJWKSSize+1)
		full := append(slices.Clone(body[:len(body)-1]), `,"padding":"`+pad+`"}`...)
		w.Header().Set("Content-Type", "application/json")
		if s.mode.Load() == modeHugeCL {
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			w.Write(full)
			return
		}
		for len(full) > 0 { // flushing forces chunked encoding: no Content-Length
			n := min(len(full), 64<<10)
			w.Write(full[:n])
			w.(http.Flusher).Flush()
			full = full[n:]
		}
	case modeSlow:
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	case modeRedirect:
		http.Redirect(w, r, s.redirectTo, http.StatusFound)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}
}

func (s *jwksServer) setKeys(keys ...jwk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = jwksJSON(keys...)
}

func (s *jwksServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.times)
}

func (s *jwksServer) requestTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.times)
}

// counter is a plain HTTPS server that must never be contacted.
type counter struct {
	*httptest.Server
	n atomic.Int64
}

func newCounter(t testing.TB) *counter {
	t.Helper()
	c := &counter{}
	c.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		w.Write(jwksJSON(jwk{kid: "evil", alg: "RS256", key: &attacker().PublicKey}))
	}))
	t.Cleanup(c.Close)
	return c
}

// env is three issuers, two JWKS servers and a verifier over them.
type env struct {
	a, b *jwksServer
	v    *Verifier
}

func keysA() []jwk {
	return []jwk{
		{kid: "a-rsa", alg: "RS256", key: &rsaA().PublicKey},
		{kid: "a-ec", alg: "ES256", key: &ecA().PublicKey},
		{kid: "shared", alg: "RS256", key: &rsaA().PublicKey},
		{kid: "a-noalg", key: &rsaA().PublicKey},   // no "alg": usable with any RS*/PS* the issuer allows
		{kid: "a-weak", key: &rsaWeak().PublicKey}, // 1024-bit: never good enough
		{kid: "a-ec384", key: &ecA384().PublicKey}, // P-384 key, no "alg"
	}
}

func keysB() []jwk {
	return []jwk{
		{kid: "b-rsa", alg: "RS256", key: &rsaB().PublicKey},
		{kid: "shared", alg: "RS256", key: &rsaB().PublicKey},
	}
}

func issuerConfigs(a, b *jwksServer) []IssuerConfig {
	return []IssuerConfig{
		{Issuer: issA, JWKSURL: a.URL + "/jwks.json", Algorithms: []string{"RS256", "ES256"}, Audience: testAudience, TenantClaim: "tid"},
		{Issuer: issB, JWKSURL: b.URL + "/jwks.json", Algorithms: []string{"RS256"}, Audience: testAudience},
		{Issuer: issC, Secret: secretC, Audience: testAudience, TenantClaim: "org"},
	}
}

func testOptions(a *jwksServer) Options {
	return Options{
		Now:        func() time.Time { return testNow },
		HTTPClient: a.Client(), // trusts the httptest certificate (shared by all test servers)
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func newEnv(t testing.TB, tweak ...func(*Options)) *env {
	t.Helper()
	e := &env{a: newJWKSServer(t, keysA()...), b: newJWKSServer(t, keysB()...)}
	opts := testOptions(e.a)
	for _, f := range tweak {
		f(&opts)
	}
	e.v = mustVerifier(t, issuerConfigs(e.a, e.b), opts)
	return e
}

func mustVerifier(t testing.TB, cfgs []IssuerConfig, opts Options) *Verifier {
	t.Helper()
	v, err := NewVerifier(context.Background(), cfgs, opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// claims are valid claims for iss at testNow.
func claims(iss string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   iss,
		"sub":   "user-42",
		"aud":   testAudience,
		"exp":   testNow.Add(time.Hour).Unix(),
		"iat":   testNow.Add(-time.Minute).Unix(),
		"nbf":   testNow.Add(-time.Minute).Unix(),
		"scope": "memories:read",
	}
}

// sign makes a real token. kid "" omits the header.
func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims, extraHeader ...map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for _, h := range extraHeader {
		for k, v := range h {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func signA(t testing.TB, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodRS256, rsaA(), "a-rsa", c)
}

func signC(t testing.TB, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(secretC), "", c)
}

// rawToken assembles a token from a header, claims and a signature as given.
func rawToken(t testing.TB, header map[string]any, c jwt.MapClaims, sig []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(h) + "." + b64.EncodeToString(p) + "." + b64.EncodeToString(sig)
}

// mustVerify fails the test unless token verifies.
func mustVerify(t *testing.T, v *Verifier, token string) Principal {
	t.Helper()
	p, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return p
}

// wantReject fails the test unless token is refused with reason, as an
// ErrUnauthenticated whose text leaks neither the token nor the secret.
func wantReject(t *testing.T, v *Verifier, token, reason string) error {
	t.Helper()
	p, err := v.Verify(context.Background(), token)
	if err == nil {
		t.Fatalf("Verify accepted the token (principal %+v); want %s", p, reason)
	}
	checkRejection(t, err)
	if got := Reason(err); got != reason {
		t.Fatalf("Reason = %q, want %q (err: %v)", got, reason, err)
	}
	if len(token) > 64 && strings.Contains(err.Error(), token) {
		t.Fatalf("error text holds the token: %v", err)
	}
	if p.Subject != "" || p.Entity != [16]byte{} {
		t.Fatalf("a rejection returned a non-zero principal: %+v", p)
	}
	return err
}

func checkRejection(t testing.TB, err error) {
	t.Helper()
	want := bulkhead.ErrUnauthenticated
	if Reason(err) == ReasonJWKSUnavailable { // "retry later", not "bad token"
		want = bulkhead.ErrUnavailable
	}
	if !errors.Is(err, want) || (want == bulkhead.ErrUnavailable && errors.Is(err, bulkhead.ErrUnauthenticated)) {
		t.Fatalf("error does not wrap %v (alone): %v", want, err)
	}
	if r := Reason(err); r == ReasonOther || !slices.Contains(Reasons(), r) {
		t.Fatalf("Reason = %q, not one of Reasons()", r)
	}
	if strings.Contains(err.Error(), secretC) {
		t.Fatalf("error text holds the secret: %v", err)
	}
}
