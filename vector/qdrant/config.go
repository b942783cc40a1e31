package qdrant

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/bulkhead-dev/bulkhead"
)

// DefaultTimeout bounds each Store call of a Store made with a zero
// Config.Timeout.
const DefaultTimeout = 5 * time.Second

// TokenFunc returns the credential (a Qdrant JWT or API key) to send with a
// request for the named collection. It is called once per Store call, after
// the access check, with the call's context (which carries the tenant's
// scope). With Qdrant's JWT RBAC (service.jwt_rbac: true) a token can be
// scoped to one collection, e.g. claims
// {"access": [{"collection": "bulkhead_<tenant>_g<generation>", "access": "rw"}]}: a
// token minted for a tenant's collection then cannot read or write any
// other, and the server answers PermissionDenied (ErrForbidden) if it is
// ever sent for another. Note that creating and dropping collections needs
// a token with manage access ("m") in Qdrant's RBAC: provisioning code
// should use a Store whose TokenFunc grants that, or APIKey without a
// TokenFunc. An error wrapping bulkhead.ErrForbidden or
// bulkhead.ErrUnauthenticated is returned as is; any other error, or an
// empty token, fails the call with vector.ErrUnavailable.
type TokenFunc func(ctx context.Context, collection string) (string, error)

// Config configures a Store.
type Config struct {
	// Addr is the host:port of Qdrant's gRPC endpoint (usually port 6334).
	// Required.
	Addr string
	// APIKey, if set, is sent (as the api-key header) with every request
	// that TokenFunc does not cover. Use TLS whenever a key or token is
	// sent.
	APIKey string
	// TokenFunc, if set, supplies the per-request credential for the
	// tenant's collection; it replaces APIKey. See TokenFunc.
	TokenFunc TokenFunc
	// Timeout bounds each Store call (all the RPCs it makes, and TokenFunc)
	// through the context's deadline. Zero means DefaultTimeout; negative
	// is invalid.
	Timeout time.Duration
	// UseTLS enables TLS; TLSConfig, if set, configures it (default: TLS
	// 1.3 minimum, system roots).
	UseTLS    bool
	TLSConfig *tls.Config
	// PoolSize is the number of gRPC connections (0: the client's default
	// of 3).
	PoolSize uint
	// ExactSearch makes every Search an exact (brute-force) scan. Without
	// it Qdrant uses its HNSW index once a segment is large enough to be
	// indexed, and results are approximate (recall below 1); small
	// collections are scanned exactly either way.
	ExactSearch bool
}

// validate checks c and returns the host, port and effective timeout.
func (c Config) validate() (host string, port int, timeout time.Duration, err error) {
	if c.Addr == "" {
		return "", 0, 0, bulkhead.Invalid("qdrant address", "required (host:port of the gRPC endpoint)")
	}
	h, p, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "", 0, 0, bulkhead.Invalid("qdrant address", fmt.Sprintf("%q is not host:port: %v", c.Addr, err))
	}
	if h == "" {
		return "", 0, 0, bulkhead.Invalid("qdrant address", fmt.Sprintf("%q has no host", c.Addr))
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, 0, bulkhead.Invalid("qdrant address", fmt.Sprintf("%q has no valid port", c.Addr))
	}
	switch {
	case c.Timeout < 0:
		return "", 0, 0, bulkhead.Invalid("qdrant timeout", fmt.Sprintf("%v is negative", c.Timeout))
	case c.Timeout == 0:
		timeout = DefaultTimeout
	default:
		timeout = c.Timeout
	}
	return h, port, timeout, nil
}
