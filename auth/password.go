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
	i := strings.LastIndexByte(encoded, '$')
	want, err := base64.RawStdEncoding.DecodeString(encoded[i+1:])
	if err != nil || len(want) == 0 {
		return false, errors.New("auth: stored password hash is malformed")
	}
	got, err := h.derive(ctx, encoded[:i], password, len(want))
	if err != nil {
		return false, err
	}
	return known && subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Derive returns the argon2id key of password under params, the PHC string
// of a stored hash without the hash ("$argon2id$v=19$m=..,t=..,p=..$<salt>",
// postgres.DB.PasswordParams), base64-encoded as in a PHC string: what the
// database compares with the stored key, so that the stored hash never
// leaves it. An empty params (an unknown user) derives under the dummy
// hash's parameters, so both paths cost the same. Keys are argonKeyLen
// bytes, the length Hash makes.
func (h *Hasher) Derive(ctx context.Context, params, password string) (string, error) {
	if params == "" {
		params = h.dummy[:strings.LastIndexByte(h.dummy, '$')]
	}
	key, err := h.derive(ctx, params, password, argonKeyLen)
	if err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(key), nil
}

// derive parses params ("$argon2id$v=..$m=..,t=..,p=..$<salt>") and runs
// argon2id under the semaphore.
func (h *Hasher) derive(ctx context.Context, params, password string, keyLen int) ([]byte, error) {
	var version int
	var mem uint32
	var t uint32
	var p uint8
	parts := strings.Split(params, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errors.New("auth: stored password hash is not argon2id")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return nil, errors.New("auth: stored password hash has an unknown version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil || mem > 1<<20 || t > 10 || p == 0 || p > 16 {
		return nil, errors.New("auth: stored password hash has unusable parameters")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || keyLen <= 0 || keyLen > 1024 {
		return nil, errors.New("auth: stored password hash is malformed")
	}
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer func() { <-h.sem }()
	return argon2.IDKey([]byte(password), salt, t, mem, p, uint32(keyLen)), nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
