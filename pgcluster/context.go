package pgcluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ContextExtension is the PostgreSQL extension every cluster preloads
// (shared_preload_libraries): it makes the tenant context settings
// superuser-only and lets bulkhead enter them only with a token signed with
// the cluster's context key (see pgext/ and docs/SECURITY.md).
const ContextExtension = "bulkhead_context"

// contextKeyFile is the key file's name in the cluster directory, the
// extension's default for bulkhead.context_key_file.
const contextKeyFile = "bulkhead_context.key"

// ErrNoContextExtension means the bulkhead_context extension is not
// installed for the PostgreSQL server in use.
var ErrNoContextExtension = errors.New("the bulkhead_context PostgreSQL extension is not installed: build and install it with scripts/deps.sh as root (make deps), which needs postgresql-server-dev for your PostgreSQL version")

// checkContextExtension fails before start-up, with the fix, when the
// extension's library is missing (postgres would refuse to start with a
// less helpful message).
func (c *Cluster) checkContextExtension() error {
	lib := filepath.Join(filepath.Dir(c.bin.Dir), "lib", ContextExtension+".so")
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("%w (looked for %s)", ErrNoContextExtension, lib)
	}
	return nil
}

// ensureContextKey creates the context key file (32 random bytes, hex,
// mode 0600, owned by the PostgreSQL user) in the cluster directory if it
// is missing. Only that OS user (and root) can read it: no database role,
// not even one that may read all settings, can.
func (c *Cluster) ensureContextKey(cred *syscall.Credential) error {
	path := filepath.Join(c.pgdata, contextKeyFile)
	if _, err := os.Lstat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("context key %s: %w", path, err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create context key %s: %w", path, err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && cred != nil {
		err = os.Chown(path, int(cred.Uid), int(cred.Gid))
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write context key %s: %w", path, err)
	}
	return nil
}

// ContextKey returns the key bulkhead signs transaction contexts with (32
// bytes), read from the cluster directory. Keep it out of logs: whoever
// holds it can enter any tenant's context as the runtime role.
func (c *Cluster) ContextKey() ([]byte, error) {
	path := filepath.Join(c.pgdata, contextKeyFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read context key: %w (it is created when bulkhead starts the cluster)", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("context key %s must hold 64 hex digits", path)
	}
	return key, nil
}
