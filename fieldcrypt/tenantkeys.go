package fieldcrypt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// TenantKeyDir holds the material whose destruction erases a tenant even
// from earlier database backups: one tenant key (a random AES-256-GCM
// keyset) per tenant, in a directory kept outside the database and its
// backups, one 0600 file per tenant in a 0700 directory.
//
// A tenant's keysets are wrapped twice, the tenant key inside and the KEK
// outside (see Keyring), so the tenant key sits alongside the KEK, not
// under it: destroying the tenant key's file suffices to make every copy
// of the wrapped keysets (live database, dumps) unreadable, while the
// directory alone opens nothing without the database's wrapped keysets
// and the KEK. KEK rotation re-wraps only the outer layer; these files are
// never rewritten. A copy of this directory (a backup of it) defeats
// erasure for the tenants it holds.
type TenantKeyDir struct {
	dir string
}

var tenantKeyMagic = []byte("bulkhead-tenant-key v1\n")

// OpenTenantKeyDir returns the key directory at dir, creating it 0700.
func OpenTenantKeyDir(dir string) (*TenantKeyDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("fieldcrypt: tenant key directory %s is mode %v: others can read it (want 0700)", dir, fi.Mode().Perm())
	}
	return &TenantKeyDir{dir: dir}, nil
}

func (d *TenantKeyDir) path(tenant uuid.UUID) string {
	return filepath.Join(d.dir, tenant.String()+".key")
}

// Create writes a new tenant key for tenant and returns it. The file is written to a temporary name, fsynced, linked into place
// (never replacing an existing key: that would lose every value under it)
// and the directory fsynced, so a returned key is durable. If the tenant
// already has a key, Create returns an error wrapping os.ErrExist.
func (d *TenantKeyDir) Create(tenant uuid.UUID) (tink.AEAD, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(tenantKeyMagic)
	buf.Write(tenant[:])
	if err := insecurecleartextkeyset.Write(h, keyset.NewBinaryWriter(&buf)); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(d.dir, ".tmp-"+tenant.String()+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // after the link, only the temporary name goes
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), d.path(tenant)); err != nil {
		return nil, fmt.Errorf("fieldcrypt: tenant %s's key: %w", tenant, err)
	}
	if err := os.Remove(tmp.Name()); err != nil {
		return nil, err
	}
	if err := syncDir(d.dir); err != nil {
		return nil, err
	}
	return aead.New(h)
}

// Open returns the tenant's key. A missing file is ErrNoKeyset; a file that
// is not this tenant's key is ErrUndecryptable; neither affects other
// tenants.
func (d *TenantKeyDir) Open(tenant uuid.UUID) (tink.AEAD, error) {
	b, err := os.ReadFile(d.path(tenant))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: tenant %s has no tenant key", ErrNoKeyset, tenant)
	}
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(b, tenantKeyMagic)
	if !ok {
		return nil, fmt.Errorf("%w: tenant %s's key file is not a tenant key", ErrUndecryptable, tenant)
	}
	if len(rest) < 16 || !bytes.Equal(rest[:16], tenant[:]) {
		return nil, fmt.Errorf("%w: tenant %s's key file names another tenant", ErrUndecryptable, tenant)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(rest[16:])))
	if err != nil {
		return nil, fmt.Errorf("%w: tenant %s's key file does not parse", ErrUndecryptable, tenant)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("%w: tenant %s's key: %v", ErrUndecryptable, tenant, err)
	}
	return a, nil
}

// Destroy removes the tenant's key and fsyncs the directory; when it
// returns nil the key is gone from this directory (not from copies of it).
// Destroying a key that is already gone is not an error.
func (d *TenantKeyDir) Destroy(tenant uuid.UUID) error {
	if err := os.Remove(d.path(tenant)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(d.dir)
}

// Tenants lists the tenants that have a key in the directory.
func (d *TenantKeyDir) Tenants() ([]uuid.UUID, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var out []uuid.UUID
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok {
			continue
		}
		if id, err := uuid.Parse(name); err == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
