package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Hasher hashes and checks passwords with argon2id, at most a fixed number
// at a time (each takes 19 MiB and tens of milliseconds): a login storm
// queues instead of starving the server. Safe for concurrent use.
type Hasher struct {
	sem   chan struct{}
	dummy string // a real hash of a random password, checked for unknown users
}

// NewHasher allows parallel hashes (default: half the CPUs, at least one,
// so a login storm leaves the other half to everything else).
func NewHasher(parallel int) *Hasher {
	if parallel <= 0 {
		parallel = max(1, runtime.NumCPU()/2)
	}
	h := &Hasher{sem: make(chan struct{}, parallel)}
	h.dummy, _ = h.Hash(context.Background(), rand.Text())
	return h
}

// Hash returns the PHC string of password under a random salt.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-h.sem }()
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// Check reports whether password matches encoded. An empty encoded (an
// unknown user or one without a password) is checked against a dummy hash
// so the answer takes as long either way, and is false.
func (h *Hasher) Check(ctx context.Context, encoded, password string) (bool, error) {
	known := encoded != ""
	if !known {
		encoded = h.dummy
	}
	var version int
	var mem uint32
	var t uint32
	var p uint8
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("auth: stored password hash is not argon2id")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("auth: stored password hash has an unknown version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil || mem > 1<<20 || t > 10 || p == 0 || p > 16 {
		return false, errors.New("auth: stored password hash has unusable parameters")
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, errors.New("auth: stored password hash is malformed")
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-h.sem }()
	got := argon2.IDKey([]byte(password), salt, t, mem, p, uint32(len(want)))
	return known && subtle.ConstantTimeCompare(got, want) == 1, nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
