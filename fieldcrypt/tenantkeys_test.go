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
	kek, _, err := fieldcrypt.LocalKEK(filepath.Join(dir, "kek"), true)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := fieldcrypt.LocalKEK(filepath.Join(dir, "other"), true)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fieldcrypt.OpenTenantKeyDir(filepath.Join(dir, "tenant-keys"))
	if err != nil {
		t.Fatal(err)
	}
	byID := func(id string) (*fieldcrypt.KEK, error) {
		if id == kek.ID() {
			return kek, nil
		}
		return nil, fieldcrypt.ErrKEKUnavailable
	}
	t1, t2 := uuid.New(), uuid.New()
	k1, err := d.Create(t1, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(t2, kek); err != nil {
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
	if _, err := d.Create(t1, kek); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second create: %v", err)
	}
	again, err := d.Open(t1, byID)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := again.Decrypt(ct, nil); err != nil || !bytes.Equal(pt, []byte("secret")) {
		t.Fatalf("reopened key: %q, %v", pt, err)
	}
	// The directory alone (another KEK) opens nothing.
	if _, err := d.Open(t1, func(string) (*fieldcrypt.KEK, error) { return other, nil }); !errors.Is(err, fieldcrypt.ErrUndecryptable) {
		t.Fatalf("open with another KEK: %v", err)
	}
	// A file moved to another tenant's name does not unwrap.
	b, _ := os.ReadFile(filepath.Join(dir, "tenant-keys", t1.String()+".key"))
	t3 := uuid.New()
	if err := os.WriteFile(filepath.Join(dir, "tenant-keys", t3.String()+".key"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(t3, byID); !errors.Is(err, fieldcrypt.ErrUndecryptable) {
		t.Fatalf("copied key file: %v", err)
	}
	if err := d.Destroy(t1); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(t1); err != nil {
		t.Fatalf("destroy twice: %v", err)
	}
	if _, err := d.Open(t1, byID); !errors.Is(err, fieldcrypt.ErrNoKeyset) {
		t.Fatalf("destroyed key: %v", err)
	}
	if _, err := d.Open(t2, byID); err != nil {
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
