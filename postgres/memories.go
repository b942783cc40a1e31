package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// NewMemory is the input of AppendMemory. AuthorID zero means the calling
// entity; it may also be the principal the caller acts for, which the
// database accepts only under a valid delegation.
type NewMemory struct {
	RoomID   uuid.UUID
	AuthorID uuid.UUID
	Kind     string // "message" (default) or "fact"
	Content  string
}

// MaxMemoryBytes bounds a memory's content.
const MaxMemoryBytes = 100_000

// AppendMemory appends a memory to a room. The database checks that the
// author is the caller (or its delegating principal) and a participant.
// It returns ErrForbidden when refused, ErrInvalid for bad input.
func (db *DB) AppendMemory(ctx context.Context, in NewMemory) (bulkhead.Memory, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.Memory{}, err
	}
	if in.AuthorID == uuid.Nil {
		in.AuthorID = s.Entity
	}
	if in.Kind == "" {
		in.Kind = "message"
	}
	if in.Kind != "message" && in.Kind != "fact" {
		return bulkhead.Memory{}, bulkhead.Invalid("kind", "message or fact")
	}
	if strings.TrimSpace(in.Content) == "" || len(in.Content) > MaxMemoryBytes {
		return bulkhead.Memory{}, bulkhead.Invalid("content", fmt.Sprintf("1 to %d bytes", MaxMemoryBytes))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return bulkhead.Memory{}, err
	}
	m := bulkhead.Memory{ID: id, RoomID: in.RoomID, AuthorID: in.AuthorID, Kind: in.Kind, Content: in.Content}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO bulkhead.memories (tenant_id, id, room_id, author_id, kind, content)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`, s.Tenant, m.ID, m.RoomID, m.AuthorID, m.Kind, m.Content).Scan(&m.CreatedAt)
	})
	if err != nil {
		return bulkhead.Memory{}, fmt.Errorf("append memory: %w", err)
	}
	return m, nil
}

// RoomHistory returns a page of a room's memories, newest first, with the
// cursor of the next page ("" at the end). Keyset pagination on
// (created_at, id) over the history index: each page costs the same.
// Rooms the caller doesn't participate in have no history (no error).
func (db *DB) RoomHistory(ctx context.Context, room uuid.UUID, p Page) ([]bulkhead.Memory, string, error) {
	out, next, err := db.RoomMessages(ctx, room, p)
	if errors.Is(err, bulkhead.ErrNotFound) {
		return nil, "", nil
	}
	return out, next, err
}

// RoomMessages is RoomHistory for a room the caller must be able to see:
// a missing or hidden room is ErrNotFound, not an empty page. The room
// check and the page are one statement, one round trip.
func (db *DB) RoomMessages(ctx context.Context, room uuid.UUID, p Page) ([]bulkhead.Memory, string, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, "", err
	}
	c, ok, err := decodeCursor(p.After)
	if err != nil {
		return nil, "", err
	}
	after := ""
	args := []any{s.Tenant, room, p.limit()}
	if ok {
		after = "AND (m.created_at, m.id) < ($4, $5)"
		args = append(args, c.at, c.id)
	}
	// Zero rows: the room is hidden. One row of NULLs: an empty page.
	q := `SELECT m.id, m.room_id, m.author_id, m.kind, m.content, m.created_at
		FROM bulkhead.rooms r LEFT JOIN LATERAL (
			SELECT m.id, m.room_id, m.author_id, m.kind, m.content, m.created_at FROM bulkhead.memories m
			WHERE m.tenant_id = r.tenant_id AND m.room_id = r.id ` + after + `
			ORDER BY m.created_at DESC, m.id DESC LIMIT $3) m ON true
		WHERE r.tenant_id = $1 AND r.id = $2
		ORDER BY m.created_at DESC, m.id DESC`
	var out []bulkhead.Memory
	found := false
	err = db.Read(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			found = true
			var id, roomID, author *uuid.UUID
			var kind, content *string
			var at *time.Time
			if err := rows.Scan(&id, &roomID, &author, &kind, &content, &at); err != nil {
				return err
			}
			if id != nil {
				out = append(out, bulkhead.Memory{ID: *id, RoomID: *roomID, AuthorID: *author, Kind: *kind, Content: *content, CreatedAt: *at})
			}
		}
		return rows.Err()
	}, q, args...)
	if err != nil {
		return nil, "", err
	}
	if !found {
		return nil, "", bulkhead.ErrNotFound
	}
	next := ""
	if len(out) == p.limit() {
		last := out[len(out)-1]
		next = cursor{at: last.CreatedAt, id: last.ID}.encode()
	}
	return out, next, nil
}
