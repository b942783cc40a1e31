package auth

import (
	"errors"
	"strconv"

	"github.com/bulkhead-dev/bulkhead"
)

// Reason labels: the fixed, low-cardinality categories of rejection that
// Reason returns, meant for metrics and logs. They are never sent to
// clients: every rejection is the same ErrUnauthenticated to a caller.
const (
	ReasonTooLarge        = "too_large"        // token longer than MaxTokenSize; nothing was parsed
	ReasonMalformed       = "malformed"        // not three strict base64url segments of JSON objects
	ReasonAlgNone         = "alg_none"         // "alg" is "none" in any spelling
	ReasonForbiddenHeader = "forbidden_header" // header has crit, jku, x5u, jwk or x5c
	ReasonUnknownIssuer   = "unknown_issuer"   // "iss" missing or not configured
	ReasonAlgNotAllowed   = "alg_not_allowed"  // "alg" outside the issuer's allow-list
	ReasonMissingKID      = "missing_kid"      // JWKS issuer and no "kid"
	ReasonBadKID          = "bad_kid"          // "kid" not a short printable string
	ReasonUnknownKID      = "unknown_kid"      // no key with that "kid", even after a refetch (or none was allowed yet)
	ReasonKeyMismatch     = "key_mismatch"     // the key found does not fit "alg" (type, curve, RSA size)
	ReasonBadSignature    = "bad_signature"    // the signature does not verify
	ReasonMissingExp      = "missing_exp"      // no "exp"
	ReasonExpired         = "expired"          // "exp" passed (beyond the leeway)
	ReasonNotYetValid     = "not_yet_valid"    // "nbf" in the future (beyond the leeway)
	ReasonIssuedInFuture  = "issued_in_future" // "iat" in the future (beyond the leeway)
	ReasonWrongAudience   = "wrong_audience"   // "aud" missing or without the issuer's audience
	ReasonMissingSub      = "missing_sub"      // no or empty "sub"
	ReasonBadTenant       = "bad_tenant"       // tenant claim present but not a canonical, non-nil UUID string
	ReasonBadClaims       = "bad_claims"       // a registered claim has the wrong JSON type
	ReasonJWKSUnavailable = "jwks_unavailable" // no key of the issuer is known: its JWKS (or discovery) was never reached; wraps bulkhead.ErrUnavailable
	ReasonOther           = "other"            // an error this package did not make
)

// Reasons returns every label Reason can return, for pre-registering metric
// series. The slice is new on each call.
func Reasons() []string {
	return []string{
		ReasonTooLarge, ReasonMalformed, ReasonAlgNone, ReasonForbiddenHeader,
		ReasonUnknownIssuer, ReasonAlgNotAllowed, ReasonMissingKID, ReasonBadKID,
		ReasonUnknownKID, ReasonKeyMismatch, ReasonBadSignature, ReasonMissingExp,
		ReasonExpired, ReasonNotYetValid, ReasonIssuedInFuture, ReasonWrongAudience,
		ReasonMissingSub, ReasonBadTenant, ReasonBadClaims, ReasonJWKSUnavailable, ReasonOther,
	}
}

// Reason returns the short fixed label of a rejection returned by
// Verifier.Verify (one of the Reason* constants), "" for a nil error and
// ReasonOther for an error this package did not make.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var r *rejection
	if errors.As(err, &r) {
		return r.reason
	}
	return ReasonOther
}

// rejection is every error Verify returns. Its text is for logs only: it may
// name the issuer and quote (truncated) header values, never key material or
// the token itself.
type rejection struct {
	reason string
	detail string
	err    error // underlying cause, may be nil
}

func reject(reason, detail string, err error) error {
	return &rejection{reason: reason, detail: detail, err: err}
}

// sentinel is the root error r stands for: ErrUnavailable when no key of
// the issuer is known (the caller should retry, 503), ErrUnauthenticated
// for every other rejection.
func (r *rejection) sentinel() error {
	if r.reason == ReasonJWKSUnavailable {
		return bulkhead.ErrUnavailable
	}
	return bulkhead.ErrUnauthenticated
}

func (r *rejection) Error() string {
	s := "verify JWT: " + r.sentinel().Error() + " (" + r.reason + ")"
	if r.detail != "" {
		s += ": " + r.detail
	}
	if r.err != nil {
		s += ": " + r.err.Error()
	}
	return s
}

// Unwrap makes errors.Is(err, bulkhead.ErrUnauthenticated) true (or
// bulkhead.ErrUnavailable for ReasonJWKSUnavailable) and keeps the cause
// reachable for logging.
func (r *rejection) Unwrap() []error {
	if r.err == nil {
		return []error{r.sentinel()}
	}
	return []error{r.sentinel(), r.err}
}

// quote renders an attacker-controlled value for a log line: quoted (so NUL
// and control bytes are escaped) and cut to a few dozen bytes.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return strconv.Quote(s)
}
