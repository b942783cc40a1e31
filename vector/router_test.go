package vector_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
)

func newEmbedded(t *testing.T) *embedded.Store {
	t.Helper()
	s, err := embedded.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func scoped(t *testing.T, tenant uuid.UUID) context.Context {
	t.Helper()
	ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func mustCollection(t *testing.T, r *vector.Router, ctx context.Context) vector.Collection {
	t.Helper()
	c, err := r.Collection(ctx)
	if err != nil {
		t.Fatalf("Collection: %v", err)
	}
	return c
}

func is(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("%s: got %v, want errors.Is %v", what, err, target)
		}
	}
}

func TestErrorsMatchRootErrors(t *testing.T) {
	for _, tc := range []struct{ err, root error }{
		{vector.ErrNotFound, bulkhead.ErrNotFound},
		{vector.ErrForbidden, bulkhead.ErrForbidden},
		{vector.ErrWrongRegion, bulkhead.ErrForbidden},
		{vector.ErrWrongRegion, vector.ErrForbidden},
		{vector.ErrDimension, bulkhead.ErrInvalid},
	} {
		if !errors.Is(tc.err, tc.root) {
			t.Errorf("%v does not match %v", tc.err, tc.root)
		}
	}
	if errors.Is(vector.ErrUnavailable, bulkhead.ErrNotFound) {
		t.Error("ErrUnavailable must never read as not found (an empty result)")
	}
}

func TestCollectionComesFromScope(t *testing.T) {
	a := uuid.New()
	regions := vector.NewStaticRegions(map[uuid.UUID]string{a: "eu"})
	r := vector.NewRouter(regions, map[string]vector.Store{"eu": newEmbedded(t)})

	_, err := r.Collection(context.Background())
	is(t, "no scope", err, bulkhead.ErrUnauthenticated)
	// An invalid scope never enters the context, so this is "no scope" too.
	ctx, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{})
	_, err = r.Collection(ctx)
	is(t, "invalid scope", err, bulkhead.ErrUnauthenticated)
	_, err = r.Collection(scoped(t, uuid.New()))
	is(t, "tenant with no region", err, bulkhead.ErrNotFound)

	c := mustCollection(t, r, scoped(t, a))
	if c.Tenant() != a || c.Region() != "eu" || c.Generation() != 1 || c.String() != a.String()+"@eu/g1" {
		t.Fatalf("Collection = %v", c)
	}
	if (vector.Collection{}).Tenant() != uuid.Nil {
		t.Fatal("zero Collection has a tenant")
	}
}

func TestRegionsRouteAndRefuse(t *testing.T) {
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	eu, us := newEmbedded(t), newEmbedded(t)
	regions := vector.NewStaticRegions(map[uuid.UUID]string{a: "eu", b: "us", c: "ap"})
	r := vector.NewRouter(regions, map[string]vector.Store{"eu": eu, "us": us})
	ctxA, ctxB := scoped(t, a), scoped(t, b)
	ca, cb := mustCollection(t, r, ctxA), mustCollection(t, r, ctxB)
	for ctx, col := range map[context.Context]vector.Collection{ctxA: ca, ctxB: cb} {
		if err := r.CreateCollection(ctx, col, 2); err != nil {
			t.Fatal(err)
		}
		if err := r.Upsert(ctx, col, []vector.Point{{ID: uuid.New(), Vector: []float32{1, 0}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Each tenant's data is in its region's backend only.
	m := bulkhead.AsMaintenance(context.Background(), "test: inspect backends")
	if _, err := eu.Stats(m, ca); err != nil {
		t.Fatalf("A not in eu: %v", err)
	}
	if _, err := us.Stats(m, ca); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("A in us: %v", err)
	}
	if _, err := us.Stats(m, cb); err != nil {
		t.Fatalf("B not in us: %v", err)
	}
	if _, err := eu.Stats(m, cb); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("B in eu: %v", err)
	}

	// A tenant in a region this router does not serve.
	_, err := r.Collection(scoped(t, c))
	is(t, "tenant in ap", err, vector.ErrWrongRegion, vector.ErrForbidden, bulkhead.ErrForbidden)

	// A reference minted before the tenant's region changed is refused by
	// every method, before reaching any backend.
	regions.Set(a, "us")
	q := []float32{1, 0}
	_, err = r.Search(ctxA, ca, q, 1)
	is(t, "Search with a stale region", err, vector.ErrWrongRegion)
	_, err = r.Stats(ctxA, ca)
	is(t, "Stats with a stale region", err, vector.ErrWrongRegion)
	_, err = r.Scroll(ctxA, ca, uuid.Nil, 1)
	is(t, "Scroll with a stale region", err, vector.ErrWrongRegion)
	is(t, "Upsert with a stale region", r.Upsert(ctxA, ca, []vector.Point{{ID: uuid.New(), Vector: q}}), vector.ErrWrongRegion)
	is(t, "Delete with a stale region", r.Delete(ctxA, ca, []uuid.UUID{uuid.New()}), vector.ErrWrongRegion)
	is(t, "Create with a stale region", r.CreateCollection(ctxA, ca, 2), vector.ErrWrongRegion)
	is(t, "Drop with a stale region", r.DropCollection(ctxA, ca), vector.ErrWrongRegion)
	// Re-minted, it points at us, where A has no collection: not found,
	// never a fallback to the eu copy.
	ca2 := mustCollection(t, r, ctxA)
	_, err = r.Search(ctxA, ca2, q, 1)
	is(t, "Search in the new region", err, vector.ErrNotFound)
	if _, err := us.Stats(m, ca); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("refused calls created A in us: %v", err)
	}
}

func TestCollectionOfAnotherRouterRefused(t *testing.T) {
	a := uuid.New()
	regions := vector.NewStaticRegions(map[uuid.UUID]string{a: "eu"})
	s := newEmbedded(t)
	r1 := vector.NewRouter(regions, map[string]vector.Store{"eu": s})
	r2 := vector.NewRouter(regions, map[string]vector.Store{"eu": s})
	ctx := scoped(t, a)
	c1 := mustCollection(t, r1, ctx)
	is(t, "r2 with r1's collection", r2.CreateCollection(ctx, c1, 2), vector.ErrForbidden)
}

// TestGenerationKeepsEveryCheck: a reference from AtGeneration carries its
// original's tenant, region and router, so every check the Router makes
// applies to it unchanged.
func TestGenerationKeepsEveryCheck(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	regions := vector.NewStaticRegions(map[uuid.UUID]string{a: "eu", b: "eu"})
	s := newEmbedded(t)
	r1 := vector.NewRouter(regions, map[string]vector.Store{"eu": s, "us": newEmbedded(t)})
	r2 := vector.NewRouter(regions, map[string]vector.Store{"eu": s})
	ctxA, ctxB := scoped(t, a), scoped(t, b)
	a1 := mustCollection(t, r1, ctxA)
	a3, err := a1.AtGeneration(3)
	if err != nil {
		t.Fatal(err)
	}
	if a3.Tenant() != a || a3.Region() != "eu" || a3.Generation() != 3 || a3.String() != a.String()+"@eu/g3" {
		t.Fatalf("AtGeneration(3) = %v", a3)
	}
	if a1.Generation() != 1 {
		t.Fatalf("AtGeneration changed its receiver: %v", a1)
	}
	if err := r1.CreateCollection(ctxA, a3, 2); err != nil {
		t.Fatal(err)
	}
	is(t, "another router with r1's generation 3", r2.CreateCollection(ctxA, a3, 2), vector.ErrForbidden)
	_, err = r1.Stats(ctxB, a3)
	is(t, "A's generation 3 in B's scope", err, vector.ErrForbidden)
	_, err = r1.Stats(context.Background(), a3)
	is(t, "A's generation 3 without a scope", err, bulkhead.ErrUnauthenticated)
	_, err = a1.AtGeneration(0)
	is(t, "AtGeneration(0)", err, bulkhead.ErrInvalid)
	_, err = vector.Collection{}.AtGeneration(1)
	is(t, "zero Collection AtGeneration(1)", err, vector.ErrForbidden)
	if got := (vector.Collection{}).String(); got != "<no collection>" {
		t.Fatalf("zero Collection String() = %q", got)
	}
	// The region is the tenant's: after it changes, every generation's
	// old reference is stale.
	regions.Set(a, "us")
	_, err = r1.Stats(ctxA, a3)
	is(t, "generation 3 with a stale region", err, vector.ErrWrongRegion)
}

// lyingStore returns hits attributed to another tenant.
type lyingStore struct{ vector.Store }

func (l lyingStore) Search(ctx context.Context, c vector.Collection, q []float32, k int) ([]vector.Hit, error) {
	hits, err := l.Store.Search(ctx, c, q, k)
	for i := range hits {
		hits[i].Tenant = uuid.New()
	}
	return hits, err
}

func (l lyingStore) SearchTerms(ctx context.Context, c vector.Collection, q []uint64, k int) ([]vector.Hit, error) {
	hits, err := l.Store.(vector.TermSearcher).SearchTerms(ctx, c, q, k)
	for i := range hits {
		hits[i].Tenant = uuid.New()
	}
	return hits, err
}

// TestRouterRechecksHitTenant: a backend returning a hit of another tenant
// fails the search (vector and lexical) instead of returning any hit.
func TestRouterRechecksHitTenant(t *testing.T) {
	a := uuid.New()
	regions := vector.NewStaticRegions(map[uuid.UUID]string{a: "eu"})
	r := vector.NewRouter(regions, map[string]vector.Store{"eu": lyingStore{newEmbedded(t)}})
	ctx := scoped(t, a)
	c := mustCollection(t, r, ctx)
	if err := r.CreateCollection(ctx, c, 2); err != nil {
		t.Fatal(err)
	}
	terms := vector.Terms{Words: 1, Counts: map[uint64]int{7: 1}}.Encode()
	if err := r.Upsert(ctx, c, []vector.Point{{ID: uuid.New(), Vector: []float32{1, 0}, Payload: map[string]string{vector.PayloadTerms: terms}}}); err != nil {
		t.Fatal(err)
	}
	hits, err := r.Search(ctx, c, []float32{1, 0}, 1)
	is(t, "Search through a backend mixing tenants", err, vector.ErrUnavailable)
	if hits != nil {
		t.Fatalf("hits returned with the error: %v", hits)
	}
	hits, err = r.SearchTerms(ctx, c, []uint64{7}, 1)
	is(t, "SearchTerms through a backend mixing tenants", err, vector.ErrUnavailable)
	if hits != nil {
		t.Fatalf("lexical hits returned with the error: %v", hits)
	}
}

func TestNewRouterPanicsOnBadWiring(t *testing.T) {
	for name, fn := range map[string]func(){
		"nil regions": func() { vector.NewRouter(nil, map[string]vector.Store{"eu": newEmbedded(t)}) },
		"no stores":   func() { vector.NewRouter(vector.NewStaticRegions(nil), nil) },
		"nil store":   func() { vector.NewRouter(vector.NewStaticRegions(nil), map[string]vector.Store{"eu": nil}) },
		"no name":     func() { vector.NewRouter(vector.NewStaticRegions(nil), map[string]vector.Store{"": newEmbedded(t)}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}
