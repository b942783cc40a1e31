package retrieval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// The control-plane operations below take a context marked with
// bulkhead.AsMaintenance (they name a tenant explicitly) and are idempotent
// and resumable: running one again after a crash finishes the job.

// CreateTenant creates a tenant (postgres.DB.CreateTenant: row and keys)
// and provisions its knowledge collection, all or nothing: if provisioning
// fails, the tenant is deleted again (keys shredded, row removed) and the
// error returned; a region this bulkhead serves no vector backend for is a
// *bulkhead.ValidationError on "region".
func (s *Service) CreateTenant(ctx context.Context, name, region string) (bulkhead.Tenant, error) {
	t, err := s.db.CreateTenant(ctx, name, region)
	if err != nil {
		return bulkhead.Tenant{}, err
	}
	if err := s.Provision(ctx, t.ID); err != nil {
		// Undo, detached from the request's cancellation (which may be why
		// provisioning failed).
		if _, derr := s.DeleteTenant(context.WithoutCancel(ctx), t.ID, true); derr != nil {
			return bulkhead.Tenant{}, fmt.Errorf("create tenant: %w; undoing it failed too (finish with bulkhead tenant delete --force %s): %v", err, t.ID, derr)
		}
		if errors.Is(err, vector.ErrWrongRegion) {
			return bulkhead.Tenant{}, bulkhead.Invalid("region", fmt.Sprintf("no vector backend serves region %q here (--vector-region)", t.Region))
		}
		return bulkhead.Tenant{}, fmt.Errorf("create tenant (nothing kept): %w", err)
	}
	return t, nil
}

// DeleteResult says what DeleteTenant did.
type DeleteResult struct {
	Deleted    bool     `json:"deleted"`               // a tenant row was removed
	NotCleaned []string `json:"not_cleaned,omitempty"` // what force left behind
}

// DeleteTenant drops every collection generation of the tenant, then
// deletes it with postgres.DB.DeleteTenant (keys shredded first, then the
// rows). If the collections can't be dropped (the backend is unreachable,
// or the tenant's region is no longer served here) it stops, deleting
// nothing, unless force: then it deletes the tenant anyway and records what
// it could not clean in the erasure record (bulkhead_keys.key_events, which
// outlives the tenant) and in NotCleaned. A tenant that does not exist is
// not an error (Deleted is false).
func (s *Service) DeleteTenant(ctx context.Context, tenant uuid.UUID, force bool) (DeleteResult, error) {
	var res DeleteResult
	if err := s.Deprovision(ctx, tenant); err != nil && !errors.Is(err, bulkhead.ErrNotFound) {
		if !force {
			return res, fmt.Errorf("%w (nothing deleted; delete with --force to erase the tenant anyway and record what is left)", err)
		}
		res.NotCleaned = append(res.NotCleaned, "vector collections: "+err.Error())
		s.log.WarnContext(ctx, "tenant deleted without dropping its vector collections (forced)", "tenant", tenant, "err", err)
		m, _ := bulkhead.MaintenanceFrom(ctx)
		ctx = bulkhead.AsMaintenance(ctx, m.Reason+"; forced, not cleaned: "+strings.Join(res.NotCleaned, "; "))
	}
	deleted, err := s.db.DeleteTenant(ctx, tenant)
	res.Deleted = deleted
	return res, err
}

// tenantScope is the tenant-wide scope (no entity) the router needs to
// mint the tenant's collection on the control plane.
func tenantScope(ctx context.Context, tenant uuid.UUID) (context.Context, error) {
	if _, ok := bulkhead.MaintenanceFrom(ctx); !ok {
		return nil, fmt.Errorf("tenant %s: needs a maintenance context: %w", tenant, bulkhead.ErrForbidden)
	}
	return bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant})
}

// Provision creates the tenant's collection for its current generation,
// with the dimension of its model (the default model if it has none yet,
// which is then recorded). It returns bulkhead.ErrNotFound for an unknown
// tenant.
func (s *Service) Provision(ctx context.Context, tenant uuid.UUID) error {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return err
	}
	model := k.Model
	if model == "" {
		model = s.dflt
	}
	sctx, err := tenantScope(ctx, tenant)
	if err != nil {
		return err
	}
	t, err := s.targetAt(sctx, k.Generation, model)
	if err != nil {
		return fmt.Errorf("provision tenant %s: %w", tenant, err)
	}
	if err := s.vectors.CreateCollection(sctx, t.coll, t.embed.Dimension()); err != nil {
		return fmt.Errorf("provision tenant %s: %w", tenant, err)
	}
	if k.Model == "" {
		if err := s.db.SetKnowledge(ctx, tenant, k.Generation, k.Generation, model); err != nil {
			return fmt.Errorf("provision tenant %s: %w", tenant, err)
		}
	}
	s.log.InfoContext(ctx, "knowledge collection provisioned", "tenant", tenant, "collection", t.coll.String(), "model", model)
	return nil
}

// Deprovision drops the tenant's collection generations: the current one
// and its neighbours a Reembed may have left. Missing ones are skipped.
func (s *Service) Deprovision(ctx context.Context, tenant uuid.UUID) error {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return err
	}
	sctx, err := tenantScope(ctx, tenant)
	if err != nil {
		return err
	}
	c, err := s.vectors.Collection(sctx)
	if err != nil {
		return fmt.Errorf("deprovision tenant %s: %w", tenant, err)
	}
	for _, g := range []uint32{k.Generation - 1, k.Generation, k.Generation + 1} {
		if g == 0 {
			continue
		}
		if err := s.dropGeneration(sctx, c, g); err != nil {
			return fmt.Errorf("deprovision tenant %s: %w", tenant, err)
		}
	}
	return nil
}

func (s *Service) dropGeneration(sctx context.Context, c vector.Collection, g uint32) error {
	cg, err := c.AtGeneration(g)
	if err != nil {
		return err
	}
	if err := s.vectors.DropCollection(sctx, cg); err != nil && !errors.Is(err, vector.ErrNotFound) {
		return err
	}
	return nil
}

// ReconcileStats says what Reconcile changed.
type ReconcileStats struct {
	Chunks  int `json:"chunks"`  // chunks of the tenant in PostgreSQL
	Added   int `json:"added"`   // points embedded and stored for chunks that had none or had no terms
	Terms   int `json:"terms"`   // of Added, points stored again because they had no lexical terms
	Removed int `json:"removed"` // points removed because their chunk is gone
}

// reconcilePage is how many chunks Reconcile embeds per batch.
const reconcilePage = 64

// orphanGrace is how old a point without a chunk must be before Reconcile
// removes it: younger ones may belong to an ingestion whose rows are being
// written right now (points are stored first).
const orphanGrace = time.Minute

// Reconcile makes the tenant's current collection hold exactly one point
// per chunk: chunks without a point are embedded and stored, points
// without a chunk (older than a minute) are removed, and points stored
// without lexical terms (before lexical search existed) are embedded and
// stored again with them. It repairs what a
// crash or an unreachable backend left, indexes documents written without
// the knowledge layer (bulkhead demo seed), and is Reembed's build step.
func (s *Service) Reconcile(ctx context.Context, tenant uuid.UUID) (ReconcileStats, error) {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return ReconcileStats{}, err
	}
	if k.Model == "" {
		return ReconcileStats{}, fmt.Errorf("reconcile tenant %s: %w", tenant, ErrNotProvisioned)
	}
	return s.reconcile(ctx, tenant, k.Generation, k.Model)
}

func (s *Service) reconcile(ctx context.Context, tenant uuid.UUID, gen uint32, model string) (ReconcileStats, error) {
	var st ReconcileStats
	sctx, err := tenantScope(ctx, tenant)
	if err != nil {
		return st, err
	}
	t, err := s.targetAt(sctx, gen, model)
	if err != nil {
		return st, err
	}
	chunks, err := s.db.TenantChunkIDs(ctx, tenant)
	if err != nil {
		return st, err
	}
	st.Chunks = len(chunks)
	points := make(map[uuid.UUID]time.Time)
	noTerms := make(map[uuid.UUID]bool) // stored before points had terms
	for after := uuid.Nil; ; {
		page, err := s.vectors.Scroll(sctx, t.coll, after, vector.MaxScrollLimit)
		if err != nil {
			return st, fmt.Errorf("reconcile tenant %s: %w", tenant, missing(err))
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			ms, _ := strconv.ParseInt(p.Payload[payloadStored], 10, 64)
			points[p.ID] = time.UnixMilli(ms)
			if _, ok := p.Payload[vector.PayloadTerms]; !ok {
				noTerms[p.ID] = true
			}
		}
		after = page[len(page)-1].ID
	}
	var todo []uuid.UUID
	for _, id := range chunks {
		if _, ok := points[id]; ok {
			delete(points, id)
			if noTerms[id] {
				todo = append(todo, id) // stored again, with its terms
				st.Terms++
			}
		} else {
			todo = append(todo, id)
		}
	}
	for batch := range slices.Chunk(todo, reconcilePage) {
		cs, err := s.db.TenantChunks(ctx, tenant, batch)
		if err != nil {
			return st, err
		}
		ps, err := pointsFor(sctx, tenant, t.embed, cs)
		if err != nil {
			return st, fmt.Errorf("reconcile tenant %s: %w", tenant, err)
		}
		if len(ps) == 0 {
			continue
		}
		if err := s.vectors.Upsert(sctx, t.coll, ps); err != nil {
			return st, fmt.Errorf("reconcile tenant %s: %w", tenant, missing(err))
		}
		st.Added += len(ps)
	}
	var orphans []uuid.UUID
	cutoff := time.Now().Add(-orphanGrace)
	for id, at := range points {
		if at.Before(cutoff) {
			orphans = append(orphans, id)
		}
	}
	for batch := range slices.Chunk(orphans, vector.MaxScrollLimit) {
		if err := s.deletePoints(sctx, t.coll, batch); err != nil {
			return st, fmt.Errorf("reconcile tenant %s: %w", tenant, err)
		}
		st.Removed += len(batch)
	}
	return st, nil
}

// Reembed moves the tenant to a new embedding model without downtime:
//
//  1. the next generation's collection is created with the model's
//     dimension and filled from every chunk (Reconcile), while queries
//     keep using the current one;
//  2. the tenant's row is switched to the new generation and model
//     (compare-and-set: a concurrent Reembed fails with ErrConflict);
//  3. after Drain (requests that read the old settings finish), a
//     catch-up Reconcile embeds chunks ingested into the old generation
//     meanwhile, and the old generation is dropped.
//
// Run again after a failure, it resumes: a half-built next generation is
// completed (or rebuilt if it has another dimension), and a generation
// left behind by an earlier switch is dropped.
func (s *Service) Reembed(ctx context.Context, tenant uuid.UUID, model string) (ReconcileStats, error) {
	k, err := s.db.TenantKnowledge(ctx, tenant)
	if err != nil {
		return ReconcileStats{}, err
	}
	if k.Model == "" {
		return ReconcileStats{}, fmt.Errorf("reembed tenant %s: %w", tenant, ErrNotProvisioned)
	}
	e, ok := s.embedders[model]
	if !ok {
		return ReconcileStats{}, bulkhead.Invalid("model", fmt.Sprintf("%q is not configured on this server", model))
	}
	sctx, err := tenantScope(ctx, tenant)
	if err != nil {
		return ReconcileStats{}, err
	}
	c, err := s.vectors.Collection(sctx)
	if err != nil {
		return ReconcileStats{}, err
	}
	if k.Generation > 1 {
		if err := s.dropGeneration(sctx, c, k.Generation-1); err != nil {
			return ReconcileStats{}, fmt.Errorf("reembed tenant %s: drop leftover generation: %w", tenant, err)
		}
	}
	next, err := c.AtGeneration(k.Generation + 1)
	if err != nil {
		return ReconcileStats{}, err
	}
	err = s.vectors.CreateCollection(sctx, next, e.Dimension())
	if errors.Is(err, vector.ErrDimension) { // a build for another model was interrupted
		if err = s.vectors.DropCollection(sctx, next); err == nil {
			err = s.vectors.CreateCollection(sctx, next, e.Dimension())
		}
	}
	if err != nil {
		return ReconcileStats{}, fmt.Errorf("reembed tenant %s: create generation %d: %w", tenant, k.Generation+1, err)
	}
	st, err := s.reconcile(ctx, tenant, k.Generation+1, model)
	if err != nil {
		return st, fmt.Errorf("reembed tenant %s: build: %w", tenant, err)
	}
	if err := s.db.SetKnowledge(ctx, tenant, k.Generation, k.Generation+1, model); err != nil {
		return st, fmt.Errorf("reembed tenant %s: switch: %w", tenant, err)
	}
	s.log.InfoContext(ctx, "knowledge collection switched", "tenant", tenant, "generation", k.Generation+1, "model", model)
	select {
	case <-time.After(s.drain):
	case <-ctx.Done():
		return st, fmt.Errorf("reembed tenant %s: switched; interrupted before dropping generation %d (run again): %w", tenant, k.Generation, ctx.Err())
	}
	catch, err := s.reconcile(ctx, tenant, k.Generation+1, model)
	st.Added, st.Removed = st.Added+catch.Added, st.Removed+catch.Removed
	if err != nil {
		return st, fmt.Errorf("reembed tenant %s: catch up: %w", tenant, err)
	}
	if err := s.dropGeneration(sctx, c, k.Generation); err != nil {
		return st, fmt.Errorf("reembed tenant %s: drop generation %d: %w", tenant, k.Generation, err)
	}
	return st, nil
}
