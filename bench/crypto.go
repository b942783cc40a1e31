package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// CryptoConfig sizes the field-encryption benchmark.
type CryptoConfig struct {
	Ops      int       // agent create+get pairs per side; default 2000
	Tenants  int       // tenants for the cache measurement; default 2000
	Progress io.Writer // nil discards
}

// SealCase is seal+open of one value size.
type SealCase struct {
	Bytes         int
	Keyring, Bare time.Duration // per seal+open; Bare is AES-256-GCM from the standard library
}

// CacheCase is the keyset cache under a load.
type CacheCase struct {
	Name              string
	CacheSize, Tenant int
	Hits, Misses      int64
}

// CryptoResult is one run.
type CryptoResult struct {
	Seal                          []SealCase
	AgentSealed, AgentPlain       time.Duration // median create+get
	AgentSealedP95, AgentPlainP95 time.Duration
	Cache                         []CacheCase
}

// RunCrypto measures seal/open, the cost of encryption on agent create+get
// (same database, same code, keyring vs plaintext mode, interleaved), and
// the keyset cache's hit rate.
func RunCrypto(ctx context.Context, cfg CryptoConfig) (*CryptoResult, error) {
	if cfg.Ops <= 0 {
		cfg.Ops = 2000
	}
	if cfg.Tenants <= 0 {
		cfg.Tenants = 2000
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	env, err := newCluster(ctx, cfg.Progress, nil)
	if err != nil {
		return nil, err
	}
	defer env.close()
	const name = "bench_crypto"
	if err := env.migrated(ctx, name); err != nil {
		return nil, err
	}
	cl, creds, dir := env.cl, env.creds, env.dir
	keys, err := postgres.OpenKeysetStore(ctx, cl.DSN(postgres.KeyService, creds.KeyService, name))
	if err != nil {
		return nil, err
	}
	defer keys.Close()
	kek, _, err := fieldcrypt.LocalKEK(filepath.Join(dir, "kek.json"), true)
	if err != nil {
		return nil, err
	}
	if err := keys.CheckKEK(ctx, kek); err != nil {
		return nil, err
	}
	kr := fieldcrypt.NewKeyring(kek, keys, fieldcrypt.Options{})
	open := func(k *fieldcrypt.Keyring) (*postgres.DB, error) {
		return postgres.Open(ctx, postgres.Config{AppDSN: cl.DSN(postgres.Runtime, creds.Runtime, name),
			MaintenanceDSN: cl.DSN(postgres.Maintenance, creds.Maintenance, name), Keyring: k, ContextKey: env.ctxKey, MaxConns: 2})
	}
	sealed, err := open(kr)
	if err != nil {
		return nil, err
	}
	defer sealed.Close()
	plain, err := open(nil)
	if err != nil {
		return nil, err
	}
	defer plain.Close()

	mctx := bulkhead.AsMaintenance(ctx, "bench crypto")
	tenant, err := sealed.CreateTenant(mctx, "bench", "")
	if err != nil {
		return nil, err
	}
	owner, err := sealed.CreateEntity(mctx, tenant.ID, bulkhead.KindUser, "owner", "")
	if err != nil {
		return nil, err
	}
	sctx, err := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant.ID, Entity: owner.ID})
	if err != nil {
		return nil, err
	}
	res := &CryptoResult{}

	// Seal + open, against bare AES-256-GCM.
	fmt.Fprintln(cfg.Progress, "seal+open")
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	for _, size := range []int{64, 1024, 4096} {
		pt := make([]byte, size)
		rand.Read(pt)
		f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
		var failed error
		k := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				env, err := kr.Seal(sctx, f, pt)
				if err == nil {
					_, err = kr.Open(sctx, f, env)
				}
				if err != nil {
					failed = err
					return
				}
			}
		})
		if failed != nil {
			return nil, failed
		}
		bare := testing.Benchmark(func(b *testing.B) {
			nonce := make([]byte, gcm.NonceSize())
			for b.Loop() {
				rand.Read(nonce)
				ct := gcm.Seal(nil, nonce, pt, nil)
				if _, err := gcm.Open(nil, nonce, ct, nil); err != nil {
					failed = err
					return
				}
			}
		})
		res.Seal = append(res.Seal, SealCase{Bytes: size, Keyring: time.Duration(k.NsPerOp()), Bare: time.Duration(bare.NsPerOp())})
	}

	// Agent create + get, with the keyring vs plaintext mode, paired and interleaved.
	fmt.Fprintln(cfg.Progress, "agent create+get with and without encryption")
	agent := func(db *postgres.DB) error {
		a, err := db.CreateAgent(sctx, postgres.NewAgent{Name: "bench agent", SystemPrompt: bulkhead.Secret("You are a helpful assistant. Answer briefly and cite sources."),
			Secrets: map[string]bulkhead.Secret{"openai_api_key": "sk-bench-0123456789abcdef0123456789abcdef", "slack_token": "xoxb-0123456789"}})
		if err != nil {
			return err
		}
		got, err := db.Agent(sctx, a.ID)
		if err == nil && got.Secrets["slack_token"].Reveal() != "xoxb-0123456789" {
			err = fmt.Errorf("secret did not round-trip")
		}
		return err
	}
	var ts, tp []time.Duration
	for i := range cfg.Ops + 100 {
		order := []*postgres.DB{sealed, plain}
		if i%2 == 1 {
			order = []*postgres.DB{plain, sealed}
		}
		for _, db := range order {
			t0 := time.Now()
			if err := agent(db); err != nil {
				return nil, err
			}
			if i < 100 { // warm-up
				continue
			}
			if db == sealed {
				ts = append(ts, time.Since(t0))
			} else {
				tp = append(tp, time.Since(t0))
			}
		}
	}
	res.AgentSealed, res.AgentPlain = pct(ts, 50), pct(tp, 50)
	res.AgentSealedP95, res.AgentPlainP95 = pct(ts, 95), pct(tp, 95)

	// The keyset cache: many tenants, uniform and skewed load.
	fmt.Fprintf(cfg.Progress, "provisioning %d tenants for the cache measurement\n", cfg.Tenants)
	tenants := make([]uuid.UUID, cfg.Tenants)
	for i := range tenants {
		tenants[i] = uuid.New()
		if err := kr.Provision(ctx, tenants[i]); err != nil {
			return nil, err
		}
	}
	rnd := mrand.New(mrand.NewPCG(3, 4))
	zipf := mrand.NewZipf(rnd, 1.2, 1, uint64(cfg.Tenants-1))
	for _, c := range []struct {
		name string
		size int
		pick func() int
	}{
		{"uniform, cache ≥ tenants", cfg.Tenants, func() int { return rnd.IntN(cfg.Tenants) }},
		{"uniform, cache = tenants/4", cfg.Tenants / 4, func() int { return rnd.IntN(cfg.Tenants) }},
		{"Zipf(1.2), cache = tenants/20", cfg.Tenants / 20, func() int { return int(zipf.Uint64()) }},
	} {
		k := fieldcrypt.NewKeyring(kek, keys, fieldcrypt.Options{CacheSize: c.size})
		f := fieldcrypt.Field{Table: "agents", Column: "secrets", Row: uuid.New()}
		for range 20 * cfg.Tenants {
			tctx, _ := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenants[c.pick()]})
			if _, err := k.Seal(tctx, f, []byte("x")); err != nil {
				return nil, err
			}
		}
		h, m := k.CacheStats()
		res.Cache = append(res.Cache, CacheCase{Name: c.name, CacheSize: c.size, Tenant: cfg.Tenants, Hits: h, Misses: m})
	}
	return res, nil
}

// Markdown writes r as the docs/BENCHMARKS.md field-encryption section.
func (r *CryptoResult) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## Field encryption (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores (%s/%s). Seal+open through `fieldcrypt.Keyring` (Tink AES-256-GCM, AAD bound to tenant/table/column/row, versioned envelope, keyset cached) against bare AES-256-GCM from Go's standard library in the same run:\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintln(w, "| value | keyring seal+open | bare AES-GCM seal+open | ratio | target |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---|")
	for _, c := range r.Seal {
		target := ""
		if c.Bytes == 4096 {
			target = "≤ 10 µs: " + map[bool]string{true: "met", false: "missed"}[c.Keyring <= 10*time.Microsecond]
		}
		fmt.Fprintf(w, "| %d B | %s µs | %s µs | %.2f | %s |\n", c.Bytes, us(c.Keyring), us(c.Bare), float64(c.Keyring)/float64(c.Bare), target)
	}
	fmt.Fprintf(w, "\nAgent create + get (system prompt and two secrets sealed, then opened by the owner), same database and code, keyring vs plaintext mode, paired and interleaved: median **%s µs vs %s µs, ratio %.3f** (target ≤ 1.05); p95 %s vs %s µs.\n\n",
		us(r.AgentSealed), us(r.AgentPlain), float64(r.AgentSealed)/float64(r.AgentPlain), us(r.AgentSealedP95), us(r.AgentPlainP95))
	fmt.Fprintln(w, "Keyset cache (20 operations per tenant on average; a miss loads and unwraps the tenant's keysets from the key service):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| load | tenants | cache size | hit rate |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, c := range r.Cache {
		fmt.Fprintf(w, "| %s | %d | %d | %.1f %% |\n", c.Name, c.Tenant, c.CacheSize, 100*float64(c.Hits)/float64(c.Hits+c.Misses))
	}
}

// Table prints a terminal summary.
func (r *CryptoResult) Table(w io.Writer) {
	for _, c := range r.Seal {
		fmt.Fprintf(w, "seal+open %5d B: keyring %8s µs, bare AES-GCM %8s µs (%.2fx)\n", c.Bytes, us(c.Keyring), us(c.Bare), float64(c.Keyring)/float64(c.Bare))
	}
	fmt.Fprintf(w, "agent create+get: sealed %s µs, plaintext %s µs, ratio %.3f\n", us(r.AgentSealed), us(r.AgentPlain), float64(r.AgentSealed)/float64(r.AgentPlain))
	for _, c := range r.Cache {
		fmt.Fprintf(w, "cache %-32s hit rate %.1f%%\n", c.Name, 100*float64(c.Hits)/float64(c.Hits+c.Misses))
	}
}
