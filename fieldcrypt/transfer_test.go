package fieldcrypt_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
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
