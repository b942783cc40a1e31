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
	addr := freeAddr(t)
	// The CLI must name the same region directory, to find it held by serve
	// and go through serve's control plane.
	env := []string{"BULKHEAD_VECTOR_REGION=default=embedded:" + vecDir}
	s := startServe(t, dir, addr, env, "--addr", addr, "--rate-per-entity", "0")
	cli := func(args ...string) result {
		t.Helper()
		r := run(t, dir, env, args...)
		if r.code != 0 {
			t.Fatalf("bulkhead %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	tenant := idOf(cli("tenant", "create", "acme", "--json"))
	alice := idOf(mustRun(t, dir, "entity", "create", "alice", "--tenant", tenant, "--json"))
	tok := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tenant, "--entity", alice).stdout)

	rng := rand.New(rand.NewPCG(17, 5))
	acked := map[string]string{} // id -> content
	// post ingests a document of about n bytes of incompressible words
	// (TOAST would shrink repeated text) and records it if acknowledged.
	post := func(n int) (int, http.Header, []byte) {
		t.Helper()
		words := make([]string, 0, n/17)
		b := make([]byte, 8)
		for range n / 17 {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			words = append(words, hex.EncodeToString(b))
		}
		content := "disk full scenario " + strings.Join(words, " ")
		body, _ := json.Marshal(map[string]any{"title": "doc", "content": content, "visibility": "tenant"})
		req, _ := http.NewRequest("POST", s.base+"/v1/documents", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("POST /v1/documents: %v (no answer within 30 s)\n%s", err, s.output())
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusCreated {
			var d struct{ ID string }
			if json.Unmarshal(raw, &d) != nil || d.ID == "" {
				t.Fatalf("201 without an id: %s", raw)
			}
			acked[d.ID] = content
		}
		return resp.StatusCode, resp.Header, raw
	}
	mustPost := func(n int) {
		t.Helper()
		if code, _, raw := post(n); code != http.StatusCreated {
			t.Fatalf("POST /v1/documents: %d %s\n%s", code, raw, s.output())
		}
	}
	// refused checks a 507 answer: problem+json of its own type, no
	// Retry-After, none of the error's internals.
	refused := func(what string, code int, h http.Header, raw []byte) {
		t.Helper()
		if code != http.StatusInsufficientStorage || h.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(string(raw), "insufficient-storage") {
			t.Fatalf("%s: %d %s %s, want 507 problem+json insufficient-storage\n%s", what, code, h.Get("Content-Type"), raw, s.output())
		}
		if h.Get("Retry-After") != "" {
			t.Errorf("%s: Retry-After %q on a 507", what, h.Get("Retry-After"))
		}
		for _, leak := range []string{"no space", "No space", "device", "53100", "/tmp", vecMnt, dir, "collection", "pg_", "extend"} {
			if strings.Contains(string(raw), leak) {
				t.Errorf("%s: the problem body carries internals (%q): %s", what, leak, raw)
			}
		}
	}
	// reads checks that every acknowledged document reads back, that the
	// list holds exactly them (no half-written one), that a hybrid query
	// answers and that /readyz is 200.
	reads := func(when string) {
		t.Helper()
		if n := readAll(t, s.base, tok, acked); n != 0 {
			t.Fatalf("%s: %d of %d acknowledged documents unreadable", when, n, len(acked))
		}
		code, raw := api(t, s.base, tok, "GET", "/v1/documents?limit=100", "")
		var l struct {
			Items []struct{ ID string }
		}
		if code != 200 || json.Unmarshal(raw, &l) != nil {
			t.Fatalf("%s: GET /v1/documents: %d %s", when, code, raw)
		}
		listed := map[string]bool{}
		for _, d := range l.Items {
			listed[d.ID] = true
			if _, ok := acked[d.ID]; !ok {
				t.Errorf("%s: document %s listed but never acknowledged (half-written)", when, d.ID)
			}
		}
		if len(listed) != len(acked) {
			t.Errorf("%s: %d documents listed, %d acknowledged", when, len(listed), len(acked))
		}
		if code, raw := api(t, s.base, tok, "POST", "/v1/query", `{"query":"disk full scenario"}`); code != 200 || !strings.Contains(string(raw), "disk full scenario") {
			t.Errorf("%s: POST /v1/query: %d %.300s", when, code, raw)
		}
		if code, body, err := s.get("/readyz"); code != 200 {
			t.Errorf("%s: /readyz %d %s %v", when, code, body, err)
		}
	}
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
	t.Logf("serve's lines about the refused writes:\n%s\n%s", linesWith(s.stderr.String(), "no space left for the write"), linesWith(s.stderr.String(), "status=507"))
	if _, m, err := s.get("/metrics"); err != nil || !strings.Contains(m, `code="507"`) {
		t.Errorf("/metrics has no 507 count: %v\n%s", err, linesWith(m, "bulkhead_http_requests_total"))
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
