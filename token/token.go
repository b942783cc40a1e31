// Package token mints bulkhead's own access tokens: short-lived JWTs signed
// with an Ed25519 key that bulkhead keeps in its data dir, published as a
// JWK set so other services (and bulkhead's own verifier) can check them.
//
// Guarantees:
//   - The signing key is random, stored in a 0600 file (a file others can
//     access is refused), and never printed; only its public half and key
//     id leave the process.
//   - Every token carries iss, sub (the entity id), aud, exp, nbf, iat, a
//     kid header and the tenant claim; lifetimes are bounded by MaxTTL.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// TenantClaim is the claim naming the tenant in bulkhead's tokens.
const TenantClaim = "bulkhead_tenant"

// Audience is the audience of bulkhead's tokens.
const Audience = "bulkhead"

// MaxTTL bounds a token's lifetime.
const MaxTTL = 24 * time.Hour

// Signer mints tokens. It is safe for concurrent use.
type Signer struct {
	issuer string
	key    ed25519.PrivateKey
	kid    string
}

type keyFile struct {
	Seed string `json:"ed25519_seed"`
}

// LoadOrCreate reads the signing key at path, creating a random one (mode
// 0600) if it does not exist. issuer is the iss of the tokens.
func LoadOrCreate(path, issuer string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		kf, _ := json.Marshal(keyFile{Seed: base64.RawURLEncoding.EncodeToString(seed)})
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create token signing key %s: %w", path, err)
		}
		if _, err := f.Write(kf); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		return newSigner(issuer, seed), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read token signing key %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token signing key %s is accessible to others: chmod 600 %s", path, path)
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("token signing key %s is malformed", path)
	}
	seed, err := base64.RawURLEncoding.DecodeString(kf.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("token signing key %s is malformed", path)
	}
	return newSigner(issuer, seed), nil
}

func newSigner(issuer string, seed []byte) *Signer {
	key := ed25519.NewKeyFromSeed(seed)
	sum := sha256.Sum256(key.Public().(ed25519.PublicKey))
	return &Signer{issuer: issuer, key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:12])}
}

// Issuer returns the iss of the signer's tokens.
func (s *Signer) Issuer() string { return s.issuer }

// SessionClaim names the session (the refresh-token family) an access
// token was minted with; bulkhead refuses the token once that session is
// revoked (logout, reuse of a spent refresh token, revoke-sessions).
const SessionClaim = "sid"

// Mint returns a token for entity in tenant, valid for ttl (at most MaxTTL),
// belonging to no session.
func (s *Signer) Mint(tenant, entity uuid.UUID, ttl time.Duration) (string, time.Time, error) {
	return s.MintSession(tenant, entity, uuid.Nil, ttl)
}

// MintSession is Mint for a token of session (SessionClaim; uuid.Nil: none).
func (s *Signer) MintSession(tenant, entity, session uuid.UUID, ttl time.Duration) (string, time.Time, error) {
	if tenant == uuid.Nil || entity == uuid.Nil {
		return "", time.Time{}, errors.New("token: tenant and entity are required")
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", time.Time{}, fmt.Errorf("token: lifetime must be in (0, %s]", MaxTTL)
	}
	now := time.Now()
	exp := now.Add(ttl)
	claims := jwt.MapClaims{
		"iss": s.issuer, "sub": entity.String(), "aud": Audience,
		// iat to the microsecond (RFC 7519 allows a non-integer NumericDate):
		// revocation compares it with the instant sessions were revoked, so a
		// token minted just after a revocation is not refused with the ones
		// minted just before it.
		"iat": float64(now.UnixMicro()) / 1e6, "nbf": now.Unix(), "exp": exp.Unix(),
		"jti": uuid.NewString(), TenantClaim: tenant.String(),
	}
	if session != uuid.Nil {
		claims[SessionClaim] = session.String()
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = s.kid
	signed, err := t.SignedString(s.key)
	return signed, exp, err
}

// JWKS returns the public JWK set verifying the signer's tokens.
func (s *Signer) JWKS() []byte {
	pub := s.key.Public().(ed25519.PublicKey)
	b, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": s.kid,
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}})
	return b
}

// String names the signer without key material.
func (s *Signer) String() string { return "token.Signer(" + s.issuer + ", kid " + s.kid + ")" }
