package auth_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

func TestAuthenticatorWithBulkheadAndExternalTokens(t *testing.T) {
	dir := t.TempDir()
	signer, err := token.LoadOrCreate(filepath.Join(dir, "token-key.json"), "bulkhead")
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "svc.secret")
	secret := strings.Repeat("s", 40)
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	tenant, entity := uuid.New(), uuid.New()
	cfgFile := filepath.Join(dir, "auth.json")
	os.WriteFile(cfgFile, []byte(`{"issuers":[{"issuer":"svc","hs256_secret_file":"`+secretFile+`","audience":"bulkhead","tenant_claim":"tenant"},
		{"issuer":"fixed","hs256_secret_file":"`+secretFile+`","audience":"bulkhead","tenant":"`+tenant.String()+`"},
		{"issuer":"untrusted","hs256_secret_file":"`+secretFile+`","audience":"bulkhead"}]}`), 0o600)
	external, err := auth.LoadIssuers(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	issuers := append([]auth.IssuerConfig{{Issuer: "bulkhead", JWKS: signer.JWKS(), Algorithms: []string{"EdDSA"}, Audience: token.Audience, TenantClaim: token.TenantClaim}}, external...)
	v, err := auth.NewVerifier(context.Background(), issuers, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	a := auth.NewAuthenticator(v, "bulkhead")
	req := func(h string) *http.Request {
		r, _ := http.NewRequest("GET", "/v1/me", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}

	// bulkhead's own token: the subject is the entity.
	tok, _, err := signer.Mint(tenant, entity, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.Authenticate(req("Bearer " + tok))
	if err != nil || s.Tenant != tenant || s.Entity != entity || s.ActingFor != uuid.Nil {
		t.Fatalf("bulkhead token: %+v %v", s, err)
	}

	// An external HS256 issuer bound to a fixed tenant: entity = UUIDv5(issuer, sub).
	hs := func(iss string, claims jwt.MapClaims) string {
		claims["iss"], claims["aud"], claims["exp"], claims["iat"] = iss, "bulkhead", time.Now().Add(time.Minute).Unix(), time.Now().Unix()
		t, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		return t
	}
	s, err = a.Authenticate(req("Bearer " + hs("fixed", jwt.MapClaims{"sub": "user-42", "tenant": uuid.NewString()})))
	if err != nil || s.Tenant != tenant || s.Entity != auth.EntityID("fixed", "user-42") {
		t.Fatalf("external token of a fixed-tenant issuer (its tenant claim ignored): %+v %v", s, err)
	}
	// An agent token acting for a principal carries the claim through (the database checks it).
	principal := uuid.New()
	s, err = a.Authenticate(req("Bearer " + hs("fixed", jwt.MapClaims{"sub": "agent-1", auth.ActingForClaim: principal.String()})))
	if err != nil || s.ActingFor != principal {
		t.Fatalf("acting-for claim: %+v %v", s, err)
	}

	refused := map[string]string{
		"no header":                 "",
		"basic auth":                "Basic dXNlcjpwYXNz",
		"garbage":                   "Bearer not.a.token",
		"oversized header":          "Bearer " + strings.Repeat("a", 9000),
		"untrusted issuer's tenant": "Bearer " + hs("untrusted", jwt.MapClaims{"sub": "x", "tenant": tenant.String()}),
		// A tenant claim alone binds nothing: without a directory to check
		// the tenant's registration of the issuer, it is refused.
		"tenant claim, no directory": "Bearer " + hs("svc", jwt.MapClaims{"sub": "user-42", "tenant": tenant.String()}),
		"no tenant claim":            "Bearer " + hs("svc", jwt.MapClaims{"sub": "x"}),
		"malformed acting-for claim": "Bearer " + hs("svc", jwt.MapClaims{"sub": "x", "tenant": tenant.String(), auth.ActingForClaim: "everyone"}),
		"bulkhead token, tampered":   "Bearer " + tampered(tok),
	}
	for name, h := range refused {
		if s, err := a.Authenticate(req(h)); !errors.Is(err, bulkhead.ErrUnauthenticated) {
			t.Errorf("%s: %+v %v, want ErrUnauthenticated", name, s, err)
		} else if r, ok := err.(interface{ Reason() string }); !ok || r.Reason() == "" {
			t.Errorf("%s: error without a reason for metrics: %v", name, err)
		}
	}
	// The signer refuses silly lifetimes, and a key file others can read.
	if _, _, err := signer.Mint(tenant, entity, 48*time.Hour); err == nil {
		t.Error("minted a 48h token")
	}
	os.Chmod(filepath.Join(dir, "token-key.json"), 0o644)
	if _, err := token.LoadOrCreate(filepath.Join(dir, "token-key.json"), "bulkhead"); err == nil {
		t.Error("a world-readable signing key was accepted")
	}
}

// tampered changes one character in the middle of the signature to a
// different one (changing the last characters could leave the decoded
// signature unchanged, or the token itself, one time in a thousand).
func tampered(tok string) string {
	i := len(tok) - 20
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
