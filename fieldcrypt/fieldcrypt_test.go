package fieldcrypt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/uuid"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// keyring returns a keyring on a fresh database with two provisioned tenants.
func keyring(t testing.TB) (*testdb.Database, uuid.UUID, uuid.UUID) {
	t.Helper()
	d := testdb.New(t)
	ctx := bulkhead.AsMaintenance(context.Background(), "test")
	t1, err := d.DB.CreateTenant(ctx, "one", "")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := d.DB.CreateTenant(ctx, "two", "")
	if err != nil {
		t.Fatal(err)
	}
	return d, t1.ID, t2.ID
}

func scoped(t testing.TB, tenant uuid.UUID) context.Context {
	t.Helper()
	ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestSealOpenBindsEverything(t *testing.T) {
	d, t1, t2 := keyring(t)
	kr := d.Keyring
	ctx1, ctx2 := scoped(t, t1), scoped(t, t2)
	f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
	secret := []byte(`{"openai_api_key":"sk-live-0123456789"}`)
	env, err := kr.Seal(ctx1, f, secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, secret) || bytes.Contains(env, []byte("sk-live")) {
		t.Fatal("envelope contains the plaintext")
	}
	// The owner side: it opens.
	if got, err := kr.Open(ctx1, f, env); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open in the right place: %q, %v", got, err)
	}
	// Sealing twice gives different envelopes (random nonces).
	if again, _ := kr.Seal(ctx1, f, secret); bytes.Equal(again, env) {
		t.Error("two seals of the same value are identical")
	}
	// Everywhere else: it does not.
	elsewhere := map[string]struct {
		ctx context.Context
		f   fieldcrypt.Field
	}{
		"another row":    {ctx1, fieldcrypt.Field{Table: f.Table, Column: f.Column, Row: uuid.New()}},
		"another column": {ctx1, fieldcrypt.Field{Table: f.Table, Column: "system_prompt", Row: f.Row}},
		"another table":  {ctx1, fieldcrypt.Field{Table: "documents", Column: f.Column, Row: f.Row}},
		"another tenant": {ctx2, f},
	}
	for name, e := range elsewhere {
		if _, err := kr.Open(e.ctx, e.f, env); !errors.Is(err, fieldcrypt.ErrUndecryptable) {
			t.Errorf("%s: %v, want ErrUndecryptable", name, err)
		}
	}
	// No scope: no key.
	if _, err := kr.Open(context.Background(), f, env); !errors.Is(err, fieldcrypt.ErrNoScope) {
		t.Errorf("no scope: %v", err)
	}
	// A bit flip anywhere fails (header flips as not-an-envelope, the rest as undecryptable).
	for i := range len(env) {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(env)
			bad[i] ^= bit
			if got, err := kr.Open(ctx1, f, bad); err == nil {
				t.Fatalf("flipping bit %#x of byte %d still opens: %q", bit, i, got)
			}
		}
	}
	// Truncation and plaintext are refused as not sealed.
	for _, v := range [][]byte{nil, env[:10], secret, []byte("\x00bh\x02" + string(env[4:]))} {
		if _, err := kr.Open(ctx1, f, v); !errors.Is(err, fieldcrypt.ErrNotEnvelope) {
			t.Errorf("open %q: %v, want ErrNotEnvelope", v, err)
		}
	}
	// Errors carry no secret.
	_, err = kr.Open(ctx2, f, env)
	if bytes.Contains([]byte(err.Error()), []byte("sk-live")) {
		t.Errorf("error names the secret: %v", err)
	}
}

func TestSwappedKeysetsDoNotOpen(t *testing.T) {
	d, t1, t2 := keyring(t)
	ctx := context.Background()
	f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
	env, err := d.Keyring.Seal(scoped(t, t1), f, []byte("t1 secret"))
	if err != nil {
		t.Fatal(err)
	}
	// An attacker with write access to the key table gives T2's wrapped keyset to T1.
	w1, err := d.Keys.Load(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := d.Keys.Load(ctx, t2)
	if err != nil {
		t.Fatal(err)
	}
	swapped := w2
	swapped.Version = w1.Version + 1
	if err := d.Keys.Save(ctx, t1, swapped, w1.Version); err != nil {
		t.Fatal(err)
	}
	fresh := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{}) // no cached keys
	if _, err := fresh.Open(scoped(t, t1), f, env); err == nil {
		t.Fatal("T1's value opened with T2's keyset in T1's place")
	}
	if _, err := fresh.Open(scoped(t, t2), f, env); err == nil {
		t.Fatal("T1's value opened as T2")
	}
	// T2 is unaffected.
	env2, err := fresh.Seal(scoped(t, t2), f, []byte("t2 secret"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.Open(scoped(t, t2), f, env2); err != nil || string(got) != "t2 secret" {
		t.Fatalf("T2 after the swap: %q %v", got, err)
	}
}

func TestCorruptedKeysetFailsOnlyItsTenant(t *testing.T) {
	d, t1, t2 := keyring(t)
	ctx := context.Background()
	f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
	env1, _ := d.Keyring.Seal(scoped(t, t1), f, []byte("one"))
	env2, _ := d.Keyring.Seal(scoped(t, t2), f, []byte("two"))
	w, _ := d.Keys.Load(ctx, t1)
	bad := w
	bad.AEAD = bytes.Clone(w.AEAD)
	bad.AEAD[len(bad.AEAD)/2] ^= 0x40
	bad.Version = w.Version + 1
	if err := d.Keys.Save(ctx, t1, bad, w.Version); err != nil {
		t.Fatal(err)
	}
	fresh := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{})
	if _, err := fresh.Open(scoped(t, t1), f, env1); err == nil {
		t.Error("T1 opened with a corrupted keyset")
	}
	if got, err := fresh.Open(scoped(t, t2), f, env2); err != nil || string(got) != "two" {
		t.Errorf("T2 with T1's keyset corrupted: %q %v", got, err)
	}
}

func TestWrongKEKIsRefused(t *testing.T) {
	d, _, _ := keyring(t)
	other, _, err := fieldcrypt.LocalKEK(filepath.Join(t.TempDir(), "other.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Keys.CheckKEK(ctx, other); err == nil {
		t.Fatal("a different KEK passed the check")
	}
	if err := d.Keys.CheckKEK(ctx, testdb.KEK()); err != nil {
		t.Fatalf("the right KEK: %v", err)
	}
	// A KEK file others can read is refused; a missing one is not created unless asked.
	p := filepath.Join(t.TempDir(), "kek.json")
	if _, _, err := fieldcrypt.LocalKEK(p, false); err == nil {
		t.Error("missing KEK file accepted")
	}
	if _, created, err := fieldcrypt.LocalKEK(p, true); err != nil || !created {
		t.Fatalf("create KEK: %v %v", created, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("KEK file mode %v, want 0600", fi.Mode().Perm())
	}
	os.Chmod(p, 0o644)
	if _, _, err := fieldcrypt.LocalKEK(p, false); err == nil {
		t.Error("world-readable KEK file accepted")
	}
	os.WriteFile(p, []byte("not a keyset"), 0o600)
	if _, _, err := fieldcrypt.LocalKEK(p, false); err == nil {
		t.Error("garbage KEK file accepted")
	}
}

func TestShreddedTenantDumpStaysSealed(t *testing.T) {
	d, t1, t2 := keyring(t)
	f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
	dump, err := d.Keyring.Seal(scoped(t, t1), f, []byte("gone for good"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.DeleteTenant(bulkhead.AsMaintenance(context.Background(), "test erasure"), t1); err != nil {
		t.Fatal(err)
	}
	// Nothing bulkhead still holds opens the saved ciphertext: not T1's scope
	// (no keyset left), not any other tenant's keys, not a fresh keyring.
	for _, kr := range []*fieldcrypt.Keyring{d.Keyring, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{})} {
		if _, err := kr.Open(scoped(t, t1), f, dump); !errors.Is(err, fieldcrypt.ErrNoKeyset) {
			t.Errorf("open after shredding: %v, want ErrNoKeyset", err)
		}
		tenants, _ := d.Keys.Tenants(context.Background())
		for _, other := range tenants {
			if _, err := kr.Open(scoped(t, other), f, dump); err == nil {
				t.Errorf("the dump opens with tenant %s's keys", other)
			}
		}
	}
	if tenants, _ := d.Keys.Tenants(context.Background()); len(tenants) != 1 || tenants[0] != t2 {
		t.Errorf("keysets left: %v, want only T2's", tenants)
	}
	// Shredding again is fine (idempotent).
	if _, err := d.DB.DeleteTenant(bulkhead.AsMaintenance(context.Background(), "again"), t1); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func TestBlindIndex(t *testing.T) {
	d, t1, t2 := keyring(t)
	a, _ := d.Keyring.BlindIndex(scoped(t, t1), "users", "email", []byte("alice@example.com"))
	b, _ := d.Keyring.BlindIndex(scoped(t, t1), "users", "email", []byte("alice@example.com"))
	c, _ := d.Keyring.BlindIndex(scoped(t, t2), "users", "email", []byte("alice@example.com"))
	e, _ := d.Keyring.BlindIndex(scoped(t, t1), "users", "phone", []byte("alice@example.com"))
	if len(a) != 32 || !bytes.Equal(a, b) {
		t.Fatalf("same tenant, column and value: %x vs %x", a, b)
	}
	if bytes.Equal(a, c) || bytes.Equal(a, e) {
		t.Error("blind index equal across tenants or columns")
	}
}

func TestCacheIsBounded(t *testing.T) {
	d, t1, t2 := keyring(t)
	kr := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{CacheSize: 1})
	f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
	for range 3 {
		kr.Seal(scoped(t, t1), f, []byte("x"))
	}
	if hits, misses := kr.CacheStats(); hits != 2 || misses != 1 {
		t.Errorf("three seals for one tenant: %d hits, %d misses; want 2, 1", hits, misses)
	}
	kr.Seal(scoped(t, t2), f, []byte("x")) // evicts T1 (size 1)
	kr.Seal(scoped(t, t1), f, []byte("x"))
	if _, misses := kr.CacheStats(); misses != 3 {
		t.Errorf("misses %d after eviction, want 3", misses)
	}
}

// FuzzOpen feeds arbitrary bytes to the envelope parser and to Open: they
// never panic, and nothing but the original envelope opens.
func FuzzOpen(f *testing.F) {
	d, t1, _ := keyring(f)
	field := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
	ctx := scoped(f, t1)
	env, err := d.Keyring.Seal(ctx, field, []byte("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte{})
	f.Add([]byte("\x00bh\x01\x01\x00\x00\x00\x00"))
	f.Add(env[:len(env)-1])
	f.Fuzz(func(t *testing.T, v []byte) {
		fieldcrypt.IsEnvelope(v)
		fieldcrypt.KeyID(v)
		pt, err := d.Keyring.Open(ctx, field, v)
		if err == nil && !bytes.Equal(v, env) {
			t.Fatalf("a mutated envelope opened: %q", pt)
		}
	})
}
