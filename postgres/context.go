package postgres

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// ContextKey signs the context (tenant, entity, acting-for) that InScope and
// Read put into each transaction. PostgreSQL's bulkhead_context extension
// (pgext/, preloaded by the cluster) holds the same key and sets the
// context settings only for a token signed with it, so SQL running as the
// runtime role can't name another tenant (docs/SECURITY.md). The zero
// value is no key. A ContextKey never prints.
type ContextKey struct{ k *contextKey }

type contextKey struct {
	key  []byte
	macs sync.Pool // of hash.Hash: keyed HMAC-SHA256 states, Reset between uses
}

// nonces makes every token's nonce unique without a system call per token:
// a random per-process prefix and a counter. Uniqueness, not secrecy, is its job.
var nonces struct {
	prefix [8]byte
	n      atomic.Uint64
}

func init() { rand.Read(nonces.prefix[:]) }

// contextKeyLen is the key's length in bytes (HMAC-SHA256).
const contextKeyLen = 32

// NewContextKey returns the key made of b, which must be 32 bytes.
// It returns bulkhead.ErrInvalid otherwise.
func NewContextKey(b []byte) (ContextKey, error) {
	if len(b) != contextKeyLen {
		return ContextKey{}, fmt.Errorf("%w: a context key is %d bytes, not %d", bulkhead.ErrInvalid, contextKeyLen, len(b))
	}
	k := &contextKey{key: append([]byte(nil), b...)}
	k.macs.New = func() any { return hmac.New(sha256.New, k.key) }
	return ContextKey{k: k}, nil
}

// LoadContextKey reads a key file in the extension's format: 64 hex
// digits, surrounding whitespace ignored (the file PostgreSQL reads as
// bulkhead.context_key_file).
func LoadContextKey(path string) (ContextKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ContextKey{}, fmt.Errorf("read context key: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return ContextKey{}, fmt.Errorf("%w: context key file %s must hold 64 hex digits", bulkhead.ErrInvalid, path)
	}
	return NewContextKey(raw)
}

// IsZero reports whether k holds no key.
func (k ContextKey) IsZero() bool { return k.k == nil }

// String redacts.
func (ContextKey) String() string { return "[redacted]" }

// GoString redacts.
func (ContextKey) GoString() string { return "[redacted]" }

// LogValue redacts.
func (ContextKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MarshalJSON redacts.
func (ContextKey) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// contextTTL is how long a signed context can be entered after it is made.
// Tokens are made just before the batch that uses them is sent, so this
// only has to cover the trip to PostgreSQL and clock skew between the two
// machines. Within it, a token that leaks (it is a bind parameter, so
// neither pg_stat_activity nor pg_stat_statements shows it, except in
// simple_protocol exec mode) can be entered again by whoever holds it; the
// extension refuses tokens that claim more than 300 s.
const contextTTL = 10 * time.Second

// contextSQL enters the signed context. Its one argument is the token.
const contextSQL = "SELECT " + Schema + ".enter($1::bytea)"

// Token layout, shared with pgext/bulkhead_context.c.
const (
	tokenVersion   = 1
	tokenSignedLen = 1 + 3*16 + 8 + 16
	tokenLen       = tokenSignedLen + sha256.Size
)

// token signs s, valid until now+contextTTL.
func (k ContextKey) token(s bulkhead.Scope, now time.Time) []byte {
	t := make([]byte, tokenSignedLen, tokenLen)
	t[0] = tokenVersion
	for i, id := range []uuid.UUID{s.Tenant, s.Entity, s.ActingFor} {
		copy(t[1+16*i:], id[:])
	}
	binary.BigEndian.PutUint64(t[49:], uint64(now.Add(contextTTL).UnixMicro()))
	copy(t[57:65], nonces.prefix[:])
	binary.BigEndian.PutUint64(t[65:73], nonces.n.Add(1))
	m := k.k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(t)
	t = m.Sum(t)
	k.k.macs.Put(m)
	return t
}

// EnterSQL returns the statement, and its arguments, that put s into the
// current transaction: for tools and tests on a raw connection as the
// runtime role. Send it inside a transaction (or in one batch with the
// statements it scopes): the context ends with the transaction. The token
// expires after a few seconds. It returns bulkhead.ErrInvalid for an
// invalid scope or a zero key.
func (k ContextKey) EnterSQL(s bulkhead.Scope) (string, []any, error) {
	if k.IsZero() {
		return "", nil, fmt.Errorf("%w: no context key", bulkhead.ErrInvalid)
	}
	if err := s.Validate(); err != nil {
		return "", nil, err
	}
	return contextSQL, []any{k.token(s, time.Now())}, nil
}

// errNoContextKey is Open's error without a key.
var errNoContextKey = errors.New("postgres: Config.ContextKey is required: it signs every transaction's tenant context (the embedded cluster makes one: pgcluster.Cluster.ContextKey; an external database needs the bulkhead_context extension with the same key, see docs/SECURITY.md)")
