package embedded

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func mustOpen(t *testing.T, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := New(dir, opts...)
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	// The sweep of temporary files New starts pins the collections whose
	// files it removes, which delays their eviction: tests that count on
	// eviction start once it is done (TestSweepSparesAWriteInProgress
	// tests it against a write).
	s.sweeping.Wait()
	return s
}

// randomPoints returns n random points of dimension dim (Gaussian
// components, so directions are uniform), deterministic for seed.
func randomPoints(seed uint64, n, dim int) []vector.Point {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pts := make([]vector.Point, n)
	for i := range pts {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		var id uuid.UUID
		for j := range id {
			id[j] = byte(rng.UintN(256))
		}
		pts[i] = vector.Point{ID: id, Vector: v, Payload: map[string]string{"i": strings.Repeat("x", i%7)}}
	}
	return pts
}

func mustCreate(t *testing.T, ctx context.Context, s vector.Store, c vector.Collection, dim int, pts []vector.Point) {
	t.Helper()
	if err := s.CreateCollection(ctx, c, dim); err != nil {
		t.Fatalf("CreateCollection: %v", err)
	}
	if len(pts) > 0 {
		if err := s.Upsert(ctx, c, pts); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
	}
}

func mustSearch(t *testing.T, ctx context.Context, s vector.Store, c vector.Collection, q []float32, k int) []vector.Hit {
	t.Helper()
	hits, err := s.Search(ctx, c, q, k)
	if err != nil {
		t.Fatalf("Search(%s): %v", c, err)
	}
	return hits
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileNamedByTenantUUIDAndGeneration(t *testing.T) {
	dir := t.TempDir()
	e := vectortest.NewEnv(t, mustOpen(t, dir))
	mustCreate(t, e.CtxA, e.Router, e.CollA, 8, randomPoints(1, 10, 8))
	mustCreate(t, e.CtxB, e.Router, e.CollB, 8, nil)
	a2 := mustGeneration(t, e.CollA, 2)
	mustCreate(t, e.CtxA, e.Router, a2, 3, randomPoints(2, 4, 3))

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	files := []string{e.TenantA.String() + ".g1.vec", e.TenantA.String() + ".g2.vec", e.TenantB.String() + ".g1.vec"}
	// The collections written to have a log too, named the same way.
	logs := []string{e.TenantA.String() + ".g1.log", e.TenantA.String() + ".g2.log"}
	want := append([]string{"LOCK"}, append(logs, files...)...)
	slices.Sort(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("directory (-want +got):\n%s", diff)
	}
	for _, n := range append(logs, files...) {
		if n != strings.ToLower(n) || len(n) != 36+len(".g1.vec") {
			t.Fatalf("file name %q is not the canonical lower-case UUID and generation", n)
		}
	}
	// The header names the tenant and the generation too, and the dimension.
	for _, tc := range []struct {
		name string
		dim  byte
		gen  byte
	}{{files[0], 8, 1}, {files[1], 3, 2}} {
		b := readFile(t, filepath.Join(dir, tc.name))
		if string(b[:8]) != magic || b[8] != formatVersion || b[12] != tc.dim || !bytes.Equal(b[16:32], e.TenantA[:]) || !bytes.Equal(b[32:36], []byte{tc.gen, 0, 0, 0}) {
			t.Fatalf("%s: header % x does not carry magic, version, dimension %d, tenant and generation %d", tc.name, b[:headerSize], tc.dim, tc.gen)
		}
	}
}

func mustGeneration(t *testing.T, c vector.Collection, g uint32) vector.Collection {
	t.Helper()
	cg, err := c.AtGeneration(g)
	if err != nil {
		t.Fatalf("AtGeneration(%d): %v", g, err)
	}
	return cg
}

// logPathOf is the log of tenant's generation gen in dir.
func logPathOf(dir string, tenant uuid.UUID, gen uint32) string {
	return filepath.Join(dir, logName(key{tenant: tenant, gen: gen}))
}

// pathOf is the file of tenant's generation gen in dir.
func pathOf(dir string, tenant uuid.UUID, gen uint32) string {
	return filepath.Join(dir, fileName(key{tenant: tenant, gen: gen}))
}

// corruptAt flips one byte of path.
func corruptAt(t *testing.T, path string, off int) {
	t.Helper()
	b := readFile(t, path)
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTamperedFileFailsLoudly(t *testing.T) {
	q := randomPoints(9, 1, 16)[0].Vector
	for name, off := range map[string]int{
		"magic":      0,
		"version":    8,
		"dim":        12,
		"tenant":     20,
		"generation": 32,
		"count":      37,
		"vector":     headerSize + 16 + 5,
		"middle":     headerSize + 40*(16+64+4),
		"checksum":   -1,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s1, err := New(dir, WithCompactMin(0)) // the points are folded into the snapshot
			if err != nil {
				t.Fatal(err)
			}
			e := vectortest.NewEnv(t, s1)
			mustCreate(t, e.CtxA, e.Router, e.CollA, 16, randomPoints(1, 100, 16))
			mustCreate(t, e.CtxB, e.Router, e.CollB, 16, randomPoints(2, 100, 16))
			wantB := mustSearch(t, e.CtxB, e.Router, e.CollB, q, 5)
			s1.Close()

			pathA := pathOf(dir, e.TenantA, 1)
			corruptAt(t, pathA, off)
			tampered := readFile(t, pathA)

			s2 := mustOpen(t, dir)
			e2 := vectortest.NewEnv(t, s2)
			e2.Regions.Set(e.TenantA, e2.RegionName)
			e2.Regions.Set(e.TenantB, e2.RegionName)
			ctxA, collA := e2.Scoped(t, e.TenantA)
			ctxB, collB := e2.Scoped(t, e.TenantB)

			_, err = e2.Router.Search(ctxA, collA, q, 5)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, vector.ErrUnavailable) || errors.Is(err, vector.ErrNotFound) {
				t.Fatalf("Search of a tampered collection: %v; want ErrCorrupt (ErrUnavailable), not ErrNotFound", err)
			}
			if _, err := e2.Router.Stats(ctxA, collA); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Stats of a tampered collection: %v", err)
			}
			// Writes neither repair nor replace it.
			if err := e2.Router.CreateCollection(ctxA, collA, 16); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("CreateCollection over a tampered file: %v", err)
			}
			if err := e2.Router.Upsert(ctxA, collA, randomPoints(3, 1, 16)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Upsert into a tampered file: %v", err)
			}
			if !bytes.Equal(readFile(t, pathA), tampered) {
				t.Fatal("the tampered file was rewritten")
			}
			// The other tenant is unaffected.
			if diff := cmp.Diff(wantB, mustSearch(t, ctxB, e2.Router, collB, q, 5)); diff != "" {
				t.Fatalf("B after A's corruption (-want +got):\n%s", diff)
			}
			// An operator can still drop it.
			if err := e2.Router.DropCollection(ctxA, collA); err != nil {
				t.Fatalf("Drop of a tampered collection: %v", err)
			}
		})
	}
}

func TestFileOfAnotherTenantRefused(t *testing.T) {
	dir := t.TempDir()
	s1, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := vectortest.NewEnv(t, s1)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4, randomPoints(1, 10, 4))
	s1.Close()
	// A's intact file renamed to B's name: its checksum is fine, its header
	// names A.
	b := readFile(t, pathOf(dir, e.TenantA, 1))
	if err := os.WriteFile(pathOf(dir, e.TenantB, 1), b, 0o600); err != nil {
		t.Fatal(err)
	}
	e2 := vectortest.NewEnv(t, mustOpen(t, dir))
	e2.Regions.Set(e.TenantB, e2.RegionName)
	ctxB, collB := e2.Scoped(t, e.TenantB)
	_, err = e2.Router.Search(ctxB, collB, []float32{1, 0, 0, 0}, 3)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), e.TenantA.String()) {
		t.Fatalf("Search of a file naming another tenant: %v; want ErrCorrupt naming %s", err, e.TenantA)
	}
}

// TestFileOfAnotherGenerationRefused: the header binds the generation as it
// binds the tenant, so a file renamed from generation 1 to generation 2's
// name (a botched manual "promotion") is corrupt, not served as generation
// 2, and generation 1 still is.
func TestFileOfAnotherGenerationRefused(t *testing.T) {
	dir := t.TempDir()
	s1, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := vectortest.NewEnv(t, s1)
	pts := randomPoints(1, 10, 4)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4, pts)
	want := mustSearch(t, e.CtxA, e.Router, e.CollA, pts[0].Vector, 3)
	s1.Close()
	g1 := readFile(t, pathOf(dir, e.TenantA, 1))
	if err := os.Rename(pathOf(dir, e.TenantA, 1), pathOf(dir, e.TenantA, 2)); err != nil {
		t.Fatal(err)
	}

	e2 := vectortest.NewEnv(t, mustOpen(t, dir))
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	a2 := mustGeneration(t, collA, 2)
	_, err = e2.Router.Search(ctxA, a2, pts[0].Vector, 3)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, vector.ErrUnavailable) || errors.Is(err, vector.ErrNotFound) || !strings.Contains(err.Error(), "generation 1") {
		t.Fatalf("Search of generation 1's file under generation 2's name: %v; want ErrCorrupt naming generation 1", err)
	}
	if _, err := e2.Router.Stats(ctxA, a2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Stats: %v; want ErrCorrupt", err)
	}
	// Generation 1 has no file any more: not found, never generation 2's.
	if _, err := e2.Router.Search(ctxA, collA, pts[0].Vector, 3); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("Search of generation 1 without its file: %v; want ErrNotFound", err)
	}
	// Renamed back, it is generation 1 again, byte for byte.
	if err := os.Rename(pathOf(dir, e.TenantA, 2), pathOf(dir, e.TenantA, 1)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, mustSearch(t, ctxA, e2.Router, collA, pts[0].Vector, 3)); diff != "" {
		t.Fatalf("generation 1 after renaming back (-want +got):\n%s", diff)
	}
	if !bytes.Equal(g1, readFile(t, pathOf(dir, e.TenantA, 1))) {
		t.Fatal("generation 1's file changed")
	}
}

// TestFormat1FileRefusesItsTenant: a "<tenant>.vec" file from before
// generations is neither read nor ignored (ignoring it would serve its
// tenant as having no collection): New opens the directory, every call on
// that tenant's collections fails with ErrUnavailable naming the file,
// CreateCollection included (no collection is made beside it) and
// DropCollection too (nothing is removed), while another tenant is served.
// Once the file is removed the tenant is served again.
func TestFormat1FileRefusesItsTenant(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	e := vectortest.NewEnv(t, s)
	ptsA, ptsB := randomPoints(1, 50, 16), randomPoints(2, 50, 16)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, ptsA)
	mustCreate(t, e.CtxB, e.Router, e.CollB, 16, ptsB)
	s.Close()
	legacy := filepath.Join(dir, e.TenantA.String()+".vec")
	if err := os.WriteFile(legacy, []byte("format 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	snapA, logA := readFile(t, pathOf(dir, e.TenantA, 1)), readFile(t, logPathOf(dir, e.TenantA, 1))

	s2 := mustOpen(t, dir)
	e2 := vectortest.NewEnv(t, s2)
	e2.Regions.Set(e.TenantA, e2.RegionName)
	e2.Regions.Set(e.TenantB, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	ctxB, collB := e2.Scoped(t, e.TenantB)
	collA2 := mustGeneration(t, collA, 2)
	refused := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, vector.ErrUnavailable) || errors.Is(err, vector.ErrNotFound) || !strings.Contains(err.Error(), e.TenantA.String()+".vec") {
			t.Errorf("%s for a tenant with a format-1 file: %v; want ErrUnavailable naming the file", op, err)
		}
	}
	_, err := e2.Router.Search(ctxA, collA, ptsA[0].Vector, 3)
	refused("Search", err)
	_, err = e2.Router.Stats(ctxA, collA)
	refused("Stats", err)
	_, err = e2.Router.Scroll(ctxA, collA, uuid.Nil, 10)
	refused("Scroll", err)
	refused("Upsert", e2.Router.Upsert(ctxA, collA, randomPoints(3, 5, 16)))
	refused("Delete", e2.Router.Delete(ctxA, collA, []uuid.UUID{ptsA[0].ID}))
	refused("CreateCollection of an existing generation", e2.Router.CreateCollection(ctxA, collA, 16))
	refused("CreateCollection of a new generation", e2.Router.CreateCollection(ctxA, collA2, 16))
	refused("DropCollection", e2.Router.DropCollection(ctxA, collA))
	if _, err := os.Stat(pathOf(dir, e.TenantA, 2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a collection was created beside the format-1 file: %v", err)
	}
	if !bytes.Equal(snapA, readFile(t, pathOf(dir, e.TenantA, 1))) || !bytes.Equal(logA, readFile(t, logPathOf(dir, e.TenantA, 1))) {
		t.Error("A's files changed")
	}
	if st, err := e2.Router.Stats(ctxB, collB); err != nil || st.Points != 50 {
		t.Fatalf("B beside A's format-1 file: %+v, %v; want 50 points", st, err)
	}
	if err := e2.Router.Upsert(ctxB, collB, randomPoints(4, 5, 16)); err != nil {
		t.Fatalf("B's upsert beside A's format-1 file: %v", err)
	}

	// Once the file is gone, A is served as it was.
	if err := os.Remove(legacy); err != nil {
		t.Fatal(err)
	}
	if st, err := e2.Router.Stats(ctxA, collA); err != nil || st.Points != 50 {
		t.Fatalf("A once its format-1 file is removed: %+v, %v; want 50 points", st, err)
	}
}

// TestLeftoverTempFilesNeverReplaceTheCollection: temporary files a crash
// leaves (complete or truncated, a snapshot's or a log's, of a collection
// or of a tenant without one, or named as format 1 did) are removed by the
// sweep New starts, and never read: a collection loaded beside them is
// its own files, and a tenant with only a temporary file has no
// collection.
func TestLeftoverTempFilesNeverReplaceTheCollection(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	s1, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := vectortest.NewEnv(t, s1)
	pts := randomPoints(1, 200, 16)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, pts)
	q := pts[7].Vector
	want := mustSearch(t, e.CtxA, e.Router, e.CollA, q, 10)
	s1.Close()
	real := pathOf(dir, e.TenantA, 1)
	before := readFile(t, real)

	// A complete, valid newer file for A, written elsewhere.
	s3, err := New(other)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e.CtxA, s3, e.CollA, 16, randomPoints(5, 50, 16))
	s3.Close()
	newer, newerLog := readFile(t, pathOf(other, e.TenantA, 1)), readFile(t, logPathOf(other, e.TenantA, 1))
	// What a crash leaves: full and truncated temp files, never renamed.
	temps := map[string][]byte{
		"." + e.TenantA.String() + ".g1.vec" + tmpMarker + "111": newer,
		"." + e.TenantA.String() + ".g1.vec" + tmpMarker + "222": newer[:len(newer)/2],
		"." + e.TenantB.String() + ".g1.vec" + tmpMarker + "333": newer, // B has no collection
		"." + e.TenantA.String() + tmpMarker + "444":             newer, // named as format 1 wrote them
		"." + e.TenantA.String() + ".g1.log" + tmpMarker + "555": newerLog,
	}
	leave := func() {
		for n, b := range temps {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	leave()

	// The sweep New starts removes them (mustOpen waits for it; New
	// does not).
	s2 := mustOpen(t, dir)
	for n := range temps {
		if _, err := os.Stat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("leftover %s not removed by the sweep New starts: %v", n, err)
		}
	}
	// They are never read: left again after the sweep, they are there
	// when A is first loaded, and A is its own file.
	leave()
	e2 := vectortest.NewEnv(t, s2)
	e2.Regions.Set(e.TenantA, e2.RegionName)
	e2.Regions.Set(e.TenantB, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	ctxB, collB := e2.Scoped(t, e.TenantB)
	if diff := cmp.Diff(want, mustSearch(t, ctxA, e2.Router, collA, q, 10)); diff != "" {
		t.Fatalf("A loaded beside temp files (-want +got):\n%s", diff)
	}
	if _, err := e2.Router.Stats(ctxB, collB); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("B from a stray temp file: %v; want ErrNotFound", err)
	}
	if !bytes.Equal(before, readFile(t, real)) {
		t.Fatal("the collection file changed")
	}
}

// TestTempOwner: the sweep takes a collection's lock for exactly the
// temporary names this build's writers make (a snapshot's by persist, a
// log's by createLog); other names have no owner.
func TestTempOwner(t *testing.T) {
	k := key{tenant: uuid.New(), gen: 7}
	for name, want := range map[string]bool{
		"." + fileName(k) + tmpMarker + "123456":                               true,
		"." + logName(k) + tmpMarker + "9":                                     true,
		fileName(k):                                                            false,
		"." + fileName(k):                                                      false,
		"." + k.tenant.String() + ".vec" + tmpMarker + "1":                     false, // format 1
		"." + k.tenant.String() + tmpMarker + "1":                              false,
		"." + strings.ToUpper(k.tenant.String()) + ".g7.vec" + tmpMarker + "1": false,
		"." + k.tenant.String() + ".g07.vec" + tmpMarker + "1":                 false,
		"." + k.tenant.String() + ".g7.bak" + tmpMarker + "1":                  false,
		"." + k.tenant.String() + ".g99999999999.vec" + tmpMarker + "1":        false,
	} {
		got, ok := tempOwner(name)
		if ok != want || (ok && got != k) {
			t.Errorf("tempOwner(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	for _, pattern := range []string{"." + fileName(k) + tmpMarker + "*", "." + logName(k) + tmpMarker + "*"} {
		f, err := os.CreateTemp(t.TempDir(), pattern) // as persist and createLog make them
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got, ok := tempOwner(filepath.Base(f.Name())); !ok || got != k || !isTemp(filepath.Base(f.Name())) {
			t.Errorf("tempOwner(%q) = %v, %v; want %v", filepath.Base(f.Name()), got, ok, k)
		}
	}
}

// TestCloseWaitsForTheSweep: once Close returns, the sweep New started
// touches the directory no more (another Store may own it by then): what
// Close leaves stays as it is. Close comes while the sweep is in its first
// batch of names.
func TestCloseWaitsForTheSweep(t *testing.T) {
	dir := t.TempDir()
	for i := range 1000 {
		// Format-1 temporary names: the sweep removes them without a
		// collection lock, so only Close can stop it.
		name := "." + uuid.NewString() + tmpMarker + strconv.Itoa(i)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.Readdirnames(1) // the sweep reads in the same order
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Lstat(filepath.Join(dir, first[0])); errors.Is(err, os.ErrNotExist) {
			break // the sweep is at work
		}
	}
	s.Close()
	after := dirNames(t, dir)
	time.Sleep(20 * time.Millisecond) // room for a sweep still running
	if later := dirNames(t, dir); len(later) != len(after) {
		t.Fatalf("%d files when Close returned, %d later: the sweep outlived Close", len(after), len(later))
	}
}

// TestSweepSparesAWriteInProgress: the sweep New starts never removes the
// temporary file of a write in progress (it waits for the collection's
// lock, and finds the file renamed), so the write succeeds; it removes
// only what crashed writes left.
func TestSweepSparesAWriteInProgress(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	s.sweeping.Wait()
	e := vectortest.NewEnv(t, s)
	reached, release := make(chan string), make(chan struct{})
	s.hook = func(step, path string) error {
		if step == stepSnapshotSynced {
			reached <- path
			<-release
		}
		return nil
	}
	created := make(chan error, 1)
	go func() { created <- e.Router.CreateCollection(e.CtxA, e.CollA, 16) }()
	tmp := <-reached // the write holds A's lock, its temporary file complete

	s.sweeping.Add(1)
	go s.sweepTemps() // what a start finds if the write is in progress
	swept := make(chan struct{})
	go func() { s.sweeping.Wait(); close(swept) }()
	// Wait until the sweep is at A's lock (its pin beside the write's), or
	// done (the bug this test is for: it removed the file).
	for waiting := false; !waiting; {
		select {
		case <-swept:
			waiting = true
		case <-time.After(time.Millisecond):
			s.mu.Lock()
			waiting = s.colls[keyOf(e.CollA)].pins > 1
			s.mu.Unlock()
		}
	}
	time.Sleep(10 * time.Millisecond) // room for a sweep that does not wait to remove the file
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("the write's temporary file, with the write in progress: %v", err)
	}
	close(release)
	if err := <-created; err != nil {
		t.Fatalf("CreateCollection while the sweep ran: %v", err)
	}
	<-swept
	s.hook = nil
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Dimension != 16 {
		t.Fatalf("A after the sweep: %+v, %v", st, err)
	}
	for _, n := range dirNames(t, dir) {
		if isTemp(n) {
			t.Errorf("temporary file %s left", n)
		}
	}
}

// TestFailedAppendKeepsMemoryAndFilesTogether: an append that fails after
// writing its record but before its fsync (the hook stands in for the
// failure) is cut back from the log, refused, and leaves the collection as
// it was in memory and on disk; the next write works and survives a
// restart.
func TestFailedAppendKeepsMemoryAndFilesTogether(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, WithCompactMin(-1))
	e := vectortest.NewEnv(t, s)
	pts := randomPoints(1, 100, 16)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, pts)
	q := pts[3].Vector
	want := mustSearch(t, e.CtxA, e.Router, e.CollA, q, 10)
	snap, log := readFile(t, pathOf(dir, e.TenantA, 1)), readFile(t, logPathOf(dir, e.TenantA, 1))

	crash := errors.New("simulated failure")
	s.hook = func(step, _ string) error {
		if step == stepAppendWritten {
			return crash
		}
		return nil
	}
	err := e.Router.Upsert(e.CtxA, e.CollA, randomPoints(2, 50, 16))
	if !errors.Is(err, vector.ErrUnavailable) || !errors.Is(err, crash) {
		t.Fatalf("Upsert during a failure: %v", err)
	}
	if err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{pts[0].ID}); !errors.Is(err, vector.ErrUnavailable) {
		t.Fatalf("Delete during a failure: %v", err)
	}
	s.hook = nil

	if !bytes.Equal(snap, readFile(t, pathOf(dir, e.TenantA, 1))) || !bytes.Equal(log, readFile(t, logPathOf(dir, e.TenantA, 1))) {
		t.Fatal("a failed write changed the files")
	}
	if diff := cmp.Diff(want, mustSearch(t, e.CtxA, e.Router, e.CollA, q, 10)); diff != "" {
		t.Fatalf("after failed writes, memory diverged from the files (-want +got):\n%s", diff)
	}
	if st, err := e.Router.Stats(e.CtxA, e.CollA); err != nil || st.Points != 100 {
		t.Fatalf("Stats after failed writes = %+v, %v; want 100", st, err)
	}
	if err := e.Router.Upsert(e.CtxA, e.CollA, randomPoints(2, 50, 16)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	e2 := vectortest.NewEnv(t, mustOpen(t, dir))
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	if st, err := e2.Router.Stats(ctxA, collA); err != nil || st.Points != 150 {
		t.Fatalf("after a restart: %+v, %v; want 150 points", st, err)
	}
}

// TestCrashBeforeRenameKeepsOldFile: a compaction that dies after writing
// its temporary snapshot (truncated here, a torn write) and before the
// rename leaves the old snapshot byte for byte and the whole log: the
// acknowledged writes are all there after a restart, and the temporary
// file is removed.
func TestCrashBeforeRenameKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, WithCompactMin(-1))
	e := vectortest.NewEnv(t, s)
	pts := randomPoints(1, 100, 16)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, pts)
	real := pathOf(dir, e.TenantA, 1)
	before := readFile(t, real)

	crash := errors.New("simulated crash")
	var tmps []string
	s.beforeRename = func(tmp string) error {
		tmps = append(tmps, tmp)
		if err := os.Truncate(tmp, 100); err != nil {
			t.Error(err)
		}
		return crash
	}
	s.compactMin = 0
	more := randomPoints(2, 50, 16)
	if err := e.Router.Upsert(e.CtxA, e.CollA, more); err != nil {
		t.Fatalf("Upsert (acknowledged from the log, compaction fails later): %v", err)
	}
	want := mustSearch(t, e.CtxA, e.Router, e.CollA, pts[3].Vector, 10)
	if err := s.Close(); err != nil { // waits for the compaction
		t.Fatal(err)
	}
	if n, err := s.CompactionFailures(); n != 1 || !errors.Is(err, crash) {
		t.Fatalf("CompactionFailures = %d, %v; want 1, the simulated crash", n, err)
	}
	if !bytes.Equal(before, readFile(t, real)) {
		t.Fatal("the collection file changed")
	}
	if len(tmps) != 1 {
		t.Fatalf("%d compactions reached the rename, want 1", len(tmps))
	}
	if _, err := os.Stat(tmps[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary snapshot after a failed compaction: %v; want it removed", err)
	}
	e2 := vectortest.NewEnv(t, mustOpen(t, dir))
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	if diff := cmp.Diff(want, mustSearch(t, ctxA, e2.Router, collA, pts[3].Vector, 10)); diff != "" {
		t.Fatalf("after a restart (-want +got):\n%s", diff)
	}
	if st, err := e2.Router.Stats(ctxA, collA); err != nil || st.Points != 150 {
		t.Fatalf("after a restart: %+v, %v; want 150 points", st, err)
	}
}

func TestSecondStoreOnDirectoryRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, err := New(dir); !errors.Is(err, vector.ErrUnavailable) {
		t.Fatalf("second New on a locked directory: %v", err)
	}
	s.Close()
	mustOpen(t, dir) // released by Close
}

func TestEvictionAndReloadGiveIdenticalResults(t *testing.T) {
	const tenants, n, dim = 6, 300, 32
	one := newData(dim, 0)
	for _, p := range randomPoints(0, n, dim) {
		one.put(p)
	}
	budget := 2*one.size() + one.size()/2 // room for two collections
	s := mustOpen(t, t.TempDir(), WithMemoryBudget(budget))
	e := vectortest.NewEnv(t, s)
	queries := randomPoints(99, 5, dim)

	type tenant struct {
		ctx  context.Context
		c    vector.Collection
		want [][]vector.Hit
	}
	var ts []tenant
	for i := range tenants {
		id := uuid.New()
		e.Regions.Set(id, e.RegionName)
		ctx, c := e.Scoped(t, id)
		mustCreate(t, ctx, e.Router, c, dim, randomPoints(uint64(i+1), n, dim))
		ts = append(ts, tenant{ctx: ctx, c: c})
	}
	for i := range ts {
		for _, q := range queries {
			ts[i].want = append(ts[i].want, mustSearch(t, ts[i].ctx, e.Router, ts[i].c, q.Vector, 10))
		}
		if cols, bytes := s.Resident(); bytes > budget || cols > 2 {
			t.Fatalf("resident %d collections, %d bytes; budget %d", cols, bytes, budget)
		}
	}
	loads := s.Loads()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3 {
		for _, i := range rng.Perm(tenants) {
			for j, q := range queries {
				if diff := cmp.Diff(ts[i].want[j], mustSearch(t, ts[i].ctx, e.Router, ts[i].c, q.Vector, 10)); diff != "" {
					t.Fatalf("round %d tenant %d query %d after reload (-want +got):\n%s", round, i, j, diff)
				}
			}
			if _, bytes := s.Resident(); bytes > budget {
				t.Fatalf("resident %d bytes over budget %d", bytes, budget)
			}
		}
	}
	if s.Loads() <= loads {
		t.Fatalf("no reloads happened (loads %d → %d): the budget did not evict", loads, s.Loads())
	}
}

func TestConcurrentSearchesAndWrites(t *testing.T) {
	const dim = 16
	one := newData(dim, 0)
	for _, p := range randomPoints(0, 200, dim) {
		one.put(p)
	}
	s := mustOpen(t, t.TempDir(), WithMemoryBudget(one.size()*2)) // forces eviction churn
	e := vectortest.NewEnv(t, s)
	type tenant struct {
		ctx context.Context
		c   vector.Collection
	}
	var ts []tenant
	for i := range 3 {
		id := uuid.New()
		e.Regions.Set(id, e.RegionName)
		ctx, c := e.Scoped(t, id)
		mustCreate(t, ctx, e.Router, c, dim, randomPoints(uint64(i+1), 200, dim))
		ts = append(ts, tenant{ctx, c})
	}
	errs := make(chan error, 64)
	done := make(chan struct{})
	var running int
	for w := range 6 {
		running++
		go func() {
			defer func() { done <- struct{}{} }()
			tt := ts[w%len(ts)]
			pts := randomPoints(uint64(100+w), 20, dim)
			for i := range 15 {
				switch {
				case w < 4: // searchers
					hits, err := e.Router.Search(tt.ctx, tt.c, pts[i].Vector, 5)
					if err != nil {
						errs <- err
						return
					}
					for _, h := range hits {
						if h.Tenant != tt.c.Tenant() {
							errs <- errors.New("foreign hit")
							return
						}
					}
					if _, err := e.Router.Stats(tt.ctx, tt.c); err != nil {
						errs <- err
						return
					}
				default: // writers: upsert then delete their own points
					if err := e.Router.Upsert(tt.ctx, tt.c, pts[i:i+1]); err != nil {
						errs <- err
						return
					}
					if i%3 == 2 {
						if err := e.Router.Delete(tt.ctx, tt.c, []uuid.UUID{pts[i].ID}); err != nil {
							errs <- err
							return
						}
					}
				}
			}
		}()
	}
	for range running {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Writers 4 and 5 wrote to tenants 1 and 2: 15 upserts, 5 deletes each.
	for i, want := range []int{200, 210, 210} {
		if st, err := e.Router.Stats(ts[i].ctx, ts[i].c); err != nil || st.Points != want {
			t.Fatalf("tenant %d Stats = %+v, %v; want %d points", i, st, err, want)
		}
	}
}

func TestMaintenanceContextReachesBackend(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	e := vectortest.NewEnv(t, s)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4, randomPoints(1, 5, 4))
	mctx := bulkhead.AsMaintenance(context.Background(), "test")
	if st, err := s.Stats(mctx, e.CollA); err != nil || st.Points != 5 {
		t.Fatalf("backend Stats in maintenance = %+v, %v", st, err)
	}
	// The router itself serves only scoped requests.
	if _, err := e.Router.Stats(mctx, e.CollA); !errors.Is(err, bulkhead.ErrUnauthenticated) {
		t.Fatalf("router Stats in maintenance without scope: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	s := mustOpen(t, t.TempDir(), WithMemoryBudget(1))
	e := vectortest.NewEnv(t, s)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 4, randomPoints(1, 5, 4))
	ctx, cancel := context.WithCancel(e.CtxA)
	cancel()
	if _, err := e.Router.Search(ctx, e.CollA, []float32{1, 0, 0, 0}, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Search with a cancelled context: %v", err)
	}
	if err := e.Router.Upsert(ctx, e.CollA, randomPoints(2, 1, 4)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Upsert with a cancelled context: %v", err)
	}
}
