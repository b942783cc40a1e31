package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
)

// TenantsConfig sizes the many-tenants benchmark (issue 16, item 5): many
// tenants with a collection each on one node, the embedded store's memory
// budget a fraction of what all collections take.
type TenantsConfig struct {
	Tenants     int           // tenants, each with a collection; default 10,000
	Docs        int           // documents per tenant (about 5 chunks each); default 2
	Writers     int           // concurrent ingesting goroutines; default 4
	Clients     int           // concurrent query clients under the Zipf load; default 4
	Duration    time.Duration // Zipf load; default 20 s
	Zipf        float64       // the load's Zipf exponent s (> 1); default 1.1
	BudgetShare float64       // memory budget / all collections' bytes; default 0.10
	Cold        int           // tenants whose first query is timed; default 200
	Seed        uint64
	Progress    io.Writer
}

func (c *TenantsConfig) defaults() {
	if c.Tenants <= 0 {
		c.Tenants = 10000
	}
	if c.Docs <= 0 {
		c.Docs = 2
	}
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Zipf <= 1 {
		c.Zipf = 1.1
	}
	if c.BudgetShare <= 0 || c.BudgetShare > 1 {
		c.BudgetShare = 0.10
	}
	if c.Cold <= 0 {
		c.Cold = 200
	}
	c.Cold = min(c.Cold, c.Tenants)
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// StartupSample is the embedded store's start-up with a number of
// collections on disk.
type StartupSample struct {
	Collections int
	Files       int
	Median      time.Duration // of 5 opens (embedded.New)
}

// TenantsResult is one run.
type TenantsResult struct {
	Config     TenantsConfig
	PGVersion  string
	Setup      time.Duration // creating the tenants and ingesting
	Chunks     int
	TotalBytes int64 // all collections resident (the store's own estimate)
	Budget     int64
	Startup    []StartupSample
	Cold, Warm APICase // a tenant's first query with its collection on disk only; the same query again
	Load       APICase // the Zipf load
	// Queries and Failed count every timed query; a failure is an error or
	// an answer without the tenant's marker document.
	Queries, Failed int64
	Loads           int64 // collection loads during the Zipf load
	Evictions       int64 // loads beyond one per tenant queried (a lower bound on reloads after eviction)
	Distinct        int   // tenants queried during the Zipf load
	Resident        int64 // store's resident bytes at the end
	HeapInuse       uint64
	RSS             int64 // the bench process's VmRSS (server side and clients in one process)
}

// RunTenants runs the many-tenants benchmark in process (no HTTP): it
// creates the tenants through retrieval.Service (collection provisioned)
// and ingests Docs documents each, document 0 holding a word only that
// tenant has (its marker); then it measures the store's start-up with all
// collections and with 1 % of them on disk, reopens the store with a
// budget of BudgetShare of all collections' bytes, times the first query
// of Cold tenants (collection not resident) and the same query again, and
// runs a Zipf-distributed query load. Every query must return the
// tenant's marker document: one that doesn't, or fails, is counted in
// Failed, and the run returns an error if any did.
func RunTenants(ctx context.Context, cfg TenantsConfig) (*TenantsResult, error) {
	cfg.defaults()
	res := &TenantsResult{Config: cfg}
	env, err := newCluster(ctx, cfg.Progress, map[string]string{"shared_buffers": "256MB"})
	if err != nil {
		return nil, err
	}
	defer env.close()
	const name = "bench_tenants"
	db, err := env.openDB(ctx, name, max(cfg.Writers, cfg.Clients)+2, &res.PGVersion)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	dir := filepath.Join(env.dir, "vectors")
	open := func(budget int64) (*embedded.Store, *retrieval.Service, error) {
		store, err := embedded.New(dir, embedded.WithMemoryBudget(budget))
		if err != nil {
			return nil, nil, err
		}
		router := vector.NewRouter(retrieval.NewRegionCache(db, time.Minute), map[string]vector.Store{"default": store})
		svc, err := retrieval.New(retrieval.Config{DB: db, Vectors: router, Embedders: []llm.Embedder{llm.NewLocal()}, MinSimilarity: retrieval.DefaultMinSimilarity})
		if err != nil {
			store.Close()
			return nil, nil, err
		}
		return store, svc, nil
	}

	// Set-up: every collection stays resident (no budget), so the store's
	// resident bytes at the end are what all collections take.
	store, svc, err := open(1 << 50)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	tenants, markers, err := createTenants(ctx, cfg, db, svc)
	if err != nil {
		store.Close()
		return nil, err
	}
	res.Setup = time.Since(t0)
	res.Chunks = int(markers.chunks.Load())
	// Statistics for the queries' plans, as autovacuum would have them
	// (bench retrieval does the same; see analyze).
	if err := analyze(ctx, env.cl.SuperuserDSN(name)); err != nil {
		store.Close()
		return nil, err
	}
	// ask queries tenant i's marker as its user; it fails unless the
	// answer holds the tenant's marker document.
	ask := func(svc *retrieval.Service, i int) (time.Duration, error) {
		c, _ := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenants[i].tenant, Entity: tenants[i].member})
		t := time.Now()
		ps, err := svc.Query(c, retrieval.Query{Text: marker(i), K: 5})
		d := time.Since(t)
		if err == nil && !slices.ContainsFunc(ps, func(p retrieval.Passage) bool { return p.DocumentID == markers.docs[i] }) {
			err = fmt.Errorf("tenant %d: %d passages without its marker document", i, len(ps))
		}
		return d, err
	}
	store.Close()
	// What every collection takes once loaded from disk (no spare
	// capacity from the appends of the set-up): reopen, load each.
	if store, svc, err = open(1 << 50); err != nil {
		return nil, err
	}
	for i := range tenants {
		if _, err := ask(svc, i); err != nil {
			store.Close()
			return nil, err
		}
	}
	_, res.TotalBytes = store.Resident()
	store.Close()
	res.Budget = int64(float64(res.TotalBytes) * cfg.BudgetShare)
	runtime.GC()
	debug.FreeOSMemory() // the set-up's peak is not the steady state measured below

	// Start-up with every collection on disk, and with 1 % of them.
	if res.Startup, err = measureStartup(dir); err != nil {
		return nil, err
	}

	store, svc, err = open(res.Budget)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	var queries, failed atomic.Int64
	check := func(i int) time.Duration {
		d, err := ask(svc, i)
		queries.Add(1)
		if err != nil && failed.Add(1) <= 3 {
			fmt.Fprintf(cfg.Progress, "  %v\n", err)
		}
		return d
	}

	// Cold tenants: nothing is resident after the reopen.
	fmt.Fprintf(cfg.Progress, "first query of %d cold tenants, then the same query warm\n", cfg.Cold)
	rnd := mrand.New(mrand.NewPCG(cfg.Seed, 5))
	var cold, warm []time.Duration
	for _, i := range rnd.Perm(cfg.Tenants)[:cfg.Cold] {
		cold = append(cold, check(i))
		warm = append(warm, check(i))
	}
	res.Cold = APICase{Name: "first query, collection on disk (cold)", P50: pct(cold, 50), P99: pct(cold, 99)}
	res.Warm = APICase{Name: "the same query again (warm)", P50: pct(warm, 50), P99: pct(warm, 99)}

	// The Zipf load: tenant ranks drawn with exponent s, mapped to tenants
	// by a random permutation (popularity unrelated to creation order).
	fmt.Fprintf(cfg.Progress, "Zipf load (s=%.2f) from %d clients for %s\n", cfg.Zipf, cfg.Clients, cfg.Duration)
	perm := rnd.Perm(cfg.Tenants)
	loads0 := store.Loads()
	var mu sync.Mutex
	var lats []time.Duration
	seen := map[int]bool{}
	deadline := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			z := mrand.NewZipf(mrand.New(mrand.NewPCG(cfg.Seed, uint64(10+c))), cfg.Zipf, 1, uint64(cfg.Tenants-1))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := perm[z.Uint64()]
				d := check(i)
				mu.Lock()
				seen[i] = true
				lats = append(lats, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Queries, res.Failed = queries.Load(), failed.Load()
	res.Load = APICase{Name: "query under the Zipf load", RPS: float64(len(lats)) / cfg.Duration.Seconds(), P50: pct(lats, 50), P99: pct(lats, 99)}
	res.Loads = store.Loads() - loads0
	res.Distinct = len(seen)
	res.Evictions = max(0, res.Loads-int64(res.Distinct))
	_, res.Resident = store.Resident()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapInuse = ms.HeapInuse
	res.RSS = vmRSS()
	if res.Failed > 0 {
		return res, fmt.Errorf("%d of %d queries failed or missed the tenant's marker document", res.Failed, res.Queries)
	}
	return res, ctx.Err()
}

type benchTenant struct{ tenant, member uuid.UUID }

type markerDocs struct {
	docs   []uuid.UUID // tenant i's marker document
	chunks atomic.Int64
}

// marker is a word only tenant i's document 0 holds.
func marker(i int) string { return "marker" + strconv.Itoa(i) }

// createTenants creates cfg.Tenants tenants with a user each and ingests
// cfg.Docs documents for each, Writers at a time.
func createTenants(ctx context.Context, cfg TenantsConfig, db *postgres.DB, svc *retrieval.Service) ([]benchTenant, *markerDocs, error) {
	mctx := bulkhead.AsMaintenance(ctx, "bench tenants: setup")
	tenants := make([]benchTenant, cfg.Tenants)
	m := &markerDocs{docs: make([]uuid.UUID, cfg.Tenants)}
	rnd := mrand.New(mrand.NewPCG(cfg.Seed, 1))
	texts := make([]string, 64) // a pool of documents, reused
	for i := range texts {
		texts[i] = benchDoc(rnd, 3900+rnd.IntN(400))
	}
	var next, done, failed atomic.Int64
	var firstErr atomic.Value
	t0 := time.Now()
	var wg sync.WaitGroup
	for range cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Tenants || ctx.Err() != nil || failed.Load() > 0 {
					return
				}
				if err := createTenant(mctx, ctx, cfg, db, svc, i, texts, tenants, m); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if n := done.Add(1); n%1000 == 0 || int(n) == cfg.Tenants {
					el := time.Since(t0)
					fmt.Fprintf(cfg.Progress, "  %d/%d tenants (%.0f tenants/s, %.0f chunks/s)\n", n, cfg.Tenants, float64(n)/el.Seconds(), float64(m.chunks.Load())/el.Seconds())
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, nil, err
	}
	return tenants, m, ctx.Err()
}

func createTenant(mctx, ctx context.Context, cfg TenantsConfig, db *postgres.DB, svc *retrieval.Service, i int, texts []string, tenants []benchTenant, m *markerDocs) error {
	t, err := svc.CreateTenant(mctx, "tenant-"+strconv.Itoa(i), "")
	if err != nil {
		return fmt.Errorf("tenant %d: %w", i, err)
	}
	u, err := db.CreateEntity(mctx, t.ID, bulkhead.KindUser, "user", "")
	if err != nil {
		return fmt.Errorf("tenant %d: %w", i, err)
	}
	tenants[i] = benchTenant{tenant: t.ID, member: u.ID}
	c, _ := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: t.ID, Entity: u.ID})
	for j := range cfg.Docs {
		text := texts[(i*cfg.Docs+j)%len(texts)]
		if j == 0 {
			text = marker(i) + " " + text
		}
		d, err := svc.Ingest(c, postgres.NewDocument{Title: "doc " + strconv.Itoa(j), Content: text})
		if err != nil {
			return fmt.Errorf("tenant %d, document %d: %w", i, j, err)
		}
		if j == 0 {
			m.docs[i] = d.ID
		}
		m.chunks.Add(int64(d.Chunks))
	}
	return nil
}

// measureStartup times opening the store with every collection on disk,
// then with 1 % of its files linked into another directory.
func measureStartup(dir string) ([]StartupSample, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	small := dir + "-1pct"
	if err := os.MkdirAll(small, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(small)
	n, colls, all := 0, 0, 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".vec") {
			all++
		}
	}
	for _, e := range entries[:len(entries)/100] {
		if strings.HasSuffix(e.Name(), ".lock") || e.IsDir() {
			continue
		}
		if err := os.Link(filepath.Join(dir, e.Name()), filepath.Join(small, e.Name())); err != nil {
			return nil, err
		}
		n++
		if strings.HasSuffix(e.Name(), ".vec") {
			colls++
		}
	}
	time1 := func(d string) (time.Duration, error) {
		var ts []time.Duration
		for range 5 {
			t := time.Now()
			st, err := embedded.New(d, embedded.WithMemoryBudget(1<<30))
			if err != nil {
				return 0, err
			}
			ts = append(ts, time.Since(t))
			st.Close()
		}
		return pct(ts, 50), nil
	}
	tAll, err := time1(dir)
	if err != nil {
		return nil, err
	}
	tFew, err := time1(small)
	if err != nil {
		return nil, err
	}
	return []StartupSample{{Collections: colls, Files: n, Median: tFew}, {Collections: all, Files: len(entries), Median: tAll}}, nil
}

// vmRSS is this process's resident set size in bytes, 0 if unknown.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Markdown writes r as a docs/BENCHMARKS.md section.
func (r *TenantsResult) Markdown(w io.Writer, command string) {
	c := r.Config
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "## Many tenants on one node (issue 16, item 5; `%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores, PostgreSQL %s on a private cluster (fsync off), the embedded vector store, the local embedder, in one process (no HTTP). %d tenants, each created through `retrieval.Service.CreateTenant` (its collection provisioned) with %d documents of ~4 KB (%d chunks in all; set-up %s). Document 0 of each tenant holds a word only that tenant has; every timed query asks for it and must return that document (failed or missing: %d of %d).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), r.PGVersion, c.Tenants, c.Docs, r.Chunks, r.Setup.Round(time.Second), r.Failed, r.Queries)
	fmt.Fprintln(w, "| figure | value |")
	fmt.Fprintln(w, "|---|---:|")
	for _, s := range r.Startup {
		fmt.Fprintf(w, "| store start-up (`embedded.New`), %d collections (%d files) on disk, median of 5 | %s |\n", s.Collections, s.Files, us(s.Median)+" µs")
	}
	fmt.Fprintf(w, "| all collections resident (the store's estimate) | %s |\n", mib(r.TotalBytes))
	fmt.Fprintf(w, "| memory budget (%.0f %% of that) | %s |\n", 100*c.BudgetShare, mib(r.Budget))
	fmt.Fprintf(w, "| %s, p50 / p99 (%d tenants) | %s / %s µs |\n", r.Cold.Name, c.Cold, us(r.Cold.P50), us(r.Cold.P99))
	fmt.Fprintf(w, "| %s, p50 / p99 | %s / %s µs |\n", r.Warm.Name, us(r.Warm.P50), us(r.Warm.P99))
	fmt.Fprintf(w, "| query under a Zipf load (s = %.2f, %d clients, %s): queries/s, p50 / p99 | %.0f, %s / %s µs |\n", c.Zipf, c.Clients, c.Duration, r.Load.RPS, us(r.Load.P50), us(r.Load.P99))
	fmt.Fprintf(w, "| tenants queried under the load; collection loads (beyond one per tenant queried: reloads after eviction, at least) | %d; %d (%d) |\n", r.Distinct, r.Loads, r.Evictions)
	fmt.Fprintf(w, "| store resident at the end / budget | %s / %s |\n", mib(r.Resident), mib(r.Budget))
	fmt.Fprintf(w, "| process heap in use; RSS (server side and load generator in one process) | %s; %s |\n", mib(int64(r.HeapInuse)), mib(r.RSS))
	fmt.Fprintln(w)
	fmt.Fprintln(w, r.reading())
	fmt.Fprintln(w)
}

// reading is the run's summary, from its own numbers.
func (r *TenantsResult) reading() string {
	if len(r.Startup) != 2 || r.Chunks == 0 {
		return ""
	}
	few, all := r.Startup[0], r.Startup[1]
	return fmt.Sprintf("Reading: start-up reads no collection and lists no directory: it makes the directory 0700, locks it and starts a background sweep of leftover temporary files; "+
		"a collection's files are checked (permissions, a format-1 file of its tenant) when it is read from disk, on first use, and a failed check refuses only that tenant's collection. "+
		"So its work does not grow with the tenants (the same system calls at any size): %s µs with %d collections, %s µs with %d. "+
		"A cold tenant's first query costs %.1f× a warm one at the median (the collection's snapshot and log checked, read and verified); no query failed or missed its tenant's document while collections loaded and were evicted. "+
		"The store's estimate is %.1f KiB per chunk (vector, payload with its lexical tokens, lexical index).",
		us(few.Median), few.Collections, us(all.Median), all.Collections,
		float64(r.Cold.P50)/float64(max(1, r.Warm.P50)), float64(r.TotalBytes)/float64(r.Chunks)/1024)
}

// Table prints a terminal summary.
func (r *TenantsResult) Table(w io.Writer) { r.Markdown(w, "bulkhead bench tenants") }
