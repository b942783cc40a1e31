package fieldcrypt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/hybrid"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/streamingaead"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Moving a tenant between bulkheads (tenant export / import).
//
// The target publishes a recipient key: a Tink HPKE keyset (DHKEM X25519,
// HKDF-SHA256, AES-256-GCM). Its private half never leaves the target's
// data dir, stored wrapped by the target's KEK in a 0600 file; its public
// half is what the source needs. An archive is sealed to it:
//
//	"BULKHEAD-TENANT-ARCHIVE v1\n"
//	uint16 length + recipient fingerprint (hex)
//	uint32 length + HPKE ciphertext of a fresh streaming-AEAD keyset
//	Tink streaming AEAD (AES-256-GCM-HKDF, 1 MiB segments) of the payload,
//	with everything before it as associated data
//
// Every byte is authenticated: a changed header, a changed or reordered
// segment, or a truncated stream fails to open (ErrArchive). HPKE gives
// confidentiality to the recipient, not the sender's identity: anyone with
// the public key can make an archive, so the operator checks the archive's
// SHA-256 against the one the exporter printed (docs/OPERATIONS.md).

// ErrArchive means an archive is not one this recipient can open intact:
// wrong recipient, tampered or truncated. Nothing it holds may be used.
var ErrArchive = errors.New("tenant archive does not open")

const (
	archiveMagic   = "BULKHEAD-TENANT-ARCHIVE v1\n"
	recipientMagic = "bulkhead-recipient-key v1"
	importKeyMagic = "bulkhead-import-key v1"
)

// importKeyAD binds the wrapped private key to its purpose.
var importKeyAD = []byte("bulkhead/import-key/v1")

// Recipient is the private half of a recipient key: it opens archives
// sealed to its public half. It prints no key material.
type Recipient struct {
	dec         tink.HybridDecrypt
	fingerprint string
}

// Fingerprint names the recipient key (not secret).
func (r *Recipient) Fingerprint() string { return r.fingerprint }

// String names the recipient without key material.
func (r *Recipient) String() string { return "Recipient(" + r.fingerprint + ")" }

// RecipientPublic is the public half of a recipient key.
type RecipientPublic struct {
	enc         tink.HybridEncrypt
	fingerprint string
}

// Fingerprint names the recipient key (not secret).
func (p *RecipientPublic) Fingerprint() string { return p.fingerprint }

type importKeyFile struct {
	Format      string          `json:"format"`
	KEK         string          `json:"kek"`
	Fingerprint string          `json:"fingerprint"`
	Private     []byte          `json:"private"` // the HPKE keyset, encrypted by the KEK
	Public      json.RawMessage `json:"public"`
}

type publicFile struct {
	Format      string          `json:"format"`
	Fingerprint string          `json:"fingerprint"`
	Keyset      json.RawMessage `json:"keyset"`
}

func fingerprintOf(pub *keyset.Handle) (string, []byte, error) {
	var buf bytes.Buffer
	if err := pub.WriteWithNoSecrets(keyset.NewJSONWriter(&buf)); err != nil {
		return "", nil, err
	}
	var bin bytes.Buffer
	if err := pub.WriteWithNoSecrets(keyset.NewBinaryWriter(&bin)); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(bin.Bytes())
	return hex.EncodeToString(sum[:16]), buf.Bytes(), nil
}

// LoadOrCreateImportKey returns the recipient key kept in path, creating
// it (mode 0600, O_EXCL) if missing, wrapped by kek. created reports a new
// key. It also returns the public half as a file's content, to hand to the
// exporter. A file others can read, or one wrapped by another KEK, is an
// error naming the fix; no error names key material.
func LoadOrCreateImportKey(path string, kek *KEK) (r *Recipient, public []byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if b, err = newImportKey(kek); err != nil {
			return nil, nil, false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, nil, false, fmt.Errorf("create import key %s: %w", path, err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			os.Remove(path)
			return nil, nil, false, fmt.Errorf("write import key %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(path)
			return nil, nil, false, fmt.Errorf("write import key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, nil, false, err
		}
		created = true
	} else if err != nil {
		return nil, nil, false, fmt.Errorf("read import key %s: %w", path, err)
	} else if fi, err := os.Stat(path); err != nil {
		return nil, nil, false, err
	} else if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, false, fmt.Errorf("import key %s is accessible to others (mode %v): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	var f importKeyFile
	if err := json.Unmarshal(b, &f); err != nil || f.Format != importKeyMagic {
		return nil, nil, false, fmt.Errorf("import key %s is not a bulkhead import key", path)
	}
	if f.KEK != kek.ID() {
		return nil, nil, false, fmt.Errorf("import key %s is wrapped by key-encryption key %s, this bulkhead uses %s: move it aside and run bulkhead tenant import-key again (then re-export to the new key)", path, f.KEK, kek.ID())
	}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(f.Private)), kek.aead, importKeyAD)
	if err != nil {
		return nil, nil, false, fmt.Errorf("import key %s does not unwrap with key-encryption key %s", path, kek.ID())
	}
	dec, err := hybrid.NewHybridDecrypt(h)
	if err != nil {
		return nil, nil, false, fmt.Errorf("import key %s: %w", path, err)
	}
	pub, err := json.Marshal(publicFile{Format: recipientMagic, Fingerprint: f.Fingerprint, Keyset: f.Public})
	if err != nil {
		return nil, nil, false, err
	}
	return &Recipient{dec: dec, fingerprint: f.Fingerprint}, append(pub, '\n'), created, nil
}

func newImportKey(kek *KEK) ([]byte, error) {
	h, err := keyset.NewHandle(hybrid.DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM_Raw_Key_Template())
	if err != nil {
		return nil, err
	}
	pub, err := h.Public()
	if err != nil {
		return nil, err
	}
	fp, pubJSON, err := fingerprintOf(pub)
	if err != nil {
		return nil, err
	}
	var priv bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&priv), kek.aead, importKeyAD); err != nil {
		return nil, err
	}
	return json.MarshalIndent(importKeyFile{Format: importKeyMagic, KEK: kek.ID(), Fingerprint: fp, Private: priv.Bytes(), Public: pubJSON}, "", "  ")
}

// ParseRecipientPublic reads a public recipient key as printed by
// LoadOrCreateImportKey. It refuses anything holding secret key material
// or not an HPKE public key.
func ParseRecipientPublic(b []byte) (*RecipientPublic, error) {
	var f publicFile
	if err := json.Unmarshal(b, &f); err != nil || f.Format != recipientMagic {
		return nil, errors.New("not a bulkhead recipient key (print one on the target with bulkhead tenant import-key)")
	}
	h, err := keyset.ReadWithNoSecrets(keyset.NewJSONReader(bytes.NewReader(f.Keyset)))
	if err != nil {
		return nil, fmt.Errorf("recipient key: %w", err)
	}
	fp, _, err := fingerprintOf(h)
	if err != nil {
		return nil, err
	}
	if fp != f.Fingerprint {
		return nil, fmt.Errorf("recipient key: fingerprint %s does not match its keyset (%s)", f.Fingerprint, fp)
	}
	enc, err := hybrid.NewHybridEncrypt(h)
	if err != nil {
		return nil, fmt.Errorf("recipient key is not a hybrid public key: %w", err)
	}
	return &RecipientPublic{enc: enc, fingerprint: fp}, nil
}

func archiveHeader(fingerprint string, sealedKey []byte) []byte {
	h := []byte(archiveMagic)
	h = binary.BigEndian.AppendUint16(h, uint16(len(fingerprint)))
	h = append(h, fingerprint...)
	h = binary.BigEndian.AppendUint32(h, uint32(len(sealedKey)))
	return append(h, sealedKey...)
}

// SealArchive writes an archive header for to on w and returns a writer
// that encrypts the payload; Close must be called to write the final
// segment (an archive without it does not open).
func SealArchive(w io.Writer, to *RecipientPublic) (io.WriteCloser, error) {
	kh, err := keyset.NewHandle(streamingaead.AES256GCMHKDF1MBKeyTemplate())
	if err != nil {
		return nil, err
	}
	s, err := streamingaead.New(kh)
	if err != nil {
		return nil, err
	}
	var ks bytes.Buffer
	if err := insecurecleartextkeyset.Write(kh, keyset.NewBinaryWriter(&ks)); err != nil {
		return nil, err
	}
	sealedKey, err := to.enc.Encrypt(ks.Bytes(), []byte(archiveMagic+to.fingerprint))
	if err != nil {
		return nil, fmt.Errorf("seal archive key: %w", err)
	}
	header := archiveHeader(to.fingerprint, sealedKey)
	if _, err := w.Write(header); err != nil {
		return nil, fmt.Errorf("write archive header: %w", err)
	}
	return s.NewEncryptingWriter(w, header)
}

// OpenArchive reads an archive's header from r and returns a reader of its
// payload. The payload is authenticated segment by segment; any error
// from the reader, including at the end (a truncated archive), is
// ErrArchive and means nothing read from it may be kept. It returns
// ErrArchive at once for a file that is not an archive or one sealed to
// another recipient (naming both fingerprints).
func OpenArchive(r io.Reader, rcpt *Recipient) (io.Reader, error) {
	magic := make([]byte, len(archiveMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != archiveMagic {
		return nil, fmt.Errorf("%w: not a bulkhead tenant archive", ErrArchive)
	}
	var n16 [2]byte
	if _, err := io.ReadFull(r, n16[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated header", ErrArchive)
	}
	fp := make([]byte, binary.BigEndian.Uint16(n16[:]))
	if len(fp) > 128 {
		return nil, fmt.Errorf("%w: malformed header", ErrArchive)
	}
	if _, err := io.ReadFull(r, fp); err != nil {
		return nil, fmt.Errorf("%w: truncated header", ErrArchive)
	}
	if string(fp) != rcpt.fingerprint {
		return nil, fmt.Errorf("%w: it is encrypted to recipient key %s, this bulkhead's import key is %s", ErrArchive, fp, rcpt.fingerprint)
	}
	var n32 [4]byte
	if _, err := io.ReadFull(r, n32[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated header", ErrArchive)
	}
	n := binary.BigEndian.Uint32(n32[:])
	if n > 1<<16 {
		return nil, fmt.Errorf("%w: malformed header", ErrArchive)
	}
	sealedKey := make([]byte, n)
	if _, err := io.ReadFull(r, sealedKey); err != nil {
		return nil, fmt.Errorf("%w: truncated header", ErrArchive)
	}
	ks, err := rcpt.dec.Decrypt(sealedKey, []byte(archiveMagic+string(fp)))
	if err != nil {
		return nil, fmt.Errorf("%w: its key does not open with this bulkhead's import key (tampered, or sealed to another key with the same name)", ErrArchive)
	}
	kh, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(ks)))
	if err != nil {
		return nil, fmt.Errorf("%w: malformed archive key", ErrArchive)
	}
	s, err := streamingaead.New(kh)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed archive key", ErrArchive)
	}
	dr, err := s.NewDecryptingReader(r, archiveHeader(string(fp), sealedKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrArchive, err)
	}
	return archiveReader{dr}, nil
}

// archiveReader reports every decryption failure as ErrArchive.
type archiveReader struct{ r io.Reader }

func (a archiveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("%w: tampered or truncated (%v)", ErrArchive, err)
	}
	return n, err
}

// TenantKeys is a tenant's keysets in clear, to travel inside an archive
// sealed to the target and nowhere else. It prints and marshals to JSON
// as "[redacted]"; MarshalBinary is the only way to its bytes.
type TenantKeys struct {
	aead, prf []byte // Tink binary keysets, cleartext
	version   int64
}

// String redacts.
func (TenantKeys) String() string { return "[redacted]" }

// GoString redacts.
func (TenantKeys) GoString() string { return "[redacted]" }

// MarshalJSON redacts: key material never reaches JSON by accident.
func (TenantKeys) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// Version is the source keyset's version (tenants.key_version mirrors it).
func (t TenantKeys) Version() int64 { return t.version }

// MarshalBinary encodes the keysets (key material: write it only into a
// sealed archive).
func (t TenantKeys) MarshalBinary() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, uint64(t.version))
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.aead)))
	b = append(b, t.aead...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.prf)))
	return append(b, t.prf...), nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (t *TenantKeys) UnmarshalBinary(b []byte) error {
	bad := errors.New("fieldcrypt: malformed tenant keys")
	if len(b) < 12 {
		return bad
	}
	t.version = int64(binary.BigEndian.Uint64(b))
	b = b[8:]
	var parts [2][]byte
	for i := range parts {
		if len(b) < 4 {
			return bad
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(len(b)) < uint64(n) {
			return bad
		}
		parts[i], b = b[:n], b[n:]
	}
	if len(b) != 0 || t.version < 1 {
		return bad
	}
	t.aead, t.prf = parts[0], parts[1]
	return nil
}

// ExportKeys returns tenant's keysets unwrapped, for an archive sealed to
// another bulkhead. It returns ErrNoKeyset if the tenant has none.
func (k *Keyring) ExportKeys(ctx context.Context, tenant uuid.UUID) (TenantKeys, error) {
	w, err := k.store.Load(ctx, tenant)
	if err != nil {
		return TenantKeys{}, err
	}
	e, err := k.unwrap(ctx, tenant, w)
	if err != nil {
		return TenantKeys{}, err
	}
	var a, p bytes.Buffer
	if err := insecurecleartextkeyset.Write(e.handle, keyset.NewBinaryWriter(&a)); err != nil {
		return TenantKeys{}, err
	}
	if err := insecurecleartextkeyset.Write(e.prfHandle, keyset.NewBinaryWriter(&p)); err != nil {
		return TenantKeys{}, err
	}
	return TenantKeys{aead: a.Bytes(), prf: p.Bytes(), version: w.Version}, nil
}

// ImportKeys stores keys as tenant's keysets, wrapped the way this
// keyring wraps new tenants' (a new tenant key in its tenant key
// directory if it has one, and its KEK): values sealed by the source open
// here, under this bulkhead's keys only. It refuses, with an error
// wrapping bulkhead.ErrConflict, a tenant that already has keysets, and
// keysets that are not an AEAD and a PRF keyset.
func (k *Keyring) ImportKeys(ctx context.Context, tenant uuid.UUID, keys TenantKeys) error {
	ah, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(keys.aead)))
	if err != nil {
		return fmt.Errorf("fieldcrypt: import keys of tenant %s: malformed AEAD keyset", tenant)
	}
	ph, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(keys.prf)))
	if err != nil {
		return fmt.Errorf("fieldcrypt: import keys of tenant %s: malformed PRF keyset", tenant)
	}
	if _, err := aead.New(ah); err != nil {
		return fmt.Errorf("fieldcrypt: import keys of tenant %s: not an AEAD keyset", tenant)
	}
	if _, err := prf.NewPRFSet(ph); err != nil {
		return fmt.Errorf("fieldcrypt: import keys of tenant %s: not a PRF keyset", tenant)
	}
	if _, err := k.store.Load(ctx, tenant); err == nil {
		return fmt.Errorf("fieldcrypt: import keys of tenant %s: it already has keysets here: %w", tenant, bulkhead.ErrConflict)
	} else if !errors.Is(err, ErrNoKeyset) {
		return err
	}
	if err := k.storeNew(ctx, tenant, ah, ph, keys.version); err != nil {
		return fmt.Errorf("fieldcrypt: import keys of tenant %s: %w", tenant, err)
	}
	k.forget(tenant)
	return nil
}
