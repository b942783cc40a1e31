package httpapi

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimits bounds request rates. Zero values disable a limit.
type RateLimits struct {
	// PerEntity limits each authenticated (tenant, entity) on the API.
	PerEntity      rate.Limit
	PerEntityBurst int
	// AuthFailuresPerIP limits failed authentications per client IP: once
	// spent, the IP's requests get 429 before any token is looked at.
	AuthFailuresPerIP      rate.Limit
	AuthFailuresPerIPBurst int
	// AuthPerIP limits calls to the account endpoints (register, login,
	// refresh, logout) per client IP; AuthPerAccount limits register and
	// login per tenant and email.
	AuthPerIP           rate.Limit
	AuthPerIPBurst      int
	AuthPerAccount      rate.Limit
	AuthPerAccountBurst int
	// TrustedProxies are the peers whose X-Forwarded-For is believed. From
	// anyone else the header is ignored: the client IP is the peer's. There
	// is no bypass for loopback or any other address.
	TrustedProxies []netip.Prefix
}

// limiters is a set of token buckets by key, forgetting idle keys.
type limiters struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	m     map[string]*entryLimiter
	last  time.Time
}

type entryLimiter struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiters(limit rate.Limit, burst int) *limiters {
	if limit == 0 {
		return nil
	}
	if burst <= 0 {
		burst = int(math.Max(1, float64(limit)))
	}
	return &limiters{limit: limit, burst: burst, m: map[string]*entryLimiter{}}
}

// get returns key's limiter, sweeping keys idle for 10 minutes now and then.
func (ls *limiters) get(key string) *rate.Limiter {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	if now.Sub(ls.last) > time.Minute {
		for k, e := range ls.m {
			if now.Sub(e.seen) > 10*time.Minute {
				delete(ls.m, k)
			}
		}
		ls.last = now
	}
	e := ls.m[key]
	if e == nil {
		e = &entryLimiter{l: rate.NewLimiter(ls.limit, ls.burst)}
		ls.m[key] = e
	}
	e.seen = now
	return e.l
}

// allow takes a token for key; if none is left it returns how long to wait.
func (ls *limiters) allow(key string) (bool, time.Duration) {
	if ls == nil {
		return true, 0
	}
	r := ls.get(key).Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// exhausted reports whether key has no token left, without taking one.
func (ls *limiters) exhausted(key string) (bool, time.Duration) {
	if ls == nil {
		return false, 0
	}
	l := ls.get(key)
	if l.Tokens() >= 1 {
		return false, 0
	}
	r := l.Reserve()
	d := r.Delay()
	r.Cancel()
	return true, d
}

// clientIP is the request's peer address, or, when the peer is a trusted
// proxy, the right-most X-Forwarded-For address that is not itself a
// trusted proxy.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	if !isTrusted(peer) {
		return peer.Unmap().String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: trust nothing further left
		}
		if !isTrusted(a) {
			return a.Unmap().String()
		}
	}
	return peer.Unmap().String()
}

// errRateLimited answers 429.
type errRateLimited struct{ retry time.Duration }

func (e errRateLimited) Error() string { return "rate limited" }

func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(math.Max(d.Seconds(), 1)))))
}
