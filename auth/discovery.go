package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// DiscoveryPath is where an OpenID Provider publishes its configuration,
// relative to its issuer URL (OpenID Connect Discovery 1.0, §4).
const DiscoveryPath = "/.well-known/openid-configuration"

// discoveryDoc is the part of a provider configuration bulkhead uses.
type discoveryDoc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discovery finds an issuer's JWKS from its issuer URL and keeps it: a
// first discovery when the verifier starts, a rediscovery on the JWKS
// refresh schedule (a moved jwks_uri switches key sets; the same one keeps
// the running key set and its cache), and, while no key set is known yet,
// an on-demand attempt at most once per JWKSRefetchInterval. A document
// whose "issuer" is not exactly the configured issuer, or whose jwks_uri is
// not https (http only to loopback), is refused and never used; a failed
// rediscovery keeps the last good key set.
type discovery struct {
	issuer  string
	url     string
	client  *http.Client
	opts    Options
	life    context.Context
	limiter *rate.Limiter // on-demand attempts while nothing is known

	mu  sync.Mutex // serialises discoveries
	cur atomic.Pointer[discovered]
}

type discovered struct {
	jwksURL string
	kf      keyfunc.Keyfunc
	cancel  context.CancelFunc // ends kf's background refresh
}

// discoveryURL is the configuration URL of issuer: the issuer with any
// trailing slash removed, then DiscoveryPath.
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + DiscoveryPath
}

// newDiscovery runs the first discovery (bounded by the client's timeout;
// a failure is logged, not returned) and starts the rediscovery loop,
// which ends with life.
func newDiscovery(life context.Context, issuer string, client *http.Client, o Options) *discovery {
	d := &discovery{issuer: issuer, url: discoveryURL(issuer), client: client, opts: o, life: life,
		limiter: rate.NewLimiter(rate.Every(o.JWKSRefetchInterval), 1)}
	d.limiter.Allow() // the first attempt is the one below
	_ = d.refresh(life)
	go d.loop()
	return d
}

func (d *discovery) loop() {
	t := time.NewTicker(d.opts.JWKSRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-d.life.Done():
			return
		case <-t.C:
			_ = d.refresh(d.life)
		}
	}
}

// keys returns the issuer's current key set, or nil when none is known. With
// none known it may try one discovery now (rate-limited; bounded by the
// client's timeout and ctx).
func (d *discovery) keys(ctx context.Context) keyfunc.Keyfunc {
	if c := d.cur.Load(); c != nil {
		return c.kf
	}
	if ctx.Err() != nil || !d.limiter.Allow() {
		return nil
	}
	_ = d.refresh(ctx)
	if c := d.cur.Load(); c != nil {
		return c.kf
	}
	return nil
}

// refresh fetches the provider configuration and, when it names a new
// jwks_uri, starts a key set for it and retires the previous one.
func (d *discovery) refresh(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	jwksURL, err := d.fetch(ctx)
	if err != nil {
		d.opts.Logger.ErrorContext(ctx, "OIDC discovery failed; keeping the last good key set", "issuer", d.issuer, "url", d.url, "err", err)
		if d.opts.FetchFailed != nil {
			d.opts.FetchFailed("discovery", err)
		}
		return err
	}
	if c := d.cur.Load(); c != nil && c.jwksURL == jwksURL {
		return nil
	}
	kctx, cancel := context.WithCancel(d.life)
	kf, err := newJWKS(kctx, jwksURL, d.client, d.opts)
	if err != nil {
		cancel()
		d.opts.Logger.ErrorContext(ctx, "OIDC discovery: JWKS start failed", "issuer", d.issuer, "jwks_uri", jwksURL, "err", err)
		return err
	}
	if old := d.cur.Swap(&discovered{jwksURL: jwksURL, kf: kf, cancel: cancel}); old != nil {
		old.cancel()
	}
	d.opts.Logger.InfoContext(ctx, "OIDC discovery", "issuer", d.issuer, "jwks_uri", jwksURL)
	return nil
}

var errDiscoveryIssuer = errors.New("discovery document names another issuer")

// fetch returns the jwks_uri of a valid provider configuration.
func (d *discovery) fetch(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", d.url, resp.StatusCode)
	}
	var doc discoveryDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("GET %s: %w", d.url, err)
	}
	// OpenID Connect Discovery §4.3: the issuer in the document MUST be
	// identical to the one used to find it. Anything else could let one
	// provider's document hand out another's tokens.
	if doc.Issuer != d.issuer {
		return "", fmt.Errorf("%w: configured %s, document says %s", errDiscoveryIssuer, quote(d.issuer), quote(doc.Issuer))
	}
	if doc.JWKSURI == "" {
		return "", errors.New("discovery document has no jwks_uri")
	}
	if err := checkJWKSURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document's jwks_uri %s: %w", quote(doc.JWKSURI), err)
	}
	return doc.JWKSURI, nil
}
