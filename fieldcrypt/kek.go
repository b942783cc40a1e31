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
	"time"

	"github.com/bulkhead-dev/bulkhead"
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

// DefaultKMSTimeout bounds each call to a KMS (creating its client,
// wrapping, unwrapping) when KMSKEK is given no timeout.
const DefaultKMSTimeout = 10 * time.Second

// ErrKMSUnavailable: the KMS holding a key-encryption key did not answer
// within its timeout, refused the connection or the call, or failed. It
// matches bulkhead.ErrUnavailable. It is never a verdict on the key: the
// KMS could not be asked.
var ErrKMSUnavailable = fmt.Errorf("KMS %w", bulkhead.ErrUnavailable)

// KMSKEK uses a key held by a KMS through Tink's extensions:
// aws-kms://arn:aws:kms:..., gcp-kms://projects/.../cryptoKeys/...,
// hcvault://host/transit/keys/NAME (token from VAULT_TOKEN). Credentials
// come from each provider's usual environment.
//
// Each KMS call (making the client here, every wrap and unwrap later) is
// bounded by timeout (DefaultKMSTimeout if not positive): past it, or on
// any error of the KMS, the call fails with ErrKMSUnavailable naming the
// URI. The SDK's own call is abandoned, not cancelled (Tink's AEAD takes
// no context); it ends by the SDK's own timeouts. KMSKEK also returns
// ErrKMSUnavailable when ctx ends first.
func KMSKEK(ctx context.Context, uri string, timeout time.Duration) (*KEK, error) {
	if timeout <= 0 {
		timeout = DefaultKMSTimeout
	}
	var mk func() (registry.KMSClient, error)
	switch {
	case strings.HasPrefix(uri, "aws-kms://"):
		mk = func() (registry.KMSClient, error) { return awskms.NewClientWithOptions(uri) }
	case strings.HasPrefix(uri, "gcp-kms://"):
		mk = func() (registry.KMSClient, error) { return gcpkms.NewClientWithOptions(ctx, uri) }
	case strings.HasPrefix(uri, "hcvault://"):
		mk = func() (registry.KMSClient, error) { return hcvault.NewClient(uri, nil, os.Getenv("VAULT_TOKEN")) }
	default:
		return nil, fmt.Errorf("KEK URI %q: want aws-kms://, gcp-kms:// or hcvault://", uri)
	}
	// Making a client may fetch credentials (a cloud metadata server that
	// may hang off-cloud): bounded too.
	a, err := bounded(ctx, uri, "open KMS client", timeout, func() (tink.AEAD, error) {
		client, err := mk()
		if err != nil {
			return nil, fmt.Errorf("KMS client: %w", err)
		}
		return client.GetAEAD(uri)
	})
	if err != nil {
		return nil, err
	}
	return &KEK{aead: kmsAEAD{a: a, uri: uri, timeout: timeout}, id: uri}, nil
}

// kmsAEAD bounds every call of a KMS AEAD and marks its failures
// ErrKMSUnavailable.
type kmsAEAD struct {
	a       tink.AEAD
	uri     string
	timeout time.Duration
}

func (k kmsAEAD) Encrypt(pt, ad []byte) ([]byte, error) {
	return bounded(context.Background(), k.uri, "wrap", k.timeout, func() ([]byte, error) { return k.a.Encrypt(pt, ad) })
}

func (k kmsAEAD) Decrypt(ct, ad []byte) ([]byte, error) {
	return bounded(context.Background(), k.uri, "unwrap", k.timeout, func() ([]byte, error) { return k.a.Decrypt(ct, ad) })
}

// bounded runs f, giving up after timeout or when ctx ends. f keeps running
// in the background after that, to its own end; its result is dropped.
func bounded[T any](ctx context.Context, uri, what string, timeout time.Duration, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var zero T
	select {
	case r := <-done:
		if r.err != nil {
			return zero, fmt.Errorf("KMS %s: %s: %w: %v", uri, what, ErrKMSUnavailable, r.err)
		}
		return r.v, nil
	case <-t.C:
		return zero, fmt.Errorf("KMS %s: %s: %w: no answer within %s", uri, what, ErrKMSUnavailable, timeout)
	case <-ctx.Done():
		return zero, fmt.Errorf("KMS %s: %s: %w: %w", uri, what, ErrKMSUnavailable, ctx.Err())
	}
}

// checkPlaintext is what a KEK check value seals: a database records it
// under the KEK that wrapped its keysets, so the wrong KEK is detected at
// start-up, before any request.
var checkPlaintext = []byte("bulkhead key-encryption key check v1")

// CheckValue seals the check plaintext with k, for a Store to record.
func (k *KEK) CheckValue() ([]byte, error) {
	return k.aead.Encrypt(checkPlaintext, []byte(k.id))
}

// Verify reports whether check was made by this KEK. A KMS that can't be
// asked is a false too; Check tells the two apart.
func (k *KEK) Verify(check []byte) bool { return k.Check(check) == nil }

// errNotThisKEK: a check value this KEK did not make.
var errNotThisKEK = errors.New("the check value was not made by this key-encryption key")

// Check returns nil if check was made by this KEK, ErrKMSUnavailable if
// its KMS could not be asked, and another error if check is not this
// KEK's.
func (k *KEK) Check(check []byte) error {
	pt, err := k.aead.Decrypt(check, []byte(k.id))
	if errors.Is(err, ErrKMSUnavailable) {
		return err
	}
	if err != nil || !bytes.Equal(pt, checkPlaintext) {
		return errNotThisKEK
	}
	return nil
}
