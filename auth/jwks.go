package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// MaxJWKSSize bounds a JWKS response body, in bytes. A larger response is
// refused whole and the last good key set stays in use.
const MaxJWKSSize = 1 << 20

// minRSABits is the smallest RSA modulus accepted for RS*/PS* tokens.
const minRSABits = 2048

var (
	errJWKSTooLarge = fmt.Errorf("JWKS response larger than %d bytes", MaxJWKSSize)
	errNoRedirect   = errors.New("JWKS endpoint redirected; redirects are not followed")
)

// newJWKS starts the key set of one JWKS issuer with keyfunc: a first fetch
// now (a failure is logged, not returned: the set starts empty and the
// first unknown kid retries), a background refresh every refreshEvery, and
// a refetch on an unknown kid allowed at most once per refetchEvery. Every
// request goes through client, which bounds time and body size, and is
// cancelled with ctx, which also ends the refresh goroutine. A failed fetch
// never replaces the key set: the last good one stays.
func newJWKS(ctx context.Context, url string, client *http.Client, o Options) (keyfunc.Keyfunc, error) {
	log := o.Logger
	override := keyfunc.Override{
		Client:      client,
		HTTPTimeout: o.JWKSTimeout,
		// How long an unknown-kid lookup may wait for the limiter; it also
		// bounds the refetch that follows, so it is the fetch timeout.
		RateLimitWaitMax: o.JWKSTimeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "JWKS fetch failed; keeping the last good key set", "url", u, "err", err)
				if o.FetchFailed != nil {
					o.FetchFailed("jwks", err)
				}
			}
		},
		RefreshInterval:   o.JWKSRefreshInterval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(o.JWKSRefetchInterval), 1),
	}
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, override)
	if err != nil {
		return nil, fmt.Errorf("start JWKS %s: %w", url, err)
	}
	return kf, nil
}

// jwksClient returns a copy of base (or a new client) that gives up after
// timeout, follows no redirect and refuses bodies over MaxJWKSSize.
func jwksClient(base *http.Client, timeout time.Duration) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	transport := c.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	c.Transport = limitedTransport{base: transport, max: MaxJWKSSize}
	c.Timeout = timeout
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return errNoRedirect }
	return c
}

// limitedTransport refuses response bodies longer than max: at once when
// Content-Length says so, otherwise with a read error at byte max+1, which
// makes the JSON decoding, and so the whole fetch, fail.
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, errJWKSTooLarge
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64 // bytes still allowed
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errJWKSTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errJWKSTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// keyFits reports whether a key from a JWKS can verify alg: the family must
// match (so an RSA key is never used for ES256, nor any JWKS key for HMAC),
// EC curves must match the algorithm and RSA moduli must have at least
// minRSABits.
func keyFits(alg string, key any) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N != nil && k.N.BitLen() >= minRSABits
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P256()
	case "ES384":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P384()
	case "ES512":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P521()
	case "EdDSA":
		k, ok := key.(ed25519.PublicKey)
		return ok && len(k) == ed25519.PublicKeySize
	}
	return false
}
