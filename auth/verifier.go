package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/bulkhead-dev/bulkhead"
)

// Defaults applied by NewVerifier to zero Options fields.
const (
	DefaultLeeway              = 30 * time.Second
	DefaultJWKSRefetchInterval = time.Minute
	DefaultJWKSRefreshInterval = time.Hour
	DefaultJWKSTimeout         = 5 * time.Second

	// MinSecretSize is the shortest HS256 shared secret NewVerifier accepts,
	// in bytes (the size of the SHA-256 output, RFC 7518 §3.2).
	MinSecretSize = 32

	maxLeeway = 5 * time.Minute
)

// jwksAlgorithms are the algorithms a JWKS issuer may allow: asymmetric
// only, so a public key can never be used as an HMAC secret.
var jwksAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// registeredClaims may not be used as the tenant claim.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// IssuerConfig is one trusted token issuer. At most one of JWKSURL, JWKS
// and Secret is set; with none, the issuer is an OpenID Provider whose
// JWKS is found by discovery from the Issuer URL.
type IssuerConfig struct {
	// Issuer is the exact "iss" value of the issuer's tokens. Required, unique
	// among the configured issuers, without NUL bytes. For discovery it is
	// the provider's URL: https, or http to a loopback address only.
	Issuer string
	// JWKSURL is where the issuer publishes its public keys (a JWK Set):
	// https, or http to a loopback address only. Redirects are not followed.
	// Empty (and no JWKS or Secret): discovered from
	// Issuer + DiscoveryPath, whose "issuer" must equal Issuer exactly.
	JWKSURL string
	// JWKS is a fixed JWK Set (JSON), for an issuer whose keys are known in
	// advance, such as bulkhead's own token signer. Never refetched.
	JWKS []byte
	// Secret is an HS256 shared secret of at least MinSecretSize bytes.
	Secret bulkhead.Secret
	// Algorithms is the allow-list of "alg" values. Required for a JWKS
	// issuer, from RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA
	// (for a discovered issuer, empty means all of these: each key must
	// still fit the alg). A secret issuer accepts only HS256 (empty means
	// exactly that).
	Algorithms []string
	// Audience must appear in the token's "aud". Required.
	Audience string
	// TenantClaim names the claim carrying the tenant id, for an issuer
	// trusted to say which tenant a principal acts in. Empty: the issuer is
	// not trusted for tenancy and its tokens never yield a tenant, whatever
	// claims they carry. An issuer trusted with a tenant claim speaks only
	// for the tenants that registered it: the Authenticator checks that.
	TenantClaim string
	// Tenant binds the issuer to one tenant (the "one IdP per customer"
	// case): every token of the issuer acts in it, no tenant claim is read.
	// Exclusive with TenantClaim.
	Tenant uuid.UUID
	// NameClaim and EmailClaim name the claims that give an external
	// entity its display name and email ("name" and "email" if empty). A
	// token without the name claim uses its subject as the name.
	NameClaim, EmailClaim string
}

// Options tune a Verifier. The zero value gives the documented defaults.
type Options struct {
	// Leeway is the clock skew tolerated on exp, nbf and iat: DefaultLeeway
	// if zero, at most 5 minutes.
	Leeway time.Duration
	// JWKSRefetchInterval is the least time between two refetches of one
	// issuer's JWKS caused by unknown kids: DefaultJWKSRefetchInterval if
	// zero. Lookups of unknown kids in between fail without network traffic
	// (one may wait up to JWKSTimeout for the next allowed refetch).
	JWKSRefetchInterval time.Duration
	// JWKSRefreshInterval is how often each JWKS is refreshed in the
	// background: DefaultJWKSRefreshInterval if zero.
	JWKSRefreshInterval time.Duration
	// JWKSTimeout bounds each JWKS fetch: DefaultJWKSTimeout if zero.
	JWKSTimeout time.Duration
	// HTTPClient is copied for JWKS fetches (its Transport, e.g. for custom
	// roots, is kept); the copy gets JWKSTimeout, the MaxJWKSSize body limit
	// and no redirects. Nil: a new client over http.DefaultTransport.
	HTTPClient *http.Client
	// Logger receives JWKS fetch failures. Nil: slog.Default().
	Logger *slog.Logger
	// FetchFailed, if set, is called after every failed JWKS or discovery
	// fetch (first, background refresh or unknown-kid refetch), with what
	// was fetched ("jwks" or "discovery") and the error: for metrics. It
	// must be safe for concurrent use and quick.
	FetchFailed func(what string, err error)
	// Now is the clock for exp, nbf and iat. Nil: time.Now. For tests.
	Now func() time.Time
}

// Principal is who a verified token speaks for.
type Principal struct {
	Issuer  string    // the configured issuer (equal to the token's "iss")
	Subject string    // the token's "sub", never empty
	Entity  uuid.UUID // EntityID(Issuer, Subject)
	Tenant  uuid.UUID // the issuer's fixed Tenant, or from its TenantClaim; uuid.Nil if neither
	// TenantBound is true when Tenant is the issuer's fixed tenant (bound by
	// configuration), false when it comes from a claim (then only a
	// tenant's registration of the issuer binds it).
	TenantBound bool
	// Name and Email are the mapped NameClaim and EmailClaim: "" when
	// absent or unusable (a name must be 1 to 200 characters without
	// control characters, an email at most 320 bytes with an "@").
	Name, Email string
	ExpiresAt   time.Time // the token's "exp"
	// Claims are all the token's claims, decoded from JSON (numbers are
	// float64). They are verified as coming from Issuer; anything beyond the
	// fields above is for the caller to interpret.
	Claims map[string]any
}

// Verifier verifies JWTs from a fixed set of issuers. It is safe for
// concurrent use. Its JWKS key sets are refreshed in the background until
// Close is called or the context given to NewVerifier ends.
type Verifier struct {
	issuers   map[string]*issuer
	done      <-chan struct{} // closed when the verifier's lifetime ends
	cancel    context.CancelFunc
	closeOnce sync.Once
}

type issuer struct {
	name        string
	algs        []string
	secret      bulkhead.Secret // HS256 issuer (a Secret, so printing the issuer never shows it)
	jwks        keyfunc.Keyfunc // JWKS issuer with a fixed set or URL
	disc        *discovery      // JWKS issuer found by discovery
	tenantClaim string
	tenant      uuid.UUID // fixed tenant
	nameClaim   string
	emailClaim  string
	parser      *jwt.Parser
	validator   *jwt.Validator
}

var (
	errKeyLookup   = errors.New("key lookup failed")
	errKeyMismatch = errors.New("key does not fit the algorithm")
	errClosed      = errors.New("verifier closed")
	errNoKeys      = errors.New("no key of the issuer is known (JWKS or discovery unreachable)")
)

// NewVerifier checks the configuration and starts a Verifier. For each JWKS
// issuer it fetches the key set once before returning (bounded by
// JWKSTimeout); a failed first fetch is logged, not returned, so a
// temporarily unreachable issuer does not stop the server: its tokens fail
// until a later fetch succeeds. ctx bounds the verifier's lifetime: when it
// ends, as after Close, background refreshes stop.
//
// It returns a *bulkhead.ValidationError (bulkhead.ErrInvalid) listing every
// configuration problem.
func NewVerifier(ctx context.Context, issuers []IssuerConfig, opts Options) (*Verifier, error) {
	opts, problems := opts.withDefaults()
	if len(issuers) == 0 {
		problems = append(problems, bulkhead.FieldProblem{Field: "issuers", Detail: "at least one issuer is required"})
	}
	seen := make(map[string]bool)
	for i, c := range issuers {
		problems = append(problems, c.validate(fmt.Sprintf("issuers[%d]", i), seen)...)
	}
	if len(problems) > 0 {
		return nil, &bulkhead.ValidationError{Problems: problems}
	}

	life, cancel := context.WithCancel(ctx)
	v := &Verifier{issuers: make(map[string]*issuer, len(issuers)), done: life.Done(), cancel: cancel}
	client := jwksClient(opts.HTTPClient, opts.JWKSTimeout)
	for _, c := range issuers {
		is := &issuer{name: c.Issuer, algs: slices.Clone(c.Algorithms), tenantClaim: c.TenantClaim, tenant: c.Tenant,
			nameClaim: cmp.Or(c.NameClaim, "name"), emailClaim: cmp.Or(c.EmailClaim, "email")}
		if c.Secret != "" {
			is.secret = c.Secret
			is.algs = []string{jwt.SigningMethodHS256.Alg()}
		} else if len(c.JWKS) > 0 {
			kf, err := keyfunc.NewJWKSetJSON(c.JWKS)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("new verifier: issuer %s: fixed JWK set: %w", c.Issuer, err)
			}
			is.jwks = kf
		} else if c.JWKSURL == "" {
			if len(is.algs) == 0 {
				is.algs = slices.Clone(jwksAlgorithms)
			}
			is.disc = newDiscovery(life, c.Issuer, client, opts)
		} else {
			kf, err := newJWKS(life, c.JWKSURL, client, opts)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("new verifier: issuer %s: %w", c.Issuer, err)
			}
			is.jwks = kf
		}
		is.parser = jwt.NewParser(
			jwt.WithValidMethods(is.algs),
			jwt.WithStrictDecoding(),
			jwt.WithoutClaimsValidation(), // done by is.validator, after the signature
		)
		is.validator = jwt.NewValidator(
			jwt.WithTimeFunc(opts.Now),
			jwt.WithLeeway(opts.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(c.Issuer),
			jwt.WithAudience(c.Audience),
		)
		v.issuers[c.Issuer] = is
	}
	return v, nil
}

// Close stops the background JWKS refreshes. Verify keeps working with the
// key sets already fetched but fetches no more. Close is idempotent and
// always returns nil.
func (v *Verifier) Close() error {
	v.closeOnce.Do(v.cancel)
	return nil
}

// Verify checks token and returns the principal it speaks for.
//
// In order, and stopping at the first failure: the size (MaxTokenSize), the
// shape (three strict base64url segments, JSON objects without duplicate
// members), the header (no crit, jku, x5u, jwk or x5c; alg not "none" in
// any spelling), the issuer (the unverified "iss" only selects one of the
// configured issuers; no network I/O happens for an unknown one), the alg
// against that issuer's allow-list, the kid (JWKS issuers), the signature
// with that issuer's keys only, then the claims: exp required, nbf and iat
// within the leeway, aud, sub required, and the tenant claim if the issuer
// is trusted for tenancy.
//
// An unknown kid may cause one refetch of that issuer's JWKS, at most one
// per JWKSRefetchInterval; ctx bounds it.
//
// Every error wraps bulkhead.ErrUnauthenticated, except one: when no key
// of a JWKS issuer is known at all (its JWKS or discovery document was
// never reached), the error wraps bulkhead.ErrUnavailable instead (retry
// later; 503). Reason(err) gives its category. The error text is for logs,
// never for clients.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	is, claims, err := v.verifySignature(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	if err := is.validator.Validate(claims); err != nil {
		return Principal{}, classifyClaims(is.name, claims, err)
	}
	return is.principal(claims)
}

// verifySignature is the first layer of Verify: every check up to and
// including the signature, none of the claims (beyond choosing the issuer
// by "iss"). Its claims are authentic but not yet valid: only Verify may
// hand them out.
func (v *Verifier) verifySignature(ctx context.Context, token string) (*issuer, jwt.MapClaims, error) {
	u, err := inspect(token)
	if err != nil {
		return nil, nil, err
	}
	is := v.issuers[u.iss]
	if is == nil {
		return nil, nil, reject(ReasonUnknownIssuer, "iss "+quote(u.iss), nil)
	}
	if !slices.Contains(is.algs, u.alg) {
		return nil, nil, reject(ReasonAlgNotAllowed, fmt.Sprintf("issuer %s: alg %s", is.name, quote(u.alg)), nil)
	}
	if is.asymmetric() {
		if !u.hasKID {
			return nil, nil, reject(ReasonMissingKID, "issuer "+is.name, nil)
		}
		if err := checkKID(u.kid); err != nil {
			return nil, nil, err
		}
	}
	claims := jwt.MapClaims{}
	if _, err := is.parser.ParseWithClaims(token, claims, v.keyfunc(ctx, is, u.kid)); err != nil {
		return nil, nil, classifyParse(is.name, err)
	}
	return is, claims, nil
}

// keyfunc returns the key that verifies a token of is: its secret, or the
// key named by kid in its JWKS, checked to fit the token's alg.
func (v *Verifier) keyfunc(ctx context.Context, is *issuer, kid string) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if !slices.Contains(is.algs, alg) { // also checked by the parser: belt and braces
			return nil, errKeyMismatch
		}
		if !is.asymmetric() {
			if t.Method != jwt.SigningMethodHS256 {
				return nil, errKeyMismatch
			}
			return []byte(is.secret.Reveal()), nil
		}
		select {
		case <-v.done:
			// Closed: look up cached keys only. A cancelled context makes the
			// unknown-kid refetch fail before any request.
			cctx, cancel := context.WithCancelCause(ctx)
			cancel(errClosed)
			ctx = cctx
		default:
		}
		kf := is.keySet(ctx)
		if kf == nil {
			return nil, errNoKeys
		}
		key, err := kf.KeyfuncCtx(ctx)(t)
		if err != nil {
			switch n := cachedKeys(ctx, kf, kid); {
			case n < 0: // found, but its JWK "alg" or "use" says no
				return nil, fmt.Errorf("%w: %w", errKeyMismatch, err)
			case n == 0: // nothing known at all: the JWKS was never reached
				return nil, fmt.Errorf("%w: %w", errNoKeys, err)
			}
			return nil, fmt.Errorf("%w: %w", errKeyLookup, err)
		}
		if !keyFits(alg, key) {
			return nil, fmt.Errorf("%w: alg %s, key %T", errKeyMismatch, alg, key)
		}
		return key, nil
	}
}

// asymmetric reports whether is verifies with a JWKS (fixed, by URL or
// discovered) rather than a shared secret.
func (is *issuer) asymmetric() bool { return is.jwks != nil || is.disc != nil }

// keySet returns is's JWKS key set, nil when none is known yet (a
// discovered issuer whose discovery has not succeeded).
func (is *issuer) keySet(ctx context.Context) keyfunc.Keyfunc {
	if is.disc != nil {
		return is.disc.keys(ctx)
	}
	return is.jwks
}

// cachedKeys reads kf's in-memory key set (no fetch): -1 if it has a key
// named kid, otherwise how many keys it has.
func cachedKeys(ctx context.Context, kf keyfunc.Keyfunc, kid string) int {
	keys, err := kf.Storage().KeyReadAll(context.WithoutCancel(ctx))
	if err != nil {
		return 0
	}
	for _, k := range keys {
		if k.Marshal().KID == kid {
			return -1
		}
	}
	return len(keys)
}

func classifyParse(iss string, err error) error {
	detail := "issuer " + iss
	switch {
	case errors.Is(err, errNoKeys):
		return reject(ReasonJWKSUnavailable, detail, err)
	case errors.Is(err, errKeyLookup):
		return reject(ReasonUnknownKID, detail, err)
	case errors.Is(err, errKeyMismatch):
		return reject(ReasonKeyMismatch, detail, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reject(ReasonBadSignature, detail, err)
	}
	return reject(ReasonMalformed, detail, err)
}

func classifyClaims(iss string, claims jwt.MapClaims, err error) error {
	detail := "issuer " + iss
	has := func(name string) bool { _, ok := claims[name]; return ok }
	switch {
	case !has("exp"):
		return reject(ReasonMissingExp, detail, err)
	case errors.Is(err, jwt.ErrInvalidType):
		return reject(ReasonBadClaims, detail, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return reject(ReasonExpired, detail, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reject(ReasonNotYetValid, detail, err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reject(ReasonIssuedInFuture, detail, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience), !has("aud"):
		return reject(ReasonWrongAudience, detail, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reject(ReasonUnknownIssuer, detail, err)
	}
	return reject(ReasonBadClaims, detail, err)
}

// principal builds the result from claims whose signature and registered
// claims have been verified.
func (is *issuer) principal(claims jwt.MapClaims) (Principal, error) {
	detail := "issuer " + is.name
	sub, err := claims.GetSubject()
	if err != nil {
		return Principal{}, reject(ReasonBadClaims, detail, err)
	}
	if sub == "" {
		return Principal{}, reject(ReasonMissingSub, detail, nil)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // the validator already required it
		return Principal{}, reject(ReasonMissingExp, detail, err)
	}
	p := Principal{
		Issuer:    is.name,
		Subject:   sub,
		Entity:    EntityID(is.name, sub),
		ExpiresAt: exp.Time,
		Claims:    claims,
	}
	p.Name, p.Email = is.mapClaims(claims, sub)
	if is.tenant != uuid.Nil {
		p.Tenant, p.TenantBound = is.tenant, true
	} else if is.tenantClaim != "" {
		if raw, ok := claims[is.tenantClaim]; ok {
			s, ok := raw.(string)
			if !ok {
				return Principal{}, reject(ReasonBadTenant, fmt.Sprintf("%s: claim %q is not a string", detail, is.tenantClaim), nil)
			}
			id, err := parseTenant(s)
			if err != nil {
				return Principal{}, reject(ReasonBadTenant, fmt.Sprintf("%s: claim %q: %s", detail, is.tenantClaim, quote(s)), err)
			}
			p.Tenant = id
		}
	}
	return p, nil
}

// parseTenant accepts only the canonical 36-character form of a non-nil
// UUID (any hex case); uuid.Parse alone also takes braces, "urn:uuid:" and
// bare hex.
func parseTenant(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, errors.New("not a canonical UUID")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, err
	}
	if id == uuid.Nil {
		return uuid.Nil, errors.New("nil UUID")
	}
	return id, nil
}

func (o Options) withDefaults() (Options, []bulkhead.FieldProblem) {
	var problems []bulkhead.FieldProblem
	def := func(d *time.Duration, v time.Duration, field string) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			problems = append(problems, bulkhead.FieldProblem{Field: field, Detail: "must not be negative"})
		}
	}
	def(&o.Leeway, DefaultLeeway, "options.leeway")
	def(&o.JWKSRefetchInterval, DefaultJWKSRefetchInterval, "options.jwks_refetch_interval")
	def(&o.JWKSRefreshInterval, DefaultJWKSRefreshInterval, "options.jwks_refresh_interval")
	def(&o.JWKSTimeout, DefaultJWKSTimeout, "options.jwks_timeout")
	if o.Leeway > maxLeeway {
		problems = append(problems, bulkhead.FieldProblem{Field: "options.leeway", Detail: "at most 5m"})
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, problems
}

func (c IssuerConfig) validate(field string, seen map[string]bool) []bulkhead.FieldProblem {
	var problems []bulkhead.FieldProblem
	add := func(f, detail string) {
		problems = append(problems, bulkhead.FieldProblem{Field: field + "." + f, Detail: detail})
	}
	switch {
	case c.Issuer == "":
		add("issuer", "required")
	case strings.ContainsRune(c.Issuer, 0):
		add("issuer", "must not contain NUL")
	case seen[c.Issuer]:
		add("issuer", "duplicate issuer")
	}
	seen[c.Issuer] = true
	if c.Audience == "" {
		add("audience", "required")
	}
	if c.TenantClaim != "" && slices.Contains(registeredClaims, c.TenantClaim) {
		add("tenant_claim", "must not be a registered claim")
	}
	if c.TenantClaim != "" && c.Tenant != uuid.Nil {
		add("tenant", "set either tenant (a fixed binding) or tenant_claim, not both")
	}
	sources := 0
	for _, set := range []bool{c.JWKSURL != "", len(c.JWKS) > 0, c.Secret != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources > 1:
		add("jwks_url", "set exactly one of jwks_url, jwks or secret")
	case sources == 0: // OIDC discovery from the issuer URL
		if err := checkJWKSURL(c.Issuer); err != nil {
			add("issuer", "with neither jwks_url nor a secret, the issuer URL is used for OIDC discovery and "+err.Error())
		} else if u, _ := url.Parse(c.Issuer); u.RawQuery != "" || u.Fragment != "" {
			add("issuer", "an issuer URL for OIDC discovery has no query or fragment")
		}
		for _, a := range c.Algorithms {
			if !slices.Contains(jwksAlgorithms, a) {
				add("algorithms", fmt.Sprintf("%q: not an allowed JWKS algorithm", a))
			}
		}
	case c.Secret != "":
		if len(c.Secret.Reveal()) < MinSecretSize {
			add("secret", fmt.Sprintf("at least %d bytes", MinSecretSize))
		}
		for _, a := range c.Algorithms {
			if a != jwt.SigningMethodHS256.Alg() {
				add("algorithms", fmt.Sprintf("%q: a secret issuer allows only HS256", a))
			}
		}
	default:
		if c.JWKSURL != "" {
			if err := checkJWKSURL(c.JWKSURL); err != nil {
				add("jwks_url", err.Error())
			}
		}
		if len(c.Algorithms) == 0 {
			add("algorithms", "required for a JWKS issuer")
		}
		for _, a := range c.Algorithms {
			if !slices.Contains(jwksAlgorithms, a) {
				add("algorithms", fmt.Sprintf("%q: not an allowed JWKS algorithm", a))
			}
		}
	}
	return problems
}

func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" {
		return errors.New("needs a host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must be https (http only to a loopback address)")
	}
	return errors.New("must be https")
}
