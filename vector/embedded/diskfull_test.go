package embedded

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/smallfs"
	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/uuid"
)

// TestDiskFull (issue 17, scenario 5): the store's directory on a small
// tmpfs filled by a ballast file. A write refused for lack of space is
// vector.ErrNoSpace (bulkhead.ErrNoSpace, 507) and leaves nothing of itself:
// a record the file system took only part of is cut back, so the log is
// byte for byte what it was. Reads go on. A compaction that runs out of
// space leaves the old snapshot and the log intact. Once the ballast is
// removed, writes succeed on the same Store (no reopen), and a reopened
// Store holds every acknowledged point.
func TestDiskFull(t *testing.T) {
	mnt := smallfs.Mount(t, 4<<20)
	dir := filepath.Join(mnt, "vectors")
	ballast := filepath.Join(mnt, "ballast")
	const dim = 64
	s := mustOpen(t, dir, WithCompactMin(-1)) // compaction is switched on below, when the disk is full
	// No room ahead of the log's records: every write needs new space, as
	// the refusals below want. (With room, a write that fits in it needs
	// no space and succeeds on a full disk.)
	s.logRoomMax = 0
	e := vectortest.NewEnv(t, s)
	want := map[uuid.UUID]bool{}
	mustCreate(t, e.CtxA, e.Router, e.CollA, dim, nil)
	for i := range 10 {
		pts := randomPoints(uint64(i+1), 100, dim)
		if err := e.Router.Upsert(e.CtxA, e.CollA, pts); err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			want[p.ID] = true
		}
	}
	logPath, snapPath := logPathOf(dir, e.TenantA, 1), pathOf(dir, e.TenantA, 1)
	logBefore, snapBefore := readFile(t, logPath), readFile(t, snapPath)

	// Full to the last byte: a write of any size is refused.
	smallfs.Fill(t, ballast)
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, vector.ErrNoSpace) || !errors.Is(err, bulkhead.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s on a full disk: %v, want vector.ErrNoSpace (bulkhead.ErrNoSpace) wrapping ENOSPC", what, err)
		}
	}
	// Writes larger than a page: a smaller one may still fit in the unused
	// end of the log's last page, which tmpfs has already allocated.
	refused("upsert of 20 points", e.Router.Upsert(e.CtxA, e.CollA, randomPoints(100, 20, dim)))
	var some []uuid.UUID
	for id := range want {
		if some = append(some, id); len(some) == 400 {
			break
		}
	}
	refused("delete of 400 points", e.Router.Delete(e.CtxA, e.CollA, some))
	refused("create collection", e.Router.CreateCollection(e.CtxB, e.CollB, dim))
	// Room for part of a record: the file system takes some of its bytes,
	// the store cuts them back.
	smallfs.Free(t, ballast)
	smallfs.FillLeaving(t, ballast, 8<<10)
	refused("upsert of 100 points with 8 KiB free", e.Router.Upsert(e.CtxA, e.CollA, randomPoints(101, 100, dim)))
	if got := readFile(t, logPath); !slices.Equal(got, logBefore) {
		t.Fatalf("the log changed after refused writes: %d bytes, was %d (a partial record left behind)", len(got), len(logBefore))
	}
	assertPoints(t, e, want)
	assertNoTemp(t, dir)

	// A compaction out of space: one small record fits, its snapshot not.
	s.compactMin = 1
	var logged syncbuf.Buffer
	s.SetLogger(slog.New(slog.NewTextHandler(&logged, nil)))
	small := randomPoints(102, 1, dim)
	if err := e.Router.Upsert(e.CtxA, e.CollA, small); err != nil {
		t.Fatalf("a one-point upsert with 8 KiB free: %v", err)
	}
	want[small[0].ID] = true
	s.compactions.Wait()
	n, last := s.CompactionFailures()
	if n != 1 || !errors.Is(last, syscall.ENOSPC) {
		t.Fatalf("compaction failures %d (%v), want 1 with ENOSPC", n, last)
	}
	if l := logged.String(); !strings.Contains(l, "vector compaction failed") || !strings.Contains(l, "no_space=true") {
		t.Errorf("the failed compaction was not logged as out of space: %q", l)
	}
	if got := readFile(t, snapPath); !slices.Equal(got, snapBefore) {
		t.Fatal("a compaction that ran out of space changed the snapshot")
	}
	if got := readFile(t, logPath); len(got) <= len(logBefore) || !slices.Equal(got[:len(logBefore)], logBefore) {
		t.Fatalf("a compaction that ran out of space changed the log (%d bytes, was %d before one more record)", len(got), len(logBefore))
	}
	assertNoTemp(t, dir)
	assertPoints(t, e, want)

	// Space freed: the same Store writes (and compacts) again.
	smallfs.Free(t, ballast)
	more := randomPoints(103, 100, dim)
	if err := e.Router.Upsert(e.CtxA, e.CollA, more); err != nil {
		t.Fatalf("upsert after the space was freed: %v", err)
	}
	for _, p := range more {
		want[p.ID] = true
	}
	if err := e.Router.Delete(e.CtxA, e.CollA, some); err != nil {
		t.Fatalf("delete after the space was freed: %v", err)
	}
	for _, id := range some {
		delete(want, id)
	}
	mustCreate(t, e.CtxB, e.Router, e.CollB, dim, randomPoints(104, 3, dim))
	s.compactions.Wait()
	if n, last := s.CompactionFailures(); n != 1 {
		t.Errorf("compaction failures %d after the space was freed (last: %v), want still 1", n, last)
	}
	assertPoints(t, e, want)

	// Reopened: every acknowledged point, nothing refused.
	s.Close()
	s2 := mustOpen(t, dir)
	e2 := vectortest.NewEnv(t, s2)
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctx, coll := e2.Scoped(t, e.TenantA)
	assertPoints(t, &vectortest.Env{Router: e2.Router, CtxA: ctx, CollA: coll}, want)
}

// assertPoints checks that e's collection A holds exactly the ids in want
// (through Scroll) and answers a search.
func assertPoints(t *testing.T, e *vectortest.Env, want map[uuid.UUID]bool) {
	t.Helper()
	got := map[uuid.UUID]bool{}
	for after := uuid.Nil; ; {
		page, err := e.Router.Scroll(e.CtxA, e.CollA, after, vector.MaxScrollLimit)
		if err != nil {
			t.Fatalf("scroll: %v", err)
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			got[p.ID] = true
		}
		after = page[len(page)-1].ID
	}
	missing, extra := 0, 0
	for id := range want {
		if !got[id] {
			missing++
		}
	}
	for id := range got {
		if !want[id] {
			extra++
		}
	}
	if missing != 0 || extra != 0 {
		t.Fatalf("collection holds %d points: %d acknowledged missing, %d never acknowledged present", len(got), missing, extra)
	}
	q := make([]float32, 64)
	q[0] = 1
	if hits, err := e.Router.Search(e.CtxA, e.CollA, q, 5); err != nil || len(hits) != min(5, len(want)) {
		t.Fatalf("search: %d hits, %v", len(hits), err)
	}
}

// assertNoTemp fails if a temporary file is left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if isTemp(en.Name()) {
			t.Errorf("temporary file %s left behind", en.Name())
		}
	}
}
