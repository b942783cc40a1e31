package vector_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

const moveDim = 16

func points(seed uint64, n int) []vector.Point {
	rng := rand.New(rand.NewPCG(seed, 7))
	pts := make([]vector.Point, n)
	for i := range pts {
		v := make([]float32, moveDim)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		pts[i] = vector.Point{ID: uuid.New(), Vector: v, Payload: map[string]string{"n": fmt.Sprint(i), "seed": fmt.Sprint(seed)}}
	}
	return pts
}

// scrollAll returns every point of c, in id order.
func scrollAll(t *testing.T, ctx context.Context, s vector.Store, c vector.Collection) []vector.Point {
	t.Helper()
	var all []vector.Point
	after := uuid.Nil
	for {
		page, err := s.Scroll(ctx, c, after, 1000)
		if err != nil {
			t.Fatalf("Scroll %s: %v", c, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
}

type moveEnv struct {
	regions *vector.StaticRegions
	r       *vector.Router
	eu, us  vector.Store
	a, b    uuid.UUID
	ctxA    context.Context
	ctxB    context.Context
	m       context.Context // maintenance
}

func newMoveEnv(t *testing.T, eu, us vector.Store, n int) *moveEnv {
	t.Helper()
	e := &moveEnv{eu: eu, us: us, a: uuid.New(), b: uuid.New()}
	e.regions = vector.NewStaticRegions(map[uuid.UUID]string{e.a: "eu", e.b: "eu"})
	e.r = vector.NewRouter(e.regions, map[string]vector.Store{"eu": eu, "us": us})
	e.ctxA, e.ctxB = scoped(t, e.a), scoped(t, e.b)
	e.m = bulkhead.AsMaintenance(context.Background(), "test: move tenant")
	for i, ctx := range []context.Context{e.ctxA, e.ctxB} {
		c := mustCollection(t, e.r, ctx)
		if err := e.r.CreateCollection(ctx, c, moveDim); err != nil {
			t.Fatal(err)
		}
		if err := e.r.Upsert(ctx, c, points(uint64(i+1), n)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *moveEnv) flipTo(region string) func(context.Context) error {
	return func(context.Context) error { e.regions.Set(e.a, region); return nil }
}

func TestMoveLosesNoPoint(t *testing.T) {
	e := newMoveEnv(t, newEmbedded(t), newEmbedded(t), 2000)
	ca := mustCollection(t, e.r, e.ctxA)
	cb := mustCollection(t, e.r, e.ctxB)
	before := scrollAll(t, e.ctxA, e.r, ca)
	beforeB := scrollAll(t, e.ctxB, e.r, cb)
	q := points(9, 1)[0].Vector
	hitsBefore, err := e.r.Search(e.ctxA, ca, q, 20)
	if err != nil {
		t.Fatal(err)
	}

	if err := e.r.Move(e.m, e.a, 1, "eu", "us", e.flipTo("us")); err != nil {
		t.Fatalf("Move: %v", err)
	}

	if r, _ := e.regions.Region(e.m, e.a); r != "us" {
		t.Fatalf("region after Move = %q", r)
	}
	_, err = e.r.Search(e.ctxA, ca, q, 1)
	is(t, "old reference after Move", err, vector.ErrWrongRegion)
	ca2 := mustCollection(t, e.r, e.ctxA)
	if ca2.Region() != "us" {
		t.Fatalf("new reference in %q", ca2.Region())
	}
	if diff := cmp.Diff(before, scrollAll(t, e.ctxA, e.r, ca2)); diff != "" {
		t.Fatalf("points after Move (-before +after):\n%s", diff)
	}
	hitsAfter, err := e.r.Search(e.ctxA, ca2, q, 20)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hitsBefore, hitsAfter); diff != "" {
		t.Fatalf("search after Move (-before +after):\n%s", diff)
	}
	// The old copy is gone; B, in the same old backend, is untouched.
	if _, err := e.eu.Stats(e.m, ca); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("old copy after Move: %v", err)
	}
	if diff := cmp.Diff(beforeB, scrollAll(t, e.ctxB, e.r, cb)); diff != "" {
		t.Fatalf("B changed (-before +after):\n%s", diff)
	}
	// Writes go to the new region.
	if err := e.r.Upsert(e.ctxA, ca2, points(5, 1)); err != nil {
		t.Fatal(err)
	}
	if st, err := e.us.Stats(e.m, ca2); err != nil || st.Points != 2001 {
		t.Fatalf("us Stats = %+v, %v", st, err)
	}
}

func TestMoveUnderConcurrentWrites(t *testing.T) {
	e := newMoveEnv(t, newEmbedded(t), newEmbedded(t), 1000)
	ca := mustCollection(t, e.r, e.ctxA)
	want := scrollAll(t, e.ctxA, e.r, ca)

	var (
		mu        sync.Mutex
		acked     []vector.Point
		refused   atomic.Int64
		stop      = make(chan struct{})
		started   = make(chan struct{})
		startOnce sync.Once
		writerErr = make(chan error, 1)
	)
	go func() {
		defer close(writerErr)
		extra := points(77, 400)
		for i := 0; i < len(extra); {
			select {
			case <-stop:
				return
			default:
			}
			if i == 20 {
				startOnce.Do(func() { close(started) })
			}
			c, err := e.r.Collection(e.ctxA)
			if err == nil {
				err = e.r.Upsert(e.ctxA, c, extra[i:i+1])
			}
			switch {
			case err == nil:
				mu.Lock()
				acked = append(acked, extra[i])
				mu.Unlock()
				i++
			case errors.Is(err, vector.ErrUnavailable), errors.Is(err, vector.ErrWrongRegion):
				refused.Add(1) // retryable: the same point again, after a pause
				time.Sleep(200 * time.Microsecond)
			default:
				writerErr <- err
				return
			}
		}
	}()
	select { // writes are flowing
	case <-started:
	case err := <-writerErr:
		t.Fatalf("writer stopped early: %v", err)
	}
	if err := e.r.Move(e.m, e.a, 1, "eu", "us", e.flipTo("us")); err != nil {
		t.Fatalf("Move: %v", err)
	}
	mu.Lock()
	atMove := len(acked)
	mu.Unlock()
	for { // let writes continue in the new region for a while
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= atMove+20 || n == 400 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	if err := <-writerErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	mu.Lock()
	want = append(want, acked...)
	mu.Unlock()
	got := scrollAll(t, e.ctxA, e.r, mustCollection(t, e.r, e.ctxA))
	byID := make(map[uuid.UUID]vector.Point, len(got))
	for _, p := range got {
		byID[p.ID] = p
	}
	for _, p := range want {
		if diff := cmp.Diff(p, byID[p.ID]); diff != "" {
			t.Fatalf("acknowledged point lost or changed by Move (-want +got):\n%s", diff)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d points after Move, want %d", len(got), len(want))
	}
	t.Logf("%d writes acknowledged (%d before the move ended), %d refused during the move", len(acked), atMove, refused.Load())
}

// hookStore wraps a backend to inject faults.
type hookStore struct {
	vector.Store
	onScroll      func()
	corruptUpsert bool
	failDrops     atomic.Int64
}

func (h *hookStore) Scroll(ctx context.Context, c vector.Collection, after uuid.UUID, limit int) ([]vector.Point, error) {
	if h.onScroll != nil {
		h.onScroll()
	}
	return h.Store.Scroll(ctx, c, after, limit)
}

func (h *hookStore) Upsert(ctx context.Context, c vector.Collection, pts []vector.Point) error {
	if h.corruptUpsert && len(pts) > 0 {
		pts = append([]vector.Point(nil), pts...)
		v := append([]float32(nil), pts[0].Vector...)
		v[0] += 0.5
		pts[0].Vector = v
	}
	return h.Store.Upsert(ctx, c, pts)
}

func (h *hookStore) DropCollection(ctx context.Context, c vector.Collection) error {
	if h.failDrops.Add(-1) >= 0 {
		return fmt.Errorf("injected: %w", vector.ErrUnavailable)
	}
	return h.Store.DropCollection(ctx, c)
}

func TestMoveNeedsMaintenanceContext(t *testing.T) {
	e := newMoveEnv(t, newEmbedded(t), newEmbedded(t), 10)
	err := e.r.Move(e.ctxA, e.a, 1, "eu", "us", e.flipTo("us"))
	is(t, "Move in a tenant scope", err, vector.ErrForbidden)
	is(t, "Move to an unserved region", e.r.Move(e.m, e.a, 1, "eu", "ap", e.flipTo("ap")), vector.ErrWrongRegion)
	// Already in the target region: nothing to copy, Move is done.
	if err := e.r.Move(e.m, e.a, 1, "us", "eu", e.flipTo("eu")); err != nil {
		t.Fatalf("Move to the region the tenant is in: %v", err)
	}
	if st, err := e.eu.Stats(e.m, mustCollection(t, e.r, e.ctxA)); err != nil || st.Points != 10 {
		t.Fatalf("eu copy after a no-op Move: %+v, %v", st, err)
	}
	e.regions.Set(e.b, "ap")
	is(t, "Move of a tenant in neither region", e.r.Move(e.m, e.b, 1, "eu", "us", e.flipTo("us")), vector.ErrWrongRegion)
	is(t, "Move to the same region", e.r.Move(e.m, e.a, 1, "eu", "eu", e.flipTo("eu")), bulkhead.ErrInvalid)
	other := uuid.New()
	e.regions.Set(other, "eu")
	is(t, "Move of a tenant without a collection", e.r.Move(e.m, other, 1, "eu", "us", func(context.Context) error { return nil }), vector.ErrNotFound)
	is(t, "Move of generation 0", e.r.Move(e.m, e.a, 0, "eu", "us", e.flipTo("us")), bulkhead.ErrInvalid)
	is(t, "Move of a generation A never created", e.r.Move(e.m, e.a, 2, "eu", "us", e.flipTo("us")), vector.ErrNotFound)
	if r, _ := e.regions.Region(e.m, e.a); r != "eu" {
		t.Fatalf("refused Moves flipped A to %q", r)
	}
}

// TestMoveGeneration: Move moves the generation it is given, and refuses a
// tenant that still has a neighbouring generation in the old region (the
// flip would leave it behind, unreachable).
func TestMoveGeneration(t *testing.T) {
	e := newMoveEnv(t, newEmbedded(t), newEmbedded(t), 100)
	a1 := mustCollection(t, e.r, e.ctxA)
	a2 := atGeneration(t, a1, 2)
	if err := e.r.CreateCollection(e.ctxA, a2, 8); err != nil {
		t.Fatal(err)
	}
	pts2 := make([]vector.Point, 30)
	for i := range pts2 {
		pts2[i] = vector.Point{ID: uuid.New(), Vector: []float32{1, float32(i), 0, 0, 0, 0, 0, 1}, Payload: map[string]string{"gen": "2"}}
	}
	if err := e.r.Upsert(e.ctxA, a2, pts2); err != nil {
		t.Fatal(err)
	}
	before2 := scrollAll(t, e.ctxA, e.r, a2)

	// Generations 1 and 2 both in eu: moving either would strand the other.
	for _, g := range []uint32{1, 2} {
		is(t, fmt.Sprintf("Move of generation %d while the other exists", g), e.r.Move(e.m, e.a, g, "eu", "us", e.flipTo("us")), bulkhead.ErrConflict)
	}
	if r, _ := e.regions.Region(e.m, e.a); r != "eu" {
		t.Fatalf("refused Move flipped A to %q", r)
	}
	for _, c := range []vector.Collection{a1, a2} {
		if _, err := e.us.Stats(e.m, c); !errors.Is(err, vector.ErrNotFound) {
			t.Fatalf("refused Move left %s in us: %v", c, err)
		}
	}
	// The re-embedding is finished: generation 1 is dropped, 2 moves.
	if err := e.r.DropCollection(e.ctxA, a1); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Move(e.m, e.a, 2, "eu", "us", e.flipTo("us")); err != nil {
		t.Fatalf("Move of generation 2: %v", err)
	}
	a2us := atGeneration(t, mustCollection(t, e.r, e.ctxA), 2)
	if a2us.Region() != "us" {
		t.Fatalf("generation 2 reference in %q", a2us.Region())
	}
	if diff := cmp.Diff(before2, scrollAll(t, e.ctxA, e.r, a2us)); diff != "" {
		t.Fatalf("generation 2 after Move (-before +after):\n%s", diff)
	}
	if st, err := e.us.Stats(e.m, a2us); err != nil || st.Dimension != 8 || st.Points != 30 {
		t.Fatalf("us generation 2 Stats = %+v, %v", st, err)
	}
	if _, err := e.eu.Stats(e.m, a2); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("old copy of generation 2 after Move: %v", err)
	}
	// Generation 1 was not recreated anywhere.
	if _, err := e.r.Stats(e.ctxA, mustCollection(t, e.r, e.ctxA)); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("generation 1 after moving generation 2: %v", err)
	}
	// B, in eu with generation 1 only, is untouched and movable.
	if err := e.r.Move(e.m, e.b, 1, "eu", "us", func(context.Context) error { e.regions.Set(e.b, "us"); return nil }); err != nil {
		t.Fatalf("Move of B: %v", err)
	}
}

func atGeneration(t *testing.T, c vector.Collection, g uint32) vector.Collection {
	t.Helper()
	cg, err := c.AtGeneration(g)
	if err != nil {
		t.Fatalf("AtGeneration(%d): %v", g, err)
	}
	return cg
}

func TestMoveRefusesWritesAndServesReadsWhileCopying(t *testing.T) {
	eu := &hookStore{Store: newEmbedded(t)}
	e := newMoveEnv(t, eu, newEmbedded(t), 50)
	ca := mustCollection(t, e.r, e.ctxA)
	var writeErr, readErr, moveErr error
	var once sync.Once
	eu.onScroll = func() {
		once.Do(func() {
			writeErr = e.r.Upsert(e.ctxA, ca, points(3, 1))
			_, readErr = e.r.Search(e.ctxA, ca, points(4, 1)[0].Vector, 3)
			moveErr = e.r.Move(e.m, e.a, 1, "eu", "us", e.flipTo("us"))
		})
	}
	if err := e.r.Move(e.m, e.a, 1, "eu", "us", e.flipTo("us")); err != nil {
		t.Fatal(err)
	}
	is(t, "write during the copy", writeErr, vector.ErrUnavailable)
	if readErr != nil {
		t.Fatalf("read during the copy: %v", readErr)
	}
	is(t, "second Move of the same tenant", moveErr, bulkhead.ErrConflict)
}

func TestMoveVerifiesChecksum(t *testing.T) {
	us := &hookStore{Store: newEmbedded(t), corruptUpsert: true}
	e := newMoveEnv(t, newEmbedded(t), us, 300)
	ca := mustCollection(t, e.r, e.ctxA)
	before := scrollAll(t, e.ctxA, e.r, ca)
	flipped := false
	err := e.r.Move(e.m, e.a, 1, "eu", "us", func(context.Context) error { flipped = true; return nil })
	is(t, "Move to a backend that alters points", err, vector.ErrUnavailable)
	if flipped {
		t.Fatal("flipped despite a checksum mismatch")
	}
	if r, _ := e.regions.Region(e.m, e.a); r != "eu" {
		t.Fatalf("region = %q", r)
	}
	if diff := cmp.Diff(before, scrollAll(t, e.ctxA, e.r, ca)); diff != "" {
		t.Fatalf("source changed (-before +after):\n%s", diff)
	}
	if _, err := us.Stats(e.m, ca); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("bad target copy kept: %v", err)
	}
}

func TestMoveResumes(t *testing.T) {
	eu := &hookStore{Store: newEmbedded(t)}
	e := newMoveEnv(t, eu, newEmbedded(t), 300)
	ca := mustCollection(t, e.r, e.ctxA)
	before := scrollAll(t, e.ctxA, e.r, ca)

	// The flip fails: nothing is dropped, the source stays authoritative.
	err := e.r.Move(e.m, e.a, 1, "eu", "us", func(context.Context) error { return errors.New("db down") })
	if err == nil {
		t.Fatal("Move with a failing flip succeeded")
	}
	if diff := cmp.Diff(before, scrollAll(t, e.ctxA, e.r, ca)); diff != "" {
		t.Fatalf("source after failed flip (-before +after):\n%s", diff)
	}
	// A flip that does not actually change the region is caught.
	err = e.r.Move(e.m, e.a, 1, "eu", "us", func(context.Context) error { return nil })
	if err == nil {
		t.Fatal("Move with a no-op flip succeeded")
	}
	if _, err := eu.Stats(e.m, ca); err != nil {
		t.Fatalf("source dropped after a no-op flip: %v", err)
	}

	// Flip succeeds, dropping the old copy fails: run again to finish.
	eu.failDrops.Store(1)
	err = e.r.Move(e.m, e.a, 1, "eu", "us", e.flipTo("us"))
	is(t, "Move whose final drop fails", err, vector.ErrUnavailable)
	if _, err := eu.Stats(e.m, ca); err != nil {
		t.Fatalf("old copy should still be there: %v", err)
	}
	if err := e.r.Move(e.m, e.a, 1, "eu", "us", e.flipTo("us")); err != nil {
		t.Fatalf("resumed Move: %v", err)
	}
	if _, err := eu.Stats(e.m, ca); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("old copy after resumed Move: %v", err)
	}
	if diff := cmp.Diff(before, scrollAll(t, e.ctxA, e.r, mustCollection(t, e.r, e.ctxA))); diff != "" {
		t.Fatalf("points after resumed Move (-before +after):\n%s", diff)
	}
}
