package retrieval_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

var maint = bulkhead.AsMaintenance(context.Background(), "retrieval test")

// world is two tenants, each with a user, over one knowledge layer.
type world struct {
	d      *testdb.Database
	k      *testdb.Knowledge
	a, b   uuid.UUID // tenants
	ua, ub context.Context
}

func newWorld(t *testing.T, wrap func(vector.Store) vector.Store) *world {
	t.Helper()
	d := testdb.New(t)
	k := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{Wrap: wrap})
	w := &world{d: d, k: k}
	w.a, w.ua = w.tenant(t, "acme")
	w.b, w.ub = w.tenant(t, "globex")
	return w
}

// tenant creates a tenant through the knowledge layer (collection
// provisioned) with one user, and returns the user's context.
func (w *world) tenant(t *testing.T, name string) (uuid.UUID, context.Context) {
	t.Helper()
	tn, err := w.k.Service.CreateTenant(maint, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID, w.user(t, tn.ID, name+"-user")
}

func (w *world) user(t *testing.T, tenant uuid.UUID, name string) context.Context {
	t.Helper()
	e, err := w.d.DB.CreateEntity(maint, tenant, bulkhead.KindUser, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return scoped(t, bulkhead.Scope{Tenant: tenant, Entity: e.ID})
}

func scoped(t *testing.T, s bulkhead.Scope) context.Context {
	t.Helper()
	ctx, err := bulkhead.WithScope(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func ingest(t *testing.T, k *testdb.Knowledge, ctx context.Context, in postgres.NewDocument) bulkhead.Document {
	t.Helper()
	d, err := k.Service.Ingest(ctx, in)
	if err != nil {
		t.Fatalf("ingest %q: %v", in.Title, err)
	}
	return d
}

func query(t *testing.T, k *testdb.Knowledge, ctx context.Context, q string) []retrieval.Passage {
	t.Helper()
	ps, err := k.Service.Query(ctx, retrieval.Query{Text: q, K: 10})
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	return ps
}

// contents joins the passages' text, for containment checks.
func contents(ps []retrieval.Passage) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Title + "\n" + p.Content + "\n")
	}
	return b.String()
}

// points counts the points of the caller's current collection.
func points(t *testing.T, k *testdb.Knowledge, ctx context.Context, gen uint32) int {
	t.Helper()
	c, err := k.Router.Collection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c, err = c.AtGeneration(gen); err != nil {
		t.Fatal(err)
	}
	st, err := k.Router.Stats(ctx, c)
	if err != nil {
		t.Fatalf("stats of %s: %v", c, err)
	}
	return st.Points
}

const policyText = `Refund policy. Customers may return any product within %s days of delivery for a full refund.
Refunds are paid to the original card. Shipping costs are refunded only for defective items.`

// TestTwoTenantsNearIdenticalDocuments: two tenants hold near-identical
// documents (same words, one marker each); the same question returns, for
// each, its own passages and none of the other's.
func TestTwoTenantsNearIdenticalDocuments(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ingest(t, w.k, w.ua, postgres.NewDocument{Title: "Acme refunds", Content: strings.Replace(policyText, "%s", "thirty (ACME-MARKER-7781)", 1), Visibility: bulkhead.VisibilityTenant})
	ingest(t, w.k, w.ub, postgres.NewDocument{Title: "Globex refunds", Content: strings.Replace(policyText, "%s", "sixty (GLOBEX-MARKER-4410)", 1), Visibility: bulkhead.VisibilityTenant})
	for _, q := range []string{"how many days do customers have for a refund?", "ACME-MARKER-7781 GLOBEX-MARKER-4410 refund policy"} {
		pa, pb := query(t, w.k, w.ua, q), query(t, w.k, w.ub, q)
		if len(pa) == 0 || len(pb) == 0 {
			t.Fatalf("%q: acme got %d passages, globex %d; each should find its own", q, len(pa), len(pb))
		}
		ca, cb := contents(pa), contents(pb)
		if !strings.Contains(ca, "ACME-MARKER-7781") || strings.Contains(ca, "GLOBEX") {
			t.Errorf("%q: acme's passages are not exactly its own:\n%s", q, ca)
		}
		if !strings.Contains(cb, "GLOBEX-MARKER-4410") || strings.Contains(cb, "ACME") {
			t.Errorf("%q: globex's passages are not exactly its own:\n%s", q, cb)
		}
		for _, p := range pa {
			if p.TextRank == 0 && p.VectorRank == 0 {
				t.Errorf("passage %s has no rank in either list", p.ID)
			}
		}
	}
}

// TestVisibility: a private document is retrievable by its owner only; a
// room document by the room's participants only; a tenant document by
// every member. The vector layer finds all of them (one collection per
// tenant): RLS decides.
func TestVisibility(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(maint, d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	k := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{}, demo.T1.Tenant.ID, demo.T2.Tenant.ID)
	T := demo.T1
	as := func(e uuid.UUID) context.Context { return scoped(t, bulkhead.Scope{Tenant: T.Tenant.ID, Entity: e}) }
	// The demo's documents: Alice's private (confidential) notes, her
	// room1 handbook (Alice and Bob are in room1, Charlie is not), Bob's
	// company wiki (tenant-wide).
	cases := []struct {
		q        string
		doc      uuid.UUID
		see, not []uuid.UUID
	}{
		{"Alice's private notes", T.PrivateDoc, []uuid.UUID{T.Alice}, []uuid.UUID{T.Bob, T.Charlie}},
		{"room1 handbook", T.RoomDoc, []uuid.UUID{T.Alice, T.Bob}, []uuid.UUID{T.Charlie}},
		{"company wiki", T.TenantDoc, []uuid.UUID{T.Alice, T.Bob, T.Charlie}, nil},
	}
	has := func(ps []retrieval.Passage, doc uuid.UUID) bool {
		for _, p := range ps {
			if p.DocumentID == doc {
				return true
			}
		}
		return false
	}
	for _, c := range cases {
		for _, e := range c.see {
			if ps := query(t, k, as(e), c.q); !has(ps, c.doc) {
				t.Errorf("%q: entity %s should retrieve the document and does not", c.q, e)
			}
		}
		for _, e := range c.not {
			if ps := query(t, k, as(e), c.q); has(ps, c.doc) {
				t.Errorf("%q: entity %s retrieved a document it may not see", c.q, e)
			}
		}
	}
	// The other tenant's members never see T1's documents, whatever they ask.
	other := scoped(t, bulkhead.Scope{Tenant: demo.T2.Tenant.ID, Entity: demo.T2.Alice})
	for _, c := range cases {
		if ps := query(t, k, other, c.q); has(ps, c.doc) {
			t.Errorf("%q: a member of T2 retrieved T1's document", c.q)
		}
	}
	// The confidential document's text comes back opened for its owner.
	if ps := query(t, k, as(T.Alice), "Alice's private notes"); !strings.Contains(contents(ps), "the body of the document") {
		t.Errorf("Alice's confidential passage was not opened:\n%s", contents(ps))
	}
}

// TestNotFoundAndUnavailable: a deleted tenant, a tenant with no
// collection and a backend that is down are errors, never empty results.
func TestNotFoundAndUnavailable(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	w := newWorld(t, func(s vector.Store) vector.Store { return &switchable{Store: s, down: &down} })
	ingest(t, w.k, w.ua, postgres.NewDocument{Title: "doc", Content: "alpha beta gamma", Visibility: bulkhead.VisibilityTenant})
	if ps := query(t, w.k, w.ua, "alpha"); len(ps) != 1 {
		t.Fatalf("before: %d passages, want 1", len(ps))
	}

	down.Store(true)
	_, err := w.k.Service.Query(w.ua, retrieval.Query{Text: "alpha"})
	if !errors.Is(err, bulkhead.ErrUnavailable) {
		t.Errorf("query with the backend down: %v, want ErrUnavailable", err)
	}
	if _, err := w.k.Service.Ingest(w.ua, postgres.NewDocument{Title: "x", Content: "delta"}); !errors.Is(err, bulkhead.ErrUnavailable) {
		t.Errorf("ingest with the backend down: %v, want ErrUnavailable", err)
	}
	down.Store(false)
	if ps := query(t, w.k, w.ua, "delta"); strings.Contains(contents(ps), "delta") {
		t.Errorf("the ingest that failed left its passage behind:\n%s", contents(ps))
	}

	// B's collection disappears: B's queries fail, A's are unaffected.
	sb := scoped(t, bulkhead.Scope{Tenant: w.b})
	c, err := w.k.Router.Collection(sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.k.Router.DropCollection(sb, c); err != nil {
		t.Fatal(err)
	}
	if _, err := w.k.Service.Query(w.ub, retrieval.Query{Text: "alpha"}); !errors.Is(err, retrieval.ErrNotProvisioned) {
		t.Errorf("query of a tenant without its collection: %v, want ErrNotProvisioned", err)
	}
	if ps := query(t, w.k, w.ua, "alpha"); len(ps) != 1 {
		t.Errorf("A after B lost its collection: %d passages, want 1", len(ps))
	}
	if err := w.k.Service.Provision(maint, w.b); err != nil {
		t.Fatal(err)
	}
	if ps := query(t, w.k, w.ub, "alpha"); len(ps) != 0 {
		t.Errorf("B after re-provisioning: %d passages, want 0 (A's document is A's)", len(ps))
	}

	// A deleted tenant: its collection is gone and its scope finds nothing.
	sa := scoped(t, bulkhead.Scope{Tenant: w.a})
	ca, err := w.k.Router.Collection(sa)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.k.Store.Stats(sa, ca); err != nil {
		t.Fatalf("A's collection before deletion: %v", err)
	}
	if res, err := w.k.Service.DeleteTenant(maint, w.a, false); err != nil || !res.Deleted {
		t.Fatalf("delete tenant: %+v %v", res, err)
	}
	if _, err := w.k.Service.Query(w.ua, retrieval.Query{Text: "alpha"}); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("query of a deleted tenant: %v, want ErrNotFound", err)
	}
	if _, err := w.k.Store.Stats(sa, ca); !errors.Is(err, vector.ErrNotFound) {
		t.Errorf("the deleted tenant's collection: %v, want not found", err)
	}
	if _, err := w.k.Router.Collection(sa); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("minting the deleted tenant's collection: %v, want not found", err)
	}
	if res, err := w.k.Service.DeleteTenant(maint, w.a, false); err != nil || res.Deleted {
		t.Errorf("deleting again: %+v %v, want nothing to do", res, err)
	}
}

// switchable is the real backend, made to fail on demand.
type switchable struct {
	vector.Store
	down *atomic.Bool
}

func (s *switchable) check() error {
	if s.down.Load() {
		return vector.ErrUnavailable
	}
	return nil
}

func (s *switchable) Upsert(ctx context.Context, c vector.Collection, p []vector.Point) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.Upsert(ctx, c, p)
}

func (s *switchable) Search(ctx context.Context, c vector.Collection, q []float32, k int) ([]vector.Hit, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.Store.Search(ctx, c, q, k)
}

func (s *switchable) SearchTerms(ctx context.Context, c vector.Collection, q []uint64, k int) ([]vector.Hit, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.Store.(vector.TermSearcher).SearchTerms(ctx, c, q, k)
}

// TestIngestIsAllOrNothing: when the rows can't be written (a room the
// author is not in), the points stored first are removed again; deleting
// a document removes its points with its rows.
func TestIngestIsAllOrNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 80) // several chunks
	d := ingest(t, w.k, w.ua, postgres.NewDocument{Title: "fox", Content: long})
	if d.Chunks < 3 {
		t.Fatalf("document has %d chunks, the test needs several", d.Chunks)
	}
	if n := points(t, w.k, w.ua, 1); n != d.Chunks {
		t.Fatalf("%d points for %d chunks", n, d.Chunks)
	}
	room := uuid.New()
	if _, err := w.k.Service.Ingest(w.ua, postgres.NewDocument{Title: "x", Content: long, Visibility: bulkhead.VisibilityRoom, RoomID: &room}); err == nil {
		t.Fatal("ingest into a room that does not exist succeeded")
	}
	if n := points(t, w.k, w.ua, 1); n != d.Chunks {
		t.Errorf("after a refused ingest: %d points, want %d (its points must be removed)", n, d.Chunks)
	}
	// Another member can't delete it, and its points stay.
	other := w.user(t, w.a, "other")
	if err := w.k.Service.DeleteDocument(other, d.ID); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("delete by a non-owner: %v, want ErrNotFound", err)
	}
	if n := points(t, w.k, w.ua, 1); n != d.Chunks {
		t.Errorf("after a refused delete: %d points, want %d", n, d.Chunks)
	}
	if err := w.k.Service.DeleteDocument(w.ua, d.ID); err != nil {
		t.Fatal(err)
	}
	if n := points(t, w.k, w.ua, 1); n != 0 {
		t.Errorf("after delete: %d points, want 0", n)
	}
	if ps := query(t, w.k, w.ua, "quick brown fox"); len(ps) != 0 {
		t.Errorf("after delete: %d passages", len(ps))
	}
}
