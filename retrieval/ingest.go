package retrieval

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// Payload keys of a chunk's point. A point carries ids, a time and its
// lexical tokens (vector.PayloadTerms; terms.go), never text: the text is
// read back from PostgreSQL in the caller's scope.
const (
	payloadDocument = "document_id"
	payloadStored   = "stored_at" // unix milliseconds, see Reconcile
)

// Ingest stores a document owned by the caller: its chunks are embedded
// with the tenant's model, then the document and its chunks (with their
// full-text index) are written to PostgreSQL in one transaction while the
// points are stored in the tenant's collection; the transaction commits
// only after the points are. Nothing is written if the input is invalid or
// embedding fails; if the rows can't be written the points are deleted
// again (a point left behind by a crash is never returned by a query and
// Reconcile removes it).
//
// It returns the errors of postgres.DB.CreateDocument, ErrNotProvisioned,
// bulkhead.ErrUnavailable when the vector store fails, and ErrModel or
// ErrModelResponse when the embedding endpoint does. No database
// connection is held while the endpoint is waited on.
//
// The tenant's settings (generation and model) are remembered from its
// last ingest, so a document costs no round trip for them; the rows are
// written on the condition that the tenant's row still holds them, read
// in the rows' own transaction (postgres.NewDocument.Expect). When they
// moved (a Reembed switched generations) the points are taken back and
// the document is ingested again with the settings read afresh.
func (s *Service) Ingest(ctx context.Context, in postgres.NewDocument) (bulkhead.Document, error) {
	d, err := withKnowledge(ctx, s, func(k postgres.Knowledge, _ bool) (bulkhead.Document, error) {
		return s.ingest(ctx, in, k) // checks k even when just read (see Expect)
	})
	if err != nil {
		return bulkhead.Document{}, fmt.Errorf("ingest: %w", err)
	}
	return d, nil
}

// ingest is Ingest with the tenant's settings k.
func (s *Service) ingest(ctx context.Context, in postgres.NewDocument, k postgres.Knowledge) (bulkhead.Document, error) {
	in.Expect = &k
	t, err := s.targetAt(ctx, k.Generation, k.Model)
	if err != nil {
		return bulkhead.Document{}, err
	}
	// Embed first, outside the rows' transaction and holding no database
	// connection (a remote model may take as long as its deadline);
	// CreateDocument then stores the vectors while it writes the rows, and
	// never embeds. Input CreateDocument will refuse is not embedded.
	var texts []string
	var vecs [][]float32
	if len(in.Content) <= postgres.MaxDocumentBytes && utf8.ValidString(in.Content) {
		texts = postgres.Chunk(in.Content, postgres.ChunkSize, postgres.ChunkOverlap)
		if vecs, err = embedTexts(ctx, t.embed, texts); err != nil {
			return bulkhead.Document{}, err
		}
	}
	var stored []uuid.UUID
	d, err := s.db.CreateDocument(ctx, in, func(ctx context.Context, chunks []bulkhead.Chunk) error {
		if !sameTexts(chunks, texts) || len(vecs) != len(chunks) {
			// Never embed here: the rows' transaction is open. Chunk is
			// deterministic, so this is a bug, not an outage.
			return fmt.Errorf("the document was chunked into %d chunks, not the %d texts embedded", len(chunks), len(texts))
		}
		points := pointsOf(t.coll.Tenant(), chunks, vecs)
		if len(points) == 0 {
			return nil
		}
		if err := s.vectors.Upsert(ctx, t.coll, points); err != nil {
			return missing(err)
		}
		for _, p := range points {
			stored = append(stored, p.ID)
		}
		return nil
	})
	if err != nil && stored != nil {
		// The rows were not written: take the points back. Detached from
		// the request's cancellation, which may be why the write failed.
		if derr := s.deletePoints(context.WithoutCancel(ctx), t.coll, stored); derr != nil {
			s.log.WarnContext(ctx, "ingest failed and its points could not be removed; Reconcile will", "collection", t.coll.String(), "points", len(stored), "err", derr)
		}
	}
	if err != nil {
		return bulkhead.Document{}, err
	}
	return d, nil
}

// embedTexts embeds texts with e, one vector per text.
func embedTexts(ctx context.Context, e llm.Embedder, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	vecs, err := e.Embed(ctx, texts)
	if err != nil {
		return nil, fmt.Errorf("embed %d chunks with %s: %w", len(texts), e.Model(), unavailable(err))
	}
	if len(vecs) != len(texts) {
		return nil, fmt.Errorf("embedder %s returned %d vectors for %d chunks: %w", e.Model(), len(vecs), len(texts), ErrModelResponse)
	}
	return vecs, nil
}

// sameTexts reports whether chunks hold exactly texts, in order.
func sameTexts(chunks []bulkhead.Chunk, texts []string) bool {
	if len(chunks) != len(texts) {
		return false
	}
	for i := range chunks {
		if chunks[i].Content != texts[i] {
			return false
		}
	}
	return true
}

// pointsFor embeds chunks now and returns their points. Callers hold no
// transaction while it runs.
func pointsFor(ctx context.Context, tenant uuid.UUID, e llm.Embedder, chunks []bulkhead.Chunk) ([]vector.Point, error) {
	if len(chunks) == 0 {
		return nil, nil
	}
	texts := make([]string, len(chunks))
	for i, c := range chunks {
		texts[i] = c.Content
	}
	vecs, err := embedTexts(ctx, e, texts)
	if err != nil {
		return nil, err
	}
	return pointsOf(tenant, chunks, vecs), nil
}

// pointsOf returns the points of tenant's chunks with their vectors vecs
// and their lexical terms.
func pointsOf(tenant uuid.UUID, chunks []bulkhead.Chunk, vecs [][]float32) []vector.Point {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	points := make([]vector.Point, len(chunks))
	for i, c := range chunks {
		points[i] = vector.Point{ID: c.ID, Vector: vecs[i], Payload: map[string]string{
			payloadDocument:     c.DocumentID.String(),
			payloadStored:       now,
			vector.PayloadTerms: chunkTerms(tenant, c.Content, c.Confidential).Encode(),
		}}
	}
	return points
}

// unavailable makes a model-endpoint failure ErrModel, or ErrModelResponse
// when the endpoint answered something unusable (both match
// bulkhead.ErrUnavailable). Other errors are returned as they are.
func unavailable(err error) error {
	if !errors.Is(err, llm.ErrUnavailable) || errors.Is(err, ErrModel) || errors.Is(err, ErrModelResponse) {
		return err
	}
	if llm.Reason(err) == llm.ReasonBadResponse {
		return fmt.Errorf("%w (%w)", ErrModelResponse, err)
	}
	return fmt.Errorf("%w (%w)", ErrModel, err)
}

// DeleteDocument deletes a document the caller owns, with its chunks and
// their points, in one transaction: if the points can't be deleted the
// rows stay too (bulkhead.ErrUnavailable). It returns bulkhead.ErrNotFound
// for a document that is missing, hidden or not the caller's.
func (s *Service) DeleteDocument(ctx context.Context, id uuid.UUID) error {
	t, err := s.target(ctx)
	if errors.Is(err, ErrNotProvisioned) {
		// No collection, so no points: the rows can go on their own.
		return s.db.DeleteDocument(ctx, id, nil)
	}
	if err != nil {
		return fmt.Errorf("delete document %s: %w", id, err)
	}
	return s.db.DeleteDocument(ctx, id, func(ctx context.Context, chunks []uuid.UUID) error {
		return s.deletePoints(ctx, t.coll, chunks)
	})
}

// deletePoints deletes the points with ids that exist. vector.Store.Delete
// is all or nothing; when some id is absent (a point Reconcile already
// removed) the rest are deleted one by one.
func (s *Service) deletePoints(ctx context.Context, c vector.Collection, ids []uuid.UUID) error {
	err := s.vectors.Delete(ctx, c, ids)
	if !errors.Is(err, vector.ErrNotFound) {
		return err
	}
	for _, id := range ids {
		if err := s.vectors.Delete(ctx, c, []uuid.UUID{id}); err != nil && !errors.Is(err, vector.ErrNotFound) {
			return err
		}
	}
	return nil
}
