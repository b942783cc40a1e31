package fieldcrypt_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/google/uuid"
)

func TestTenantKeyDir(t *testing.T) {
	dir := t.TempDir()
	d, err := fieldcrypt.OpenTenantKeyDir(filepath.Join(dir, "tenant-keys"))
	if err != nil {
		t.Fatal(err)
	}
	t1, t2 := uuid.New(), uuid.New()
	k1, err := d.Create(t1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(t2); err != nil {
		t.Fatal(err)
	}
	ct, err := k1.Encrypt([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "tenant-keys", t1.String()+".key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	// A second create never replaces the key values are sealed under.
	if _, err := d.Create(t1); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second create: %v", err)
	}
	again, err := d.Open(t1)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := again.Decrypt(ct, nil); err != nil || !bytes.Equal(pt, []byte("secret")) {
		t.Fatalf("reopened key: %q, %v", pt, err)
	}
	// A file copied to another tenant's name is refused.
	b, _ := os.ReadFile(filepath.Join(dir, "tenant-keys", t1.String()+".key"))
	t3 := uuid.New()
	if err := os.WriteFile(filepath.Join(dir, "tenant-keys", t3.String()+".key"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(t3); !errors.Is(err, fieldcrypt.ErrUndecryptable) {
		t.Fatalf("copied key file: %v", err)
	}
	if err := d.Destroy(t1); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(t1); err != nil {
		t.Fatalf("destroy twice: %v", err)
	}
	if _, err := d.Open(t1); !errors.Is(err, fieldcrypt.ErrNoKeyset) {
		t.Fatalf("destroyed key: %v", err)
	}
	if _, err := d.Open(t2); err != nil {
		t.Fatalf("other tenant after destroy: %v", err)
	}
	ids, err := d.Tenants()
	if err != nil || len(ids) != 2 {
		t.Fatalf("tenants: %v, %v", ids, err)
	}
	if err := os.Chmod(filepath.Join(dir, "tenant-keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := fieldcrypt.OpenTenantKeyDir(filepath.Join(dir, "tenant-keys")); err == nil {
		t.Fatal("a directory others can read was accepted")
	}
}
