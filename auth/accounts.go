package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/google/uuid"
)

// Accounts runs bulkhead's own account flows (register, login, refresh,
// logout) and API keys, over the credential tables of package postgres.
//
// Guarantees: passwords are argon2id-hashed (Hasher); refresh tokens and
// API keys are random, shown once, and stored only as HMAC-SHA256 under a
// server-held pepper; refresh tokens rotate on every use and reusing a
// spent one (after a short grace for concurrent refreshes) revokes its
// whole family; every failure is the same ErrUnauthenticated, and a login
// for an unknown email costs the same hashing as a known one.
type Accounts struct {
	db     *postgres.DB
	signer *token.Signer
	hasher *Hasher
	pepper []byte

	AccessTTL  time.Duration // default 15 minutes
	RefreshTTL time.Duration // default 30 days
	Grace      time.Duration // reuse window for concurrent refreshes; default 10 s
}

// NewAccounts returns the account service. pepper must be at least 32
// random bytes kept outside the database.
func NewAccounts(db *postgres.DB, signer *token.Signer, hasher *Hasher, pepper []byte) (*Accounts, error) {
	if len(pepper) < 32 {
		return nil, errors.New("auth: credential pepper must be at least 32 bytes")
	}
	return &Accounts{db: db, signer: signer, hasher: hasher, pepper: pepper,
		AccessTTL: 15 * time.Minute, RefreshTTL: 30 * 24 * time.Hour, Grace: 10 * time.Second}, nil
}

// Tokens is a login's or a refresh's answer.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func unauthenticated(detail string) error {
	return fmt.Errorf("%w: %s", bulkhead.ErrUnauthenticated, detail)
}

// tenantScope is the pre-authentication scope of tenant. Its
// transactions check that the tenant exists and is enabled: a disabled or
// deleted tenant registers, logs in and refreshes nothing.
func tenantScope(ctx context.Context, tenant uuid.UUID) context.Context {
	ctx, _ = bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant})
	return postgres.WithAccess(ctx, postgres.Access{})
}

// entityScope is entity's own scope in tenant for a flow that acts for it
// after checking its credential itself (issuing or rotating tokens). Its
// transactions check that the tenant and the entity exist and are enabled.
func entityScope(ctx context.Context, tenant, entity uuid.UUID) context.Context {
	ctx, _ = bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant, Entity: entity})
	return postgres.WithAccess(ctx, postgres.Access{Fresh: true})
}

// revocationScope is entity's own scope for a revocation, which needs no
// check: taking access away is always allowed.
func revocationScope(ctx context.Context, tenant, entity uuid.UUID) context.Context {
	ctx, _ = bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant, Entity: entity})
	return ctx
}

// MinPasswordLength is the shortest password accepted at registration.
const MinPasswordLength = 10

// Register creates a user in tenant if the tenant allows self-registration.
// An email already taken answers like a success (no enumeration); the
// caller learns nothing it could not learn by trying to log in.
func (a *Accounts) Register(ctx context.Context, tenant uuid.UUID, email, name, password string) error {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 320 {
		return bulkhead.Invalid("email", "not an email address")
	}
	if len(password) < MinPasswordLength || len(password) > 1024 {
		return bulkhead.Invalid("password", fmt.Sprintf("%d to 1024 characters", MinPasswordLength))
	}
	hash, err := a.hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	_, err = a.db.RegisterUser(tenantScope(ctx, tenant), email, name, hash)
	if errors.Is(err, bulkhead.ErrConflict) {
		return nil
	}
	return err
}

// Login checks email and password in tenant and issues tokens.
func (a *Accounts) Login(ctx context.Context, tenant uuid.UUID, email, password string) (Tokens, error) {
	// The stored hash never leaves the database: Go derives the key under
	// the stored salt and parameters (argon2id is the expensive part, kept
	// under the hasher's semaphore), the database compares.
	sc := tenantScope(ctx, tenant)
	params, err := a.db.PasswordParams(sc, email)
	if err != nil && !errors.Is(err, bulkhead.ErrNotFound) {
		return Tokens{}, err
	}
	key, err := a.hasher.Derive(ctx, params, password) // runs for unknown users too
	if err != nil {
		return Tokens{}, err
	}
	entity, err := a.db.CheckPassword(sc, email, key)
	if errors.Is(err, bulkhead.ErrNotFound) {
		return Tokens{}, unauthenticated("bad email or password")
	}
	if err != nil {
		return Tokens{}, err
	}
	return a.issue(ctx, tenant, entity, uuid.New())
}

// issue mints an access token of session family and a fresh refresh token
// of that family; a disabled tenant or entity gets neither.
func (a *Accounts) issue(ctx context.Context, tenant, entity, family uuid.UUID) (Tokens, error) {
	access, _, err := a.signer.MintSession(tenant, entity, family, a.AccessTTL)
	if err != nil {
		return Tokens{}, err
	}
	id, secret, hash := a.newSecret("refresh")
	if err := a.db.InsertRefreshToken(entityScope(ctx, tenant, entity), id, family, hash, time.Now().Add(a.RefreshTTL)); err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(a.AccessTTL.Seconds()), RefreshToken: format("bhr", tenant, id, secret)}, nil
}

// Refresh exchanges a refresh token of tenant for new tokens, rotating it.
// A spent token used again after the grace window revokes its family.
func (a *Accounts) Refresh(ctx context.Context, tenant uuid.UUID, refresh string) (Tokens, error) {
	stored, id, err := a.lookupRefresh(ctx, tenant, refresh)
	if err != nil {
		return Tokens{}, err
	}
	switch {
	case stored.RevokedAt != nil:
		return Tokens{}, unauthenticated("refresh token revoked")
	case stored.UsedAt != nil:
		return Tokens{}, a.reused(revocationScope(ctx, tenant, stored.EntityID), stored)
	case time.Now().After(stored.ExpiresAt):
		return Tokens{}, unauthenticated("refresh token expired")
	}
	// The rotation checks that the tenant and entity are still enabled.
	ectx := entityScope(ctx, tenant, stored.EntityID)
	access, _, err := a.signer.MintSession(tenant, stored.EntityID, stored.FamilyID, a.AccessTTL)
	if err != nil {
		return Tokens{}, err
	}
	next, secret, hash := a.newSecret("refresh")
	err = a.db.RotateRefreshToken(ectx, id, next, stored.FamilyID, hash, time.Now().Add(a.RefreshTTL))
	if errors.Is(err, postgres.ErrTokenSpent) { // a concurrent refresh won
		return Tokens{}, unauthenticated("refresh token already used")
	}
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(a.AccessTTL.Seconds()), RefreshToken: format("bhr", tenant, next, secret)}, nil
}

// reused handles a spent refresh token presented again: within the grace
// window (a concurrent refresh) it is only refused; later it is treated as
// stolen and the whole family is revoked.
func (a *Accounts) reused(ectx context.Context, stored postgres.StoredRefreshToken) error {
	if time.Since(*stored.UsedAt) > a.Grace {
		if err := a.db.RevokeRefreshFamily(ectx, stored.FamilyID); err != nil {
			return err
		}
		return unauthenticated("spent refresh token reused: family revoked")
	}
	return unauthenticated("refresh token already used")
}

// Logout revokes the refresh token's family: the session. Access tokens
// minted with it stop working at once (their "sid" names the family).
func (a *Accounts) Logout(ctx context.Context, tenant uuid.UUID, refresh string) error {
	stored, _, err := a.lookupRefresh(ctx, tenant, refresh)
	if err != nil {
		return err
	}
	return a.db.RevokeRefreshFamily(revocationScope(ctx, tenant, stored.EntityID), stored.FamilyID)
}

func (a *Accounts) lookupRefresh(ctx context.Context, tenant uuid.UUID, refresh string) (postgres.StoredRefreshToken, uuid.UUID, error) {
	t, id, secret, ok := parse("bhr", refresh)
	if !ok || t != tenant {
		return postgres.StoredRefreshToken{}, uuid.Nil, unauthenticated("malformed refresh token")
	}
	stored, err := a.db.RefreshTokenForAuth(tenantScope(ctx, tenant), id, a.hash("refresh", id, secret))
	if errors.Is(err, bulkhead.ErrNotFound) {
		return stored, id, unauthenticated("unknown or mismatched refresh token")
	}
	return stored, id, err
}

// API key scopes: what a key may do. A key without scopes may do
// everything its entity may.
const (
	ScopeRead  = "read"  // GET and HEAD
	ScopeWrite = "write" // every other method
)

// permits reports whether scopes allow an HTTP method.
func permits(scopes []string, method string) bool {
	if len(scopes) == 0 {
		return true
	}
	need := ScopeWrite
	if method == "GET" || method == "HEAD" {
		need = ScopeRead
	}
	for _, s := range scopes {
		if s == need {
			return true
		}
	}
	return false
}

// CreateAPIKey makes a key for the calling entity; the returned string is
// the only time its secret exists outside the caller. scopes may hold
// ScopeRead and ScopeWrite (none: everything the entity may do).
func (a *Accounts) CreateAPIKey(ctx context.Context, name string, scopes []string, ttl time.Duration) (string, postgres.APIKey, error) {
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok || s.Entity == uuid.Nil {
		return "", postgres.APIKey{}, bulkhead.ErrUnauthenticated
	}
	for _, sc := range scopes {
		if sc != ScopeRead && sc != ScopeWrite {
			return "", postgres.APIKey{}, bulkhead.Invalid("scopes", `each scope is "read" or "write"`)
		}
	}
	var exp *time.Time
	if ttl > 0 {
		t := time.Now().Add(ttl)
		exp = &t
	}
	id, secret, hash := a.newSecret("apikey")
	k, err := a.db.InsertAPIKey(ctx, id, name, hash, scopes, exp)
	if err != nil {
		return "", postgres.APIKey{}, err
	}
	return format("bhk", s.Tenant, id, secret), k, nil
}

// AuthenticateAPIKey returns the scope of a valid, unexpired, unrevoked key
// whose scopes permit method, in an enabled tenant. (That the key's entity
// is enabled is checked by the request's transactions: see
// Authenticator.AuthenticateAccess.)
func (a *Accounts) AuthenticateAPIKey(ctx context.Context, key, method string) (bulkhead.Scope, error) {
	s, _, err := a.authenticateAPIKey(ctx, key, method)
	return s, err
}

func (a *Accounts) authenticateAPIKey(ctx context.Context, key, method string) (bulkhead.Scope, postgres.Access, error) {
	tenant, id, secret, ok := parse("bhk", key)
	if !ok {
		return bulkhead.Scope{}, postgres.Access{}, unauthenticated("malformed API key")
	}
	k, err := a.db.APIKeyForAuth(tenantScope(ctx, tenant), id, a.hash("apikey", id, secret))
	if errors.Is(err, bulkhead.ErrNotFound) {
		return bulkhead.Scope{}, postgres.Access{}, unauthenticated("unknown or mismatched API key")
	}
	if err != nil {
		return bulkhead.Scope{}, postgres.Access{}, err
	}
	switch {
	case k.RevokedAt != nil:
		return bulkhead.Scope{}, postgres.Access{}, unauthenticated("API key revoked")
	case k.ExpiresAt != nil && time.Now().After(*k.ExpiresAt):
		return bulkhead.Scope{}, postgres.Access{}, unauthenticated("API key expired")
	case !permits(k.Scopes, method):
		return bulkhead.Scope{}, postgres.Access{}, unauthenticated("API key scopes do not permit " + method)
	}
	return bulkhead.Scope{Tenant: tenant, Entity: k.EntityID}, postgres.Access{APIKey: id}, nil
}

func (a *Accounts) newSecret(purpose string) (uuid.UUID, string, []byte) {
	id := uuid.New()
	secret := rand.Text() + rand.Text() // 2 x 128 bits of base32
	return id, secret, a.hash(purpose, id, secret)
}

func (a *Accounts) hash(purpose string, id uuid.UUID, secret string) []byte {
	m := hmac.New(sha256.New, a.pepper)
	m.Write([]byte(purpose + "\x00"))
	m.Write(id[:])
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// format is prefix_<tenant hex>_<id hex>_<secret>: the public part names
// where to look, the secret proves possession.
func format(prefix string, tenant, id uuid.UUID, secret string) string {
	return prefix + "_" + hex.EncodeToString(tenant[:]) + "_" + hex.EncodeToString(id[:]) + "_" + secret
}

func parse(prefix, s string) (tenant, id uuid.UUID, secret string, ok bool) {
	parts := strings.Split(s, "_")
	if len(parts) != 4 || parts[0] != prefix || len(parts[1]) != 32 || len(parts[2]) != 32 || len(parts[3]) != 52 {
		return uuid.Nil, uuid.Nil, "", false
	}
	t, err1 := hex.DecodeString(parts[1])
	i, err2 := hex.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return uuid.Nil, uuid.Nil, "", false
	}
	copy(tenant[:], t)
	copy(id[:], i)
	if tenant == uuid.Nil || id == uuid.Nil {
		return uuid.Nil, uuid.Nil, "", false
	}
	for _, c := range parts[3] {
		if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", c) {
			return uuid.Nil, uuid.Nil, "", false
		}
	}
	return tenant, id, parts[3], true
}
