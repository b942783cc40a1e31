package auth

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
)

// RFC 7515 Appendix A.1: a JWS using HMAC SHA-256, with its key (the JWK
// "k" value) and the token in compact serialization.
const (
	rfc7515A1Key   = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
	rfc7515A1Token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	// Appendix A.5: the same claims as an unsecured JWS ("alg": "none").
	rfc7515A5Token = "eyJhbGciOiJub25lIn0" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		"."
)

func rfc7515Verifier(t *testing.T, now int64) *Verifier {
	t.Helper()
	key, err := base64.RawURLEncoding.DecodeString(rfc7515A1Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := []IssuerConfig{{Issuer: "joe", Secret: secretOf(key), Audience: testAudience}}
	return mustVerifier(t, cfg, Options{Now: func() time.Time { return time.Unix(now, 0) }})
}

// TestRFC7515A1 verifies the A.1 example. Its claims lack "aud" and "sub",
// which every bulkhead issuer requires, so the full Verify refuses it; the
// signature layer (every check before the claims) accepts it, and the full
// Verify fails on a claim, which it only reaches after the signature has
// verified. The token expired at 1300819380, so the clock is set just
// before.
func TestRFC7515A1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := rfc7515Verifier(t, 1300819370)

	is, claims, err := v.verifySignature(ctx, rfc7515A1Token)
	if err != nil {
		t.Fatalf("signature layer refused A.1: %v", err)
	}
	if is.name != "joe" || claims["iss"] != "joe" || claims["exp"] != float64(1300819380) || claims["http://example.com/is_root"] != true {
		t.Fatalf("A.1 claims %v", claims)
	}
	if err := is.validator.Validate(claims); Reason(classifyClaims(is.name, claims, err)) != ReasonWrongAudience {
		t.Fatalf("A.1 claims validation: %v", err)
	}
	wantReject(t, v, rfc7515A1Token, ReasonWrongAudience) // signature fine, no "aud"

	// The clock matters: 31 s past exp (beyond the 30 s leeway) it is expired.
	wantReject(t, rfc7515Verifier(t, 1300819380+31), rfc7515A1Token, ReasonExpired)
	// One bit of the signature changed.
	tampered := rfc7515A1Token[:len(rfc7515A1Token)-1] + "Y" // ...EjXk -> ...EjXY
	wantReject(t, v, tampered, ReasonBadSignature)
	if _, _, err := v.verifySignature(ctx, tampered); Reason(err) != ReasonBadSignature {
		t.Fatalf("tampered A.1 at the signature layer: %v", err)
	}
	// The right token under another key.
	other := mustVerifier(t, []IssuerConfig{{Issuer: "joe", Secret: secretC, Audience: testAudience}},
		Options{Now: func() time.Time { return time.Unix(1300819370, 0) }})
	wantReject(t, other, rfc7515A1Token, ReasonBadSignature)
}

func TestRFC7515A5(t *testing.T) {
	t.Parallel()
	v := rfc7515Verifier(t, 1300819370)
	wantReject(t, v, rfc7515A5Token, ReasonAlgNone)
	if _, _, err := v.verifySignature(context.Background(), rfc7515A5Token); Reason(err) != ReasonAlgNone {
		t.Fatalf("A.5 at the signature layer: %v", err)
	}
}

func secretOf(b []byte) bulkhead.Secret { return bulkhead.Secret(b) }
