//go:build !linux

package smallfs

import (
	"runtime"
	"testing"
)

// Mount fails the test: small file systems are made with tmpfs, on Linux.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	t.Fatalf("smallfs: the disk-full tests mount a tmpfs and need Linux (this is %s)", runtime.GOOS)
	return ""
}
