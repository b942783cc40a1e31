package retrieval_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// doubled is a second embedding model for the test: the local embedder's
// vector followed by its reverse, so its dimension (768) differs.
type doubled struct{ *llm.Local }

func (doubled) Model() string    { return "test-doubled" }
func (d doubled) Dimension() int { return 2 * d.Local.Dimension() }
func (d doubled) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vs, err := d.Local.Embed(ctx, texts)
	if err != nil {
		return nil, err
	}
	for i, v := range vs {
		w := append([]float32(nil), v...)
		for j := len(v) - 1; j >= 0; j-- {
			w = append(w, v[j])
		}
		vs[i] = w
	}
	return vs, nil
}

// TestReembed moves a tenant to another model while it is queried
// continuously: no query fails or comes back empty, the new generation
// holds one point per chunk (documents ingested during the build
// included), the tenant's row names the new model, and the old generation
// is dropped. Running it again resumes cleanly.
func TestReembed(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	k := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{Embedders: []llm.Embedder{doubled{llm.NewLocal()}}})
	w := &world{d: d, k: k}
	w.a, w.ua = w.tenant(t, "acme")
	for i := range 20 {
		ingest(t, k, w.ua, postgres.NewDocument{Title: fmt.Sprintf("doc %d", i), Content: fmt.Sprintf("Warehouse report %d: the refund queue holds %d parcels.", i, i*7)})
	}
	var stop atomic.Bool
	var failures atomic.Int64
	var queries atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	// Each query's start and end, to show some overlapped the reembed
	// (and so its switch) rather than trusting sleeps to arrange it.
	var mu sync.Mutex
	var spans [][2]time.Time
	go func() { // reader
		defer wg.Done()
		for !stop.Load() {
			start := time.Now()
			ps, err := k.Service.Query(w.ua, retrieval.Query{Text: "warehouse refund queue parcels"})
			if err != nil || len(ps) == 0 {
				failures.Add(1)
				t.Logf("query during reembed: %d passages, %v", len(ps), err)
			}
			mu.Lock()
			spans = append(spans, [2]time.Time{start, time.Now()})
			mu.Unlock()
			queries.Add(1)
		}
	}()
	go func() { // writer
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if _, err := k.Service.Ingest(w.ua, postgres.NewDocument{Title: "late", Content: fmt.Sprintf("Late warehouse note %d.", i)}); err != nil {
				failures.Add(1)
				t.Logf("ingest during reembed: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// Queries run before the reembed starts and after it ends: waited
	// for, not slept for.
	waitFor := func(n *atomic.Int64, above int64) {
		for deadline := time.Now().Add(30 * time.Second); n.Load() <= above; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the reader made no progress in 30 s")
			}
		}
	}
	waitFor(&queries, 0)
	begin := time.Now()
	st, err := k.Service.Reembed(maint, w.a, "test-doubled")
	end := time.Now()
	waitFor(&queries, queries.Load())
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("reembed: %v", err)
	}
	overlapping := 0
	for _, sp := range spans {
		if sp[0].Before(end) && sp[1].After(begin) {
			overlapping++
		}
	}
	if overlapping == 0 {
		t.Fatalf("no query overlapped the reembed (%d queries): the test proved nothing", len(spans))
	}
	if failures.Load() > 0 {
		t.Errorf("%d failures in %d queries (%d during the reembed) and the ingests", failures.Load(), queries.Load(), overlapping)
	}
	kn, err := d.DB.TenantKnowledge(maint, w.a)
	if err != nil {
		t.Fatal(err)
	}
	if kn.Generation != 2 || kn.Model != "test-doubled" {
		t.Fatalf("after reembed: %+v", kn)
	}
	// Documents ingested after the catch-up pass are in generation 2 too
	// (they were written with the new settings); reconcile finds nothing
	// missing.
	rs, err := k.Service.Reconcile(maint, w.a)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Added != 0 || rs.Removed != 0 {
		t.Errorf("reconcile after reembed changed %+v: the new generation was incomplete", rs)
	}
	if n := points(t, k, w.ua, 2); n != rs.Chunks {
		t.Errorf("generation 2 has %d points for %d chunks", n, rs.Chunks)
	}
	if st.Added < 20 {
		t.Errorf("reembed embedded %d chunks, want at least the 20 documents", st.Added)
	}
	sa, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: w.a})
	c, _ := k.Router.Collection(sa)
	if _, err := k.Router.Stats(sa, c); !errors.Is(err, vector.ErrNotFound) {
		t.Errorf("generation 1 after reembed: %v, want dropped", err)
	}
	// Back to the local model: generation 3, and queries still answer.
	if _, err := k.Service.Reembed(maint, w.a, llm.NewLocal().Model()); err != nil {
		t.Fatal(err)
	}
	if ps := query(t, k, w.ua, "warehouse report 7"); len(ps) == 0 {
		t.Error("no passage after the second reembed")
	}
	if _, err := k.Service.Reembed(maint, w.a, "no-such-model"); !errors.Is(err, bulkhead.ErrInvalid) {
		t.Errorf("reembed with an unknown model: %v, want ErrInvalid", err)
	}
}

// TestIngestFollowsASwitchItRemembersWrongly: Ingest remembers a tenant's
// settings from its last ingest. When the tenant's row moves to another
// generation while the old one still exists (a Reembed between its switch
// and its drop), an ingest that remembers the old generation must not
// commit rows whose points went there: the catch-up pass may already have
// run, and the old generation is about to be dropped. The document lands
// in the new generation, the old one gets nothing, and so for a second
// tenant whose row did not move, neither generation is touched but its own.
func TestIngestFollowsASwitchItRemembersWrongly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	k := w.k
	for _, u := range []context.Context{w.ua, w.ub} {
		ingest(t, k, u, postgres.NewDocument{Title: "first", Content: "The first warehouse report."}) // remembered: generation 1
	}
	// Switch acme by hand, as Reembed does, keeping generation 1.
	switchGeneration(t, w, w.a)
	doc := ingest(t, k, w.ua, postgres.NewDocument{Title: "after the switch", Content: "A report written after the switch, in five words or more."})
	if doc.Chunks == 0 {
		t.Fatal("the document has no chunks: the test proves nothing")
	}
	if n := points(t, k, w.ua, 2); n != doc.Chunks {
		t.Errorf("generation 2 holds %d points, want the new document's %d", n, doc.Chunks)
	}
	if n := points(t, k, w.ua, 1); n != 1 {
		t.Errorf("generation 1 holds %d points, want the first document's 1 (the new one's points taken back)", n)
	}
	ingest(t, k, w.ub, postgres.NewDocument{Title: "second", Content: "The second warehouse report."})
	if n := points(t, k, w.ub, 1); n != 2 {
		t.Errorf("globex's generation 1 holds %d points, want 2", n)
	}
	// The next ingest remembers generation 2 and needs no retry.
	doc2 := ingest(t, k, w.ua, postgres.NewDocument{Title: "later", Content: "A later report."})
	if n := points(t, k, w.ua, 2); n != doc.Chunks+doc2.Chunks {
		t.Errorf("generation 2 holds %d points, want %d", n, doc.Chunks+doc2.Chunks)
	}
}

// switchGeneration moves tenant from generation 1 to a new, empty
// generation 2 by hand, as Reembed does (the collection created, then the
// tenant's row switched), keeping generation 1, which it returns.
func switchGeneration(t *testing.T, w *world, tenant uuid.UUID) vector.Collection {
	t.Helper()
	sc, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant})
	c, err := w.k.Router.Collection(sc)
	if err != nil {
		t.Fatal(err)
	}
	next, _ := c.AtGeneration(2)
	model := llm.NewLocal()
	if err := w.k.Router.CreateCollection(sc, next, model.Dimension()); err != nil {
		t.Fatal(err)
	}
	if err := w.d.DB.SetKnowledge(maint, tenant, 1, 2, model.Model()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestQueryFollowsASwitchItRemembersWrongly: a query on settings remembered
// from before a switch answers from the generation the tenant is on. The
// read-back's check sends it back to read them while the old generation
// still exists (its answer would be stale), and a failed search sends it
// back once that generation is dropped. The other tenant's remembered
// settings are untouched: it keeps its answer.
func TestQueryFollowsASwitchItRemembersWrongly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	k := w.k
	for _, u := range []context.Context{w.ua, w.ub} {
		ingest(t, k, u, postgres.NewDocument{Title: "first", Content: "The first warehouse report."}) // remembered: generation 1
		if ps := query(t, k, u, "warehouse"); len(ps) != 1 {
			t.Fatalf("before the switch: %d passages, want the tenant's one", len(ps))
		}
	}
	switchGeneration(t, w, w.a)
	if ps := query(t, k, w.ua, "warehouse"); len(ps) != 0 {
		t.Errorf("acme after the switch: %d passages from generation 1, which it left; generation 2 is empty", len(ps))
	}
	if ps := query(t, k, w.ub, "warehouse"); len(ps) != 1 {
		t.Errorf("globex: %d passages, want its one", len(ps))
	}
	old := switchGeneration(t, w, w.b)
	sb, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: w.b})
	if err := k.Router.DropCollection(sb, old); err != nil {
		t.Fatal(err)
	}
	if ps := query(t, k, w.ub, "warehouse"); len(ps) != 0 {
		t.Errorf("globex after the switch and the drop: %d passages, want none", len(ps))
	}
	// initech: its document moves to generation 2 and leaves generation 1,
	// so a query on the remembered generation 1 has no candidate at all:
	// the check runs anyway, and the answer is generation 2's.
	c, uc := w.tenant(t, "initech")
	ingest(t, k, uc, postgres.NewDocument{Title: "first", Content: "The first warehouse report."})
	if ps := query(t, k, uc, "warehouse"); len(ps) != 1 {
		t.Fatalf("initech before the switch: %d passages, want 1", len(ps))
	}
	old = switchGeneration(t, w, c)
	sc, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: c})
	pts, err := k.Router.Scroll(sc, old, uuid.Nil, 100)
	if err != nil || len(pts) == 0 {
		t.Fatalf("scroll generation 1: %d points, %v", len(pts), err)
	}
	next, _ := old.AtGeneration(2)
	if err := k.Router.Upsert(sc, next, pts); err != nil {
		t.Fatal(err)
	}
	var moved []uuid.UUID
	for _, pt := range pts {
		moved = append(moved, pt.ID)
	}
	if err := k.Router.Delete(sc, old, moved); err != nil {
		t.Fatal(err)
	}
	if ps := query(t, k, uc, "warehouse"); len(ps) != 1 {
		t.Errorf("initech after its document moved to generation 2: %d passages, want 1", len(ps))
	}
}

// TestTenantCreateAndDeleteAlwaysFinish (issue 12, finding 4): a create
// that fails leaves nothing; a delete whose collections can't be dropped
// deletes nothing unless forced, and forced it completes and records what
// it left; deleting a tenant that does not exist says so.
func TestTenantCreateAndDeleteAlwaysFinish(t *testing.T) {
	w := newWorld(t, nil)
	tenantsAndKeys := func() (int, int) {
		t.Helper()
		ts, err := w.d.DB.ListTenants(maint)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := w.d.Keys.Tenants(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(ts), len(ks)
	}
	// Create in a region no vector backend serves: a 400-class error, and
	// neither the row nor the keyset remains.
	_, err := w.k.Service.CreateTenant(maint, "nowhere inc", "nowhere")
	var ve *bulkhead.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, bulkhead.ErrInvalid) {
		t.Errorf("create in an unserved region: %v, want a validation error on region", err)
	}
	if nt, nk := tenantsAndKeys(); nt != 2 || nk != 2 {
		t.Errorf("after the failed create: %d tenants, %d keysets; want 2 and 2 (nothing kept)", nt, nk)
	}

	// The tenant's region is no longer served (removed from --vector-region).
	moved, _ := w.tenant(t, "moved")
	if err := w.d.DB.InMaintenance(maint, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `UPDATE bulkhead.tenants SET region = 'gone' WHERE id = $1`, moved)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := w.k.Service.DeleteTenant(maint, moved, false); err == nil || res.Deleted {
		t.Errorf("delete without --force: %+v %v, want an error and nothing deleted", res, err)
	}
	if _, err := w.d.DB.TenantByID(maint, moved); err != nil {
		t.Errorf("the tenant after a refused delete: %v, want it still there", err)
	}
	res, err := w.k.Service.DeleteTenant(maint, moved, true)
	if err != nil || !res.Deleted || len(res.NotCleaned) == 0 {
		t.Fatalf("forced delete: %+v %v, want deleted with what was left listed", res, err)
	}
	if _, err := w.d.DB.TenantByID(maint, moved); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("the tenant after a forced delete: %v, want gone", err)
	}
	if nt, nk := tenantsAndKeys(); nt != 2 || nk != 2 {
		t.Errorf("after the forced delete: %d tenants, %d keysets; want 2 and 2", nt, nk)
	}
	var reason string
	if err := w.d.DB.InMaintenance(maint, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT detail->>'reason' FROM bulkhead_keys.key_events WHERE tenant_id = $1 AND action = 'keyset.shred'`, moved).Scan(&reason)
	}); err != nil || !strings.Contains(reason, "not cleaned: vector collections") {
		t.Errorf("erasure record: %q %v, want what was not cleaned", reason, err)
	}
	// A tenant that never existed.
	if res, err := w.k.Service.DeleteTenant(maint, uuid.New(), false); err != nil || res.Deleted {
		t.Errorf("deleting a tenant that never existed: %+v %v, want not deleted and no error", res, err)
	}
}
