package vector_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// countingStore is the real embedded backend with a count of the calls
// that reached it.
type countingStore struct {
	vector.Store
	calls *atomic.Int64
}

func (s countingStore) CreateCollection(ctx context.Context, c vector.Collection, dim int) error {
	s.calls.Add(1)
	return s.Store.CreateCollection(ctx, c, dim)
}

func (s countingStore) DropCollection(ctx context.Context, c vector.Collection) error {
	s.calls.Add(1)
	return s.Store.DropCollection(ctx, c)
}

func (s countingStore) Upsert(ctx context.Context, c vector.Collection, p []vector.Point) error {
	s.calls.Add(1)
	return s.Store.Upsert(ctx, c, p)
}

func (s countingStore) Delete(ctx context.Context, c vector.Collection, ids []uuid.UUID) error {
	s.calls.Add(1)
	return s.Store.Delete(ctx, c, ids)
}

func (s countingStore) Search(ctx context.Context, c vector.Collection, q []float32, k int) ([]vector.Hit, error) {
	s.calls.Add(1)
	return s.Store.Search(ctx, c, q, k)
}

func (s countingStore) Stats(ctx context.Context, c vector.Collection) (vector.Stats, error) {
	s.calls.Add(1)
	return s.Store.Stats(ctx, c)
}

func (s countingStore) Scroll(ctx context.Context, c vector.Collection, after uuid.UUID, limit int) ([]vector.Point, error) {
	s.calls.Add(1)
	return s.Store.Scroll(ctx, c, after, limit)
}

// TestRouterRefusesAnotherScopeBeforeTheBackend: a collection minted for
// tenant A, used in tenant B's scope or with no scope, is refused by the
// router itself; the backend (whose own check would also refuse) is never
// called. In A's scope every call reaches it.
func TestRouterRefusesAnotherScopeBeforeTheBackend(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	var calls atomic.Int64
	regions := vector.NewStaticRegions(map[uuid.UUID]string{a: "eu", b: "eu"})
	r := vector.NewRouter(regions, map[string]vector.Store{"eu": countingStore{newEmbedded(t), &calls}})
	ctxA := scoped(t, a)
	c := mustCollection(t, r, ctxA)
	id := uuid.New()
	ops := []struct {
		name string
		call func(context.Context) error
	}{
		{"CreateCollection", func(ctx context.Context) error { return r.CreateCollection(ctx, c, 2) }},
		{"Upsert", func(ctx context.Context) error {
			return r.Upsert(ctx, c, []vector.Point{{ID: id, Vector: []float32{1, 0}}})
		}},
		{"Search", func(ctx context.Context) error { _, err := r.Search(ctx, c, []float32{1, 0}, 1); return err }},
		{"Stats", func(ctx context.Context) error { _, err := r.Stats(ctx, c); return err }},
		{"Scroll", func(ctx context.Context) error { _, err := r.Scroll(ctx, c, uuid.Nil, 10); return err }},
		{"Delete", func(ctx context.Context) error { return r.Delete(ctx, c, []uuid.UUID{id}) }},
		{"DropCollection", func(ctx context.Context) error { return r.DropCollection(ctx, c) }},
	}
	for _, op := range ops {
		before := calls.Load()
		is(t, op.name+" in another tenant's scope", op.call(scoped(t, b)), vector.ErrForbidden, bulkhead.ErrForbidden)
		is(t, op.name+" with no scope", op.call(context.Background()), bulkhead.ErrUnauthenticated)
		if n := calls.Load() - before; n != 0 {
			t.Fatalf("%s: the backend was called %d times for a refused call", op.name, n)
		}
		if err := op.call(ctxA); err != nil {
			t.Fatalf("%s in the owner's scope: %v", op.name, err)
		}
		if n := calls.Load() - before; n != 1 {
			t.Fatalf("%s in the owner's scope reached the backend %d times, want 1", op.name, n)
		}
	}
}
