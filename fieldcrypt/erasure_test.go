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

// keys rotate and rotate-kek keep a tenant on the TenantKey hierarchy, and
// its values keep opening (only the outer, KEK layer is re-wrapped).
func TestRotationKeepsTenantKeys(t *testing.T) {
	d := testdb.New(t)
	ctx := bulkhead.AsMaintenance(context.Background(), "test")
	tmp := t.TempDir()
	dir, err := fieldcrypt.OpenTenantKeyDir(filepath.Join(tmp, "tenant-keys"))
	if err != nil {
		t.Fatal(err)
	}
	kr := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{TenantKeys: dir})
	tn := uuid.New()
	if err := kr.Provision(ctx, tn); err != nil {
		t.Fatal(err)
	}
	f := fieldcrypt.Field{Table: "documents", Column: "body", Row: uuid.New()}
	env, err := kr.Seal(scoped(t, tn), f, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate(ctx, tn); err != nil {
		t.Fatal(err)
	}
	next, _, err := fieldcrypt.LocalKEK(filepath.Join(tmp, "kek-2.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := kr.Rewrap(ctx, next, "", nil)
	if err != nil || rep.Rewrapped != 1 {
		t.Fatalf("rewrap: %+v, %v", rep, err)
	}
	fresh := fieldcrypt.NewKeyring(next, d.Keys, fieldcrypt.Options{TenantKeys: dir})
	if st, err := fresh.Status(ctx, tn); err != nil || st.Hierarchy != fieldcrypt.TenantKey || len(st.Keys) != 2 {
		t.Fatalf("status after rotate and rewrap: %+v, %v", st, err)
	}
	if got, err := fresh.Open(scoped(t, tn), f, env); err != nil || string(got) != "before" {
		t.Fatalf("open after rotate and rewrap: %q, %v", got, err)
	}
	// The outer layer needs the KEK: the tenant key dir with the old KEK
	// alone does not open the re-wrapped keyset.
	old := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{TenantKeys: dir})
	if _, err := old.Status(ctx, tn); err == nil {
		t.Fatal("the re-wrapped keyset opened with the old KEK")
	}
}
