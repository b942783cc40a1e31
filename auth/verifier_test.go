package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/bulkhead-dev/bulkhead"
)

func TestVerifyHappyPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, iss, token string
	}{
		{"RS256 via JWKS", issA, signA(t, claims(issA))},
		{"ES256 via JWKS", issA, sign(t, jwt.SigningMethodES256, ecA(), "a-ec", claims(issA))},
		{"RS256 with a JWK without alg", issA, sign(t, jwt.SigningMethodRS256, rsaA(), "a-noalg", claims(issA))},
		{"second JWKS issuer", issB, sign(t, jwt.SigningMethodRS256, rsaB(), "b-rsa", claims(issB))},
		{"HS256 shared secret", issC, signC(t, claims(issC))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustVerify(t, e.v, tt.token)
			if p.Issuer != tt.iss || p.Subject != "user-42" {
				t.Fatalf("principal %q/%q, want %q/user-42", p.Issuer, p.Subject, tt.iss)
			}
			if p.Entity != EntityID(tt.iss, "user-42") {
				t.Fatalf("entity %s, want EntityID(iss, sub)", p.Entity)
			}
			if p.Tenant != uuid.Nil {
				t.Fatalf("tenant %s from a token without a tenant claim", p.Tenant)
			}
			if !p.ExpiresAt.Equal(testNow.Add(time.Hour)) {
				t.Fatalf("ExpiresAt %v, want %v", p.ExpiresAt, testNow.Add(time.Hour))
			}
			if p.Claims["scope"] != "memories:read" {
				t.Fatalf("claims %v lack scope", p.Claims)
			}
		})
	}
	// Entities are per issuer: the same sub at A and C are two principals.
	pa := mustVerify(t, e.v, tests[0].token)
	pc := mustVerify(t, e.v, tests[4].token)
	if pa.Entity == pc.Entity {
		t.Fatal("same sub at two issuers gave the same entity")
	}
	if n := e.a.requests(); n != 1 {
		t.Fatalf("JWKS A served %d requests, want only the initial fetch", n)
	}
}

func TestTenantClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tenant := uuid.MustParse("6f1c2b8e-7f7e-4d6b-9a57-0d2f3c4b5a69")
	with := func(iss, name string, v any) jwt.MapClaims {
		c := claims(iss)
		c[name] = v
		return c
	}
	signB := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, rsaB(), "b-rsa", c) }

	t.Run("honoured for issuers trusted for tenancy", func(t *testing.T) {
		if p := mustVerify(t, e.v, signA(t, with(issA, "tid", tenant.String()))); p.Tenant != tenant {
			t.Fatalf("JWKS issuer: tenant %s, want %s", p.Tenant, tenant)
		}
		if p := mustVerify(t, e.v, signC(t, with(issC, "org", strings.ToUpper(tenant.String())))); p.Tenant != tenant {
			t.Fatalf("secret issuer: tenant %s, want %s", p.Tenant, tenant)
		}
	})
	t.Run("only from the configured claim", func(t *testing.T) {
		// C's tenant claim is "org": a "tid" claim means nothing there.
		if p := mustVerify(t, e.v, signC(t, with(issC, "tid", tenant.String()))); p.Tenant != uuid.Nil {
			t.Fatalf("tenant %s from a claim the issuer does not use", p.Tenant)
		}
	})
	t.Run("ignored for an issuer not trusted for tenancy", func(t *testing.T) {
		for _, v := range []any{tenant.String(), "not-a-uuid", 42} {
			p := mustVerify(t, e.v, signB(with(issB, "tid", v)))
			if p.Tenant != uuid.Nil {
				t.Fatalf("issuer without TenantClaim yielded tenant %s", p.Tenant)
			}
		}
	})
	t.Run("absent claim: no tenant", func(t *testing.T) {
		if p := mustVerify(t, e.v, signA(t, claims(issA))); p.Tenant != uuid.Nil {
			t.Fatalf("tenant %s without a claim", p.Tenant)
		}
	})
	t.Run("malformed values refuse the token", func(t *testing.T) {
		for _, v := range []any{
			"not-a-uuid", "", uuid.Nil.String(), 42, true, nil, []any{tenant.String()},
			"{" + tenant.String() + "}", "urn:uuid:" + tenant.String(), strings.ReplaceAll(tenant.String(), "-", ""),
		} {
			wantReject(t, e.v, signA(t, with(issA, "tid", v)), ReasonBadTenant)
		}
	})
}

func TestClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	tests := []struct {
		name   string
		edit   func(jwt.MapClaims)
		reason string // "" = verifies
	}{
		{"expired", func(c jwt.MapClaims) { c["exp"] = at(-time.Minute) }, ReasonExpired},
		{"expired within leeway", func(c jwt.MapClaims) { c["exp"] = at(-20 * time.Second) }, ""},
		{"missing exp", func(c jwt.MapClaims) { delete(c, "exp") }, ReasonMissingExp},
		{"exp not a number", func(c jwt.MapClaims) { c["exp"] = "tomorrow" }, ReasonBadClaims},
		{"nbf in the future", func(c jwt.MapClaims) { c["nbf"] = at(time.Minute) }, ReasonNotYetValid},
		{"nbf within leeway", func(c jwt.MapClaims) { c["nbf"] = at(20 * time.Second) }, ""},
		{"no nbf", func(c jwt.MapClaims) { delete(c, "nbf") }, ""},
		{"iat in the future", func(c jwt.MapClaims) { c["iat"] = at(time.Minute) }, ReasonIssuedInFuture},
		{"iat within leeway", func(c jwt.MapClaims) { c["iat"] = at(20 * time.Second) }, ""},
		{"wrong aud", func(c jwt.MapClaims) { c["aud"] = "someone-else" }, ReasonWrongAudience},
		{"missing aud", func(c jwt.MapClaims) { delete(c, "aud") }, ReasonWrongAudience},
		{"aud list with ours", func(c jwt.MapClaims) { c["aud"] = []string{"x", testAudience} }, ""},
		{"aud list without ours", func(c jwt.MapClaims) { c["aud"] = []string{"x", "y"} }, ReasonWrongAudience},
		{"missing sub", func(c jwt.MapClaims) { delete(c, "sub") }, ReasonMissingSub},
		{"empty sub", func(c jwt.MapClaims) { c["sub"] = "" }, ReasonMissingSub},
		{"sub not a string", func(c jwt.MapClaims) { c["sub"] = 42 }, ReasonBadClaims},
		{"unknown iss", func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }, ReasonUnknownIssuer},
		{"iss differing in case", func(c jwt.MapClaims) { c["iss"] = strings.ToUpper(issC) }, ReasonUnknownIssuer},
		{"missing iss", func(c jwt.MapClaims) { delete(c, "iss") }, ReasonUnknownIssuer},
		{"iss not a string", func(c jwt.MapClaims) { c["iss"] = []string{issC} }, ReasonUnknownIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, iss := range []string{issA, issC} {
				c := claims(iss)
				tt.edit(c)
				tok := signC(t, c)
				if iss == issA {
					tok = signA(t, c)
				}
				if tt.reason == "" {
					mustVerify(t, e.v, tok)
				} else {
					wantReject(t, e.v, tok, tt.reason)
				}
			}
		})
	}
}

func TestUnknownIssuerCostsNoNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evil := newCounter(t)
	// The token names an issuer at the evil server, with a kid, a jku-free
	// header and a real signature by the attacker's key.
	c := claims(evil.URL)
	tok := sign(t, jwt.SigningMethodRS256, attacker(), "evil", c)
	wantReject(t, e.v, tok, ReasonUnknownIssuer)
	if n := evil.n.Load(); n != 0 {
		t.Fatalf("the unknown issuer's server got %d requests", n)
	}
	if a, b := e.a.requests(), e.b.requests(); a != 1 || b != 1 {
		t.Fatalf("configured JWKS servers got %d and %d requests, want only their initial fetch", a, b)
	}
}

func TestCrossIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Issuer B's claims signed with issuer A's key, under every kid choice.
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(issB)), ReasonUnknownKID)
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "shared", claims(issB)), ReasonBadSignature)
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "b-rsa", claims(issB)), ReasonBadSignature)
	// And the other way round.
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaB(), "shared", claims(issA)), ReasonBadSignature)
	// The secret issuer's claims signed with a JWKS issuer's key, and a JWKS
	// issuer's claims MACed with the secret.
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(issC)), ReasonAlgNotAllowed)
	wantReject(t, e.v, sign(t, jwt.SigningMethodHS256, []byte(secretC), "a-rsa", claims(issA)), ReasonAlgNotAllowed)
	// The unknown kid "a-rsa" at B was allowed one refetch of B's JWKS, A's
	// server saw nothing beyond its initial fetch.
	if a, b := e.a.requests(), e.b.requests(); a != 1 || b > 2 {
		t.Fatalf("JWKS requests A=%d B=%d, want A=1 B<=2", a, b)
	}
}

func TestNewVerifierValidation(t *testing.T) {
	t.Parallel()
	a := newJWKSServer(t, keysA()...)
	good := func() IssuerConfig {
		return IssuerConfig{Issuer: issA, JWKSURL: a.URL, Algorithms: []string{"RS256"}, Audience: testAudience}
	}
	goodSecret := func() IssuerConfig {
		return IssuerConfig{Issuer: issC, Secret: secretC, Audience: testAudience}
	}
	tests := []struct {
		name  string
		cfgs  []IssuerConfig
		opts  Options
		field string
	}{
		{"no issuers", nil, Options{}, "issuers"},
		{"no issuer name", []IssuerConfig{func() IssuerConfig { c := good(); c.Issuer = ""; return c }()}, Options{}, "issuers[0].issuer"},
		{"NUL in issuer", []IssuerConfig{func() IssuerConfig { c := good(); c.Issuer = "a\x00b"; return c }()}, Options{}, "issuers[0].issuer"},
		{"duplicate issuer", []IssuerConfig{good(), good()}, Options{}, "issuers[1].issuer"},
		{"no audience", []IssuerConfig{func() IssuerConfig { c := good(); c.Audience = ""; return c }()}, Options{}, "issuers[0].audience"},
		{"both JWKS and secret", []IssuerConfig{func() IssuerConfig { c := good(); c.Secret = secretC; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"discovery from an issuer that is no URL", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = ""; c.Issuer = "idp-a"; return c }()}, Options{}, "issuers[0].issuer"},
		{"discovery over plain http to a remote host", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = ""; c.Issuer = "http://idp.example.com"; return c }()}, Options{}, "issuers[0].issuer"},
		{"discovery from an issuer URL with a query", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = ""; c.Issuer = "https://idp.example.com/?x=1"; return c }()}, Options{}, "issuers[0].issuer"},
		{"both a fixed tenant and a tenant claim", []IssuerConfig{func() IssuerConfig { c := good(); c.TenantClaim = "tid"; c.Tenant = uuid.New(); return c }()}, Options{}, "issuers[0].tenant"},
		{"secret of 31 bytes", []IssuerConfig{func() IssuerConfig { c := goodSecret(); c.Secret = bulkhead.Secret(secretC[:31]); return c }()}, Options{}, "issuers[0].secret"},
		{"secret issuer with RS256", []IssuerConfig{func() IssuerConfig { c := goodSecret(); c.Algorithms = []string{"RS256"}; return c }()}, Options{}, "issuers[0].algorithms"},
		{"secret issuer with HS512", []IssuerConfig{func() IssuerConfig { c := goodSecret(); c.Algorithms = []string{"HS512"}; return c }()}, Options{}, "issuers[0].algorithms"},
		{"JWKS issuer without algorithms", []IssuerConfig{func() IssuerConfig { c := good(); c.Algorithms = nil; return c }()}, Options{}, "issuers[0].algorithms"},
		{"JWKS issuer allowing HS256", []IssuerConfig{func() IssuerConfig { c := good(); c.Algorithms = []string{"RS256", "HS256"}; return c }()}, Options{}, "issuers[0].algorithms"},
		{"JWKS issuer allowing none", []IssuerConfig{func() IssuerConfig { c := good(); c.Algorithms = []string{"none"}; return c }()}, Options{}, "issuers[0].algorithms"},
		{"plain http to a remote host", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "http://idp.example.com/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		// IP literals that are not loopback: private, link-local (cloud
		// metadata), unspecified, IPv6.
		{"plain http to a private IP", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "http://10.0.0.5/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"plain http to link-local", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "http://169.254.169.254/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"plain http to 0.0.0.0", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "http://0.0.0.0:8080/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"plain http to an IPv6 host", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "http://[2001:db8::1]/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"plain http to a name that starts like loopback", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "http://127.0.0.1.example.com/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"relative JWKS URL", []IssuerConfig{func() IssuerConfig { c := good(); c.JWKSURL = "/jwks"; return c }()}, Options{}, "issuers[0].jwks_url"},
		{"tenant claim sub", []IssuerConfig{func() IssuerConfig { c := good(); c.TenantClaim = "sub"; return c }()}, Options{}, "issuers[0].tenant_claim"},
		{"negative leeway", []IssuerConfig{good()}, Options{Leeway: -time.Second}, "options.leeway"},
		{"huge leeway", []IssuerConfig{good()}, Options{Leeway: time.Hour}, "options.leeway"},
		{"negative refetch interval", []IssuerConfig{good()}, Options{JWKSRefetchInterval: -1}, "options.jwks_refetch_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), tt.cfgs, tt.opts)
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier accepted the configuration")
			}
			var ve *bulkhead.ValidationError
			if !errors.Is(err, bulkhead.ErrInvalid) || !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
			found := false
			for _, p := range ve.Problems {
				found = found || p.Field == tt.field
			}
			if !found {
				t.Fatalf("problems %v do not name %s", ve.Problems, tt.field)
			}
			if strings.Contains(err.Error(), secretC[:31]) {
				t.Fatalf("error text holds the secret: %v", err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		mustVerifier(t, []IssuerConfig{good(), goodSecret()}, testOptions(a))
		// Plain http only to loopback (nothing listens there: the first
		// fetch fails, which NewVerifier logs and survives).
		loop := good()
		loop.JWKSURL = "http://127.0.0.1:1/jwks.json"
		mustVerifier(t, []IssuerConfig{loop}, testOptions(a))
		loop.JWKSURL = "http://[::1]:1/jwks.json"
		mustVerifier(t, []IssuerConfig{loop}, testOptions(a))
		loop.JWKSURL = "http://localhost:1/jwks.json"
		mustVerifier(t, []IssuerConfig{loop}, testOptions(a))
	})
}

func TestCloseStopsNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.JWKSRefreshInterval = 20 * time.Millisecond })
	// The background refresh runs...
	deadline := time.Now().Add(5 * time.Second)
	for e.a.requests() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("background refresh made %d requests in 5s", e.a.requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// ...until Close.
	e.v.Close()
	e.v.Close()                       // idempotent
	time.Sleep(50 * time.Millisecond) // let an in-flight refresh finish
	n := e.a.requests()
	time.Sleep(150 * time.Millisecond)
	if got := e.a.requests(); got != n {
		t.Fatalf("%d JWKS requests after Close", got-n)
	}
	// Cached keys still verify; an unknown kid fetches nothing.
	mustVerify(t, e.v, signA(t, claims(issA)))
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "rotated", claims(issA)), ReasonUnknownKID)
	if got := e.a.requests(); got != n {
		t.Fatalf("%d JWKS requests after Close", got-n)
	}
}

func TestContextEndStopsRefresh(t *testing.T) {
	t.Parallel()
	a := newJWKSServer(t, keysA()...)
	b := newJWKSServer(t, keysB()...)
	opts := testOptions(a)
	opts.JWKSRefreshInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	v, err := NewVerifier(ctx, issuerConfigs(a, b), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	time.Sleep(100 * time.Millisecond)
	cancel()
	time.Sleep(50 * time.Millisecond)
	n := a.requests()
	time.Sleep(150 * time.Millisecond)
	if got := a.requests(); got != n {
		t.Fatalf("%d JWKS requests after the context ended", got-n)
	}
	mustVerify(t, v, signA(t, claims(issA)))
}

func TestConcurrentVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := []string{
		signA(t, claims(issA)),
		sign(t, jwt.SigningMethodES256, ecA(), "a-ec", claims(issA)),
		sign(t, jwt.SigningMethodRS256, rsaB(), "b-rsa", claims(issB)),
		signC(t, claims(issC)),
	}
	bad := sign(t, jwt.SigningMethodRS256, rsaB(), "shared", claims(issA))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				tok := good[(g+i)%len(good)]
				if _, err := e.v.Verify(context.Background(), tok); err != nil {
					errs <- err
					return
				}
				if _, err := e.v.Verify(context.Background(), bad); Reason(err) != ReasonBadSignature {
					errs <- errors.New("bad token: " + Reason(err))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	if got := Reason(nil); got != "" {
		t.Fatalf("Reason(nil) = %q", got)
	}
	if got := Reason(errors.New("x")); got != ReasonOther {
		t.Fatalf("Reason(foreign) = %q", got)
	}
	wrapped := errors.Join(errors.New("context"), reject(ReasonExpired, "", nil))
	if got := Reason(wrapped); got != ReasonExpired {
		t.Fatalf("Reason(wrapped) = %q", got)
	}
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if seen[r] || r == "" || strings.ContainsAny(r, " \t") {
			t.Fatalf("bad or duplicate label %q", r)
		}
		seen[r] = true
	}
}
