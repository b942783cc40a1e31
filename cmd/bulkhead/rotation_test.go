package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 12, findings 1 and 2, with real processes: bulkhead serve runs,
// writers post confidential documents over HTTP, and the CLI beside it
// rotates the tenant's key, then the KEK; a tenant is created through
// /admin/v1 after the KEK rotation. Then serve restarts (with the new KEK)
// and every acknowledged document must open.

// writers posts confidential documents with tok until stop is called.
type writers struct {
	mu      sync.Mutex
	written map[string]string // id -> content
	stop    atomic.Bool
	wg      sync.WaitGroup
	errs    chan error
}

func startWriters(t *testing.T, base, tok, label string, n int) *writers {
	t.Helper()
	w := &writers{written: map[string]string{}, errs: make(chan error, n)}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for j := 0; !w.stop.Load(); j++ {
				content := fmt.Sprintf("%s writer %d document %d: confidential", label, i, j)
				body, _ := json.Marshal(map[string]any{"title": content, "content": content, "confidential": true})
				req, _ := http.NewRequest("POST", base+"/v1/documents", strings.NewReader(string(body)))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					w.errs <- err
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					w.errs <- fmt.Errorf("POST /v1/documents: %d %s", resp.StatusCode, raw)
					return
				}
				var d struct{ ID string }
				if err := json.Unmarshal(raw, &d); err != nil || d.ID == "" {
					w.errs <- fmt.Errorf("POST /v1/documents: %s", raw)
					return
				}
				w.mu.Lock()
				w.written[d.ID] = content
				w.mu.Unlock()
			}
		}()
	}
	return w
}

func (w *writers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.written)
}

// waitFor returns once n more documents are acknowledged (or a writer failed).
func (w *writers) waitFor(t *testing.T, n int) {
	t.Helper()
	target := w.count() + n
	for w.count() < target && len(w.errs) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *writers) finish(t *testing.T) map[string]string {
	t.Helper()
	w.stop.Store(true)
	w.wg.Wait()
	close(w.errs)
	for err := range w.errs {
		t.Errorf("writer: %v", err)
	}
	return w.written
}

// api calls base with a bearer token and returns the status and body.
func api(t *testing.T, base, tok, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// readAll GETs every document and counts those that don't come back.
func readAll(t *testing.T, base, tok string, docs map[string]string) (unreadable int) {
	t.Helper()
	for id, content := range docs {
		code, raw := api(t, base, tok, "GET", "/v1/documents/"+id, "")
		var d struct{ Content string }
		json.Unmarshal(raw, &d)
		if code != 200 || d.Content != content {
			unreadable++
			if unreadable <= 3 {
				t.Errorf("GET /v1/documents/%s: %d %s", id, code, raw)
			}
		}
	}
	return unreadable
}

func TestOnlineKeyRotationLosesNothing(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	// Unlimited request rate: the writers and the read-back are one entity.
	s := startServe(t, dir, addr, nil, "--addr", addr, "--rate-per-entity", "0")
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	tenant := idOf(mustRun(t, dir, "tenant", "create", "acme", "--json"))
	alice := idOf(mustRun(t, dir, "entity", "create", "alice", "--tenant", tenant, "--json"))
	tok := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tenant, "--entity", alice).stdout)

	// 1. keys rotate beside the running server, writers active. The server
	// reads first, so it holds the old key in its cache.
	w := startWriters(t, s.base, tok, "rotate", 3)
	w.waitFor(t, 10)
	if n := readAll(t, s.base, tok, snapshot(w)); n != 0 {
		t.Fatalf("%d documents unreadable before any rotation", n)
	}
	for range 2 {
		r := mustRun(t, dir, "keys", "rotate", "--tenant", tenant)
		if !strings.Contains(r.stdout, "retired keys [") || strings.Contains(r.stdout, "retired keys []") {
			t.Errorf("keys rotate did not retire the old key: %s", r)
		}
		w.waitFor(t, 10) // the server keeps writing after the rotation
	}
	written := w.finish(t)
	// Through the running server (its cache is stale for re-encrypted values).
	if n := readAll(t, s.base, tok, written); n != 0 {
		t.Errorf("%d of %d documents unreadable through the running server after keys rotate", n, len(written))
	}
	var st []struct {
		Primary uint32           `json:"primary_key"`
		Keys    []uint32         `json:"keys"`
		Values  map[string]int64 `json:"values_by_key"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "keys", "status", "--json").stdout), &st); err != nil || len(st) != 1 {
		t.Fatalf("keys status: %+v %v", st, err)
	}
	for k := range st[0].Values {
		if k != fmt.Sprint(st[0].Primary) {
			t.Errorf("keys status: values under key %s, not the primary %d: %+v", k, st[0].Primary, st[0])
		}
	}

	// 2. keys rotate-kek beside the running server (still configured with
	// the old KEK), writers active; then a tenant created through
	// /admin/v1 gets keys and a confidential document.
	w = startWriters(t, s.base, tok, "rotate-kek", 3)
	w.waitFor(t, 10)
	newKEK := filepath.Join(dir, "kek-2.json")
	r := mustRun(t, dir, "keys", "rotate-kek", "--to-file", newKEK)
	if !strings.Contains(r.stdout, "1 keysets re-wrapped") {
		t.Errorf("rotate-kek: %s", r)
	}
	w.waitFor(t, 10)
	opTok, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(opTok))
	code, raw := api(t, s.base, op, "POST", "/admin/v1/tenants", `{"name":"created after rotate-kek"}`)
	if code != 201 {
		t.Fatalf("POST /admin/v1/tenants: %d %s", code, raw)
	}
	var created struct{ ID string }
	json.Unmarshal(raw, &created)
	code, raw = api(t, s.base, op, "POST", "/admin/v1/tenants/"+created.ID+"/entities", `{"name":"eve","kind":"user"}`)
	if code != 201 {
		t.Fatalf("POST /admin/v1/tenants/%s/entities: %d %s", created.ID, code, raw)
	}
	var eve struct{ ID string }
	json.Unmarshal(raw, &eve)
	newEnv := []string{"BULKHEAD_KEK_FILE=" + newKEK}
	mint := run(t, dir, newEnv, "token", "mint", "--tenant", created.ID, "--entity", eve.ID)
	if mint.code != 0 {
		t.Fatal(mint)
	}
	eveTok := strings.TrimSpace(mint.stdout)
	ew := startWriters(t, s.base, eveTok, "new tenant", 1)
	ew.waitFor(t, 5)
	w.waitFor(t, 5)
	for id, c := range w.finish(t) {
		written[id] = c
	}
	eveDocs := ew.finish(t)

	// 3. Restart with the new KEK: everything acknowledged opens.
	s.interrupt(t)
	s = startServe(t, dir, addr, newEnv, "--addr", addr, "--rate-per-entity", "0")
	n1 := readAll(t, s.base, tok, written)
	n2 := readAll(t, s.base, eveTok, eveDocs)
	t.Logf("%d values written during rotation, %d unreadable", len(written)+len(eveDocs), n1+n2)
	if n1+n2 != 0 {
		t.Errorf("%d of %d acknowledged documents unreadable after the restart", n1+n2, len(written)+len(eveDocs))
	}
	s.interrupt(t)
}

func snapshot(w *writers) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.written))
	for k, v := range w.written {
		out[k] = v
	}
	return out
}
