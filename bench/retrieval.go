package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// RetrievalConfig sizes the knowledge-layer benchmark.
type RetrievalConfig struct {
	Tenants  int           // tenants with a knowledge collection; default 20
	Docs     int           // documents per tenant, about 4 KB each; default 200
	Writers  int           // concurrent ingesting goroutines; default 4
	Clients  int           // concurrent HTTP clients; default 4
	Duration time.Duration // measuring time per HTTP side; default 6 s
	Seed     uint64        // documents and queries; default 1
	Progress io.Writer
}

func (c *RetrievalConfig) defaults() {
	if c.Tenants <= 0 {
		c.Tenants = 20
	}
	if c.Docs <= 0 {
		c.Docs = 200
	}
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Duration <= 0 {
		c.Duration = 6 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// IngestSide is one way of writing the corpus.
type IngestSide struct {
	Name    string
	Docs    int
	Chunks  int
	Elapsed time.Duration
	Errors  int64
	cpu     cpuTimes // spent while the side ran
}

// ChunksPerSec is the side's throughput.
func (s IngestSide) ChunksPerSec() float64 { return float64(s.Chunks) / s.Elapsed.Seconds() }

// CPUPerDoc is the CPU time the machine spent per document while the side
// ran, and of it this process's (the rest is PostgreSQL's, and anything
// else running); false when it could not be read.
func (s IngestSide) CPUPerDoc() (machine, self time.Duration, ok bool) {
	return s.cpu.per(s.Docs)
}

// RetrievalResult is one run.
type RetrievalResult struct {
	Config    RetrievalConfig
	PGVersion string
	DocBytes  int // mean document size
	// Ingest is retrieval.Service.Ingest (embed + vector upsert + rows);
	// Rows is postgres.DB.CreateDocument without an index (the baseline);
	// Embed is the local embedder alone on the same chunks.
	Ingest, Rows, Embed IngestSide
	// Cases: POST /v1/query, POST /v1/answer, GET /v1/documents/{id}
	// (the baseline), last.
	Cases []APICase
	// Hits is the share of measured queries that returned a passage.
	Hits float64
	// Parts splits a query's time in process, one call at a time (no
	// HTTP): the whole retrieval.Service.Query, its text side alone
	// (retrieval.Service.SearchText, as Query runs it), PostgreSQL's
	// full-text top 20 on the same data with RLS off (superuser, GIN
	// index), and the point read (postgres.DB.Document) for scale. RPS is
	// unset.
	Parts []APICase
	// Matched is the mean number of the tenant's chunks a measured
	// query's words occur in (the rows PostgreSQL's full-text search
	// ranks).
	Matched float64
}

// benchWords is the vocabulary of the generated documents and queries.
var benchWords = strings.Fields(`account address agent answer archive audit backup balance billing branch
budget cache calendar capacity certificate channel checkout client cluster compliance contract
customer dashboard database deadline delivery deployment device discount document domain draft
employee encryption engine estimate export feature field firewall forecast gateway guideline hardware
incident index inventory invoice journal kernel key ledger license limit login maintenance manager
meeting memory message migration milestone monitor network notice onboarding order outage package
partner password payment payroll pipeline policy portal pricing printer privacy procedure product
project proposal protocol quota receipt record refund region release report request review roadmap
router salary schedule schema security server service session shipment signature storage supplier
support survey tax team template tenant ticket token training transfer upgrade vendor version
warehouse warranty webhook workflow`)

// benchDoc is a document of about size bytes of sentences drawn from
// benchWords (a skewed draw, so some words are common and some rare).
func benchDoc(rnd *mrand.Rand, size int) string {
	var b strings.Builder
	for b.Len() < size {
		n := 8 + rnd.IntN(10)
		for i := range n {
			w := benchWords[int(float64(len(benchWords))*rnd.Float64()*rnd.Float64())]
			if i == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			} else {
				b.WriteByte(' ')
			}
			b.WriteString(w)
		}
		b.WriteString(". ")
	}
	return b.String()
}

// benchQuery is two or three words from benchWords.
func benchQuery(rnd *mrand.Rand) string {
	ws := make([]string, 2+rnd.IntN(2))
	for i := range ws {
		ws[i] = benchWords[rnd.IntN(len(benchWords))]
	}
	return strings.Join(ws, " ")
}

// RunRetrieval measures the knowledge layer on a private cluster with the
// embedded vector store and the local embedder: ingestion throughput
// through retrieval.Service.Ingest against writing the same documents as
// rows only, then POST /v1/query and /v1/answer latency over loopback
// HTTP against a scoped point read (GET /v1/documents/{id}) on the same
// server, in interleaved rounds.
func RunRetrieval(ctx context.Context, cfg RetrievalConfig) (*RetrievalResult, error) {
	cfg.defaults()
	res := &RetrievalResult{Config: cfg}
	env, err := newCluster(ctx, cfg.Progress, map[string]string{"shared_buffers": "256MB"})
	if err != nil {
		return nil, err
	}
	defer env.close()
	const name = "bench_retrieval"
	db, err := env.openDB(ctx, name, max(cfg.Writers, cfg.Clients)+2, &res.PGVersion)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	store, err := embedded.New(filepath.Join(env.dir, "vectors"))
	if err != nil {
		return nil, err
	}
	defer store.Close()
	router := vector.NewRouter(retrieval.NewRegionCache(db, time.Minute), map[string]vector.Store{"default": store})
	svc, err := retrieval.New(retrieval.Config{DB: db, Vectors: router, Embedders: []llm.Embedder{llm.NewLocal()}, MinSimilarity: retrieval.DefaultMinSimilarity})
	if err != nil {
		return nil, err
	}

	// Tenants: cfg.Tenants with a collection (ingested through the
	// service), as many without (the rows-only baseline), one user each.
	fmt.Fprintf(cfg.Progress, "creating %d + %d tenants\n", cfg.Tenants, cfg.Tenants)
	mctx := bulkhead.AsMaintenance(ctx, "bench retrieval: setup")
	var know, rows fixedScope
	for i := range 2 * cfg.Tenants {
		var t bulkhead.Tenant
		if i < cfg.Tenants {
			t, err = svc.CreateTenant(mctx, fmt.Sprintf("knowledge-%d", i), "")
		} else {
			t, err = db.CreateTenant(mctx, fmt.Sprintf("rows-%d", i), "")
		}
		if err != nil {
			return nil, err
		}
		u, err := db.CreateEntity(mctx, t.ID, bulkhead.KindUser, "user", "")
		if err != nil {
			return nil, err
		}
		if i < cfg.Tenants {
			know = append(know, sample{tenant: t.ID, member: u.ID})
		} else {
			rows = append(rows, sample{tenant: t.ID, member: u.ID})
		}
	}
	scoped := func(s sample) context.Context {
		c, _ := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: s.tenant, Entity: s.member})
		return c
	}

	// The corpus: document j of tenant i has the same text on both sides.
	rnd := mrand.New(mrand.NewPCG(cfg.Seed, 1))
	docs := make([]string, cfg.Tenants*cfg.Docs)
	total := 0
	for i := range docs {
		docs[i] = benchDoc(rnd, 3900+rnd.IntN(400))
		total += len(docs[i])
	}
	res.DocBytes = total / len(docs)
	chunks := make([][]string, len(docs))
	for i, d := range docs {
		chunks[i] = postgres.Chunk(d, postgres.ChunkSize, postgres.ChunkOverlap)
	}

	// Ingestion, interleaved: each round writes a slice of the corpus
	// through both sides, alternating which goes first.
	type writeSide struct {
		side         *IngestSide
		write        func(i int) error
		docs, chunks atomic.Int64
		errs         atomic.Int64
	}
	docIDs := make([]uuid.UUID, len(docs)) // of the knowledge tenants, for the point reads
	sides := []*writeSide{
		{side: &res.Ingest, write: func(i int) error {
			d, err := svc.Ingest(scoped(know[i%cfg.Tenants]), postgres.NewDocument{Title: "doc " + strconv.Itoa(i), Content: docs[i]})
			docIDs[i] = d.ID
			return err
		}},
		{side: &res.Rows, write: func(i int) error {
			_, err := db.CreateDocument(scoped(rows[i%cfg.Tenants]), postgres.NewDocument{Title: "doc " + strconv.Itoa(i), Content: docs[i]}, nil)
			return err
		}},
		{side: &res.Embed, write: func(i int) error {
			_, err := llm.NewLocal().Embed(ctx, chunks[i])
			return err
		}},
	}
	res.Ingest.Name = "retrieval.Service.Ingest (embed + vectors + rows)"
	res.Rows.Name = "postgres.DB.CreateDocument, rows only (baseline)"
	res.Embed.Name = "local embedder alone, same chunks"
	const rounds = 4
	for r := range rounds {
		lo, hi := r*len(docs)/rounds, (r+1)*len(docs)/rounds
		for k := range sides {
			sd := sides[(k+r)%len(sides)]
			fmt.Fprintf(cfg.Progress, "ingest round %d/%d: %s\n", r+1, rounds, sd.side.Name)
			var next atomic.Int64
			next.Store(int64(lo))
			var wg sync.WaitGroup
			t0, c0 := time.Now(), readCPU()
			for range cfg.Writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= hi || ctx.Err() != nil {
							return
						}
						if err := sd.write(i); err != nil {
							if sd.errs.Add(1) == 1 {
								fmt.Fprintf(cfg.Progress, "  %s: %v\n", sd.side.Name, err)
							}
							continue
						}
						sd.docs.Add(1)
						sd.chunks.Add(int64(len(chunks[i])))
					}
				}()
			}
			wg.Wait()
			sd.side.Elapsed += time.Since(t0)
			sd.side.cpu = sd.side.cpu.add(readCPU().sub(c0))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, sd := range sides {
		sd.side.Docs, sd.side.Chunks, sd.side.Errors = int(sd.docs.Load()), int(sd.chunks.Load()), sd.errs.Load()
		if sd.side.Errors > 0 {
			return nil, fmt.Errorf("%s: %d of %d documents failed", sd.side.Name, sd.side.Errors, len(docs))
		}
	}

	// The tables just grew from nothing: analyze them, as autovacuum
	// would within its next round (autovacuum_naptime, a minute), so the
	// queries below are planned with statistics. Without them the
	// read-back of a query's candidates walks every document of the
	// tenant (docs/BENCHMARKS.md, "Read-backs planned without
	// statistics").
	if err := analyze(ctx, env.cl.SuperuserDSN(name)); err != nil {
		return nil, err
	}

	// Retrieval over HTTP: the real server on loopback, the knowledge
	// layer wired in, authentication replaced by a fixed scope.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: httpapi.NewServer(db, slog.New(slog.DiscardHandler), nil, httpapi.Options{Auth: know, Knowledge: svc})}
	go srv.Serve(l)
	defer srv.Close()
	base := "http://" + l.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients * 2, MaxConnsPerHost: cfg.Clients * 2}}
	post := func(path string) func(*mrand.Rand) (*http.Request, error) {
		return func(rnd *mrand.Rand) (*http.Request, error) {
			i := rnd.IntN(len(know))
			body, _ := json.Marshal(map[string]any{"query": benchQuery(rnd), "k": 5})
			req, err := http.NewRequest("POST", base+path, strings.NewReader(string(body)))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+strconv.Itoa(i))
			return req, nil
		}
	}
	type httpSide struct {
		name string
		next func(*mrand.Rand) (*http.Request, error)
	}
	hsides := []httpSide{
		{"POST /v1/query (k=5)", post("/v1/query")},
		{"POST /v1/answer (k=5, extractive)", post("/v1/answer")},
		{"GET /v1/documents/{id} (baseline)", func(rnd *mrand.Rand) (*http.Request, error) {
			i := rnd.IntN(len(docIDs)) // document i belongs to tenant i % Tenants
			req, err := http.NewRequest("GET", base+"/v1/documents/"+docIDs[i].String(), nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+strconv.Itoa(i%cfg.Tenants))
			return req, nil
		}},
	}
	// Warm up every side (connections, collections loaded) and count how
	// many queries find something.
	hits, asked := 0, 0
	wr := mrand.New(mrand.NewPCG(cfg.Seed, 2))
	for range 50 {
		req, _ := post("/v1/query")(wr)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		var qr struct {
			Passages []json.RawMessage `json:"passages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&qr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return nil, fmt.Errorf("warm-up query: status %d: %v", resp.StatusCode, err)
		}
		asked++
		if len(qr.Passages) > 0 {
			hits++
		}
	}
	res.Hits = float64(hits) / float64(asked)
	var errs [3]atomic.Int64
	for k := range hsides {
		load(ctx, client, 1, 300*time.Millisecond, hsides[k].next, &errs[k])
	}
	for k := range errs {
		errs[k].Store(0)
	}
	lats := make([][]time.Duration, len(hsides))
	var elapsed [3]time.Duration
	var done [3]int
	var cpu [3]cpuTimes
	for r := range rounds {
		for k := range hsides {
			sd := (k + r) % len(hsides)
			fmt.Fprintf(cfg.Progress, "http round %d/%d: %s\n", r+1, rounds, hsides[sd].name)
			c0 := readCPU()
			got, d := load(ctx, client, cfg.Clients, cfg.Duration/rounds, hsides[sd].next, &errs[sd])
			cpu[sd] = cpu[sd].add(readCPU().sub(c0))
			lats[sd] = append(lats[sd], got...)
			done[sd] += len(got)
			elapsed[sd] += d
		}
	}
	for k, sd := range hsides {
		res.Cases = append(res.Cases, APICase{Name: sd.name, RPS: float64(done[k]) / elapsed[k].Seconds(),
			P50: pct(lats[k], 50), P99: pct(lats[k], 99), Errors: errs[k].Load(), requests: done[k], cpu: cpu[k]})
	}
	if err := splitQuery(ctx, cfg, res, env.cl.SuperuserDSN(name), db, svc, know, docIDs, scoped); err != nil {
		return nil, err
	}
	return res, ctx.Err()
}

// openDB creates database name with bulkhead's schema and opens it as the
// server would (runtime and maintenance roles, the context key) with a
// pool of conns connections; version gets PostgreSQL's.
func (e *benchEnv) openDB(ctx context.Context, name string, conns int, version *string) (*postgres.DB, error) {
	if err := e.migrated(ctx, name); err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, postgres.Config{AppDSN: e.cl.DSN(postgres.Runtime, e.creds.Runtime, name),
		MaintenanceDSN: e.cl.DSN(postgres.Maintenance, e.creds.Maintenance, name), ContextKey: e.ctxKey, MaxConns: int32(conns)})
	if err != nil {
		return nil, err
	}
	if admin, err := pgx.Connect(ctx, e.cl.SuperuserDSN(name)); err == nil {
		admin.QueryRow(ctx, "SHOW server_version").Scan(version)
		admin.Close(ctx)
	}
	return db, nil
}

// analyze runs ANALYZE on the database at dsn as its superuser.
func analyze(ctx context.Context, dsn string) error {
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "ANALYZE")
	return err
}

// splitQuery fills res.Parts and res.Matched: the same queries, one call at
// a time in process, as a whole and as their full-text part, interleaved
// with a point read, so that the report can say where a query's time goes.
func splitQuery(ctx context.Context, cfg RetrievalConfig, res *RetrievalResult, superuser string, db *postgres.DB, svc *retrieval.Service,
	know fixedScope, docIDs []uuid.UUID, scoped func(sample) context.Context) error {
	// Up to 200 samples, fewer if they would take longer than an HTTP
	// side (at least 10).
	const maxSamples, minSamples = 200, 10
	// The matches are counted by the superuser, outside the timed calls:
	// every chunk in this corpus is tenant-visible.
	admin, err := pgx.Connect(ctx, superuser)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	fmt.Fprintf(cfg.Progress, "splitting a query's time (up to %d samples or %s)\n", maxSamples, cfg.Duration)
	start := time.Now()
	rnd := mrand.New(mrand.NewPCG(cfg.Seed, 3))
	// The RLS-off side of the text search: the superuser, with a GIN
	// index on the chunks' tsvector (which the runtime role's plans could
	// not use beneath the policies), on the same data.
	fmt.Fprintln(cfg.Progress, "indexing chunks.tsv with GIN for the RLS-off full-text side")
	if _, err := admin.Exec(ctx, `CREATE INDEX IF NOT EXISTS bench_chunks_tsv_gin ON bulkhead.chunks USING gin (tsv)`); err != nil {
		return err
	}
	// No second ANALYZE: RunRetrieval analyzed the tables (tsv included)
	// after ingestion, and nothing has written them since.
	names := []string{"retrieval.Service.Query (in process)", "retrieval.Service.SearchText (text side, RLS on)", "full-text top 20, superuser, GIN (RLS off)", "postgres.DB.Document (point read)"}
	lats := make([][]time.Duration, len(names))
	matched, samples := 0, 0
	for i := 0; i < maxSamples && (i < minSamples || time.Since(start) < cfg.Duration); i++ {
		samples++
		d := rnd.IntN(len(docIDs)) // document d belongs to tenant d % Tenants
		s := know[d%len(know)]
		q, c, doc := benchQuery(rnd), scoped(s), docIDs[d]
		calls := []func() error{
			func() error { _, err := svc.Query(c, retrieval.Query{Text: q, K: 5}); return err },
			func() error { _, err := svc.SearchText(c, q, 20); return err },
			func() error {
				rows, err := admin.Query(ctx, `WITH q AS (SELECT replace(plainto_tsquery('english', $2)::text, ' & ', ' | ')::tsquery AS q)
					SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q
					WHERE c.tenant_id = $1 AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 20`, s.tenant, q)
				if err != nil {
					return err
				}
				rows.Close()
				return rows.Err()
			},
			func() error { _, err := db.Document(c, doc); return err },
		}
		for k := range calls {
			j := (k + i) % len(calls)
			t0 := time.Now()
			if err := calls[j](); err != nil {
				return fmt.Errorf("%s: %w", names[j], err)
			}
			lats[j] = append(lats[j], time.Since(t0))
		}
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM bulkhead.chunks
			WHERE tenant_id = $1 AND tsv @@ replace(plainto_tsquery('english', $2)::text, ' & ', ' | ')::tsquery`, s.tenant, q).Scan(&n); err != nil {
			return err
		}
		matched += n
	}
	for k, name := range names {
		res.Parts = append(res.Parts, APICase{Name: name, P50: pct(lats[k], 50), P99: pct(lats[k], 99)})
	}
	res.Matched = float64(matched) / float64(samples)
	return nil
}

// Markdown writes r as the docs/BENCHMARKS.md retrieval section.
func (r *RetrievalResult) Markdown(w io.Writer, command string) {
	c := r.Config
	fmt.Fprintf(w, "## Retrieval (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores (%s/%s), PostgreSQL %s on a private cluster (fsync off), the embedded vector store in a temporary directory and the local lexical embedder (`%s`, %d dimensions, no model server); no chat model, so answers are extractive.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, r.PGVersion, llm.LocalModel, llm.LocalDimension)
	fmt.Fprintf(w, "Corpus: %d tenants × %d documents of %d bytes on average (%d chunks of ≤ %d bytes, %.1f per document), generated text over a %d-word vocabulary.\n\n",
		c.Tenants, c.Docs, r.DocBytes, r.Ingest.Chunks, postgres.ChunkSize, float64(r.Ingest.Chunks)/float64(max(1, r.Ingest.Docs)), len(benchWords))
	fmt.Fprintf(w, "**Ingestion**, %d concurrent writers, the corpus in 4 slices, each slice written by every side in rotating order. The baseline writes the same documents as rows only (`postgres.DB.CreateDocument` without an index: document, chunks and their full-text index, no embedding, no vectors) into as many other tenants of the same database.\n\n", c.Writers)
	fmt.Fprintln(w, "| side | documents | chunks | chunks/s | vs baseline | CPU per document, machine (of it this process), ms |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, s := range []IngestSide{r.Ingest, r.Rows, r.Embed} {
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.2f | %s |\n", s.Name, s.Docs, s.Chunks, s.ChunksPerSec(), s.ChunksPerSec()/r.Rows.ChunksPerSec(), cpuLabel(s))
	}
	fmt.Fprintf(w, "\n**Retrieval over HTTP**: the real server on loopback with the knowledge layer, authentication replaced by a fixed scope (RLS on), %d concurrent clients, each request as the user of a random tenant; queries are 2–3 words from the vocabulary (%.0f %% of warm-up queries returned a passage). The baseline is a scoped point read of one of the caller's documents on the same server. Three sides in 4 interleaved rounds, %s per side in all; latencies in µs.\n\n",
		c.Clients, 100*r.Hits, c.Duration)
	fmt.Fprintln(w, "| request | requests/s | p50 | p99 | p50 vs baseline | CPU per request, machine (of it this process), µs | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	base := r.Cases[len(r.Cases)-1]
	for _, k := range r.Cases {
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %.1f× | %s | %d |\n", k.Name, k.RPS, us(k.P50), us(k.P99), float64(k.P50)/float64(base.P50), reqCPULabel(k), k.Errors)
	}
	if len(r.Parts) > 0 {
		fmt.Fprintf(w, "\n**Where a query's time goes**: the same kind of queries in process, one call at a time, each sample running the three calls in rotating order; latencies in µs.\n\n")
		fmt.Fprintln(w, "| call | p50 | p99 |")
		fmt.Fprintln(w, "|---|---:|---:|")
		for _, k := range r.Parts {
			fmt.Fprintf(w, "| %s | %s | %s |\n", k.Name, us(k.P50), us(k.P99))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, r.reading())
}

// cpuLabel is a side's CPU per document, "machine (self)" in ms.
func cpuLabel(s IngestSide) string {
	m, self, ok := s.CPUPerDoc()
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.2f (%.2f)", msec(m), msec(self))
}

// reqCPULabel is a case's CPU per request, "machine (self)" in µs.
func reqCPULabel(c APICase) string {
	m, self, ok := c.CPUPerRequest()
	if !ok {
		return "n/a"
	}
	return us(m) + " (" + us(self) + ")"
}

// reading is the honest summary of a run, from its own numbers.
func (r *RetrievalResult) reading() string {
	q, a, base := r.Cases[0], r.Cases[1], r.Cases[len(r.Cases)-1]
	return fmt.Sprintf("Reading: ingesting through the knowledge layer runs at %.2f× the rows-only rate (%.0f vs %.0f chunks/s); "+
		"embedding the same chunks alone with the same concurrency takes %.0f %% of the ingest time, the rest is resolving the tenant's collection, the vector upsert and the same rows. "+
		"A query costs %.1f× a point read at the median (%s vs %s µs) and an extractive answer %.1f× (%s µs): each runs a full-text search and a vector search of the tenant's collection and reads the passages back in scope, where the point read is one indexed row. "+
		"%s"+
		"The local embedder is cheap; a remote embedding model would add its own round trip to every ingest and query, which this run does not measure.",
		r.Ingest.ChunksPerSec()/r.Rows.ChunksPerSec(), r.Ingest.ChunksPerSec(), r.Rows.ChunksPerSec(),
		100*r.Embed.Elapsed.Seconds()/r.Ingest.Elapsed.Seconds(),
		float64(q.P50)/float64(base.P50), us(q.P50), us(base.P50), float64(a.P50)/float64(base.P50), us(a.P50), r.split())
}

// split says where a query's time goes, from Parts.
func (r *RetrievalResult) split() string {
	if len(r.Parts) != 4 {
		return ""
	}
	q, text, off, point := r.Parts[0], r.Parts[1], r.Parts[2], r.Parts[3]
	return fmt.Sprintf("In process, one call at a time, a query took %s µs at the median, its text side alone %s µs (%.0f %%; it runs concurrently with the vector side), "+
		"%.2f× PostgreSQL's full-text top 20 on the same data as the superuser with a GIN index (RLS off, %s µs), and a point read %s µs; "+
		"the words of a query occur in %.0f of the tenant's ~%d chunks on average (a %d-word vocabulary). ",
		us(q.P50), us(text.P50), 100*float64(text.P50)/float64(q.P50), float64(text.P50)/float64(off.P50), us(off.P50), us(point.P50),
		r.Matched, r.Ingest.Chunks/max(1, r.Config.Tenants), len(benchWords))
}

// Table prints a terminal summary.
func (r *RetrievalResult) Table(w io.Writer) {
	for _, s := range []IngestSide{r.Ingest, r.Rows, r.Embed} {
		fmt.Fprintf(w, "%-52s %6d docs %7d chunks %9.0f chunks/s (%.2f of baseline)  CPU/doc %s ms\n", s.Name, s.Docs, s.Chunks, s.ChunksPerSec(), s.ChunksPerSec()/r.Rows.ChunksPerSec(), cpuLabel(s))
	}
	base := r.Cases[len(r.Cases)-1]
	for _, c := range r.Cases {
		fmt.Fprintf(w, "%-52s %8.0f req/s  p50 %9s µs  p99 %9s µs  (p50 %.1fx baseline)  CPU/req %s µs  errors %d\n", c.Name, c.RPS, us(c.P50), us(c.P99), float64(c.P50)/float64(base.P50), reqCPULabel(c), c.Errors)
	}
	for _, c := range r.Parts {
		fmt.Fprintf(w, "%-52s one at a time  p50 %9s µs  p99 %9s µs\n", c.Name, us(c.P50), us(c.P99))
	}
	fmt.Fprintf(w, "chunks a query's words occur in: %.0f on average\n", r.Matched)
	fmt.Fprintf(w, "queries returning a passage: %.0f %%\n", 100*r.Hits)
}
