package smallfs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// Mount mounts a new tmpfs of size bytes (mode 0755, so that PostgreSQL's
// unprivileged user can enter it) on a new directory under the system's
// temporary directory and returns the directory. The file system is
// unmounted and the directory removed when the test ends, even if it
// failed: processes using it must be stopped by cleanups registered after
// Mount (they run first). Without root and CAP_SYS_ADMIN the test fails
// with a message saying so.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bhfull")
	if err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0755", size)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		os.Remove(dir)
		t.Fatalf("smallfs: mount -t tmpfs -o %s tmpfs %s: %v: the disk-full tests need a small file system of their own; "+
			"run them as root with CAP_SYS_ADMIN (CI does; in a container, --cap-add SYS_ADMIN or --privileged)", opts, dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// unmount unmounts dir, retrying while it is busy (a process still
// exiting), then detaching it lazily, and removes the directory.
func unmount(t testing.TB, dir string) {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Unmount(dir, 0); err == nil || !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if errors.Is(err, syscall.EBUSY) {
		t.Errorf("smallfs: %s still busy after 5 s; detaching it", dir)
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err != nil {
		t.Errorf("smallfs: unmount %s: %v", dir, err)
		return
	}
	os.Remove(dir)
}
