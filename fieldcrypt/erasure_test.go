package fieldcrypt_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/uuid"
)

// Tenants on the TenantKey hierarchy: a keyset restored from before the
// shred (what a database backup holds) no longer opens, the other tenant's
// does. Tenants on KEKOnly are migrated online and keep their values.
func TestErasureHoldsAgainstRestoredKeyset(t *testing.T) {
	d, legacy, _ := keyring(t) // provisioned KEK-only by testdb's keyring
	ctx := bulkhead.AsMaintenance(context.Background(), "test")
	f := fieldcrypt.Field{Table: "documents", Column: "body", Row: uuid.New()}
	oldEnv, err := d.Keyring.Seal(scoped(t, legacy), f, []byte("legacy secret"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := fieldcrypt.OpenTenantKeyDir(filepath.Join(t.TempDir(), "tenant-keys"))
	if err != nil {
		t.Fatal(err)
	}
	kr := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{TenantKeys: dir})
	gone, kept := uuid.New(), uuid.New()
	for _, tn := range []uuid.UUID{gone, kept} {
		if err := kr.Provision(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	for tn, want := range map[uuid.UUID]fieldcrypt.Hierarchy{legacy: fieldcrypt.KEKOnly, gone: fieldcrypt.TenantKey} {
		if st, err := kr.Status(ctx, tn); err != nil || st.Hierarchy != want {
			t.Fatalf("status of %s: %+v, %v", tn, st, err)
		}
	}
	rep, err := kr.MigrateErasure(ctx, nil)
	if err != nil || rep.Migrated < 1 || len(rep.Failed) != 0 || rep.Skipped != 2 {
		t.Fatalf("migrate: %+v, %v", rep, err)
	}
	if st, err := kr.Status(ctx, legacy); err != nil || st.Hierarchy != fieldcrypt.TenantKey {
		t.Fatalf("after migration: %+v, %v", st, err)
	}
	if got, err := kr.Open(scoped(t, legacy), f, oldEnv); err != nil || string(got) != "legacy secret" {
		t.Fatalf("migrated tenant's old value: %q, %v", got, err)
	}
	if rep, err := kr.MigrateErasure(ctx, nil); err != nil || rep.Migrated != 0 {
		t.Fatalf("second migrate: %+v, %v", rep, err)
	}

	envGone, err := kr.Seal(scoped(t, gone), f, []byte("erase me"))
	if err != nil {
		t.Fatal(err)
	}
	envKept, err := kr.Seal(scoped(t, kept), f, []byte("keep me"))
	if err != nil {
		t.Fatal(err)
	}
	backup, err := d.Keys.Load(ctx, gone) // what a dump taken now holds
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.Shred(ctx, gone, "test"); err != nil {
		t.Fatal(err)
	}
	if err := d.Keys.Save(ctx, gone, backup, 0); err != nil { // restore it
		t.Fatal(err)
	}
	fresh := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{TenantKeys: dir})
	got, err := fresh.Open(scoped(t, gone), f, envGone)
	if !errors.Is(err, fieldcrypt.ErrNoKeyset) || got != nil {
		t.Fatalf("shredded tenant restored from a backup: %q, %v", got, err)
	}
	if got, err := fresh.Open(scoped(t, kept), f, envKept); err != nil || !bytes.Equal(got, []byte("keep me")) {
		t.Fatalf("other tenant: %q, %v", got, err)
	}
}
