package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// MaxTextHits bounds SearchText's limit and the ids Passages takes.
const MaxTextHits = 1000

// Knowledge is a tenant's knowledge-collection settings: the region its
// data lives in, the active vector collection generation, and the
// embedding model that filled it ("" while the collection is not
// provisioned).
type Knowledge struct {
	Region     string
	Generation uint32
	Model      string
}

// Knowledge returns the settings of the caller's tenant, read in its scope.
// It returns ErrUnauthenticated without a scope.
func (db *DB) Knowledge(ctx context.Context) (Knowledge, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return Knowledge{}, err
	}
	return db.knowledgeRow(ctx, s.Tenant, false)
}

// TenantKnowledge returns a tenant's settings on the maintenance path
// (control plane: provisioning, re-embedding). It returns ErrNotFound for
// an unknown tenant and ErrNoMaintenance without a maintenance context.
func (db *DB) TenantKnowledge(ctx context.Context, tenant uuid.UUID) (Knowledge, error) {
	return db.knowledgeRow(ctx, tenant, true)
}

func (db *DB) knowledgeRow(ctx context.Context, tenant uuid.UUID, maintenance bool) (Knowledge, error) {
	const q = `SELECT region, vector_generation, coalesce(embedding_model, '') FROM bulkhead.tenants WHERE id = $1`
	var k Knowledge
	var gen int32
	var err error
	if maintenance {
		err = db.InMaintenance(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, q, tenant).Scan(&k.Region, &gen, &k.Model) })
	} else {
		err = db.ReadRow(ctx, q, []any{tenant}, &k.Region, &gen, &k.Model)
	}
	if err != nil {
		return Knowledge{}, fmt.Errorf("knowledge settings of tenant %s: %w", tenant, err)
	}
	k.Generation = uint32(gen)
	return k, nil
}

// Region returns the region of tenant, read in ctx's scope (which must be
// that tenant's: any other is ErrNotFound, like a missing tenant) or, for
// a context marked with bulkhead.AsMaintenance and no scope, on the
// maintenance path. It makes DB a vector.Regions.
func (db *DB) Region(ctx context.Context, tenant uuid.UUID) (string, error) {
	var k Knowledge
	var err error
	if s, ok := bulkhead.ScopeFrom(ctx); ok {
		if s.Tenant != tenant {
			return "", fmt.Errorf("region of tenant %s: %w", tenant, bulkhead.ErrNotFound)
		}
		k, err = db.knowledgeRow(ctx, tenant, false)
	} else {
		k, err = db.knowledgeRow(ctx, tenant, true)
	}
	return k.Region, err
}

// knowledgeSQL reads the tenant $1's generation and model, for compare.
const knowledgeSQL = `SELECT vector_generation, coalesce(embedding_model, '') FROM bulkhead.tenants WHERE id = $1`

// compare scans a tenant's generation and model from r and returns
// ErrKnowledgeChanged unless they are k's.
func (k Knowledge) compare(r pgx.Row) error {
	var gen int32
	var model string
	if err := r.Scan(&gen, &model); err != nil {
		return fmt.Errorf("read the tenant's knowledge settings: %w", err)
	}
	if uint32(gen) != k.Generation || model != k.Model {
		return fmt.Errorf("%w (%w): generation %d, model %q, not %d and %q", bulkhead.ErrUnavailable, ErrKnowledgeChanged, gen, model, k.Generation, k.Model)
	}
	return nil
}

// SetKnowledge records a tenant's active generation and model on the
// maintenance path, if its generation is still from (compare-and-set:
// two concurrent re-embeddings can't both flip). It returns ErrConflict if
// the generation moved, ErrNotFound for an unknown tenant.
func (db *DB) SetKnowledge(ctx context.Context, tenant uuid.UUID, from, to uint32, model string) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `UPDATE bulkhead.tenants SET vector_generation = $3, embedding_model = $4 WHERE id = $1 AND vector_generation = $2`,
			tenant, int32(from), int32(to), model)
		if err != nil {
			return err
		}
		if ct.RowsAffected() == 1 {
			return auditMaintenance(ctx, tx, tenant, "knowledge.model", fmt.Sprintf("generation %d: %s", to, model))
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.tenants WHERE id = $1)`, tenant).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("tenant %s: %w", tenant, bulkhead.ErrNotFound)
		}
		return fmt.Errorf("tenant %s is no longer at generation %d: %w", tenant, from, bulkhead.ErrConflict)
	})
}

// TextHit is one full-text match.
type TextHit struct {
	ID   uuid.UUID
	Rank float32
}

// SearchText returns the ids of up to limit chunks visible to the caller
// that match any word of query (PostgreSQL full-text search, 'english'
// configuration: stemmed, stop words ignored), best ts_rank_cd first, ties
// by id. Row-level security
// decides visibility; confidential chunks have no indexed text and never
// match. A query without words matches nothing.
func (db *DB) SearchText(ctx context.Context, query string, limit int) ([]TextHit, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxTextHits {
		return nil, bulkhead.Invalid("limit", fmt.Sprintf("must be in [1, %d]", MaxTextHits))
	}
	var out []TextHit
	// plainto_tsquery parses the words (no operators from input); its
	// '&' between lexemes becomes '|' so that any word can match, and
	// the ranking prefers chunks matching more and closer words.
	err = db.Read(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var h TextHit
			if err := rows.Scan(&h.ID, &h.Rank); err != nil {
				return err
			}
			out = append(out, h)
		}
		return rows.Err()
	}, `WITH q AS (SELECT replace(plainto_tsquery('english', $2)::text, ' & ', ' | ')::tsquery AS q)
		SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q
		WHERE c.tenant_id = $1 AND c.tsv @@ q.q
		ORDER BY rank DESC, c.id LIMIT $3`, s.Tenant, query, limit)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	return out, nil
}

// Passages reads back the chunks among ids that are visible to the caller,
// with their documents' titles and their text (confidential chunks opened
// with the caller's tenant key), in the order of ids; ids the caller can't
// see are left out. This is the check every vector hit passes before use:
// row-level security decides, and the tenant of every row is compared with
// the scope's again, so a row of another tenant fails the call instead of
// being used. A chunk whose text is damaged (a sealed value that does not
// open, or a confidential chunk without one) is left out and reported
// (damaged.go): one tampered chunk never fails a query.
//
// With expect, the tenant's knowledge settings are read after the chunks,
// in the same transaction and round trip (even for no ids), and the call
// fails with ErrKnowledgeChanged (and bulkhead.ErrUnavailable) unless they
// are still expect's: a query that searched the collection of remembered
// settings learns whether they still hold without a round trip of its own.
func (db *DB) Passages(ctx context.Context, ids []uuid.UUID, expect *Knowledge) ([]bulkhead.Passage, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) > MaxTextHits {
		return nil, bulkhead.Invalid("ids", fmt.Sprintf("at most %d", MaxTextHits))
	}
	if len(ids) == 0 && expect == nil {
		return nil, nil
	}
	found := make(map[uuid.UUID]bulkhead.Passage, len(ids))
	sealed := make(map[uuid.UUID][]byte)
	confidential := make(map[uuid.UUID]bool)
	read := func(rows pgx.Rows) error {
		for rows.Next() {
			var p bulkhead.Passage
			var tenant uuid.UUID
			var v []byte
			var conf bool
			if err := rows.Scan(&tenant, &p.ID, &p.DocumentID, &p.Ord, &p.Content, &v, &p.Title, &conf); err != nil {
				return err
			}
			if tenant != s.Tenant {
				return errForeignRow
			}
			found[p.ID] = p
			if v != nil {
				sealed[p.ID] = v
			}
			confidential[p.ID] = conf
		}
		return rows.Err()
	}
	err = db.readBatch(ctx, func(b *pgx.Batch) {
		if len(ids) > 0 {
			b.Queue(`SELECT c.tenant_id, c.id, c.document_id, c.ord, c.content, c.content_sealed, d.title, d.confidential
		FROM bulkhead.chunks c JOIN bulkhead.documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
		WHERE c.tenant_id = $1 AND c.id = ANY($2::uuid[])`, s.Tenant, ids).Query(read)
		}
		if expect != nil {
			b.Queue(knowledgeSQL, s.Tenant).QueryRow(expect.compare)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read passages: %w", err)
	}
	out := make([]bulkhead.Passage, 0, len(found))
	for _, id := range ids {
		p, ok := found[id]
		if !ok {
			continue
		}
		delete(found, id) // an id given twice is returned once
		err := db.openChunk(ctx, &p.Chunk, sealed[id], confidential[id])
		if errors.Is(err, bulkhead.ErrDamaged) {
			continue // reported; the other passages still answer
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// errForeignRow: a query filtered on the scope's tenant returned a row of
// another tenant. It cannot happen unless the database is broken; the call
// fails rather than use the row.
var errForeignRow = errors.New("a row of another tenant was returned")

// TenantChunkIDs returns the ids of every chunk of tenant, in ascending
// order, on the maintenance path (re-indexing reads across the tenant's
// private documents, which no one entity's scope sees).
func (db *DB) TenantChunkIDs(ctx context.Context, tenant uuid.UUID) ([]uuid.UUID, error) {
	var out []uuid.UUID
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM bulkhead.chunks WHERE tenant_id = $1 ORDER BY id`, tenant)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chunk ids of tenant %s: %w", tenant, err)
	}
	return out, nil
}

// TenantChunks returns the chunks of tenant among ids, text opened, on the
// maintenance path (see TenantChunkIDs). Missing ids, and chunks whose
// text is damaged (damaged.go), are left out.
func (db *DB) TenantChunks(ctx context.Context, tenant uuid.UUID, ids []uuid.UUID) ([]bulkhead.Chunk, error) {
	var out []chunkRow
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+chunkColumns+` FROM bulkhead.chunks WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id`, tenant, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		out, err = scanChunks(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chunks of tenant %s: %w", tenant, err)
	}
	sctx, err := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant})
	if err != nil {
		return nil, err
	}
	return db.openChunks(sctx, out)
}
