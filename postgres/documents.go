package postgres

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// NewDocument is the input of CreateDocument.
type NewDocument struct {
	Title        string
	Content      string
	Visibility   bulkhead.Visibility // default private
	RoomID       *uuid.UUID          // required for room visibility, forbidden otherwise
	Confidential bool
}

// MaxDocumentBytes bounds a document's content.
const MaxDocumentBytes = 1 << 20

// ChunkSize is the target size of a chunk in bytes; chunks overlap by ChunkOverlap.
const (
	ChunkSize    = 1000
	ChunkOverlap = 100
)

// CreateDocument stores a document owned by the caller and its chunks, in
// one transaction. The database refuses room visibility for a room the
// caller is not in (ErrForbidden).
func (db *DB) CreateDocument(ctx context.Context, in NewDocument) (bulkhead.Document, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.Document{}, err
	}
	if in.Visibility == "" {
		in.Visibility = bulkhead.VisibilityPrivate
	}
	switch in.Visibility {
	case bulkhead.VisibilityRoom:
		if in.RoomID == nil {
			return bulkhead.Document{}, bulkhead.Invalid("room_id", "required for room visibility")
		}
	case bulkhead.VisibilityPrivate, bulkhead.VisibilityTenant:
		if in.RoomID != nil {
			return bulkhead.Document{}, bulkhead.Invalid("room_id", "only for room visibility")
		}
	default:
		return bulkhead.Document{}, bulkhead.Invalid("visibility", "private, room or tenant")
	}
	if t := strings.TrimSpace(in.Title); t == "" || len(in.Title) > 500 {
		return bulkhead.Document{}, bulkhead.Invalid("title", "1 to 500 characters")
	}
	if len(in.Content) > MaxDocumentBytes || !utf8.ValidString(in.Content) {
		return bulkhead.Document{}, bulkhead.Invalid("content", fmt.Sprintf("UTF-8 text of at most %d bytes", MaxDocumentBytes))
	}
	d := bulkhead.Document{ID: uuid.New(), OwnerID: s.Entity, RoomID: in.RoomID, Visibility: in.Visibility, Title: in.Title, Content: in.Content, Confidential: in.Confidential}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO bulkhead.documents (tenant_id, id, owner_id, room_id, visibility, title, content, confidential)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at`, s.Tenant, d.ID, d.OwnerID, d.RoomID, d.Visibility, d.Title, d.Content, d.Confidential).
			QueryRow(func(r pgx.Row) error { return r.Scan(&d.CreatedAt) })
		for i, c := range Chunk(in.Content, ChunkSize, ChunkOverlap) {
			b.Queue(`INSERT INTO bulkhead.chunks (tenant_id, id, document_id, ord, content) VALUES ($1, $2, $3, $4, $5)`, s.Tenant, uuid.New(), d.ID, i, c)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return bulkhead.Document{}, fmt.Errorf("create document: %w", err)
	}
	return d, nil
}

// Chunk splits text into pieces of about size bytes that overlap by
// overlap bytes, cutting at whitespace where it can and never inside a
// UTF-8 sequence.
func Chunk(text string, size, overlap int) []string {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	var out []string
	for start := 0; start < len(text); {
		end := min(start+size, len(text))
		if end < len(text) {
			if i := strings.LastIndexAny(text[start:end], " \n\t"); i > size/2 {
				end = start + i
			}
			for end > start && !utf8.RuneStart(text[end]) {
				end--
			}
		}
		out = append(out, strings.TrimSpace(text[start:end]))
		if end == len(text) {
			break
		}
		next := end - overlap
		for next > start && next < len(text) && !utf8.RuneStart(text[next]) {
			next--
		}
		if next <= start {
			next = end
		}
		start = next
	}
	return out
}

const docCols = `id, owner_id, room_id, visibility, title, content, confidential, created_at`

func scanDocument(r pgx.CollectableRow) (bulkhead.Document, error) {
	var d bulkhead.Document
	return d, r.Scan(&d.ID, &d.OwnerID, &d.RoomID, &d.Visibility, &d.Title, &d.Content, &d.Confidential, &d.CreatedAt)
}

// Document returns a document visible to the caller. It returns ErrNotFound.
func (db *DB) Document(ctx context.Context, id uuid.UUID) (bulkhead.Document, error) {
	s, err := scope(ctx)
	if err != nil {
		return bulkhead.Document{}, err
	}
	var d bulkhead.Document
	err = db.Read(ctx, func(rows pgx.Rows) error {
		d, err = pgx.CollectExactlyOneRow(rows, scanDocument)
		return err
	}, `SELECT `+docCols+` FROM bulkhead.documents WHERE tenant_id = $1 AND id = $2`, s.Tenant, id)
	return d, err
}

// ListDocuments pages through the documents visible to the caller, by id,
// without their content.
func (db *DB) ListDocuments(ctx context.Context, p Page) ([]bulkhead.Document, string, error) {
	return listByID(ctx, db, p, `SELECT id, owner_id, room_id, visibility, title, '', confidential, created_at FROM bulkhead.documents
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, scanDocument, func(d bulkhead.Document) uuid.UUID { return d.ID })
}

// DeleteDocument deletes a document (and its chunks); only its owner may.
// It returns ErrNotFound.
func (db *DB) DeleteDocument(ctx context.Context, id uuid.UUID) error {
	s, err := scope(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `DELETE FROM bulkhead.documents WHERE tenant_id = $1 AND id = $2`, s.Tenant, id))
	})
}

// Chunks returns a visible document's chunks in order.
func (db *DB) Chunks(ctx context.Context, document uuid.UUID) ([]bulkhead.Chunk, error) {
	s, err := scope(ctx)
	if err != nil {
		return nil, err
	}
	var out []bulkhead.Chunk
	err = db.Read(ctx, func(rows pgx.Rows) error {
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (bulkhead.Chunk, error) {
			var c bulkhead.Chunk
			return c, r.Scan(&c.ID, &c.DocumentID, &c.Ord, &c.Content)
		})
		return err
	}, `SELECT id, document_id, ord, content FROM bulkhead.chunks WHERE tenant_id = $1 AND document_id = $2 ORDER BY ord`, s.Tenant, document)
	return out, err
}
