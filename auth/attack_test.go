package auth

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestAlgNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, alg := range []string{"none", "None", "NONE", "nOnE", " none"} {
		for _, iss := range []string{issA, issC} {
			for _, sig := range [][]byte{nil, []byte("x"), []byte(secretC)} {
				t.Run(fmt.Sprintf("%q/%s/%d", alg, iss, len(sig)), func(t *testing.T) {
					h := map[string]any{"alg": alg, "typ": "JWT", "kid": "a-rsa"}
					wantReject(t, e.v, rawToken(t, h, claims(iss), sig), ReasonAlgNone)
				})
			}
		}
	}
	// jwt's own encoder for "none" (needs its explicit unsafe key).
	tok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "a-rsa", claims(issA))
	wantReject(t, e.v, tok, ReasonAlgNone)
	if n := e.a.requests(); n != 1 {
		t.Fatalf("JWKS requests %d, want 1", n)
	}
}

// TestKeyConfusion: HS256 MACed with the issuer's RSA public key, the
// classic attack on verifiers that hand a JWKS key to whatever alg the
// token names.
func TestKeyConfusion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pub := &rsaA().PublicKey
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	keys := map[string][]byte{
		"PEM (PKIX)":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"PEM (PKCS1)": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1}),
		"DER (PKIX)":  pkix,
		"DER (PKCS1)": pkcs1,
		"JWK n":       pub.N.Bytes(),
	}
	for name, hmacKey := range keys {
		t.Run(name, func(t *testing.T) {
			for _, kid := range []string{"a-rsa", "a-noalg"} {
				tok := sign(t, jwt.SigningMethodHS256, hmacKey, kid, claims(issA))
				wantReject(t, e.v, tok, ReasonAlgNotAllowed)
			}
			// At the secret issuer the MAC simply does not check.
			tok := sign(t, jwt.SigningMethodHS256, hmacKey, "", claims(issC))
			wantReject(t, e.v, tok, ReasonBadSignature)
		})
	}
	// Second layer: even if HS256 slipped into a JWKS issuer's allow-list
	// (NewVerifier refuses that), the JWKS key would not be used as a MAC
	// key. Simulate the misconfiguration past validation.
	t.Run("misconfigured allow-list", func(t *testing.T) {
		v := mustVerifier(t, issuerConfigs(e.a, e.b), testOptions(e.a))
		v.issuers[issA].algs = append(v.issuers[issA].algs, "HS256")
		v.issuers[issA].parser = jwt.NewParser(jwt.WithValidMethods(v.issuers[issA].algs), jwt.WithStrictDecoding(), jwt.WithoutClaimsValidation())
		for _, hmacKey := range keys {
			for _, kid := range []string{"a-rsa", "a-noalg"} {
				tok := sign(t, jwt.SigningMethodHS256, hmacKey, kid, claims(issA))
				if _, err := v.Verify(context.Background(), tok); err == nil {
					t.Fatal("HS256 token MACed with the RSA public key verified")
				} else {
					checkRejection(t, err)
				}
			}
		}
	})
}

func TestAlgorithmAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name string
		tok  string
	}{
		{"PS256 at an RS256-only issuer", sign(t, jwt.SigningMethodPS256, rsaB(), "b-rsa", claims(issB))},
		{"RS384 at an RS256-only issuer", sign(t, jwt.SigningMethodRS384, rsaB(), "b-rsa", claims(issB))},
		{"RS512 at an RS256+ES256 issuer", sign(t, jwt.SigningMethodRS512, rsaA(), "a-noalg", claims(issA))},
		{"ES384 at an RS256+ES256 issuer", sign(t, jwt.SigningMethodES384, ecA384(), "a-ec384", claims(issA))},
		{"HS384 at a secret issuer", sign(t, jwt.SigningMethodHS384, []byte(secretC), "", claims(issC))},
		{"HS512 at a secret issuer", sign(t, jwt.SigningMethodHS512, []byte(secretC), "", claims(issC))},
		{"RS256 at a secret issuer", sign(t, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(issC))},
		{"unregistered alg", rawToken(t, map[string]any{"alg": "XS256", "kid": "a-rsa"}, claims(issA), []byte("sig"))},
		{"empty alg", rawToken(t, map[string]any{"alg": "", "kid": "a-rsa"}, claims(issA), []byte("sig"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantReject(t, e.v, tt.tok, ReasonAlgNotAllowed)
		})
	}
	// An allowed alg with a key that does not fit it.
	wantReject(t, e.v, sign(t, jwt.SigningMethodES256, ecA(), "a-rsa", claims(issA)), ReasonKeyMismatch)                                 // JWK alg RS256
	wantReject(t, e.v, sign(t, jwt.SigningMethodES256, ecA(), "a-noalg", claims(issA)), ReasonKeyMismatch)                               // RSA key, no JWK alg
	wantReject(t, e.v, rawToken(t, map[string]any{"alg": "ES256", "kid": "a-ec384"}, claims(issA), make([]byte, 64)), ReasonKeyMismatch) // P-384 key for ES256
	wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaWeak(), "a-weak", claims(issA)), ReasonKeyMismatch)                            // 1024-bit RSA
	if n := e.a.requests(); n != 1 {
		t.Fatalf("JWKS requests %d, want 1", n)
	}
}

func TestTamperedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := signA(t, claims(issA))
	mustVerify(t, e.v, good)
	parts := strings.Split(good, ".")

	t.Run("stripped signature", func(t *testing.T) {
		wantReject(t, e.v, parts[0]+"."+parts[1]+".", ReasonBadSignature)
		wantReject(t, e.v, parts[0]+"."+parts[1], ReasonMalformed)
		hs := signC(t, claims(issC))
		p := strings.Split(hs, ".")
		wantReject(t, e.v, p[0]+"."+p[1]+".", ReasonBadSignature)
	})
	t.Run("transplanted signature", func(t *testing.T) {
		c := claims(issA)
		c["sub"] = "admin"
		other := strings.Split(signA(t, c), ".")
		wantReject(t, e.v, other[0]+"."+other[1]+"."+parts[2], ReasonBadSignature)
		wantReject(t, e.v, parts[0]+"."+parts[1]+"."+other[2], ReasonBadSignature)
		// From another issuer's token with the same kid name.
		b := strings.Split(sign(t, jwt.SigningMethodRS256, rsaB(), "shared", claims(issA)), ".")
		wantReject(t, e.v, b[0]+"."+parts[1]+"."+parts[2], ReasonBadSignature)
		// HMAC tag of the secret issuer over A's header and payload.
		hs := strings.Split(signC(t, claims(issC)), ".")
		wantReject(t, e.v, parts[0]+"."+parts[1]+"."+hs[2], ReasonBadSignature)
	})
	t.Run("bit flips in decoded bytes", func(t *testing.T) {
		for seg := range 3 {
			raw, err := b64.DecodeString(parts[seg])
			if err != nil {
				t.Fatal(err)
			}
			for i := range raw {
				flipped := []byte(string(raw))
				flipped[i] ^= 1 << (i % 8)
				p := append([]string(nil), parts...)
				p[seg] = b64.EncodeToString(flipped)
				tok := strings.Join(p, ".")
				if _, err := e.v.Verify(context.Background(), tok); err == nil {
					t.Fatalf("segment %d byte %d flipped: verified", seg, i)
				} else {
					checkRejection(t, err)
				}
			}
		}
	})
	t.Run("every character changed", func(t *testing.T) {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		for i := range len(good) {
			if good[i] == '.' {
				continue
			}
			// The neighbour in the alphabet differs only in the lowest bit
			// of the 6-bit group: the flip a lax decoder could ignore.
			j := strings.IndexByte(alphabet, good[i])
			tok := good[:i] + string(alphabet[j^1]) + good[i+1:]
			if _, err := e.v.Verify(context.Background(), tok); err == nil {
				t.Fatalf("character %d changed: verified", i)
			} else {
				checkRejection(t, err)
			}
		}
	})
	t.Run("padding and whitespace", func(t *testing.T) {
		for _, tok := range []string{good + "=", " " + good, good + "\n", "Bearer " + good, parts[0] + "=." + parts[1] + "." + parts[2]} {
			wantReject(t, e.v, tok, ReasonMalformed)
		}
		wantReject(t, e.v, good+".", ReasonMalformed)
		wantReject(t, e.v, good+"."+parts[2], ReasonMalformed)
	})
	// Flipped kids may cost one rate-limited refetch, no more.
	if n := e.a.requests(); n > 2 {
		t.Fatalf("JWKS requests %d, want at most 2", n)
	}
}

func TestDuplicateMembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	enc := func(s string) string { return b64.EncodeToString([]byte(s)) }
	good := strings.Split(signC(t, claims(issC)), ".")
	// Same signature input would be needed to verify; these are refused
	// before any key is touched, whatever the signature.
	for _, tok := range []string{
		enc(`{"alg":"HS256","alg":"none"}`) + "." + good[1] + "." + good[2],
		enc(`{"alg":"none","alg":"HS256"}`) + "." + good[1] + "." + good[2],
		good[0] + "." + enc(`{"iss":"`+issC+`","iss":"`+issA+`","sub":"x"}`) + "." + good[2],
		enc(`["HS256"]`) + "." + good[1] + "." + good[2],
		enc(`{"alg":"HS256"} {}`) + "." + good[1] + "." + good[2],
		enc(`{"alg":"HS256"}`) + "." + enc(`"claims"`) + "." + good[2],
		enc("{\"alg\":\"HS256\",\"x\":\"\xff\"}") + "." + good[1] + "." + good[2],
	} {
		wantReject(t, e.v, tok, ReasonMalformed)
	}
}

func TestHostileKIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		kid    any
		reason string
	}{
		{"../../etc/passwd", ReasonUnknownKID},
		{"' OR 1=1 --", ReasonUnknownKID},
		{"%2e%2e%2f%2e%2e%2fetc%2fpasswd", ReasonUnknownKID},
		{"https://evil.test/jwks.json", ReasonUnknownKID},
		{strings.Repeat("A", 10<<10), ReasonTooLarge}, // 10 KB: the token is over MaxTokenSize
		{strings.Repeat("A", 5<<10), ReasonBadKID},    // fits in a token, too long for a kid
		{"a\x00b", ReasonBadKID},
		{"\x00", ReasonBadKID},
		{"a-rsa\x00", ReasonBadKID},
		{"line\nbreak", ReasonBadKID},
		{"", ReasonBadKID},
		{42, ReasonBadKID},
		{nil, ReasonBadKID},
		{[]string{"a-rsa"}, ReasonBadKID},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%.40q", fmt.Sprint(tt.kid))
		t.Run(name, func(t *testing.T) {
			tok := sign(t, jwt.SigningMethodRS256, rsaA(), "", claims(issA), map[string]any{"kid": tt.kid})
			wantReject(t, e.v, tok, tt.reason)
		})
	}
	t.Run("missing kid", func(t *testing.T) {
		wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "", claims(issA)), ReasonMissingKID)
	})
	// One rate-limited refetch for all the unknown ones together.
	if n := e.a.requests(); n > 2 {
		t.Fatalf("JWKS requests %d, want at most 2 (initial + one refetch)", n)
	}
	mustVerify(t, e.v, signA(t, claims(issA)))
}

// selfSignedCert is a DER certificate for the attacker's key, for x5c.
func selfSignedCert(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "idp-a.test"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestForbiddenHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evil := newCounter(t)
	atk := attacker()
	embedded := jwk{kid: "a-rsa", alg: "RS256", key: &atk.PublicKey}
	headers := map[string]map[string]any{
		"jku":  {"jku": evil.URL + "/jwks.json"},
		"x5u":  {"x5u": evil.URL + "/cert.pem"},
		"jwk":  {"jwk": embedded},
		"x5c":  {"x5c": []string{base64.StdEncoding.EncodeToString(selfSignedCert(t, atk))}},
		"crit": {"crit": []string{"exp"}},
		"b64":  {"b64": false, "crit": []string{"b64"}},
	}
	for name, h := range headers {
		t.Run(name, func(t *testing.T) {
			// Signed by the attacker, with kid naming the real key...
			wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, atk, "a-rsa", claims(issA), h), ReasonForbiddenHeader)
			// ...with an unknown kid, which would otherwise allow a refetch...
			wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, atk, "attacker", claims(issA), h), ReasonForbiddenHeader)
			// ...and even signed by the real key: the header alone refuses it.
			wantReject(t, e.v, sign(t, jwt.SigningMethodRS256, rsaA(), "a-rsa", claims(issA), h), ReasonForbiddenHeader)
			wantReject(t, e.v, sign(t, jwt.SigningMethodHS256, []byte(secretC), "", claims(issC), h), ReasonForbiddenHeader)
		})
	}
	if n := evil.n.Load(); n != 0 {
		t.Fatalf("the server named by jku/x5u got %d requests", n)
	}
	if n := e.a.requests(); n != 1 {
		t.Fatalf("JWKS requests %d, want 1: forbidden headers are refused before any key lookup", n)
	}
}

func TestUnknownKIDStorm(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // default refetch interval: 1 minute
	const storm = 200
	var wg sync.WaitGroup
	reasons := make(chan string, storm)
	for i := range storm {
		tok := sign(t, jwt.SigningMethodRS256, rsaA(), fmt.Sprintf("random-%d-%x", i, i*7919), claims(issA))
		wg.Go(func() {
			_, err := e.v.Verify(context.Background(), tok)
			reasons <- Reason(err)
		})
	}
	wg.Wait()
	close(reasons)
	for r := range reasons {
		if r != ReasonUnknownKID {
			t.Fatalf("storm token: reason %q, want %q", r, ReasonUnknownKID)
		}
	}
	if n := e.a.requests(); n != 2 {
		t.Fatalf("JWKS requests %d after %d unknown kids, want 2 (initial + one refetch)", n, storm)
	}
	mustVerify(t, e.v, signA(t, claims(issA)))
}

func TestRefetchRateLimit(t *testing.T) {
	t.Parallel()
	const interval = 250 * time.Millisecond
	e := newEnv(t, func(o *Options) { o.JWKSRefetchInterval = interval })
	start := time.Now()
	for i := range 4 {
		tok := sign(t, jwt.SigningMethodRS256, rsaA(), fmt.Sprintf("unknown-%d", i), claims(issA))
		wantReject(t, e.v, tok, ReasonUnknownKID)
	}
	elapsed := time.Since(start)
	times := e.a.requestTimes()
	refetches := times[1:]
	if max := 1 + int(elapsed/interval); len(refetches) > max {
		t.Fatalf("%d refetches in %v, want at most %d", len(refetches), elapsed, max)
	}
	// The limiter grants the k-th refetch (k from 0) no sooner than
	// k intervals after the first, which came after start; a request
	// arrives after its grant. So arrival k >= start + k*interval holds
	// however late any request is delivered (comparing neighbours' arrival
	// times would not: a late first arrival shrinks the next gap).
	for k, at := range refetches {
		if at.Before(start.Add(time.Duration(k) * interval)) {
			t.Fatalf("refetch %d arrived %v after start, before %d intervals of %v", k, at.Sub(start), k, interval)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The issuer publishes a new key; a token naming it costs one refetch.
	e.a.setKeys(append(keysA(), jwk{kid: "a-2", alg: "RS256", key: &rsaA2().PublicKey})...)
	tok := sign(t, jwt.SigningMethodRS256, rsaA2(), "a-2", claims(issA))
	if p := mustVerify(t, e.v, tok); p.Issuer != issA {
		t.Fatalf("issuer %q", p.Issuer)
	}
	mustVerify(t, e.v, tok)
	if n := e.a.requests(); n != 2 {
		t.Fatalf("JWKS requests %d, want 2", n)
	}
	// A key the issuer removed stops verifying once a fetch drops it.
	e.a.setKeys(jwk{kid: "a-2", alg: "RS256", key: &rsaA2().PublicKey})
	v := mustVerifier(t, issuerConfigs(e.a, e.b), testOptions(e.a))
	wantReject(t, v, signA(t, claims(issA)), ReasonUnknownKID)
	mustVerify(t, v, tok)
}
