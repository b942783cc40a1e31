package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Modes of fakeModel.
const (
	modelOK       int32 = iota // 8-dimensional word-hash vectors
	modelHang                  // answers nothing until the client gives up
	modelFail                  // 500
	modelWrongDim              // 200 with 4-dimensional vectors
)

// fakeModel is a real HTTP server speaking the OpenAI embeddings API, whose
// behaviour the test switches. In modelHang it tells arrived about each
// request and left when the client has given up on it.
type fakeModel struct {
	*httptest.Server
	mode     atomic.Int32
	requests atomic.Int64
	hanging  atomic.Int64 // requests parked in modelHang
	arrived  chan struct{}
	left     chan struct{}
}

func newFakeModel(t *testing.T) *fakeModel {
	t.Helper()
	m := &fakeModel{arrived: make(chan struct{}, 64), left: make(chan struct{}, 64)}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.requests.Add(1)
		var req struct{ Input []string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		dim := 8
		switch m.mode.Load() {
		case modelHang:
			m.hanging.Add(1)
			m.arrived <- struct{}{}
			<-r.Context().Done()
			m.left <- struct{}{}
			m.hanging.Add(-1)
			return
		case modelFail:
			http.Error(w, `{"error":{"message":"upstream exploded"}}`, http.StatusInternalServerError)
			return
		case modelWrongDim:
			dim = 4
		}
		type item struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var out struct {
			Data []item `json:"data"`
		}
		for i, text := range req.Input {
			v := make([]float32, dim)
			v[0] = 0.01
			for _, word := range strings.Fields(strings.ToLower(text)) {
				h := fnv.New32a()
				h.Write([]byte(strings.Trim(word, ".,:?")))
				v[h.Sum32()%uint32(dim)]++
			}
			out.Data = append(out.Data, item{Index: i, Embedding: v})
		}
		json.NewEncoder(w).Encode(out)
	}))
	// The hanging handler returns once the client is gone: Close would
	// wait for it otherwise.
	t.Cleanup(func() {
		m.mode.Store(modelOK)
		m.CloseClientConnections()
		m.Close()
	})
	return m
}

// metric returns the value of the series line that starts with series
// (name and labels) in a Prometheus text exposition, or -1.
func metric(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// TestSlowAndFailingEmbedder (issue 17, scenario 6): the serve binary with
// an OpenAI-compatible embedding endpoint that hangs, answers 500 or
// answers vectors of the wrong dimension. Ingest and query answer a clear
// problem (503 with Retry-After; 502 for the wrong dimension) within the
// embedding deadline, write nothing, count each failure by reason in
// /metrics, hold no database connection while the endpoint hangs (the pool
// has one connection: a concurrent read still succeeds), and work again,
// without a restart, once the endpoint does.
func TestSlowAndFailingEmbedder(t *testing.T) {
	model := newFakeModel(t)
	env := []string{"BULKHEAD_EMBEDDER=openai", "BULKHEAD_OPENAI_BASE_URL=" + model.URL + "/v1",
		"BULKHEAD_EMBEDDING_MODEL=fake8", "BULKHEAD_EMBEDDING_DIM=8"}
	dir := mustDataDir(t)
	addr := freeAddr(t)
	const deadline = 3 * time.Second
	s := startServe(t, dir, addr, env, "--addr", addr, "--db-pool-size", "1",
		"--embedding-deadline", deadline.String(), "--openai-max-retries", "1")
	var ten struct{ ID string }
	if r := run(t, dir, env, "tenant", "create", "acme", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &ten) != nil {
		t.Fatalf("tenant create: %s", r)
	}
	var ent struct{ ID string }
	if r := run(t, dir, env, "entity", "create", "alice", "--tenant", ten.ID, "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &ent) != nil {
		t.Fatalf("entity create: %s", r)
	}
	tok := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", ten.ID, "--entity", ent.ID).stdout)

	// The client's own timeout is far beyond the deadline: a hang of the
	// server shows as a client error, not a slow pass.
	client := &http.Client{Timeout: 30 * time.Second}
	type answer struct {
		code int
		h    http.Header
		body map[string]any
		took time.Duration
	}
	call := func(method, path, body string) answer {
		t.Helper()
		req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, s.output())
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		a := answer{code: resp.StatusCode, h: resp.Header, took: time.Since(start)}
		json.Unmarshal(raw, &a.body)
		return a
	}
	documents := func() int {
		t.Helper()
		a := call("GET", "/v1/documents", "")
		items, ok := a.body["items"].([]any)
		if a.code != 200 || !ok {
			t.Fatalf("list documents: %d %v", a.code, a.body)
		}
		return len(items)
	}
	const doc = `{"title":"refunds","content":"Acme refunds take 30 days. Returns need a receipt.","visibility":"tenant"}`
	const question = `{"query":"how long do refunds take?"}`

	cases := []struct {
		name    string
		mode    int32
		status  int
		problem string
		retry   bool   // Retry-After expected
		reason  string // counted in bulkhead_dependency_failures_total
	}{
		{"hangs", modelHang, 503, "model-unavailable", true, "deadline"},
		{"answers 500", modelFail, 503, "model-unavailable", true, "status_5xx"},
		{"returns the wrong dimension", modelWrongDim, 502, "bad-model-response", false, "bad_response"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			model.mode.Store(c.mode)
			series := `bulkhead_dependency_failures_total{dependency="embedder",reason="` + c.reason + `"}`
			_, before, err := s.get("/metrics")
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range []struct{ path, body string }{{"/v1/documents", doc}, {"/v1/query", question}} {
				a := call("POST", op.path, op.body)
				t.Logf("POST %s with an endpoint that %s: %d in %v", op.path, c.name, a.code, a.took.Round(time.Millisecond))
				if a.code != c.status || a.body["type"] != "https://bulkhead.dev/problems/"+c.problem || !strings.HasPrefix(a.h.Get("Content-Type"), "application/problem+json") {
					t.Errorf("POST %s: %d %v, want a %d %s problem", op.path, a.code, a.body, c.status, c.problem)
				}
				if got := a.h.Get("Retry-After") != ""; got != c.retry {
					t.Errorf("POST %s: Retry-After %q, want one: %v", op.path, a.h.Get("Retry-After"), c.retry)
				}
				if b := mustJSON(a.body); strings.Contains(string(b), "exploded") || strings.Contains(string(b), model.URL) {
					t.Errorf("POST %s: the problem carries internals: %s", op.path, b)
				}
			}
			if n := documents(); n != 0 {
				t.Errorf("%d documents stored while the embedder %s, want none", n, c.name)
			}
			_, after, err := s.get("/metrics")
			if err != nil {
				t.Fatal(err)
			}
			if d := metric(after, series) - metric(before, series); d != 2 || metric(before, series) < 0 {
				t.Errorf("%s rose by %v, want 2 (one ingest, one query)", series, d)
			}
		})
	}

	// While the endpoint hangs, the request waiting on it holds no database
	// connection: with a pool of one, another request of the same tenant
	// is answered while the embedding call is still parked in the fake.
	t.Run("no connection held while waiting", func(t *testing.T) {
		model.mode.Store(modelHang)
		// The hangs above signalled too: wait until each has left, then
		// forget them.
		for model.hanging.Load() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		for len(model.left) > 0 || len(model.arrived) > 0 {
			select {
			case <-model.left:
			case <-model.arrived:
			}
		}
		ingested := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest("POST", s.base+"/v1/documents", strings.NewReader(doc))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				ingested <- answer{}
				return
			}
			resp.Body.Close()
			ingested <- answer{code: resp.StatusCode}
		}()
		<-model.arrived
		// Several rounds: the ingest's transaction, if it held one while
		// embedding, might not have taken the connection yet at the first.
		for round := range 5 {
			_, m, err := s.get("/metrics")
			if err != nil {
				t.Fatal(err)
			}
			acquired := metric(m, "bulkhead_db_pool_acquired")
			n := documents() // needs the pool's only connection
			select {
			case <-model.left:
				t.Fatalf("round %d: the embedding call ended before the concurrent read was answered (the read waited for the ingest's connection, or the machine is too slow for a %v deadline)", round, deadline)
			default:
			}
			if acquired != 0 || n != 0 {
				t.Fatalf("round %d, while the embedder hangs: %v connections acquired, %d documents; want 0 and 0", round, acquired, n)
			}
		}
		if a := <-ingested; a.code != 503 {
			t.Errorf("the hanging ingest answered %d, want 503", a.code)
		}
	})

	// The endpoint recovers: no restart needed.
	model.mode.Store(modelOK)
	if a := call("POST", "/v1/documents", doc); a.code != 201 {
		t.Fatalf("ingest after recovery: %d %v", a.code, a.body)
	}
	if a := call("POST", "/v1/query", question); a.code != 200 || !strings.Contains(string(mustJSON(a.body)), "30 days") {
		t.Fatalf("query after recovery: %d %v", a.code, a.body)
	}
	if n := documents(); n != 1 {
		t.Errorf("%d documents after one successful ingest, want 1", n)
	}
	s.interrupt(t)
}

// TestKMSUnreachableAtStart (issue 17, scenario 6): serve with a KMS
// key-encryption key whose KMS hangs (accepts connections, never answers)
// or refuses connections exits non-zero within --kek-timeout (plus the
// start-up before it) with a message naming the KMS and what to check,
// and leaves no PostgreSQL running.
func TestKMSUnreachableAtStart(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		silent.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	for _, c := range []struct {
		name, host, want string
	}{
		{"hangs", silent.Addr().String(), "no answer within 2s"},
		{"refuses connections", freeAddr(t), "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := mustDataDir(t)
			addr := freeAddr(t)
			uri := "hcvault://" + c.host + "/transit/keys/bulkhead"
			start := time.Now()
			r := run(t, dir, []string{"VAULT_TOKEN=not-a-real-token"}, "serve", "--addr", addr, "--kek-uri", uri, "--kek-timeout", "2s")
			t.Logf("serve with a KMS that %s: exit %d after %v", c.name, r.code, time.Since(start).Round(time.Millisecond))
			if r.code == 0 {
				t.Fatalf("serve started without its KMS: %s", r)
			}
			for _, s := range []string{uri, "KMS unavailable", c.want, "--kek-timeout"} {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "not-a-real-token") {
				t.Errorf("stderr shows the Vault token:\n%s", r.stderr)
			}
			if code, _, err := (&server{base: "http://" + addr}).get("/healthz"); err == nil {
				t.Errorf("something answers on %s after serve exited: %d", addr, code)
			}
			assertNoProcesses(t, dir)
		})
	}
}
