package embedded

import (
	"errors"
	"syscall"
)

// isNoSpace reports whether err is the file system refusing a write for
// lack of space: ENOSPC (the file system is full) or EDQUOT (the user's
// quota is). Either can come from a write, an fsync (delayed allocation),
// a file creation or a rename.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
