package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		remote, xff string
		trusted     []netip.Prefix
		want        string
	}{
		{"203.0.113.9:5000", "1.2.3.4", nil, "203.0.113.9"},      // untrusted peer: the header is ignored
		{"127.0.0.1:5000", "1.2.3.4", nil, "127.0.0.1"},          // loopback is not special
		{"10.1.2.3:5000", "1.2.3.4", proxy, "1.2.3.4"},           // trusted proxy: its client
		{"10.1.2.3:5000", "6.6.6.6, 1.2.3.4", proxy, "1.2.3.4"},  // a client can't prepend a spoofed hop
		{"10.1.2.3:5000", "1.2.3.4, 10.9.9.9", proxy, "1.2.3.4"}, // chained trusted proxies are skipped
		{"10.1.2.3:5000", "junk, 1.2.3.4", proxy, "1.2.3.4"},     // malformed hops to the left are never reached
		{"10.1.2.3:5000", "1.2.3.4, junk", proxy, "10.1.2.3"},    // a malformed right-most hop: fall back to the peer
		{"10.1.2.3:5000", "", proxy, "10.1.2.3"},                 // no header
		{"[::ffff:203.0.113.9]:5000", "", nil, "203.0.113.9"},    // mapped IPv4
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := clientIP(r, c.trusted); got != c.want {
			t.Errorf("remote %s, X-Forwarded-For %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}
