package postgres

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Page asks for one page of a list: at most Limit items after the opaque
// cursor After ("" for the first page).
type Page struct {
	Limit int
	After string
}

// MaxPageSize bounds Page.Limit.
const MaxPageSize = 500

func (p Page) limit() int {
	if p.Limit <= 0 {
		return 50
	}
	return min(p.Limit, MaxPageSize)
}

// cursor is a keyset position: a time (zero for id-ordered lists) and an id.
type cursor struct {
	at time.Time
	id uuid.UUID
}

func (c cursor) encode() string {
	b := make([]byte, 8+16)
	binary.BigEndian.PutUint64(b, uint64(c.at.UnixMicro()))
	copy(b[8:], c.id[:])
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses an opaque cursor from untrusted input.
// It returns a *bulkhead.ValidationError for anything malformed.
func decodeCursor(s string) (cursor, bool, error) {
	if s == "" {
		return cursor{}, false, nil
	}
	// Exactly 32 base64url characters: the decoder alone would skip CR/LF
	// and accept non-canonical spellings of a cursor (found by fuzzing).
	if len(s) != 32 || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return cursor{}, false, bulkhead.Invalid("cursor", "malformed")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 24 {
		return cursor{}, false, bulkhead.Invalid("cursor", "malformed")
	}
	var c cursor
	c.at = time.UnixMicro(int64(binary.BigEndian.Uint64(b))).UTC()
	copy(c.id[:], b[8:])
	return c, true, nil
}

// entityScope is scope for operations that act as an entity: a scope
// without one is ErrUnauthenticated.
func entityScope(ctx context.Context) (bulkhead.Scope, error) {
	s, err := scopeFrom(ctx)
	if err == nil && s.Entity == uuid.Nil {
		err = bulkhead.ErrUnauthenticated
	}
	return s, err
}

// listByID pages through a scoped query ordered by an id column, in one
// round trip. sql takes $1 = tenant, $2 = the id to start after, $3 = the
// limit, then extra.
func listByID[T any](ctx context.Context, db *DB, p Page, sql string, scan pgx.RowToFunc[T], id func(T) uuid.UUID, extra ...any) ([]T, string, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, "", err
	}
	c, _, err := decodeCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	var out []T
	err = db.Read(ctx, func(rows pgx.Rows) error {
		out, err = pgx.CollectRows(rows, scan)
		return err
	}, sql, append([]any{s.Tenant, c.id, p.limit()}, extra...)...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) == p.limit() {
		next = cursor{at: time.UnixMicro(0), id: id(out[len(out)-1])}.encode()
	}
	return out, next, nil
}
