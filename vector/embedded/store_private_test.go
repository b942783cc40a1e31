package embedded_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-dev/bulkhead/vector/embedded"
)

// TestStoreIsPrivate: the store's directory is made 0700 at start-up (an
// existing one too), and a collection file other users can read is refused.
func TestStoreIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vectors")
	s, err := embedded.New(dir)
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
	s, err = embedded.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("an existing 0755 directory was left %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	file := filepath.Join(dir, "x.vec2")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.New(dir); !errors.Is(err, embedded.ErrNotPrivate) {
		t.Errorf("a 0644 file: %v, want ErrNotPrivate", err)
	}
	os.Chmod(file, 0o600)
	s, err = embedded.New(dir)
	if err != nil {
		t.Fatalf("private again: %v", err)
	}
	s.Close()
}
