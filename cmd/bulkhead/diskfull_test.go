package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/smallfs"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TestDiskFull (issue 17, scenario 5): the real serve binary with its data
// dir, and so PostgreSQL's data dir (DATA_DIR/pg) and its WAL, on a tmpfs
// of its own, and the vector region on another, 4 MiB one. Each is filled
// with a ballast file in turn. A document ingest then answers 507
// problem+json (no Retry-After, no path, no driver text) and stores
// nothing: no document row, the vector files byte for byte unchanged.
// Reads (the documents, a hybrid query, /readyz) keep working. Once the
// ballast is removed the same server, not restarted, stores documents
// again, and tenant reconcile finds every chunk with its point.
func TestDiskFull(t *testing.T) {
	dir := mountDataDir(t, 128<<20)
	vecMnt := smallfs.Mount(t, 4<<20)
	vecDir := filepath.Join(vecMnt, "default")
	e := startFull(t, dir, vecDir)
	s, tenant, alice, acked := e.s, e.tenant, e.alice, e.acked
	post, mustPost, reads, cli := e.post, e.mustPost, e.reads, e.cli
	refused := func(what string, code int, h http.Header, raw []byte) {
		t.Helper()
		e.refused(what, code, h, raw, vecMnt)
	}
	// A fresh WAL segment: the writes below must fail for want of table
	// pages, not of a new WAL segment (that is TestWALFull).
	e.switchWAL(t)
	for range 3 {
		mustPost(4 << 10)
	}
	reads("before")

	// The vector directory full: the points can't be stored, so the rows'
	// transaction rolls back (retrieval.Ingest stores the points inside it).
	vecBallast := filepath.Join(vecMnt, "ballast")
	smallfs.Fill(t, vecBallast)
	before := filesOf(t, vecDir)
	code, h, raw := post(64 << 10)
	refused("ingest with the vector directory full", code, h, raw)
	if after := filesOf(t, vecDir); !equalFiles(before, after) {
		t.Errorf("the vector files changed after a refused ingest (a half-written record)")
	}
	reads("vector directory full")
	smallfs.Free(t, vecBallast)
	mustPost(64 << 10)
	reads("vector directory freed")

	// PostgreSQL's data dir full: a write that fits in pages already
	// allocated may still succeed; the first that needs a new page of a
	// table, its TOAST table or an index is refused with SQLSTATE 53100.
	pgBallast := filepath.Join(dir, "ballast")
	smallfs.Fill(t, pgBallast)
	var pgRefused bool
	for i := 0; i < 20 && !pgRefused; i++ {
		code, h, raw := post(64 << 10)
		if code == http.StatusCreated {
			continue
		}
		refused("ingest with PostgreSQL's data dir full", code, h, raw)
		pgRefused = true
		t.Logf("PostgreSQL's data dir full: %d documents of 64 KiB still fitted, the next was refused", i)
	}
	if !pgRefused {
		t.Fatalf("20 documents of 64 KiB stored with PostgreSQL's data dir full: the ballast did not fill it\n%s", s.output())
	}
	reads("PostgreSQL's data dir full")
	if pg, err := os.ReadFile(filepath.Join(dir, "postgres.log")); err == nil {
		t.Logf("postgres.log, lines about space:\n%s", linesWith(string(pg), "space"))
	}
	smallfs.Free(t, pgBallast)
	mustPost(64 << 10)
	reads("PostgreSQL's data dir freed")

	var rec struct{ Chunks, Added, Removed int }
	if err := json.Unmarshal([]byte(cli("tenant", "reconcile", tenant).stdout), &rec); err != nil || rec.Added != 0 || rec.Chunks == 0 {
		t.Errorf("tenant reconcile: %+v (%v); want every chunk with its point already (added 0)", rec, err)
	}
	if !strings.Contains(s.stderr.String(), "no space left for the write") {
		t.Errorf("serve logged no line about the refused writes:\n%s", s.output())
	}
	t.Logf("serve's lines about the refused writes (one a second at most):\n%s", linesWith(s.stderr.String(), "no space left for the write"))
	if _, m, err := s.get("/metrics"); err != nil || !strings.Contains(m, `code="507"`) || !strings.Contains(m, `bulkhead_vector_compaction_failures_total{region="default"}`) {
		t.Errorf("/metrics has no 507 count or no compaction failure count: %v\n%s", err, linesWith(m, "bulkhead_"))
	}
	s.interrupt(t)

	// The points: those of the acknowledged documents, and no others. The
	// points an ingest stored while PostgreSQL refused its rows (they are
	// written side by side, retrieval.Ingest) were taken back.
	vs, err := embedded.New(vecDir)
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	tid, eid := uuid.MustParse(tenant), uuid.MustParse(alice)
	router := vector.NewRouter(vector.NewStaticRegions(map[uuid.UUID]string{tid: "default"}), map[string]vector.Store{"default": vs})
	ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tid, Entity: eid})
	if err != nil {
		t.Fatal(err)
	}
	coll, err := router.Collection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]int{}
	for after := uuid.Nil; ; {
		page, err := router.Scroll(ctx, coll, after, vector.MaxScrollLimit)
		if err != nil {
			t.Fatalf("scroll the tenant's points: %v", err)
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			docs[p.Payload["document_id"]]++
		}
		after = page[len(page)-1].ID
	}
	for id := range docs {
		if _, ok := acked[id]; !ok {
			t.Errorf("%d points of document %s, never acknowledged, are left in the vector store", docs[id], id)
		}
	}
	for id := range acked {
		if docs[id] == 0 {
			t.Errorf("acknowledged document %s has no points", id)
		}
	}
}

// TestWALFull (issue 17, scenario 5, the hard case): PostgreSQL's data dir
// full when it needs a new WAL segment. PostgreSQL cannot continue without
// WAL: the backend PANICs, and crash recovery, which must write WAL, fails
// at every start while the disk stays full. Reads fail then too. What
// bulkhead guarantees: every answer is 503 with Retry-After (never 500,
// never a hang), /readyz is 503, the supervisor keeps retrying (capped
// backoff, each failure logged with PostgreSQL's reason), and once space
// is freed PostgreSQL recovers and the same serve, not restarted, serves
// every acknowledged document and stores new ones.
func TestWALFull(t *testing.T) {
	dir := mountDataDir(t, 128<<20)
	e := startFull(t, dir, "")
	for range 3 {
		e.mustPost(4 << 10)
	}
	e.reads("before")

	ctx := context.Background()
	admin, err := e.superuser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	ballast := filepath.Join(dir, "ballast")
	smallfs.Fill(t, ballast)
	// The current segment is closed; the next WAL record needs a new one.
	_, err = admin.Exec(ctx, "SELECT pg_switch_wal(); SELECT pg_logical_emit_message(false, 'bulkhead', 'needs a new segment')")
	t.Logf("a WAL record needing a new segment on a full disk: %v", err)
	poll(t, "/readyz to answer 503", 30*time.Second, func() bool { code, _, _ := e.s.get("/readyz"); return code == 503 })
	poll(t, "a failed restart of PostgreSQL", 30*time.Second, func() bool {
		return strings.Contains(e.s.stderr.String(), "PostgreSQL restart failed; retrying")
	})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/documents", `{"title":"t","content":"while the WAL is full","visibility":"tenant"}`},
		{"GET", "/v1/documents", ""},
		{"POST", "/v1/query", `{"query":"disk full scenario"}`},
	} {
		req, _ := http.NewRequest(c.method, e.s.base+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+e.tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s with PostgreSQL down: %v (no answer within 30 s)", c.method, c.path, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || strings.Contains(string(raw), "space") {
			t.Errorf("%s %s with PostgreSQL down for want of WAL space: %d Retry-After %q %s, want 503 with Retry-After",
				c.method, c.path, resp.StatusCode, resp.Header.Get("Retry-After"), raw)
		}
	}
	if pg, err := os.ReadFile(filepath.Join(dir, "postgres.log")); err == nil {
		t.Logf("postgres.log, lines about space:\n%s", linesWith(string(pg), "space"))
	}

	smallfs.Free(t, ballast)
	freed := time.Now()
	poll(t, "/readyz to answer 200 after the space was freed", 60*time.Second, func() bool { code, _, _ := e.s.get("/readyz"); return code == 200 })
	t.Logf("/readyz 200 %s after the ballast was removed (the supervisor's backoff is capped at 10 s)", time.Since(freed).Round(10*time.Millisecond))
	e.reads("after the WAL space was freed")
	e.mustPost(4 << 10)
	e.reads("after a write")
	_, m, _ := e.s.get("/metrics")
	t.Logf("metrics:\n%s", linesWith(m, "bulkhead_postgres_"))
	for _, l := range []string{"PostgreSQL postmaster died; restarting it", "PostgreSQL restart failed; retrying", "PostgreSQL restarted after a crash"} {
		if !strings.Contains(e.s.stderr.String(), l) {
			t.Errorf("serve's log has no line %q", l)
		}
	}
	select {
	case <-e.s.done:
		t.Fatalf("serve exited: it must recover without a restart\n%s", e.s.output())
	default:
	}
	e.s.interrupt(t)
}

// fullEnv is a serve on a data dir that a test fills, with one tenant,
// one entity and its token, and the documents acknowledged so far.
type fullEnv struct {
	t                  *testing.T
	s                  *server
	dir                string
	env                []string
	tenant, alice, tok string
	acked              map[string]string // id -> content
	rng                *rand.Rand
}

// startFull starts serve on dir (its vectors in vecDir, "" for the
// default) and creates the tenant, the entity and the token.
func startFull(t *testing.T, dir, vecDir string) *fullEnv {
	t.Helper()
	e := &fullEnv{t: t, dir: dir, acked: map[string]string{}, rng: rand.New(rand.NewPCG(17, 5))}
	if vecDir != "" {
		// The CLI must name the same region directory, to find it held by
		// serve and go through serve's control plane.
		e.env = []string{"BULKHEAD_VECTOR_REGION=default=embedded:" + vecDir}
	}
	addr := freeAddr(t)
	e.s = startServe(t, dir, addr, e.env, "--addr", addr, "--rate-per-entity", "0")
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	e.tenant = idOf(e.cli("tenant", "create", "acme", "--json"))
	e.alice = idOf(e.cli("entity", "create", "alice", "--tenant", e.tenant, "--json"))
	e.tok = strings.TrimSpace(e.cli("token", "mint", "--tenant", e.tenant, "--entity", e.alice).stdout)
	return e
}

// cli runs bin with e's environment and fails the test unless it exits 0.
func (e *fullEnv) cli(args ...string) result {
	e.t.Helper()
	r := run(e.t, e.dir, e.env, args...)
	if r.code != 0 {
		e.t.Fatalf("bulkhead %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// post ingests a document of about n bytes of incompressible words
// (TOAST would shrink repeated text) and records it if acknowledged.
func (e *fullEnv) post(n int) (int, http.Header, []byte) {
	t := e.t
	t.Helper()
	words := make([]string, 0, n/17)
	b := make([]byte, 8)
	for range n / 17 {
		for i := range b {
			b[i] = byte(e.rng.Uint32())
		}
		words = append(words, hex.EncodeToString(b))
	}
	content := "disk full scenario " + strings.Join(words, " ")
	body, _ := json.Marshal(map[string]any{"title": "doc", "content": content, "visibility": "tenant"})
	req, _ := http.NewRequest("POST", e.s.base+"/v1/documents", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+e.tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST /v1/documents: %v (no answer within 30 s)\n%s", err, e.s.output())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		var d struct{ ID string }
		if json.Unmarshal(raw, &d) != nil || d.ID == "" {
			t.Fatalf("201 without an id: %s", raw)
		}
		e.acked[d.ID] = content
	}
	return resp.StatusCode, resp.Header, raw
}

func (e *fullEnv) mustPost(n int) {
	e.t.Helper()
	if code, _, raw := e.post(n); code != http.StatusCreated {
		e.t.Fatalf("POST /v1/documents: %d %s\n%s", code, raw, e.s.output())
	}
}

// refused checks a 507 answer: problem+json of its own type, no
// Retry-After, none of the error's internals.
func (e *fullEnv) refused(what string, code int, h http.Header, raw []byte, paths ...string) {
	t := e.t
	t.Helper()
	if code != http.StatusInsufficientStorage || h.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(raw), "insufficient-storage") {
		t.Fatalf("%s: %d %s %s, want 507 problem+json insufficient-storage\n%s", what, code, h.Get("Content-Type"), raw, e.s.output())
	}
	if h.Get("Retry-After") != "" {
		t.Errorf("%s: Retry-After %q on a 507", what, h.Get("Retry-After"))
	}
	for _, leak := range append([]string{"no space", "No space", "device", "53100", "/tmp", e.dir, "collection", "pg_", "extend"}, paths...) {
		if strings.Contains(string(raw), leak) {
			t.Errorf("%s: the problem body carries internals (%q): %s", what, leak, raw)
		}
	}
}

// reads checks that every acknowledged document reads back, that the list
// holds exactly them (no half-written one), that a hybrid query answers
// and that /readyz is 200.
func (e *fullEnv) reads(when string) {
	t := e.t
	t.Helper()
	if n := readAll(t, e.s.base, e.tok, e.acked); n != 0 {
		t.Fatalf("%s: %d of %d acknowledged documents unreadable", when, n, len(e.acked))
	}
	code, raw := api(t, e.s.base, e.tok, "GET", "/v1/documents?limit=100", "")
	var l struct {
		Items []struct{ ID string }
	}
	if code != 200 || json.Unmarshal(raw, &l) != nil {
		t.Fatalf("%s: GET /v1/documents: %d %s", when, code, raw)
	}
	listed := map[string]bool{}
	for _, d := range l.Items {
		listed[d.ID] = true
		if _, ok := e.acked[d.ID]; !ok {
			t.Errorf("%s: document %s listed but never acknowledged (half-written)", when, d.ID)
		}
	}
	if len(listed) != len(e.acked) {
		t.Errorf("%s: %d documents listed, %d acknowledged", when, len(listed), len(e.acked))
	}
	if code, raw := api(t, e.s.base, e.tok, "POST", "/v1/query", `{"query":"disk full scenario"}`); code != 200 || !strings.Contains(string(raw), "disk full scenario") {
		t.Errorf("%s: POST /v1/query: %d %.300s", when, code, raw)
	}
	if code, body, err := e.s.get("/readyz"); code != 200 {
		t.Errorf("%s: /readyz %d %s %v", when, code, body, err)
	}
}

// superuser connects to the bulkhead database as the bootstrap superuser.
func (e *fullEnv) superuser(ctx context.Context) (*pgx.Conn, error) {
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	if err := json.Unmarshal([]byte(e.cli("db", "info", "--json").stdout), &info); err != nil {
		e.t.Fatal(err)
	}
	return pgx.Connect(ctx, info.SuperuserDSN)
}

// switchWAL makes PostgreSQL start a new WAL segment now, while there is
// space for it.
func (e *fullEnv) switchWAL(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	c, err := e.superuser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SELECT pg_switch_wal(); SELECT pg_logical_emit_message(false, 'bulkhead', 'test')"); err != nil {
		t.Fatal(err)
	}
}

// mountDataDir mounts a tmpfs of size bytes as a bulkhead data dir; when
// the test ends, the cluster on it is stopped (before the unmount).
func mountDataDir(t *testing.T, size int64) string {
	t.Helper()
	dir := smallfs.Mount(t, size)
	t.Cleanup(func() {
		if r := run(t, dir, nil, "db", "stop"); r.code != 0 {
			t.Errorf("cleanup: db stop: %s", r)
		}
		for _, p := range processesOn(dir) {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	return dir
}

// filesOf returns the contents of the files in dir by name.
func filesOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func equalFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// linesWith returns the lines of s that contain sub.
func linesWith(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
