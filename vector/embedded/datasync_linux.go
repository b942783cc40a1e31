package embedded

import (
	"os"
	"syscall"
)

// datasync flushes f's data, and its metadata only where a read needs it
// (fdatasync(2)).
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
