package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	// Expect, when set, makes the write conditional on the tenant's
	// knowledge settings: the rows' transaction reads the tenant's
	// generation and model (in the same batch as the writes, no extra round
	// trip) and fails with ErrKnowledgeChanged, writing nothing, unless
	// they are Expect's. It lets a caller that indexed the document with
	// settings it remembered (retrieval.Service.Ingest) find out, in the
	// transaction that would commit the rows, that they moved.
	Expect *Knowledge
}

// ErrKnowledgeChanged is returned by CreateDocument, with
// bulkhead.ErrUnavailable (retry), when NewDocument.Expect no longer holds:
// the tenant's generation or model moved.
var ErrKnowledgeChanged = errors.New("the tenant's knowledge settings changed")

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
//
// index, when not nil, is called with the chunks (ids assigned, text in
// the clear) after the input is validated, once, concurrently with the
// transaction's writes; the transaction commits only after index has
// returned nil, so if index fails nothing is written and its error is
// returned (even if the writes failed too). CreateDocument never returns
// before index has. If index succeeded and the transaction then fails, the
// caller owns undoing what index did (the knowledge layer deletes the
// vectors it stored). The transaction stays open while index runs: index
// should be quick (the knowledge layer embeds before it calls
// CreateDocument and only stores vectors here).
func (db *DB) CreateDocument(ctx context.Context, in NewDocument, index func(context.Context, []bulkhead.Chunk) error) (bulkhead.Document, error) {
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
	// A confidential document's text is stored only sealed (content and
	// every chunk), bound to its row; it is left out of full-text search.
	texts := Chunk(in.Content, ChunkSize, ChunkOverlap)
	chunks := make([]bulkhead.Chunk, len(texts))
	for i, c := range texts {
		chunks[i] = bulkhead.Chunk{ID: uuid.New(), DocumentID: d.ID, Ord: i, Content: c, Confidential: in.Confidential}
	}
	build := func(u *keyUse) (*pgx.Batch, error) {
		plain, sealed, err := db.sealIf(ctx, u, in.Confidential, "documents", d.ID, in.Content)
		if err != nil {
			return nil, err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO bulkhead.documents (tenant_id, id, owner_id, room_id, visibility, title, content, content_sealed, confidential)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at`, s.Tenant, d.ID, d.OwnerID, d.RoomID, d.Visibility, d.Title, plain, sealed, d.Confidential).
			QueryRow(func(r pgx.Row) error { return r.Scan(&d.CreatedAt) })
		for i, c := range texts {
			plain, sealed, err := db.sealIf(ctx, u, in.Confidential, "chunks", chunks[i].ID, c)
			if err != nil {
				return nil, err
			}
			b.Queue(`INSERT INTO bulkhead.chunks (tenant_id, id, document_id, ord, content, content_sealed) VALUES ($1, $2, $3, $4, $5, $6)`, s.Tenant, chunks[i].ID, d.ID, i, plain, sealed)
		}
		if e := in.Expect; e != nil {
			b.Queue(knowledgeSQL, s.Tenant).QueryRow(e.compare)
		}
		u.queue(b) // last: after the writes (see keyUse)
		return b, nil
	}
	// Seal once before indexing: a tenant without keys fails before
	// anything is stored anywhere.
	first := &keyUse{tenant: s.Tenant}
	b, err := build(first)
	if err != nil {
		return bulkhead.Document{}, fmt.Errorf("create document: %w", err)
	}
	// index runs while the rows are written, and the transaction commits
	// only once it has succeeded: the rows and the index cost the longer
	// of the two, not their sum. indexed waits for it (once).
	indexed := func() error { return nil }
	if index != nil {
		done := make(chan error, 1)
		go func() { done <- index(ctx, chunks) }()
		indexed = sync.OnceValue(func() error { return <-done })
	}
	d.Chunks = len(chunks)
	err = db.withFreshKeys(s.Tenant, func(u *keyUse) error {
		if b == nil {
			if b, err = build(u); err != nil {
				return err
			}
		}
		batch := b
		b = nil
		return db.InScope(ctx, func(tx pgx.Tx) error {
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return err
			}
			return indexed() // an error rolls the rows back
		})
	})
	// Always wait: index must not outlive the call, and its error wins,
	// as when it ran first.
	if ierr := indexed(); ierr != nil {
		return bulkhead.Document{}, fmt.Errorf("create document: index: %w", ierr)
	}
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

// sealIf returns (text, nil) for ordinary content, or ("", sealed) for
// confidential content, sealed for (table, content_sealed, row).
func (db *DB) sealIf(ctx context.Context, u *keyUse, confidential bool, table string, row uuid.UUID, text string) (string, []byte, error) {
	if !confidential {
		return text, nil, nil
	}
	sealed, err := db.seal(ctx, u, table, "content_sealed", row, []byte(text))
	return "", sealed, err
}

func scanDocument(r pgx.CollectableRow) (bulkhead.Document, error) {
	var d bulkhead.Document
	return d, r.Scan(&d.ID, &d.OwnerID, &d.RoomID, &d.Visibility, &d.Title, &d.Content, &d.Confidential, &d.CreatedAt)
}

// Document returns a document visible to the caller, its confidential
// content opened with the caller's tenant key. It returns ErrNotFound, and
// ErrDamaged when the confidential content does not open or is not sealed
// at all (damaged.go).
func (db *DB) Document(ctx context.Context, id uuid.UUID) (bulkhead.Document, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.Document{}, err
	}
	var d bulkhead.Document
	var sealed []byte
	err = db.ReadRow(ctx, `SELECT id, owner_id, room_id, visibility, title, content, confidential, created_at, content_sealed
		FROM bulkhead.documents WHERE tenant_id = $1 AND id = $2`, []any{s.Tenant, id},
		&d.ID, &d.OwnerID, &d.RoomID, &d.Visibility, &d.Title, &d.Content, &d.Confidential, &d.CreatedAt, &sealed)
	if err != nil {
		return d, err
	}
	if sealed == nil {
		if d.Confidential { // never serve the plaintext column as confidential
			return bulkhead.Document{}, db.reportDamaged(ctx, SealedColumn{"documents", "content_sealed"}, d.ID, errPlaintextInSealedColumn)
		}
		return d, nil
	}
	pt, err := db.open(ctx, "documents", "content_sealed", d.ID, sealed)
	if err != nil {
		return bulkhead.Document{}, err
	}
	d.Content = string(pt)
	return d, nil
}

// ListDocuments pages through the documents visible to the caller, by id,
// without their content.
func (db *DB) ListDocuments(ctx context.Context, p Page) ([]bulkhead.Document, string, error) {
	return listByID(ctx, db, p, `SELECT id, owner_id, room_id, visibility, title, '', confidential, created_at FROM bulkhead.documents
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, scanDocument, func(d bulkhead.Document) uuid.UUID { return d.ID })
}

// DeleteDocument deletes a document (and its chunks); only its owner may.
// It returns ErrNotFound. unindex, when not nil, is called inside the
// transaction, after the delete, with the ids of the deleted chunks; if it
// fails the delete is rolled back and its error returned.
func (db *DB) DeleteDocument(ctx context.Context, id uuid.UUID, unindex func(context.Context, []uuid.UUID) error) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM bulkhead.chunks WHERE tenant_id = $1 AND document_id = $2`, s.Tenant, id)
		if err != nil {
			return err
		}
		chunks, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		if err := mustAffect(tx.Exec(ctx, `DELETE FROM bulkhead.documents WHERE tenant_id = $1 AND id = $2`, s.Tenant, id)); err != nil {
			return err
		}
		if unindex == nil || len(chunks) == 0 {
			return nil
		}
		return unindex(ctx, chunks)
	})
}

// Chunks returns a visible document's chunks in order. A chunk whose text
// is damaged (damaged.go) is left out.
func (db *DB) Chunks(ctx context.Context, document uuid.UUID) ([]bulkhead.Chunk, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, err
	}
	var rows []chunkRow
	err = db.Read(ctx, func(r pgx.Rows) error {
		rows, err = scanChunks(r)
		return err
	}, `SELECT `+chunkColumns+` FROM bulkhead.chunks WHERE tenant_id = $1 AND document_id = $2 ORDER BY ord`, s.Tenant, document)
	if err != nil {
		return nil, err
	}
	return db.openChunks(ctx, rows)
}

// chunkColumns are the columns scanChunks reads: a chunk whose document
// can't be seen counts as confidential, so its text must be sealed.
const chunkColumns = `id, document_id, ord, content, content_sealed,
	coalesce((SELECT d.confidential FROM bulkhead.documents d WHERE d.tenant_id = chunks.tenant_id AND d.id = chunks.document_id), true)`

// chunkRow is a chunk as stored: its sealed text (nil when the text is in
// the clear) and whether its document is confidential.
type chunkRow struct {
	bulkhead.Chunk
	sealed       []byte
	confidential bool
}

// scanChunks reads rows of chunkColumns.
func scanChunks(rows pgx.Rows) ([]chunkRow, error) {
	var out []chunkRow
	for rows.Next() {
		var c chunkRow
		if err := rows.Scan(&c.ID, &c.DocumentID, &c.Ord, &c.Content, &c.sealed, &c.confidential); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// openChunks returns the chunks with their sealed text opened, with the
// keys of the tenant in ctx's scope, leaving out (and reporting) every
// damaged one. Other errors fail the call.
func (db *DB) openChunks(ctx context.Context, rows []chunkRow) ([]bulkhead.Chunk, error) {
	out := make([]bulkhead.Chunk, 0, len(rows))
	for _, r := range rows {
		r.Chunk.Confidential = r.confidential
		err := db.openChunk(ctx, &r.Chunk, r.sealed, r.confidential)
		if errors.Is(err, bulkhead.ErrDamaged) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.Chunk)
	}
	return out, nil
}

// openChunk sets c's content to its opened sealed text, if it has one. A
// chunk of a confidential document must have one: its plaintext column is
// never served (ErrDamaged).
func (db *DB) openChunk(ctx context.Context, c *bulkhead.Chunk, sealed []byte, confidential bool) error {
	if sealed == nil {
		if confidential {
			c.Content = ""
			return db.reportDamaged(ctx, SealedColumn{"chunks", "content_sealed"}, c.ID, errPlaintextInSealedColumn)
		}
		return nil
	}
	pt, err := db.open(ctx, "chunks", "content_sealed", c.ID, sealed)
	if err != nil {
		return err
	}
	c.Content = string(pt)
	return nil
}
