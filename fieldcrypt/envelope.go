package fieldcrypt

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Version is the current envelope format version.
const Version = 1

var magic = [3]byte{0x00, 'b', 'h'}

// Errors. None carries key material or plaintext.
var (
	// ErrNotEnvelope: the value is not a bulkhead envelope (plaintext,
	// truncated, or another format).
	ErrNotEnvelope = errors.New("fieldcrypt: not a sealed value")
	// ErrUndecryptable: the envelope does not open with the tenant's keys
	// for this field (tampered, copied from elsewhere, or its key retired or
	// shredded).
	ErrUndecryptable = errors.New("fieldcrypt: value does not open")
	// ErrNoScope: no authenticated tenant in the context.
	ErrNoScope = errors.New("fieldcrypt: no tenant in scope")
	// ErrNoKeyset: the tenant has no keyset (never provisioned, or shredded).
	ErrNoKeyset = errors.New("fieldcrypt: tenant has no keys")
	// ErrKEKChanged: the store records another key-encryption key than the
	// one a keyset was wrapped with (a KEK rotation happened); nothing was
	// stored.
	ErrKEKChanged = errors.New("fieldcrypt: the recorded key-encryption key changed")
	// ErrKEKUnavailable: a keyset is wrapped by a KEK this process does not
	// hold and could not load.
	ErrKEKUnavailable = errors.New("fieldcrypt: key-encryption key unavailable")
)

// Field names where a value lives; it is bound into the associated data.
type Field struct {
	Table  string
	Column string
	Row    uuid.UUID
}

// headerLen is magic + version; Tink's ciphertext follows (its own 5-byte
// prefix: 0x01 and the big-endian key id).
const headerLen = len(magic) + 1

// tinkPrefixLen is Tink's output prefix (one type byte, four key-id bytes).
const tinkPrefixLen = 5

// parse checks an envelope's header and returns Tink's ciphertext.
func parse(envelope []byte) ([]byte, error) {
	if len(envelope) < headerLen+tinkPrefixLen+12+16 || [3]byte(envelope[:3]) != magic {
		return nil, ErrNotEnvelope
	}
	if envelope[3] != Version {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrNotEnvelope, envelope[3])
	}
	if envelope[4] != 0x01 { // Tink's TINK output prefix type
		return nil, ErrNotEnvelope
	}
	return envelope[headerLen:], nil
}

// IsEnvelope reports whether v has the shape of a sealed value.
func IsEnvelope(v []byte) bool {
	_, err := parse(v)
	return err == nil
}

// KeyID returns the id of the key that sealed envelope, read from Tink's
// prefix (for rotation status); it does not authenticate anything.
func KeyID(envelope []byte) (uint32, error) {
	ct, err := parse(envelope)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(ct[1:5]), nil
}

// associatedData binds a ciphertext to its place:
// "bulkhead/fieldcrypt" | version | tenant | len(table) table | len(column) column | row.
func associatedData(tenant uuid.UUID, f Field) []byte {
	b := make([]byte, 0, 64+len(f.Table)+len(f.Column))
	b = append(b, "bulkhead/fieldcrypt"...)
	b = append(b, Version)
	b = append(b, tenant[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.Table)))
	b = append(b, f.Table...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.Column)))
	b = append(b, f.Column...)
	b = append(b, f.Row[:]...)
	return b
}

func (f Field) validate() error {
	if f.Table == "" || f.Column == "" || len(f.Table) > 255 || len(f.Column) > 255 {
		return fmt.Errorf("fieldcrypt: field %q.%q: table and column are required", f.Table, f.Column)
	}
	if f.Row == uuid.Nil {
		return fmt.Errorf("fieldcrypt: field %s.%s: row id is required (generate it before insert)", f.Table, f.Column)
	}
	return nil
}
