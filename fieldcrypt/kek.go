package fieldcrypt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/tink-crypto/tink-go-awskms/v2/integration/awskms"
	"github.com/tink-crypto/tink-go-gcpkms/v2/integration/gcpkms"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// KEK is a key-encryption key: it wraps and unwraps tenants' keysets.
type KEK struct {
	aead tink.AEAD
	id   string // names the KEK (not secret): recorded with each wrapped keyset
}

// ID names the KEK (a fingerprint for local keys, the URI for KMS keys).
func (k *KEK) ID() string { return k.id }

// String names the KEK without key material.
func (k *KEK) String() string { return "KEK(" + k.id + ")" }

// LocalKEK loads the key-encryption key from a local Tink keyset file. With
// create, a missing file is generated (AES-256-GCM, mode 0600) and created
// reports it. A file others can read or write is refused, as is a file
// that is not a keyset.
func LocalKEK(path string, create bool) (k *KEK, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, false, fmt.Errorf("key-encryption key file %s does not exist", path)
		}
		h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer
		if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
			return nil, false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create key-encryption key file %s: %w", path, err)
		}
		if _, err := f.Write(buf.Bytes()); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("write key-encryption key file %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, false, err
		}
		k, err := localFromHandle(h)
		return k, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("read key-encryption key file %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("key-encryption key file %s is accessible to others (mode %v): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(b)))
	if err != nil {
		return nil, false, fmt.Errorf("key-encryption key file %s is not a Tink keyset", path)
	}
	k, err = localFromHandle(h)
	return k, false, err
}

func localFromHandle(h *keyset.Handle) (*KEK, error) {
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key is not an AEAD keyset: %w", err)
	}
	// The id fingerprints the keyset's public structure (key ids and
	// types), never key material.
	info := h.KeysetInfo()
	fp := fmt.Sprintf("primary=%d", info.GetPrimaryKeyId())
	for _, ki := range info.GetKeyInfo() {
		fp += fmt.Sprintf(";%d/%s/%d", ki.GetKeyId(), ki.GetTypeUrl(), ki.GetStatus())
	}
	sum := sha256.Sum256([]byte(fp))
	return &KEK{aead: a, id: "local:" + hex.EncodeToString(sum[:8])}, nil
}

// KMSKEK uses a key held by a KMS through Tink's extensions:
// aws-kms://arn:aws:kms:..., gcp-kms://projects/.../cryptoKeys/...,
// hcvault://host/transit/keys/NAME (token from VAULT_TOKEN). Credentials
// come from each provider's usual environment.
func KMSKEK(ctx context.Context, uri string) (*KEK, error) {
	var client registry.KMSClient
	var err error
	switch {
	case strings.HasPrefix(uri, "aws-kms://"):
		client, err = awskms.NewClientWithOptions(uri)
	case strings.HasPrefix(uri, "gcp-kms://"):
		client, err = gcpkms.NewClientWithOptions(ctx, uri)
	case strings.HasPrefix(uri, "hcvault://"):
		client, err = hcvault.NewClient(uri, nil, os.Getenv("VAULT_TOKEN"))
	default:
		return nil, fmt.Errorf("KEK URI %q: want aws-kms://, gcp-kms:// or hcvault://", uri)
	}
	if err != nil {
		return nil, fmt.Errorf("KMS client for %s: %w", uri, err)
	}
	a, err := client.GetAEAD(uri)
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", uri, err)
	}
	return &KEK{aead: a, id: uri}, nil
}

// checkPlaintext is what a KEK check value seals: a database records it
// under the KEK that wrapped its keysets, so the wrong KEK is detected at
// start-up, before any request.
var checkPlaintext = []byte("bulkhead key-encryption key check v1")

// CheckValue seals the check plaintext with k, for a Store to record.
func (k *KEK) CheckValue() ([]byte, error) {
	return k.aead.Encrypt(checkPlaintext, []byte(k.id))
}

// Verify reports whether check was made by this KEK.
func (k *KEK) Verify(check []byte) bool {
	pt, err := k.aead.Decrypt(check, []byte(k.id))
	return err == nil && bytes.Equal(pt, checkPlaintext)
}
