package vector

import (
	"context"
	"fmt"
	"sync"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// Router mints Collection references from authenticated scopes and
// dispatches each call to the backend of the tenant's region. It is itself a
// Store: on every call it checks that the context's scope is the
// Collection's tenant, that the tenant still lives in the Collection's
// region, and that every hit a backend returns belongs to that tenant.
// Every generation of a tenant lives in the tenant's region.
// A Router is safe for concurrent use.
type Router struct {
	regions Regions
	stores  map[string]Store

	// gates let Move drain the calls of the moving tenant: every call
	// holds its tenant's gate for reading from the region check to the
	// backend's answer. Striped by tenant: a drain briefly delays other
	// tenants of the same stripe, and nothing else is shared.
	gates  [64]sync.RWMutex
	mu     sync.Mutex
	moving map[uuid.UUID]bool
}

var _ Store = (*Router)(nil)

// NewRouter returns a Router serving the regions in stores (region name →
// backend), looking tenants' regions up in regions. stores is copied. It
// panics on a nil regions, an empty stores, an empty region name or a nil
// backend: those are wiring mistakes.
func NewRouter(regions Regions, stores map[string]Store) *Router {
	if regions == nil || len(stores) == 0 {
		panic("vector.NewRouter: needs a Regions and at least one store")
	}
	r := &Router{regions: regions, stores: make(map[string]Store, len(stores)), moving: make(map[uuid.UUID]bool)}
	for name, s := range stores {
		if name == "" || s == nil {
			panic("vector.NewRouter: empty region name or nil store")
		}
		r.stores[name] = s
	}
	return r
}

// Collection returns the reference to generation 1 of the collection of
// the tenant in ctx's scope (Collection.AtGeneration reaches the others).
// It returns bulkhead.ErrUnauthenticated if ctx has no scope, the
// Regions error (bulkhead.ErrNotFound for an unknown tenant), or
// ErrWrongRegion if this router serves no backend for the tenant's region.
// It does not check that the collection exists.
func (r *Router) Collection(ctx context.Context) (Collection, error) {
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok {
		return Collection{}, fmt.Errorf("vector collection: %w", bulkhead.ErrUnauthenticated)
	}
	region, err := r.regions.Region(ctx, s.Tenant)
	if err != nil {
		return Collection{}, fmt.Errorf("vector collection of tenant %s: %w", s.Tenant, err)
	}
	if _, ok := r.stores[region]; !ok {
		return Collection{}, fmt.Errorf("vector collection of tenant %s in region %q: %w", s.Tenant, region, ErrWrongRegion)
	}
	return Collection{tenant: s.Tenant, region: region, gen: 1, router: r}, nil
}

func (r *Router) gate(tenant uuid.UUID) *sync.RWMutex {
	return &r.gates[int(tenant[15])%len(r.gates)]
}

// enter checks c against ctx and the tenant's current region and returns
// the backend, holding the tenant's gate until done is called.
func (r *Router) enter(ctx context.Context, c Collection, write bool) (Store, func(), error) {
	if c.router != r || !c.minted() {
		return nil, nil, fmt.Errorf("collection reference not issued by this router: %w", ErrForbidden)
	}
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok {
		return nil, nil, fmt.Errorf("vector collection %s: %w", c, bulkhead.ErrUnauthenticated)
	}
	if s.Tenant != c.tenant {
		return nil, nil, fmt.Errorf("collection %s used in the scope of tenant %s: %w", c, s.Tenant, ErrForbidden)
	}
	g := r.gate(c.tenant)
	g.RLock()
	if write && r.isMoving(c.tenant) {
		g.RUnlock()
		return nil, nil, fmt.Errorf("collection %s is being moved between regions, retry: %w", c, ErrUnavailable)
	}
	region, err := r.regions.Region(ctx, c.tenant)
	if err != nil {
		g.RUnlock()
		return nil, nil, fmt.Errorf("vector collection %s: region: %w", c, err)
	}
	if region != c.region {
		g.RUnlock()
		return nil, nil, fmt.Errorf("collection %s: tenant now lives in %q: %w", c, region, ErrWrongRegion)
	}
	return r.stores[region], g.RUnlock, nil
}

func (r *Router) isMoving(tenant uuid.UUID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.moving[tenant]
}

// CreateCollection implements Store.
func (r *Router) CreateCollection(ctx context.Context, c Collection, dim int) error {
	st, done, err := r.enter(ctx, c, true)
	if err != nil {
		return err
	}
	defer done()
	return st.CreateCollection(ctx, c, dim)
}

// DropCollection implements Store.
func (r *Router) DropCollection(ctx context.Context, c Collection) error {
	st, done, err := r.enter(ctx, c, true)
	if err != nil {
		return err
	}
	defer done()
	return st.DropCollection(ctx, c)
}

// Upsert implements Store.
func (r *Router) Upsert(ctx context.Context, c Collection, points []Point) error {
	st, done, err := r.enter(ctx, c, true)
	if err != nil {
		return err
	}
	defer done()
	return st.Upsert(ctx, c, points)
}

// Delete implements Store.
func (r *Router) Delete(ctx context.Context, c Collection, ids []uuid.UUID) error {
	st, done, err := r.enter(ctx, c, true)
	if err != nil {
		return err
	}
	defer done()
	return st.Delete(ctx, c, ids)
}

// Search implements Store. A hit the backend attributes to another tenant
// fails the whole call with ErrUnavailable: a backend that mixes tenants is
// broken, and nothing it returned can be trusted.
func (r *Router) Search(ctx context.Context, c Collection, query []float32, k int) ([]Hit, error) {
	st, done, err := r.enter(ctx, c, false)
	if err != nil {
		return nil, err
	}
	defer done()
	hits, err := st.Search(ctx, c, query, k)
	if err != nil {
		return nil, err
	}
	return c.ownHits("search", hits)
}

// ownHits returns hits, or ErrUnavailable if the backend returned one of
// another tenant than c's: never used, whatever else it returned.
func (c Collection) ownHits(op string, hits []Hit) ([]Hit, error) {
	for _, h := range hits {
		if h.Tenant != c.tenant {
			return nil, fmt.Errorf("%s %s: backend returned a hit of tenant %s: %w", op, c, h.Tenant, ErrUnavailable)
		}
	}
	return hits, nil
}

// SearchTerms is TermSearcher.SearchTerms on the backend of c's region,
// with Search's scope and hit checks. It returns ErrNoTermIndex when that
// backend has no lexical index.
func (r *Router) SearchTerms(ctx context.Context, c Collection, query []uint64, k int) ([]Hit, error) {
	st, done, err := r.enter(ctx, c, false)
	if err != nil {
		return nil, err
	}
	defer done()
	ts, ok := st.(TermSearcher)
	if !ok {
		return nil, fmt.Errorf("search terms in %s: %w", c, ErrNoTermIndex)
	}
	hits, err := ts.SearchTerms(ctx, c, query, k)
	if err != nil {
		return nil, err
	}
	return c.ownHits("search terms in", hits)
}

// Stats implements Store.
func (r *Router) Stats(ctx context.Context, c Collection) (Stats, error) {
	st, done, err := r.enter(ctx, c, false)
	if err != nil {
		return Stats{}, err
	}
	defer done()
	return st.Stats(ctx, c)
}

// Scroll implements Store.
func (r *Router) Scroll(ctx context.Context, c Collection, after uuid.UUID, limit int) ([]Point, error) {
	st, done, err := r.enter(ctx, c, false)
	if err != nil {
		return nil, err
	}
	defer done()
	return st.Scroll(ctx, c, after, limit)
}
