package embedded

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/uuid"
)

// TestStoreIsPrivate: the store's directory is made 0700 at start-up (an
// existing one too), and a LOCK file other users can read is refused.
func TestStoreIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vectors")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created with mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err = New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("an existing 0755 directory was left %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	lock := filepath.Join(dir, "LOCK")
	if err := os.Chmod(lock, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir); !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), "chmod 600 "+lock) {
		t.Errorf("a 0644 LOCK: %v, want ErrNotPrivate saying chmod 600 %s", err, lock)
	}
	os.Chmod(lock, 0o600)
	s, err = New(dir) // and the refused New released the lock
	if err != nil {
		t.Fatalf("private again: %v", err)
	}
	s.Close()
}

// TestNotPrivateFileRefusesItsCollection: New does not look at collection
// files; a snapshot or log that other users can access (or a symlink in
// its place) is found when its collection is read, and refused: every call
// on that collection (CreateCollection too, which never overwrites it)
// fails with ErrNotPrivate, matching vector.ErrUnavailable, naming the
// chmod that fixes it, and the file is left as it is; another tenant is
// served meanwhile. Once the file is private again the collection is
// served.
func TestNotPrivateFileRefusesItsCollection(t *testing.T) {
	for _, tc := range []struct {
		name string
		file func(dir string, tenant uuid.UUID) string
		// loosen makes the file not private; restore undoes it.
		loosen, restore func(t *testing.T, path string)
		chmod           bool // the error must say chmod 600 path
	}{
		{"snapshot 0644", func(dir string, tn uuid.UUID) string { return pathOf(dir, tn, 1) }, chmodTo(0o644), chmodTo(0o600), true},
		{"log 0644", func(dir string, tn uuid.UUID) string { return logPathOf(dir, tn, 1) }, chmodTo(0o644), chmodTo(0o600), true},
		{"log 0604", func(dir string, tn uuid.UUID) string { return logPathOf(dir, tn, 1) }, chmodTo(0o604), chmodTo(0o600), true},
		{"snapshot a symlink", func(dir string, tn uuid.UUID) string { return pathOf(dir, tn, 1) }, symlinkTo, unlink, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			e := vectortest.NewEnv(t, s)
			ptsA, ptsB := randomPoints(1, 50, 16), randomPoints(2, 50, 16)
			mustCreate(t, e.CtxA, e.Router, e.CollA, 16, ptsA) // a snapshot and a log
			mustCreate(t, e.CtxB, e.Router, e.CollB, 16, ptsB)
			s.Close()
			path := tc.file(dir, e.TenantA)
			content := readFile(t, path)
			tc.loosen(t, path)

			s2 := mustOpen(t, dir)
			e2 := vectortest.NewEnv(t, s2)
			e2.Regions.Set(e.TenantA, e2.RegionName)
			e2.Regions.Set(e.TenantB, e2.RegionName)
			ctxA, collA := e2.Scoped(t, e.TenantA)
			ctxB, collB := e2.Scoped(t, e.TenantB)
			refused := func(op string, err error) {
				t.Helper()
				switch {
				case !errors.Is(err, ErrNotPrivate) || !errors.Is(err, vector.ErrUnavailable):
					t.Errorf("%s: %v; want ErrNotPrivate (and ErrUnavailable)", op, err)
				case !strings.Contains(err.Error(), filepath.Base(path)):
					t.Errorf("%s: %v; want the file named", op, err)
				case tc.chmod && !strings.Contains(err.Error(), "chmod 600 "+path):
					t.Errorf("%s: %v; want chmod 600 %s", op, err, path)
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
			refused("CreateCollection", e2.Router.CreateCollection(ctxA, collA, 16))
			if n := s2.Loads(); strings.HasSuffix(path, fileExt) && n != 0 {
				t.Errorf("%d snapshot reads; a snapshot that is not private must not be read", n)
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, content) {
				t.Errorf("the refused file changed (%v)", err)
			}
			if st, err := e2.Router.Stats(ctxB, collB); err != nil || st.Points != 50 {
				t.Fatalf("B beside A's refused file: %+v, %v; want 50 points", st, err)
			}
			if err := e2.Router.Upsert(ctxB, collB, randomPoints(4, 5, 16)); err != nil {
				t.Fatalf("B's upsert beside A's refused file: %v", err)
			}

			tc.restore(t, path)
			if st, err := e2.Router.Stats(ctxA, collA); err != nil || st.Points != 50 {
				t.Fatalf("A once its file is private again: %+v, %v; want 50 points", st, err)
			}
		})
	}
}

// TestLogMadeLooseWhileLoadedRefused: a log that becomes accessible to
// others while its collection is resident gets no more records: the
// append fails with ErrNotPrivate, the collection is unloaded, and the
// next read of it is refused too.
func TestLogMadeLooseWhileLoadedRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, WithCompactMin(-1))
	e := vectortest.NewEnv(t, s)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, randomPoints(1, 50, 16))
	log := logPathOf(dir, e.TenantA, 1)
	before := readFile(t, log)
	if err := os.Chmod(log, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := e.Router.Upsert(e.CtxA, e.CollA, randomPoints(2, 5, 16)); !errors.Is(err, ErrNotPrivate) {
		t.Fatalf("Upsert with a 0640 log: %v; want ErrNotPrivate", err)
	}
	if !bytes.Equal(before, readFile(t, log)) {
		t.Fatal("a record was appended to a log others can read")
	}
	if _, err := e.Router.Stats(e.CtxA, e.CollA); !errors.Is(err, ErrNotPrivate) {
		t.Fatalf("Stats after the refused append: %v; want ErrNotPrivate", err)
	}
}

func chmodTo(mode os.FileMode) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// symlinkTo moves path's file aside (still 0600) and puts a symlink to it
// in its place.
func symlinkTo(t *testing.T, path string) {
	t.Helper()
	aside := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.Rename(path, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(aside, path); err != nil {
		t.Fatal(err)
	}
}

// unlink replaces the symlink symlinkTo made with its target.
func unlink(t *testing.T, path string) {
	t.Helper()
	target, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(target, path); err != nil {
		t.Fatal(err)
	}
}
