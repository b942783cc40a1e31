package vectortest

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
)

// Env is what each contract case runs against: a router over one fresh
// store, serving region "test" for two tenants, A and B.
type Env struct {
	Router         *vector.Router
	Store          vector.Store
	TenantA        uuid.UUID
	TenantB        uuid.UUID
	CtxA, CtxB     context.Context
	CollA, CollB   vector.Collection
	Regions        *vector.StaticRegions
	RegionName     string
	NoScopeContext context.Context
}

// NewEnv builds an Env over store.
func NewEnv(t *testing.T, store vector.Store) *Env {
	t.Helper()
	e := &Env{Store: store, TenantA: uuid.New(), TenantB: uuid.New(), RegionName: "test", NoScopeContext: context.Background()}
	e.Regions = vector.NewStaticRegions(map[uuid.UUID]string{e.TenantA: e.RegionName, e.TenantB: e.RegionName})
	e.Router = vector.NewRouter(e.Regions, map[string]vector.Store{e.RegionName: store})
	e.CtxA, e.CollA = e.Scoped(t, e.TenantA)
	e.CtxB, e.CollB = e.Scoped(t, e.TenantB)
	return e
}

// Scoped returns a context scoped to tenant and the collection the router
// mints from it.
func (e *Env) Scoped(t *testing.T, tenant uuid.UUID) (context.Context, vector.Collection) {
	t.Helper()
	ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant, Entity: uuid.New()})
	if err != nil {
		t.Fatalf("WithScope: %v", err)
	}
	c, err := e.Router.Collection(ctx)
	if err != nil {
		t.Fatalf("Router.Collection: %v", err)
	}
	return ctx, c
}

// Run runs the contract against stores made by newStore, one fresh empty
// store per case.
func Run(t *testing.T, newStore func(t *testing.T) vector.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, e *Env)
	}{
		{"SearchOrderAndScores", testSearchOrder},
		{"SearchK", testSearchK},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"DeleteAllOrNothing", testDeleteAllOrNothing},
		{"Dimension", testDimension},
		{"InvalidInput", testInvalid},
		{"MissingCollection", testMissing},
		{"NoAutoCreate", testNoAutoCreate},
		{"DropThenSearch", testDrop},
		{"CreateIdempotent", testCreateIdempotent},
		{"TenantsIsolated", testTenantsIsolated},
		{"OnlyOwnerHasCollection", testOnlyOwnerHasCollection},
		{"ForeignCollectionRefused", testForeignCollection},
		{"Stats", testStats},
		{"Scroll", testScroll},
		{"Copies", testCopies},
		{"GenerationsSeparate", testGenerations},
		{"GenerationNeverCreated", testGenerationMissing},
		{"GenerationZeroRefused", testGenerationZero},
		{"ForeignGenerationRefused", testForeignGeneration},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, NewEnv(t, newStore(t)))
		})
	}
}

// ID returns a fixed, readable point id: 00000000-0000-0000-0000-0000000000nn.
func ID(n byte) uuid.UUID {
	var id uuid.UUID
	id[15] = n
	return id
}

// Cosine is the float64 reference score.
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func mustCreate(t *testing.T, ctx context.Context, r vector.Store, c vector.Collection, dim int) {
	t.Helper()
	if err := r.CreateCollection(ctx, c, dim); err != nil {
		t.Fatalf("CreateCollection(%s, %d): %v", c, dim, err)
	}
}

func mustUpsert(t *testing.T, ctx context.Context, r vector.Store, c vector.Collection, pts ...vector.Point) {
	t.Helper()
	if err := r.Upsert(ctx, c, pts); err != nil {
		t.Fatalf("Upsert(%s): %v", c, err)
	}
}

func mustSearch(t *testing.T, ctx context.Context, r vector.Store, c vector.Collection, q []float32, k int) []vector.Hit {
	t.Helper()
	hits, err := r.Search(ctx, c, q, k)
	if err != nil {
		t.Fatalf("Search(%s): %v", c, err)
	}
	return hits
}

func wantErr(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %v", what, targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("%s: got %v, want errors.Is %v", what, err, target)
		}
	}
}

func ids(hits []vector.Hit) []uuid.UUID {
	out := make([]uuid.UUID, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

var approx = cmpopts.EquateApprox(0, 1e-6)

// fixture: five points in 4 dimensions with known cosines to (1,0,0,0).
func fixture() []vector.Point {
	return []vector.Point{
		{ID: ID(1), Vector: []float32{2, 0, 0, 0}, Payload: map[string]string{"n": "1"}},
		{ID: ID(2), Vector: []float32{1, 1, 0, 0}, Payload: map[string]string{"n": "2"}},
		{ID: ID(3), Vector: []float32{0, 1, 0, 0}, Payload: map[string]string{"n": "3"}},
		{ID: ID(4), Vector: []float32{-1, 0, 0, 0}, Payload: map[string]string{"n": "4"}},
		{ID: ID(5), Vector: []float32{0, 0, 3, 3}, Payload: map[string]string{"n": "5"}},
		{ID: ID(6), Vector: []float32{1, 0, 1, 0}}, // no payload
	}
}

func testSearchOrder(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	pts := fixture()
	mustUpsert(t, e.CtxA, e.Router, e.CollA, pts...)
	q := []float32{1, 0, 0, 0}
	got := mustSearch(t, e.CtxA, e.Router, e.CollA, q, 10)
	// 1 (1.0), 2 and 6 tie at 0.7071 (id order), 3 and 5 tie at 0, 4 (-1).
	var want []vector.Hit
	for _, n := range []int{1, 2, 6, 3, 5, 4} {
		p := pts[n-1]
		want = append(want, vector.Hit{ID: p.ID, Score: float32(Cosine(q, p.Vector)), Payload: p.Payload, Tenant: e.TenantA})
	}
	if diff := cmp.Diff(want, got, approx, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("Search (-want +got):\n%s", diff)
	}
	// A scaled query gives the same scores.
	got2 := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{7, 0, 0, 0}, 10)
	if diff := cmp.Diff(want, got2, approx, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("Search with scaled query (-want +got):\n%s", diff)
	}
}

func testSearchK(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	if got := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0, 0, 0}, 3); len(got) != 0 {
		t.Fatalf("Search of an empty collection = %v, want none", got)
	}
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	got := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0, 0, 0}, 2)
	if diff := cmp.Diff([]uuid.UUID{ID(1), ID(2)}, ids(got)); diff != "" {
		t.Fatalf("top 2 (-want +got):\n%s", diff)
	}
	got = mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{0, 0, 1, 1}, 1)
	if diff := cmp.Diff([]uuid.UUID{ID(5)}, ids(got)); diff != "" {
		t.Fatalf("top 1 (-want +got):\n%s", diff)
	}
}

func testUpdate(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	// Point 4 turns to face the query; its payload changes.
	mustUpsert(t, e.CtxA, e.Router, e.CollA, vector.Point{ID: ID(4), Vector: []float32{5, 0, 0, 0}, Payload: map[string]string{"n": "4b"}})
	got := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0, 0, 0}, 2)
	want := []vector.Hit{
		{ID: ID(1), Score: 1, Payload: map[string]string{"n": "1"}, Tenant: e.TenantA},
		{ID: ID(4), Score: 1, Payload: map[string]string{"n": "4b"}, Tenant: e.TenantA},
	}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Fatalf("after update (-want +got):\n%s", diff)
	}
	st, err := e.Router.Stats(e.CtxA, e.CollA)
	if err != nil || st.Points != 6 {
		t.Fatalf("Stats after update = %+v, %v; want 6 points", st, err)
	}
}

func testDelete(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	if err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{ID(1), ID(6)}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0, 0, 0}, 10)
	if diff := cmp.Diff([]uuid.UUID{ID(2), ID(3), ID(5), ID(4)}, ids(got)); diff != "" {
		t.Fatalf("after delete (-want +got):\n%s", diff)
	}
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 4 {
		t.Fatalf("Stats after delete = %+v, %v; want 4 points", st, err)
	}
	wantErr(t, "Delete of a deleted point", e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{ID(1)}), vector.ErrNotFound, bulkhead.ErrNotFound)
	// Re-inserting a deleted id works.
	mustUpsert(t, e.CtxA, e.Router, e.CollA, vector.Point{ID: ID(1), Vector: []float32{1, 0, 0, 0}})
	if got := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0, 0, 0}, 1); len(got) != 1 || got[0].ID != ID(1) {
		t.Fatalf("re-inserted point not found first: %v", got)
	}
}

func testDeleteAllOrNothing(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{ID(1), ID(99)})
	wantErr(t, "Delete with one missing id", err, vector.ErrNotFound)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 6 {
		t.Fatalf("Stats after refused delete = %+v, %v; want all 6 points kept", st, err)
	}
}

func testDimension(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	bad := []vector.Point{
		{ID: ID(7), Vector: []float32{1, 0, 0, 0}},
		{ID: ID(8), Vector: []float32{1, 0, 0}},
	}
	wantErr(t, "Upsert of a 3-d point into 4-d", e.Router.Upsert(e.CtxA, e.CollA, bad), vector.ErrDimension, bulkhead.ErrInvalid)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 6 {
		t.Fatalf("Stats after refused upsert = %+v, %v; want 6 (nothing stored)", st, err)
	}
	_, err := e.Router.Search(e.CtxA, e.CollA, []float32{1, 0, 0, 0, 0}, 3)
	wantErr(t, "Search with a 5-d query", err, vector.ErrDimension)
	wantErr(t, "CreateCollection with another dimension", e.Router.CreateCollection(e.CtxA, e.CollA, 8), vector.ErrDimension)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Dimension != 4 || st.Points != 6 {
		t.Fatalf("Stats after refused re-create = %+v, %v", st, err)
	}
}

func testInvalid(t *testing.T, e *Env) {
	wantErr(t, "CreateCollection dim 0", e.Router.CreateCollection(e.CtxA, e.CollA, 0), bulkhead.ErrInvalid)
	wantErr(t, "CreateCollection dim too big", e.Router.CreateCollection(e.CtxA, e.CollA, vector.MaxDimension+1), bulkhead.ErrInvalid)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 2)
	for name, p := range map[string]vector.Point{
		"nil id":      {ID: uuid.Nil, Vector: []float32{1, 0}},
		"zero vector": {ID: ID(1), Vector: []float32{0, 0}},
		"NaN":         {ID: ID(1), Vector: []float32{float32(math.NaN()), 1}},
		"Inf":         {ID: ID(1), Vector: []float32{float32(math.Inf(1)), 1}},
	} {
		wantErr(t, "Upsert "+name, e.Router.Upsert(e.CtxA, e.CollA, []vector.Point{p}), bulkhead.ErrInvalid)
	}
	dup := []vector.Point{{ID: ID(1), Vector: []float32{1, 0}}, {ID: ID(1), Vector: []float32{0, 1}}}
	wantErr(t, "Upsert repeated id", e.Router.Upsert(e.CtxA, e.CollA, dup), bulkhead.ErrInvalid)
	for _, k := range []int{0, -1, vector.MaxK + 1} {
		_, err := e.Router.Search(e.CtxA, e.CollA, []float32{1, 0}, k)
		wantErr(t, "Search with bad k", err, bulkhead.ErrInvalid)
	}
	_, err := e.Router.Search(e.CtxA, e.CollA, []float32{0, 0}, 1)
	wantErr(t, "Search with zero query", err, bulkhead.ErrInvalid)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 0 {
		t.Fatalf("Stats after refused writes = %+v, %v; want empty", st, err)
	}
}

func testMissing(t *testing.T, e *Env) {
	check := func(what string, err error) {
		t.Helper()
		wantErr(t, what+" on a missing collection", err, vector.ErrNotFound, bulkhead.ErrNotFound)
	}
	_, err := e.Router.Search(e.CtxA, e.CollA, []float32{1, 0}, 1)
	check("Search", err)
	_, err = e.Router.Stats(e.CtxA, e.CollA)
	check("Stats", err)
	_, err = e.Router.Scroll(e.CtxA, e.CollA, uuid.Nil, 10)
	check("Scroll", err)
	check("Delete", e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{ID(1)}))
	check("DropCollection", e.Router.DropCollection(e.CtxA, e.CollA))
}

func testNoAutoCreate(t *testing.T, e *Env) {
	err := e.Router.Upsert(e.CtxA, e.CollA, []vector.Point{{ID: ID(1), Vector: []float32{1, 0}}})
	wantErr(t, "Upsert without CreateCollection", err, vector.ErrNotFound, bulkhead.ErrNotFound)
	_, err = e.Router.Stats(e.CtxA, e.CollA)
	wantErr(t, "Stats after refused Upsert (no auto-create)", err, vector.ErrNotFound)
	err = e.Router.Upsert(e.CtxA, e.CollA, nil)
	wantErr(t, "empty Upsert without CreateCollection", err, vector.ErrNotFound)
}

func testDrop(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	if err := e.Router.DropCollection(e.CtxA, e.CollA); err != nil {
		t.Fatalf("DropCollection: %v", err)
	}
	_, err := e.Router.Search(e.CtxA, e.CollA, []float32{1, 0, 0, 0}, 3)
	wantErr(t, "Search after drop", err, vector.ErrNotFound)
	err = e.Router.Upsert(e.CtxA, e.CollA, fixture()[:1])
	wantErr(t, "Upsert after drop", err, vector.ErrNotFound)
	wantErr(t, "second DropCollection", e.Router.DropCollection(e.CtxA, e.CollA), vector.ErrNotFound)
	// Re-created, it starts empty (with a new dimension if asked).
	mustCreate(t, e.CtxA, e.Router, e.CollA, 2)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 0 || st.Dimension != 2 {
		t.Fatalf("Stats after re-create = %+v, %v", st, err)
	}
}

func testCreateIdempotent(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 6 {
		t.Fatalf("Stats after second CreateCollection = %+v, %v; want the 6 points kept", st, err)
	}
}

func testTenantsIsolated(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustCreate(t, e.CtxB, e.Router, e.CollB, 4)
	// Same ids, opposite vectors, different payloads.
	var ptsA, ptsB []vector.Point
	for _, p := range fixture() {
		ptsA = append(ptsA, vector.Point{ID: p.ID, Vector: p.Vector, Payload: map[string]string{"owner": "A"}})
		neg := make([]float32, len(p.Vector))
		for i, x := range p.Vector {
			neg[i] = -x
		}
		ptsB = append(ptsB, vector.Point{ID: p.ID, Vector: neg, Payload: map[string]string{"owner": "B"}})
	}
	mustUpsert(t, e.CtxA, e.Router, e.CollA, ptsA...)
	mustUpsert(t, e.CtxB, e.Router, e.CollB, ptsB[:3]...) // B holds only ids 1..3
	q := []float32{1, 0, 0, 0}

	assertOwn := func(who string, hits []vector.Hit, tenant uuid.UUID, owner string, wantIDs []uuid.UUID) {
		t.Helper()
		for _, h := range hits {
			if h.Tenant != tenant || h.Payload["owner"] != owner {
				t.Fatalf("%s got a foreign hit: %+v", who, h)
			}
		}
		if diff := cmp.Diff(wantIDs, ids(hits)); diff != "" {
			t.Fatalf("%s ids (-want +got):\n%s", who, diff)
		}
	}
	hitsA := mustSearch(t, e.CtxA, e.Router, e.CollA, q, 10)
	assertOwn("A", hitsA, e.TenantA, "A", []uuid.UUID{ID(1), ID(2), ID(6), ID(3), ID(5), ID(4)})
	if hitsA[0].Score < 0.999 {
		t.Fatalf("A's best score %v, want 1 (its own vector, not B's opposite)", hitsA[0].Score)
	}
	hitsB := mustSearch(t, e.CtxB, e.Router, e.CollB, q, 10)
	assertOwn("B", hitsB, e.TenantB, "B", []uuid.UUID{ID(3), ID(2), ID(1)})
	if hitsB[2].Score > -0.999 {
		t.Fatalf("B's score for id 1 is %v, want -1 (its own vector)", hitsB[2].Score)
	}

	// A deleting id 1 leaves B's id 1; B updating id 2 leaves A's id 2.
	if err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{ID(1)}); err != nil {
		t.Fatalf("A Delete: %v", err)
	}
	mustUpsert(t, e.CtxB, e.Router, e.CollB, vector.Point{ID: ID(2), Vector: []float32{0, 0, 0, 1}, Payload: map[string]string{"owner": "B"}})
	// B's id 2 now ties with its id 3 at 0: id order.
	assertOwn("B after A's delete", mustSearch(t, e.CtxB, e.Router, e.CollB, q, 10), e.TenantB, "B", []uuid.UUID{ID(2), ID(3), ID(1)})
	hitsA = mustSearch(t, e.CtxA, e.Router, e.CollA, q, 10)
	assertOwn("A after B's update", hitsA, e.TenantA, "A", []uuid.UUID{ID(2), ID(6), ID(3), ID(5), ID(4)})
	// B cannot delete ids only A has.
	wantErr(t, "B deleting A-only id 5", e.Router.Delete(e.CtxB, e.CollB, []uuid.UUID{ID(5)}), vector.ErrNotFound)
	// Dropping A leaves B whole.
	if err := e.Router.DropCollection(e.CtxA, e.CollA); err != nil {
		t.Fatalf("A Drop: %v", err)
	}
	if st, err := e.Router.Stats(e.CtxB, e.CollB); err != nil || st.Points != 3 {
		t.Fatalf("B Stats after A's drop = %+v, %v; want 3", st, err)
	}
	_, err := e.Router.Search(e.CtxA, e.CollA, q, 1)
	wantErr(t, "A Search after its drop", err, vector.ErrNotFound)
}

func testOnlyOwnerHasCollection(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	if got := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0, 0, 0}, 1); len(got) != 1 || got[0].ID != ID(1) {
		t.Fatalf("owner A Search = %v", got)
	}
	_, err := e.Router.Search(e.CtxB, e.CollB, []float32{1, 0, 0, 0}, 1)
	wantErr(t, "B Search without a collection (never A's)", err, vector.ErrNotFound)
	err = e.Router.Upsert(e.CtxB, e.CollB, fixture()[:1])
	wantErr(t, "B Upsert without a collection (never into A's)", err, vector.ErrNotFound)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 6 {
		t.Fatalf("A Stats = %+v, %v", st, err)
	}
}

func testForeignCollection(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	// B's scope holding A's reference: refused by the router and by the
	// backend itself.
	for name, s := range map[string]vector.Store{"router": e.Router, "backend": e.Store} {
		_, err := s.Search(e.CtxB, e.CollA, []float32{1, 0, 0, 0}, 1)
		wantErr(t, name+": Search with A's collection in B's scope", err, vector.ErrForbidden, bulkhead.ErrForbidden)
		err = s.Upsert(e.CtxB, e.CollA, fixture()[:1])
		wantErr(t, name+": Upsert with A's collection in B's scope", err, vector.ErrForbidden)
		err = s.DropCollection(e.CtxB, e.CollA)
		wantErr(t, name+": Drop with A's collection in B's scope", err, vector.ErrForbidden)
		_, err = s.Search(e.NoScopeContext, e.CollA, []float32{1, 0, 0, 0}, 1)
		wantErr(t, name+": Search without a scope", err, bulkhead.ErrUnauthenticated)
		_, err = s.Search(e.CtxA, vector.Collection{}, []float32{1, 0, 0, 0}, 1)
		wantErr(t, name+": Search with the zero Collection", err, vector.ErrForbidden)
	}
	_, err := e.Router.Collection(e.NoScopeContext)
	wantErr(t, "Collection without a scope", err, bulkhead.ErrUnauthenticated)
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 6 {
		t.Fatalf("A Stats after refused calls = %+v, %v", st, err)
	}
}

func testStats(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	st, err := e.Router.Stats(e.CtxA, e.CollA)
	if err != nil || st.Dimension != 4 || st.Points != 0 {
		t.Fatalf("Stats of empty = %+v, %v", st, err)
	}
	mustUpsert(t, e.CtxA, e.Router, e.CollA, fixture()...)
	st2, err := e.Router.Stats(e.CtxA, e.CollA)
	if err != nil || st2.Dimension != 4 || st2.Points != 6 || st2.Bytes <= st.Bytes {
		t.Fatalf("Stats = %+v, %v; want 4-d, 6 points, more bytes than empty (%d)", st2, err, st.Bytes)
	}
}

func testScroll(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4)
	var want []vector.Point
	for i := range 25 {
		p := vector.Point{ID: uuid.New(), Vector: []float32{float32(i + 1), 1, 0, 0}, Payload: map[string]string{"i": string(rune('a' + i))}}
		want = append(want, p)
	}
	mustUpsert(t, e.CtxA, e.Router, e.CollA, want...)
	slices.SortFunc(want, func(a, b vector.Point) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	var got []vector.Point
	after := uuid.Nil
	for pages := 0; ; pages++ {
		page, err := e.Router.Scroll(e.CtxA, e.CollA, after, 7)
		if err != nil {
			t.Fatalf("Scroll: %v", err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 7 || pages > 5 {
			t.Fatalf("Scroll page of %d, page %d", len(page), pages)
		}
		got = append(got, page...)
		after = page[len(page)-1].ID
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("Scroll (-want +got):\n%s", diff)
	}
	_, err := e.Router.Scroll(e.CtxA, e.CollA, uuid.Nil, 0)
	wantErr(t, "Scroll limit 0", err, bulkhead.ErrInvalid)
}

func testCopies(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 2)
	vec := []float32{1, 0}
	pay := map[string]string{"k": "v"}
	mustUpsert(t, e.CtxA, e.Router, e.CollA, vector.Point{ID: ID(1), Vector: vec, Payload: pay})
	vec[0], vec[1] = 0, 1 // the caller reuses its buffers
	pay["k"] = "changed"
	hits := mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0}, 1)
	if hits[0].Score < 0.999 || hits[0].Payload["k"] != "v" {
		t.Fatalf("store kept the caller's buffers: %+v", hits[0])
	}
	hits[0].Payload["k"] = "mutated"
	page, err := e.Router.Scroll(e.CtxA, e.CollA, uuid.Nil, 10)
	if err != nil {
		t.Fatalf("Scroll: %v", err)
	}
	page[0].Vector[0] = 42
	hits = mustSearch(t, e.CtxA, e.Router, e.CollA, []float32{1, 0}, 1)
	if hits[0].Score < 0.999 || hits[0].Payload["k"] != "v" {
		t.Fatalf("results share memory with the store: %+v", hits[0])
	}
}

func mustGeneration(t *testing.T, c vector.Collection, g uint32) vector.Collection {
	t.Helper()
	cg, err := c.AtGeneration(g)
	if err != nil {
		t.Fatalf("%s.AtGeneration(%d): %v", c, g, err)
	}
	return cg
}

func mustStats(t *testing.T, ctx context.Context, r vector.Store, c vector.Collection, dim, points int) {
	t.Helper()
	st, err := r.Stats(ctx, c)
	if err != nil || st.Dimension != dim || st.Points != points {
		t.Fatalf("Stats(%s) = %+v, %v; want dimension %d, %d points", c, st, err, dim, points)
	}
}

func scrollAll(t *testing.T, ctx context.Context, r vector.Store, c vector.Collection) []vector.Point {
	t.Helper()
	var all []vector.Point
	after := uuid.Nil
	for {
		page, err := r.Scroll(ctx, c, after, 100)
		if err != nil {
			t.Fatalf("Scroll(%s): %v", c, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
}

// generation2 returns three 2-d points reusing fixture ids 1..3, so that
// any mix-up with generation 1 shows in ids, dimensions and payloads.
func generation2() []vector.Point {
	return []vector.Point{
		{ID: ID(1), Vector: []float32{0, 1}, Payload: map[string]string{"gen": "2", "n": "1"}},
		{ID: ID(2), Vector: []float32{1, 0}, Payload: map[string]string{"gen": "2", "n": "2"}},
		{ID: ID(3), Vector: []float32{1, 1}, Payload: map[string]string{"gen": "2", "n": "3"}},
	}
}

// testGenerations: two generations of one tenant are two collections, with
// their own dimension, points, stats, scroll, create and drop.
func testGenerations(t *testing.T, e *Env) {
	a1 := e.CollA
	a2 := mustGeneration(t, a1, 2)
	if a1.Generation() != 1 || a2.Generation() != 2 || a2.Tenant() != e.TenantA || a2.Region() != a1.Region() {
		t.Fatalf("generations: %v (g%d), %v (g%d)", a1, a1.Generation(), a2, a2.Generation())
	}
	if want := e.TenantA.String() + "@" + e.RegionName + "/g2"; a2.String() != want {
		t.Fatalf("String() = %q, want %q", a2.String(), want)
	}
	mustCreate(t, e.CtxA, e.Router, a1, 4)
	mustUpsert(t, e.CtxA, e.Router, a1, fixture()...)
	mustCreate(t, e.CtxA, e.Router, a2, 2)
	mustUpsert(t, e.CtxA, e.Router, a2, generation2()...)

	// Separate dimensions and stats.
	mustStats(t, e.CtxA, e.Router, a1, 4, 6)
	mustStats(t, e.CtxA, e.Router, a2, 2, 3)
	mustCreate(t, e.CtxA, e.Router, a2, 2) // idempotent at its own dimension
	wantErr(t, "CreateCollection of generation 2 with generation 1's dimension", e.Router.CreateCollection(e.CtxA, a2, 4), vector.ErrDimension)
	wantErr(t, "Upsert of a 4-d point into 2-d generation 2", e.Router.Upsert(e.CtxA, a2, fixture()[:1]), vector.ErrDimension)
	_, err := e.Router.Search(e.CtxA, a2, []float32{1, 0, 0, 0}, 1)
	wantErr(t, "Search of generation 2 with a 4-d query", err, vector.ErrDimension)

	// Separate points: same ids, different vectors and payloads.
	got2 := mustSearch(t, e.CtxA, e.Router, a2, []float32{1, 0}, 10)
	want2 := []vector.Hit{
		{ID: ID(2), Score: 1, Payload: map[string]string{"gen": "2", "n": "2"}, Tenant: e.TenantA},
		{ID: ID(3), Score: float32(math.Sqrt2 / 2), Payload: map[string]string{"gen": "2", "n": "3"}, Tenant: e.TenantA},
		{ID: ID(1), Score: 0, Payload: map[string]string{"gen": "2", "n": "1"}, Tenant: e.TenantA},
	}
	if diff := cmp.Diff(want2, got2, approx); diff != "" {
		t.Fatalf("Search of generation 2 (-want +got):\n%s", diff)
	}
	got1 := mustSearch(t, e.CtxA, e.Router, a1, []float32{1, 0, 0, 0}, 10)
	if diff := cmp.Diff([]uuid.UUID{ID(1), ID(2), ID(6), ID(3), ID(5), ID(4)}, ids(got1)); diff != "" {
		t.Fatalf("Search of generation 1 (-want +got):\n%s", diff)
	}
	for _, h := range got1 {
		if h.Payload["gen"] != "" {
			t.Fatalf("generation 1 returned a generation-2 point: %+v", h)
		}
	}
	want2pts := generation2()
	if diff := cmp.Diff(want2pts, scrollAll(t, e.CtxA, e.Router, a2)); diff != "" {
		t.Fatalf("Scroll of generation 2 (-want +got):\n%s", diff)
	}
	if got := scrollAll(t, e.CtxA, e.Router, a1); len(got) != 6 || len(got[0].Vector) != 4 {
		t.Fatalf("Scroll of generation 1: %d points, first %+v", len(got), got[0])
	}

	// Deletes stay in their generation.
	wantErr(t, "Delete from generation 2 of an id only generation 1 has", e.Router.Delete(e.CtxA, a2, []uuid.UUID{ID(5)}), vector.ErrNotFound)
	if err := e.Router.Delete(e.CtxA, a2, []uuid.UUID{ID(1)}); err != nil {
		t.Fatalf("Delete from generation 2: %v", err)
	}
	mustStats(t, e.CtxA, e.Router, a1, 4, 6)
	mustStats(t, e.CtxA, e.Router, a2, 2, 2)

	// Dropping generation 1 leaves generation 2 whole, and the other way.
	if err := e.Router.DropCollection(e.CtxA, a1); err != nil {
		t.Fatalf("DropCollection of generation 1: %v", err)
	}
	_, err = e.Router.Search(e.CtxA, a1, []float32{1, 0, 0, 0}, 1)
	wantErr(t, "Search of dropped generation 1", err, vector.ErrNotFound)
	mustStats(t, e.CtxA, e.Router, a2, 2, 2)
	if diff := cmp.Diff(want2[:2], mustSearch(t, e.CtxA, e.Router, a2, []float32{1, 0}, 10), approx); diff != "" {
		t.Fatalf("Search of generation 2 after generation 1's drop (-want +got):\n%s", diff)
	}
	mustCreate(t, e.CtxA, e.Router, a1, 8) // re-created empty, at another dimension
	mustStats(t, e.CtxA, e.Router, a1, 8, 0)
	mustStats(t, e.CtxA, e.Router, a2, 2, 2)
	if err := e.Router.DropCollection(e.CtxA, a2); err != nil {
		t.Fatalf("DropCollection of generation 2: %v", err)
	}
	mustStats(t, e.CtxA, e.Router, a1, 8, 0)
	_, err = e.Router.Stats(e.CtxA, a2)
	wantErr(t, "Stats of dropped generation 2", err, vector.ErrNotFound)
}

// testGenerationMissing: a generation never created is ErrNotFound for
// every method, never an empty result and never another generation's
// collection, and no method but CreateCollection creates it.
func testGenerationMissing(t *testing.T, e *Env) {
	mustCreate(t, e.CtxA, e.Router, e.CollA, 2)
	mustUpsert(t, e.CtxA, e.Router, e.CollA, vector.Point{ID: ID(1), Vector: []float32{1, 0}})
	for _, g := range []uint32{2, 3, math.MaxUint32} {
		c := mustGeneration(t, e.CollA, g)
		check := func(what string, err error) {
			t.Helper()
			wantErr(t, what+" on never-created "+c.String(), err, vector.ErrNotFound, bulkhead.ErrNotFound)
		}
		hits, err := e.Router.Search(e.CtxA, c, []float32{1, 0}, 1)
		check("Search", err)
		if hits != nil {
			t.Fatalf("Search of never-created %s returned hits %v", c, hits)
		}
		_, err = e.Router.Stats(e.CtxA, c)
		check("Stats", err)
		_, err = e.Router.Scroll(e.CtxA, c, uuid.Nil, 10)
		check("Scroll", err)
		check("Upsert", e.Router.Upsert(e.CtxA, c, []vector.Point{{ID: ID(2), Vector: []float32{1, 0}}}))
		check("Delete", e.Router.Delete(e.CtxA, c, []uuid.UUID{ID(1)}))
		check("DropCollection", e.Router.DropCollection(e.CtxA, c))
		_, err = e.Router.Stats(e.CtxA, c)
		check("Stats after refused writes (no auto-create)", err)
	}
	mustStats(t, e.CtxA, e.Router, e.CollA, 2, 1)
}

// testGenerationZero: generation 0 does not exist, and the zero Collection
// stays refused at any generation.
func testGenerationZero(t *testing.T, e *Env) {
	if g := e.CollA.Generation(); g != 1 {
		t.Fatalf("Router.Collection minted generation %d, want 1", g)
	}
	if g := (vector.Collection{}).Generation(); g != 0 {
		t.Fatalf("zero Collection has generation %d", g)
	}
	c0, err := e.CollA.AtGeneration(0)
	wantErr(t, "AtGeneration(0)", err, bulkhead.ErrInvalid)
	var ve *bulkhead.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != "generation" {
		t.Fatalf("AtGeneration(0) error %v: want a ValidationError on field generation", err)
	}
	if c0 != (vector.Collection{}) {
		t.Fatalf("AtGeneration(0) returned %v with its error, want the zero Collection", c0)
	}
	z2, err := vector.Collection{}.AtGeneration(2)
	wantErr(t, "zero Collection AtGeneration(2)", err, vector.ErrForbidden)
	for name, s := range map[string]vector.Store{"router": e.Router, "backend": e.Store} {
		for what, c := range map[string]vector.Collection{"AtGeneration(0)": c0, "zero AtGeneration(2)": z2} {
			wantErr(t, name+": CreateCollection with "+what, s.CreateCollection(e.CtxA, c, 2), vector.ErrForbidden)
			_, err := s.Search(e.CtxA, c, []float32{1, 0}, 1)
			wantErr(t, name+": Search with "+what, err, vector.ErrForbidden)
		}
	}
}

// testForeignGeneration: a generation is not a way around the tenant
// check. A's generation 2 in B's scope is refused by the router and the
// backend, and B's own generation 2 is B's, never A's.
func testForeignGeneration(t *testing.T, e *Env) {
	a2 := mustGeneration(t, e.CollA, 2)
	mustCreate(t, e.CtxA, e.Router, a2, 2)
	mustUpsert(t, e.CtxA, e.Router, a2, generation2()...)
	q := []float32{1, 0}
	for name, s := range map[string]vector.Store{"router": e.Router, "backend": e.Store} {
		what := name + ": A's generation 2 in B's scope: "
		_, err := s.Search(e.CtxB, a2, q, 1)
		wantErr(t, what+"Search", err, vector.ErrForbidden, bulkhead.ErrForbidden)
		_, err = s.Stats(e.CtxB, a2)
		wantErr(t, what+"Stats", err, vector.ErrForbidden)
		_, err = s.Scroll(e.CtxB, a2, uuid.Nil, 10)
		wantErr(t, what+"Scroll", err, vector.ErrForbidden)
		wantErr(t, what+"Upsert", s.Upsert(e.CtxB, a2, generation2()[:1]), vector.ErrForbidden)
		wantErr(t, what+"Delete", s.Delete(e.CtxB, a2, []uuid.UUID{ID(1)}), vector.ErrForbidden)
		wantErr(t, what+"CreateCollection", s.CreateCollection(e.CtxB, a2, 2), vector.ErrForbidden)
		wantErr(t, what+"DropCollection", s.DropCollection(e.CtxB, a2), vector.ErrForbidden)
		_, err = s.Search(e.NoScopeContext, a2, q, 1)
		wantErr(t, name+": A's generation 2 without a scope", err, bulkhead.ErrUnauthenticated)
	}
	// B's own generation 2 does not exist: not found, never A's.
	b2 := mustGeneration(t, e.CollB, 2)
	_, err := e.Router.Search(e.CtxB, b2, q, 1)
	wantErr(t, "B's never-created generation 2", err, vector.ErrNotFound)
	wantErr(t, "Upsert into B's never-created generation 2", e.Router.Upsert(e.CtxB, b2, generation2()[:1]), vector.ErrNotFound)
	// Created, it holds only B's points.
	mustCreate(t, e.CtxB, e.Router, b2, 2)
	if got := mustSearch(t, e.CtxB, e.Router, b2, q, 10); len(got) != 0 {
		t.Fatalf("B's new generation 2 holds %v", got)
	}
	mustStats(t, e.CtxA, e.Router, a2, 2, 3)
	if diff := cmp.Diff(generation2(), scrollAll(t, e.CtxA, e.Router, a2)); diff != "" {
		t.Fatalf("A's generation 2 after refused calls (-want +got):\n%s", diff)
	}
}
