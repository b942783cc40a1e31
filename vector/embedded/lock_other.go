//go:build !unix

package embedded

import (
	"os"
	"path/filepath"
)

// lockDir only opens dir/LOCK on systems without flock: one Store per
// directory is then the operator's responsibility.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
}
