package auth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/google/uuid"
)

// ActingForClaim names the principal an agent's token acts for. It is only
// a claim: the database honours it only under a valid delegation.
const ActingForClaim = "bulkhead_acting_for"

// Authenticator turns "Authorization: Bearer <JWT>" into the caller's
// scope. The tenant comes only from a claim of an issuer trusted for
// tenancy, the entity from the verified issuer and subject; nothing is
// taken from the body, the query or other headers. It is safe for
// concurrent use.
type Authenticator struct {
	v    *Verifier
	keys *Accounts // API keys; nil: none accepted

	// cache remembers verified JWTs (by SHA-256 of the whole token) until
	// the earlier of their expiry and a minute, so a client's repeated
	// requests skip the signature check. Bounded; safe for concurrent use.
	mu    sync.Mutex
	cache map[[32]byte]cached
	// self is the issuer whose subjects are bulkhead entity ids (its own
	// tokens); other issuers' entities are EntityID(issuer, sub).
	self string
	// dir resolves external principals to entities (binding, just-in-time
	// creation, deactivation); nil: see WithDirectory.
	dir           *postgres.DB
	claimsRefresh time.Duration
}

// Reasons the Authenticator gives for refusing a verified external token
// (for metrics and logs, never for clients).
const (
	ReasonNoTenant       = "no_tenant"        // the issuer named no tenant (no fixed tenant, no tenant claim)
	ReasonIssuerNotBound = "issuer_not_bound" // the token names a tenant that has not registered its issuer
	ReasonUnknownEntity  = "unknown_entity"   // no entity for the subject, and the tenant did not opt in to just-in-time entities
	ReasonBadNameClaim   = "bad_name_claim"   // just-in-time creation needed a name, and the name claim is empty, too long or unprintable
	ReasonDeactivated    = "deactivated"      // the subject's entity is deactivated
)

// DefaultClaimsRefresh is the least time between two updates of an
// external entity's name and email from its tokens' claims.
const DefaultClaimsRefresh = 10 * time.Minute

// WithDirectory makes every token of an issuer other than self resolve to
// an entity in db (postgres.DB.ResolveExternal), on every request: the
// issuer must be bound to the tenant the token names (by the issuer's fixed
// Tenant, or by the tenant's registration of the issuer), the entity must
// exist and be active, or be created now when the tenant opted in to
// just-in-time entities for the issuer. claimsRefresh (DefaultClaimsRefresh
// if zero) rate-limits name and email updates.
//
// Without a directory, a tenant claim is never enough: tokens of an issuer
// without a fixed Tenant are refused (ReasonIssuerNotBound).
func (a *Authenticator) WithDirectory(db *postgres.DB, claimsRefresh time.Duration) *Authenticator {
	a.dir = db
	a.claimsRefresh = cmp.Or(claimsRefresh, DefaultClaimsRefresh)
	return a
}

// NewAuthenticator authenticates with v; tokens of issuer self carry the
// entity id itself as sub.
func NewAuthenticator(v *Verifier, self string) *Authenticator {
	return &Authenticator{v: v, self: self, cache: map[[32]byte]cached{}}
}

type cached struct {
	scope   bulkhead.Scope
	access  postgres.Access
	expires time.Time // the token's exp
	until   time.Time // when the entry is forgotten: min(exp, a minute after verification)
	// external is set for an external principal resolved through the
	// directory: resolved again on every request (deactivation, unbinding).
	external *postgres.ExternalLogin
}

// maxCached bounds the verified-token cache.
const maxCached = 10000

func (a *Authenticator) lookup(key [32]byte) (cached, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	if !ok || time.Now().After(c.until) {
		return cached{}, false
	}
	return c, true
}

func (a *Authenticator) remember(key [32]byte, s bulkhead.Scope, acc postgres.Access, exp time.Time, ext *postgres.ExternalLogin) {
	until := time.Now().Add(time.Minute)
	if exp.Before(until) {
		until = exp
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxCached {
		now := time.Now()
		for k, c := range a.cache {
			if now.After(c.until) || len(a.cache) >= maxCached {
				delete(a.cache, k)
			}
		}
	}
	a.cache[key] = cached{scope: s, access: acc, expires: exp, until: until, external: ext}
}

// WithAPIKeys also accepts bulkhead API keys (Authorization: Bearer bhk_…
// or X-API-Key: bhk_…), checked by keys.
func (a *Authenticator) WithAPIKeys(keys *Accounts) *Authenticator {
	a.keys = keys
	return a
}

// reasoned carries a fixed reason for metrics.
type reasoned struct {
	error
	reason string
}

func (r reasoned) Reason() string { return r.reason }
func (r reasoned) Unwrap() error  { return r.error }

func refuse(reason, detail string) error {
	return reasoned{fmt.Errorf("%w: %s", bulkhead.ErrUnauthenticated, detail), reason}
}

// Authenticate implements the HTTP layer's Authenticator. Errors wrap
// bulkhead.ErrUnauthenticated and have a Reason() for metrics.
func (a *Authenticator) Authenticate(r *http.Request) (bulkhead.Scope, error) {
	s, _, err := a.AuthenticateWithExpiry(r)
	return s, err
}

// AuthenticateWithExpiry is Authenticate that also returns when the
// credential expires, for connections that outlive the request that opened
// them (the room stream closes at that instant). For a JWT it is the
// token's "exp" (which Verify requires; the verifier's leeway applies to
// accepting the token, not to the returned time). A credential that is not
// a JWT (an API key) has no expiry: the zero time.
func (a *Authenticator) AuthenticateWithExpiry(r *http.Request) (bulkhead.Scope, time.Time, error) {
	s, exp, _, err := a.AuthenticateAccess(r)
	return s, exp, err
}

// AuthenticateAccess is AuthenticateWithExpiry that also describes the
// credential for the per-request revocation check (postgres.Access): the
// session ("sid") of bulkhead's own tokens, the API key's id, the token's
// "iat", and whether the entity is an external issuer's (which needs no
// entity row). The signature check is cached; revocation is not: the
// caller puts the Access in the request's context (postgres.WithAccess) and
// the database checks it in every transaction.
func (a *Authenticator) AuthenticateAccess(r *http.Request) (bulkhead.Scope, time.Time, postgres.Access, error) {
	var none postgres.Access
	h := r.Header.Get("Authorization")
	if k := r.Header.Get("X-API-Key"); k != "" && h == "" {
		h = "Bearer " + k
	}
	if h == "" {
		return bulkhead.Scope{}, time.Time{}, none, refuse("missing", "no credentials")
	}
	if len(h) > MaxTokenSize+len("Bearer ") {
		return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonTooLarge, "authorization header too large")
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonMalformed, "not a bearer token")
	}
	if strings.HasPrefix(tok, "bhk_") {
		if a.keys == nil {
			return bulkhead.Scope{}, time.Time{}, none, refuse("api_key", "API keys are not enabled")
		}
		s, acc, err := a.keys.authenticateAPIKey(r.Context(), tok, r.Method)
		if err != nil {
			return bulkhead.Scope{}, time.Time{}, none, reasoned{err, "api_key"}
		}
		return s, time.Time{}, acc, nil
	}
	key := sha256.Sum256([]byte(tok))
	if c, ok := a.lookup(key); ok {
		if c.external != nil {
			if err := a.resolve(r.Context(), c.scope.Tenant, *c.external); err != nil {
				return bulkhead.Scope{}, time.Time{}, none, err
			}
		}
		return c.scope, c.expires, c.access, nil
	}
	p, err := a.v.Verify(r.Context(), tok)
	if err != nil {
		return bulkhead.Scope{}, time.Time{}, none, reasoned{err, Reason(err)}
	}
	if p.Tenant == uuid.Nil {
		return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonNoTenant, "issuer "+p.Issuer+" named no tenant")
	}
	s := bulkhead.Scope{Tenant: p.Tenant, Entity: p.Entity}
	acc := postgres.Access{ExternalEntity: p.Issuer != a.self, IssuedAt: issuedAt(p.Claims)}
	var ext *postgres.ExternalLogin
	if p.Issuer != a.self {
		switch {
		case a.dir != nil:
			ext = &postgres.ExternalLogin{Issuer: p.Issuer, Bound: p.TenantBound, Entity: p.Entity, Name: p.Name, Email: p.Email, ClaimsRefresh: a.claimsRefresh}
		case !p.TenantBound:
			return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonIssuerNotBound, fmt.Sprintf("issuer %s named tenant %s by claim, and there is no directory to check that the tenant registered it", p.Issuer, p.Tenant))
		}
	}
	if p.Issuer == a.self {
		id, err := uuid.Parse(p.Subject)
		if err != nil || id == uuid.Nil {
			return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonBadClaims, "bulkhead token with a subject that is not an entity id")
		}
		s.Entity = id
		if v, ok := p.Claims[token.SessionClaim]; ok {
			str, _ := v.(string)
			sid, err := uuid.Parse(str)
			if err != nil || sid == uuid.Nil || len(str) != 36 {
				return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonBadClaims, "malformed session claim")
			}
			acc.Session = sid
		}
	}
	if v, ok := p.Claims[ActingForClaim]; ok {
		str, _ := v.(string)
		id, err := uuid.Parse(str)
		if err != nil || id == uuid.Nil || len(str) != 36 {
			return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonBadClaims, "malformed acting-for claim")
		}
		s.ActingFor = id
	}
	if err := s.Validate(); err != nil {
		return bulkhead.Scope{}, time.Time{}, none, refuse(ReasonBadClaims, err.Error())
	}
	if ext != nil {
		if err := a.resolve(r.Context(), s.Tenant, *ext); err != nil {
			return bulkhead.Scope{}, time.Time{}, none, err
		}
	}
	a.remember(key, s, acc, p.ExpiresAt, ext)
	return s, p.ExpiresAt, acc, nil
}

// issuedAt reads a verified token's "iat" (a JSON number of seconds),
// rounded down; the zero time without one.
func issuedAt(claims map[string]any) time.Time {
	f, ok := claims["iat"].(float64)
	if !ok || f <= 0 || f > 1<<40 {
		return time.Time{}
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9))
}

// resolve checks an external principal against the directory in tenant's
// pre-authentication scope: binding, existence (or just-in-time creation),
// deactivation. A database failure is bulkhead.ErrUnavailable (503), never
// a 401 that would make clients drop a valid token.
func (a *Authenticator) resolve(ctx context.Context, tenant uuid.UUID, l postgres.ExternalLogin) error {
	st, err := a.dir.ResolveExternal(tenantScope(ctx, tenant), l)
	if err != nil {
		if errors.Is(err, bulkhead.ErrUnauthenticated) {
			return reasoned{err, ReasonOther}
		}
		return reasoned{fmt.Errorf("%w: authenticate: %w", bulkhead.ErrUnavailable, err), "directory_unavailable"}
	}
	who := fmt.Sprintf("issuer %s, entity %s, tenant %s", l.Issuer, l.Entity, tenant)
	switch st {
	case postgres.ExternalCreated, postgres.ExternalUpdated, postgres.ExternalOK:
		return nil
	case postgres.ExternalUnbound:
		return refuse(ReasonIssuerNotBound, who+": the tenant has not registered the issuer")
	case postgres.ExternalUnknown:
		return refuse(ReasonUnknownEntity, who+": no such entity, and no just-in-time creation for this issuer in this tenant")
	case postgres.ExternalBadName:
		return refuse(ReasonBadNameClaim, who+": just-in-time creation refused: the name claim is empty, longer than 200 characters or unprintable")
	case postgres.ExternalDeactivated:
		return refuse(ReasonDeactivated, who+": the entity is deactivated")
	}
	return refuse(ReasonOther, who+": unexpected directory answer "+quote(string(st)))
}

// FileConfig is the JSON file (--auth-config) listing external issuers.
type FileConfig struct {
	Issuers []struct {
		// Issuer alone (with Audience) is an OpenID Provider found by
		// discovery from its URL.
		Issuer          string   `json:"issuer"`
		JWKSURL         string   `json:"jwks_url"`
		HS256SecretFile string   `json:"hs256_secret_file"`
		Algorithms      []string `json:"algorithms"`
		Audience        string   `json:"audience"`
		TenantClaim     string   `json:"tenant_claim"`
		Tenant          string   `json:"tenant"` // a fixed tenant id, exclusive with tenant_claim
		NameClaim       string   `json:"name_claim"`
		EmailClaim      string   `json:"email_claim"`
	} `json:"issuers"`
}

// LoadIssuers reads a FileConfig. Secrets are read from their own files,
// which must not be accessible to others; nothing secret is in the config.
func LoadIssuers(path string) ([]IssuerConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	var fc FileConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, fmt.Errorf("auth config %s: %w", path, err)
	}
	var out []IssuerConfig
	for i, c := range fc.Issuers {
		ic := IssuerConfig{Issuer: c.Issuer, JWKSURL: c.JWKSURL, Algorithms: c.Algorithms, Audience: c.Audience, TenantClaim: c.TenantClaim,
			NameClaim: c.NameClaim, EmailClaim: c.EmailClaim}
		if c.Tenant != "" {
			id, err := parseTenant(c.Tenant)
			if err != nil {
				return nil, fmt.Errorf("auth config: issuers[%d].tenant %q: %w", i, c.Tenant, err)
			}
			ic.Tenant = id
		}
		if c.HS256SecretFile != "" {
			fi, err := os.Stat(c.HS256SecretFile)
			if err != nil {
				return nil, fmt.Errorf("auth config: issuers[%d]: %w", i, err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				return nil, fmt.Errorf("auth config: issuers[%d]: secret file %s is accessible to others: chmod 600", i, c.HS256SecretFile)
			}
			sec, err := os.ReadFile(c.HS256SecretFile)
			if err != nil {
				return nil, fmt.Errorf("auth config: issuers[%d]: %w", i, err)
			}
			ic.Secret = bulkhead.Secret(strings.TrimRight(string(sec), "\r\n"))
		}
		out = append(out, ic)
	}
	return out, nil
}
