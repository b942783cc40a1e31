// Package auth verifies the JWTs that external identity providers issue to
// bulkhead's callers and turns them into a Principal (issuer, subject,
// entity id, tenant).
//
// Guarantees of Verifier.Verify:
//   - Several issuers are trusted at once, each with either a JWKS URL or an
//     HS256 shared secret of at least 32 bytes, its own algorithm
//     allow-list, its audience and, optionally, the claim that carries the
//     tenant id.
//   - The unverified "iss" only selects an issuer's configuration; the
//     signature is then checked with that issuer's keys only, so a token
//     claiming issuer B but signed with issuer A's key fails. An unknown
//     issuer costs no network I/O: keys are never discovered from a token.
//   - Before any key lookup: tokens over MaxTokenSize (8 KiB) are refused
//     before any decoding; segments must be strict unpadded base64url and
//     JSON objects without duplicate members; headers carrying crit, jku,
//     x5u, jwk or x5c are refused (their URLs are never fetched); alg "none"
//     in any spelling, and any alg outside the issuer's list, is refused.
//     JWKS issuers allow only asymmetric algorithms, so a public key can
//     never serve as an HMAC secret; a JWKS key must also fit the alg
//     (family, curve, RSA >= 2048 bits).
//   - exp is required; nbf and iat are checked with a small leeway
//     (30 s by default); aud must contain the issuer's audience; sub is
//     required. JWKS issuers require a short printable kid.
//   - A JWKS is fetched at start, refreshed hourly in the background, and
//     refetched on an unknown kid at most once per JWKSRefetchInterval
//     (1 min by default), each fetch bounded to 5 s and 1 MiB with no
//     redirects. A failed or oversized fetch never replaces the last good
//     key set. Hostile kids are only ever compared as strings against the
//     in-memory set.
//   - The entity id is UUIDv5(EntityNamespace, issuer+"\x00"+sub): stable,
//     and distinct for the same subject at two issuers.
//   - An issuer configured by its URL alone is an OpenID Provider: its JWKS
//     is found by discovery (Issuer + DiscoveryPath), whose "issuer" must
//     equal the configured one exactly and whose jwks_uri must be https
//     (http only to loopback), rediscovered on the JWKS refresh schedule.
//     When no key of an issuer is known at all, Verify fails with
//     bulkhead.ErrUnavailable (retry later), not ErrUnauthenticated.
//   - Only an issuer with a fixed Tenant or a TenantClaim can yield a
//     tenant; the claim must be a canonical, non-nil UUID string, or the
//     token is refused. Other issuers yield uuid.Nil even if the token
//     carries such a claim; an issuer with a fixed Tenant ignores it.
//
// Guarantees of Authenticator: a claimed tenant counts only when the tenant
// registered the issuer, checked in the database (WithDirectory) on every
// request, which also creates just-in-time entities for tenants that opted
// in and refuses deactivated entities; without a directory a claimed tenant
// is refused.
//   - Every rejection wraps bulkhead.ErrUnauthenticated; Reason gives a
//     fixed label for metrics. Error texts are for logs only and never hold
//     key material or the token.
//
// A Verifier is safe for concurrent use; Close (or the end of the context
// given to NewVerifier) stops its background refreshes.
package auth
