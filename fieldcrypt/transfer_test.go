package fieldcrypt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/uuid"
)

func mustRecipient(t *testing.T) (*fieldcrypt.Recipient, *fieldcrypt.RecipientPublic) {
	t.Helper()
	dir := t.TempDir()
	kek, _, err := fieldcrypt.LocalKEK(filepath.Join(dir, "kek.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "import-key.json")
	r, pub, created, err := fieldcrypt.LoadOrCreateImportKey(path, kek)
	if err != nil || !created {
		t.Fatalf("create import key: created %v, %v", created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("import key file mode: %v %v", fi.Mode(), err)
	}
	again, pub2, created, err := fieldcrypt.LoadOrCreateImportKey(path, kek)
	if err != nil || created || !bytes.Equal(pub, pub2) || again.Fingerprint() != r.Fingerprint() {
		t.Fatalf("reload import key: created %v, same public %v, %v", created, bytes.Equal(pub, pub2), err)
	}
	if bytes.Contains(pub, []byte(`"private"`)) {
		t.Fatalf("public key carries the private part: %s", pub)
	}
	p, err := fieldcrypt.ParseRecipientPublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _, err := fieldcrypt.LoadOrCreateImportKey(path, mustOtherKEK(t))
	if err == nil || other != nil {
		t.Fatalf("import key opened with another KEK: %v", err)
	}
	return r, p
}

func mustOtherKEK(t *testing.T) *fieldcrypt.KEK {
	t.Helper()
	k, _, err := fieldcrypt.LocalKEK(filepath.Join(t.TempDir(), "other.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t *testing.T, to *fieldcrypt.RecipientPublic, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := fieldcrypt.SealArchive(&buf, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(r *fieldcrypt.Recipient, archive []byte) ([]byte, error) {
	pr, err := fieldcrypt.OpenArchive(bytes.NewReader(archive), r)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(pr)
}

// TestArchiveOpensOnlyIntactForItsRecipient: an archive opens to exactly
// its payload for its recipient; a truncated one, one with any single
// byte changed (header, key or payload) and one for another recipient
// are ErrArchive, and the payload is never in the archive's bytes.
func TestArchiveOpensOnlyIntactForItsRecipient(t *testing.T) {
	r, pub := mustRecipient(t)
	payload := bytes.Repeat([]byte("confidential merger terms "), 100000) // ~2.6 MB: several segments
	a := seal(t, pub, payload)
	got, err := open(r, a)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("intact archive: %d bytes, %v", len(got), err)
	}
	if bytes.Contains(a, []byte("confidential merger")) {
		t.Fatal("the archive holds the payload in clear")
	}
	for _, cut := range []int{len(a) - 1, len(a) - 100, len(a) / 2, 40, 10} {
		if _, err := open(r, a[:cut]); !errors.Is(err, fieldcrypt.ErrArchive) {
			t.Errorf("truncated to %d of %d bytes: %v", cut, len(a), err)
		}
	}
	for _, at := range []int{5, 30, 60, 200, len(a) / 2, len(a) - 5} {
		b := bytes.Clone(a)
		b[at] ^= 0x01
		if _, err := open(r, b); !errors.Is(err, fieldcrypt.ErrArchive) {
			t.Errorf("byte %d flipped: %v", at, err)
		}
	}
	other, _ := mustRecipient(t)
	if _, err := open(other, a); !errors.Is(err, fieldcrypt.ErrArchive) {
		t.Errorf("another recipient: %v", err)
	}
	if _, err := fieldcrypt.ParseRecipientPublic([]byte(`{"format":"x"}`)); err == nil {
		t.Error("a non-key parsed as a recipient key")
	}
}

// TestImportedKeysOpenUnderTheTargetsKEKOnly: a tenant's keysets exported
// from one database and imported into another whose KEK differs open the
// values sealed at the source; stored at the target they are wrapped by
// the target's KEK and a new tenant key (the source's KEK does not unwrap
// them); a second import is ErrConflict; the exported keys never print.
func TestImportedKeysOpenUnderTheTargetsKEKOnly(t *testing.T) {
	src, tenant, _ := keyring(t)
	ctx := bulkhead.AsMaintenance(context.Background(), "test")
	f := fieldcrypt.Field{Table: "documents", Column: "content_sealed", Row: uuid.New()}
	env, err := src.Keyring.Seal(scoped(t, tenant), f, []byte("confidential merger terms"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := src.Keyring.ExportKeys(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v %#v", keys, keys, keys); strings.Count(s, "[redacted]") != 3 {
		t.Errorf("exported keys print: %s", s)
	}
	if j, _ := json.Marshal(keys); string(j) != `"[redacted]"` {
		t.Errorf("exported keys marshal to JSON: %s", j)
	}
	b, err := keys.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back fieldcrypt.TenantKeys
	if err := back.UnmarshalBinary(b[:len(b)-1]); err == nil {
		t.Error("truncated keys unmarshalled")
	}
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}

	dst := testdb.New(t)
	kekB := mustOtherKEK(t)
	if err := dst.Keys.RecordKEK(ctx, kekB, ""); err != nil {
		t.Fatal(err)
	}
	dir, err := fieldcrypt.OpenTenantKeyDir(filepath.Join(t.TempDir(), "tenant-keys"))
	if err != nil {
		t.Fatal(err)
	}
	krB := fieldcrypt.NewKeyring(kekB, dst.Keys, fieldcrypt.Options{TenantKeys: dir})
	if err := krB.ImportKeys(ctx, tenant, back); err != nil {
		t.Fatal(err)
	}
	if got, err := krB.Open(scoped(t, tenant), f, env); err != nil || string(got) != "confidential merger terms" {
		t.Fatalf("the source's value on the target: %q, %v", got, err)
	}
	if st, err := krB.Status(ctx, tenant); err != nil || st.Hierarchy != fieldcrypt.TenantKey || st.Version != keys.Version() {
		t.Errorf("target's keyset: %+v, %v (source version %d)", st, err, keys.Version())
	}
	if err := krB.ImportKeys(ctx, tenant, back); !errors.Is(err, bulkhead.ErrConflict) {
		t.Errorf("second import: %v", err)
	}
	withSourceKEK := fieldcrypt.NewKeyring(testdb.KEK(), dst.Keys, fieldcrypt.Options{TenantKeys: dir})
	if _, err := withSourceKEK.Open(scoped(t, tenant), f, env); err == nil {
		t.Error("the source's KEK opens the target's stored keyset")
	}
}
