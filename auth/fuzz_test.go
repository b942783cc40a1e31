package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, every
// rejection must be a classified ErrUnauthenticated, and nothing but the
// unmodified valid seeds may verify. Issuer A's key and the HS256 secret
// are fixed, and RS256 and HS256 signatures deterministic, so the valid
// seeds are the same in every fuzz worker.
func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	valid := map[string]bool{
		signA(f, claims(issA)): true,
		signC(f, claims(issC)): true,
	}
	withTenant := claims(issA)
	withTenant["tid"] = "6f1c2b8e-7f7e-4d6b-9a57-0d2f3c4b5a69"
	valid[signA(f, withTenant)] = true
	for tok := range valid {
		f.Add(tok)
		p := strings.Split(tok, ".")
		f.Add(p[0] + "." + p[1] + ".")
		f.Add(p[0] + "." + p[1])
	}
	expired := claims(issC)
	expired["exp"] = testNow.Add(-time.Hour).Unix()
	for _, s := range []string{
		"", ".", "..", "...", "a.b.c", "e30.e30.", "e30.e30.e30",
		rfc7515A1Token, rfc7515A5Token,
		signC(f, expired),
		sign(f, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-wrong!"), "", claims(issC)),
		sign(f, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(issA), map[string]any{"jku": "https://127.0.0.1:1/jwks"}),
		sign(f, jwt.SigningMethodRS256, rsaA(), "../../etc/passwd", claims(issA)),
		sign(f, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(issB)),
		rawToken(f, map[string]any{"alg": "nOnE"}, claims(issC), nil),
		strings.Repeat("A", MaxTokenSize+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := e.v.Verify(context.Background(), token)
		if err != nil {
			checkRejection(t, err)
			return
		}
		if !valid[token] {
			t.Fatalf("verified a token that is not an unmodified valid seed: %q", token)
		}
		if p.Entity != EntityID(p.Issuer, p.Subject) {
			t.Fatalf("entity %s for %s/%s", p.Entity, p.Issuer, p.Subject)
		}
	})
}
