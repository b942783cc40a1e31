package retrieval

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// Tenant export and import of vectors. Both take a context marked with
// bulkhead.AsMaintenance and reach the tenant's collection through the
// router with the tenant-wide scope, as Reconcile does.

// ErrModelMismatch means an archive's vectors were made by an embedding
// model this server does not run with the same dimension: importing them
// would mix embedding spaces. Import with re-embedding instead.
var ErrModelMismatch = errors.New("embedding model differs")

// VectorInfo describes a tenant's current collection in an export.
type VectorInfo struct {
	Model      string `json:"model"` // "" if the tenant was never provisioned
	Dimension  int    `json:"dimension"`
	Generation uint32 `json:"generation"`
}

// ExportPoints calls emit with every point of the tenant's current
// collection generation, in ascending id order, and returns what the
// collection is, how many points it emitted and their vector.Checksum. A
// tenant that was never provisioned has no points.
func (s *Service) ExportPoints(ctx context.Context, tenant uuid.UUID, emit func([]vector.Point) error) (VectorInfo, int, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	info, t, sctx, err := s.collectionInfo(ctx, tenant)
	h := vector.NewChecksum()
	if err != nil || info.Model == "" {
		return info, 0, h.Sum(), err
	}
	n := 0
	after := uuid.Nil
	for {
		page, err := s.vectors.Scroll(sctx, t.coll, after, 512)
		if err != nil {
			return VectorInfo{}, 0, sum, fmt.Errorf("export vectors of tenant %s: %w", tenant, missing(err))
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			if bytes.Compare(p.ID[:], after[:]) <= 0 {
				return VectorInfo{}, 0, sum, fmt.Errorf("export vectors of tenant %s: scroll out of order: %w", tenant, bulkhead.ErrUnavailable)
			}
			after = p.ID
			h.Add(p)
		}
		n += len(page)
		if err := emit(page); err != nil {
			return VectorInfo{}, 0, sum, err
		}
	}
	return info, n, h.Sum(), nil
}

// CollectionInfo describes the tenant's current collection generation.
func (s *Service) CollectionInfo(ctx context.Context, tenant uuid.UUID) (VectorInfo, error) {
	info, _, _, err := s.collectionInfo(ctx, tenant)
	return info, err
}

func (s *Service) collectionInfo(ctx context.Context, tenant uuid.UUID) (VectorInfo, target, context.Context, error) {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return VectorInfo{}, target{}, nil, err
	}
	info := VectorInfo{Model: k.Model, Generation: k.Generation}
	if k.Model == "" {
		return info, target{}, nil, nil
	}
	sctx, err := tenantScope(ctx, tenant)
	if err != nil {
		return VectorInfo{}, target{}, nil, err
	}
	t, err := s.targetAt(sctx, k.Generation, k.Model)
	if err != nil {
		return VectorInfo{}, target{}, nil, fmt.Errorf("vectors of tenant %s: %w", tenant, err)
	}
	st, err := s.vectors.Stats(sctx, t.coll)
	if err != nil {
		return VectorInfo{}, target{}, nil, fmt.Errorf("vectors of tenant %s: %w", tenant, missing(err))
	}
	info.Dimension = st.Dimension
	return info, t, sctx, nil
}

// CheckModel reports whether vectors made by model with dim dimensions
// can be imported here as they are: the model must be configured with the
// same dimension. It returns an error wrapping ErrModelMismatch otherwise.
// A model of "" (no vectors) always fits.
func (s *Service) CheckModel(model string, dim int) error {
	if model == "" {
		return nil
	}
	e, ok := s.embedders[model]
	if !ok {
		return fmt.Errorf("the archive's vectors are from embedding model %q, which this server does not run (it runs %s): %w", model, s.dflt, ErrModelMismatch)
	}
	if e.Dimension() != dim {
		return fmt.Errorf("the archive's vectors have %d dimensions, model %q here has %d: %w", dim, model, e.Dimension(), ErrModelMismatch)
	}
	return nil
}

// ImportPoints creates the imported tenant's collection at its recorded
// generation and model (its row must be committed, see
// postgres.DB.ImportTenantRows) and stores the points fill gives to
// upsert; fill returns the archive's point count and checksum, which the
// stored collection, read back, must match. On error the caller deletes
// the tenant (DeleteTenant drops the collection too).
func (s *Service) ImportPoints(ctx context.Context, tenant uuid.UUID, fill func(upsert func([]vector.Point) error) (int, [sha256.Size]byte, error)) error {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return err
	}
	if k.Model == "" {
		if err := s.Provision(ctx, tenant); err != nil {
			return err
		}
		if k, err = s.db.TenantKnowledge(ctx, tenant); err != nil {
			return err
		}
	}
	sctx, err := tenantScope(ctx, tenant)
	if err != nil {
		return err
	}
	t, err := s.targetAt(sctx, k.Generation, k.Model)
	if err != nil {
		return fmt.Errorf("import vectors of tenant %s: %w", tenant, err)
	}
	if err := s.vectors.CreateCollection(sctx, t.coll, t.embed.Dimension()); err != nil {
		return fmt.Errorf("import vectors of tenant %s: %w", tenant, err)
	}
	want, sum, err := fill(func(ps []vector.Point) error {
		if err := s.vectors.Upsert(sctx, t.coll, ps); err != nil {
			return fmt.Errorf("import vectors of tenant %s: %w", tenant, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	h := vector.NewChecksum()
	n := 0
	for after := uuid.Nil; ; {
		page, err := s.vectors.Scroll(sctx, t.coll, after, 512)
		if err != nil {
			return fmt.Errorf("import vectors of tenant %s: verify: %w", tenant, err)
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			h.Add(p)
		}
		n += len(page)
		after = page[len(page)-1].ID
	}
	if got := h.Sum(); n != want || got != sum {
		return fmt.Errorf("import vectors of tenant %s: the archive has %d points (sha256 %x), the collection holds %d (sha256 %x)", tenant, want, sum[:8], n, got[:8])
	}
	return nil
}

// ReembedImported records this server's default embedding model for an
// imported tenant (at its generation), creates its collection and embeds
// every chunk (Reconcile: confidential chunks are opened with the
// tenant's imported keys). It is the --reembed path of tenant import.
func (s *Service) ReembedImported(ctx context.Context, tenant uuid.UUID) (ReconcileStats, error) {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return ReconcileStats{}, err
	}
	if err := s.db.SetKnowledge(ctx, tenant, k.Generation, k.Generation, s.dflt); err != nil {
		return ReconcileStats{}, err
	}
	if err := s.Provision(ctx, tenant); err != nil {
		return ReconcileStats{}, err
	}
	return s.Reconcile(ctx, tenant)
}
