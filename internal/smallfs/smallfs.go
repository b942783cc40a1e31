package smallfs

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// Fill writes a ballast file at path (mode 0600) until its file system is
// full: blocks of shrinking size, down to one byte, until each is refused
// with ENOSPC. It returns the ballast's size. The ballast stays until Free
// or the end of the test.
func Fill(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("smallfs: ballast %s: %v", path, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n := len(buf); n >= 1; n /= 4 {
		for {
			_, err := f.Write(buf[:n])
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("smallfs: fill %s: %v", path, err)
			}
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("smallfs: fsync %s: %v", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// FillLeaving fills the file system holding path like Fill, then gives
// back about free bytes (rounded to the file system's pages) by truncating
// the ballast: room for a small write, not for a large one.
func FillLeaving(t testing.TB, path string, free int64) {
	t.Helper()
	n := Fill(t, path)
	if free > n {
		t.Fatalf("smallfs: cannot leave %d bytes free: the ballast holds %d", free, n)
	}
	if err := os.Truncate(path, n-free); err != nil {
		t.Fatalf("smallfs: truncate %s: %v", path, err)
	}
}

// Free removes the ballast at path: the space it held is free again.
func Free(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatalf("smallfs: free %s: %v", path, err)
	}
}
