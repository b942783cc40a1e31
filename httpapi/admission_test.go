package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// hangGuard is how long a test client waits for an answer. It is no
// latency assertion: an answer that takes this long is a hang, which the
// guarantees under test rule out.
const hangGuard = 30 * time.Second

// overloadClient keeps enough connections for the storms below.
func overloadClient() *http.Client {
	return &http.Client{Timeout: hangGuard, Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
}

// answer is what a storm request got back.
type answer struct {
	code       int
	retryAfter string
	problem    string // the problem's type, if any
	err        error  // transport error or client timeout
}

func getAnswer(c *http.Client, url, token string) answer {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		var p httpapi.Problem
		json.Unmarshal(raw, &p)
		a.problem = p.Type
	}
	return a
}

// overloaded reports whether a is the admission refusal: 503, Retry-After,
// problem type overloaded.
func (a answer) overloaded() bool {
	return a.err == nil && a.code == http.StatusServiceUnavailable && a.retryAfter != "" &&
		a.problem == "https://bulkhead.dev/problems/overloaded"
}

// scrape reads the unlabelled samples of /metrics.
func scrape(t testing.TB, c *http.Client, base string) (map[string]float64, error) {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %d", resp.StatusCode)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// TestOverloadIsRefusedNotQueued drives far more concurrent requests than
// the admission limits over real HTTP and a real PostgreSQL, and checks
// scenario 7's guarantees: every answer is a 2xx or an immediate 503 with
// Retry-After (no 500, no client timeout), the queue and the work in
// progress never exceed their bounds, /healthz and /metrics are never
// queued behind API traffic, and the server answers 2xx again afterwards.
func TestOverloadIsRefusedNotQueued(t *testing.T) {
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	tk := tokens{"alice": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}}
	adm := httpapi.Admission{MaxInFlight: 3, MaxQueue: 5, QueueTimeout: 100 * time.Millisecond}
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.DiscardHandler), nil, httpapi.Options{Auth: tk, Admission: adm}))
	defer srv.Close()
	c := overloadClient()
	rooms := srv.URL + "/v1/rooms"

	// Watch the gauges for the whole test: a reading over a bound fails
	// it, and so does a /metrics that does not answer (it is never queued).
	stop := make(chan struct{})
	var watchErrs []string
	var watched sync.WaitGroup
	watched.Add(1)
	go func() {
		defer watched.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			m, err := scrape(t, c, srv.URL)
			if err != nil {
				watchErrs = append(watchErrs, "scrape: "+err.Error())
				return
			}
			if q := m["bulkhead_http_queued"]; q > float64(adm.MaxQueue) {
				watchErrs = append(watchErrs, fmt.Sprintf("bulkhead_http_queued = %v > max queue %d", q, adm.MaxQueue))
			}
			if f := m["bulkhead_http_in_flight"]; f > float64(adm.MaxInFlight) {
				watchErrs = append(watchErrs, fmt.Sprintf("bulkhead_http_in_flight = %v > max in flight %d", f, adm.MaxInFlight))
			}
			time.Sleep(2 * time.Millisecond) // leave the two cores to the storm
		}
	}()

	// 1. Every slot held by a request whose body has not arrived yet
	// (admission comes before the body is read): a storm now can only
	// queue or be refused, deterministically.
	var holders sync.WaitGroup
	var holderCodes sync.Map
	var pipes []*io.PipeWriter
	for i := range adm.MaxInFlight {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, _ := http.NewRequest("POST", rooms, pr)
		req.Header.Set("Authorization", "Bearer alice")
		req.Header.Set("Content-Type", "application/json")
		holders.Add(1)
		go func() {
			defer holders.Done()
			resp, err := c.Do(req)
			if err != nil {
				holderCodes.Store(i, err.Error())
				return
			}
			resp.Body.Close()
			holderCodes.Store(i, resp.StatusCode)
		}()
	}
	for deadline := time.Now().Add(hangGuard); ; {
		m, err := scrape(t, c, srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if m["bulkhead_http_in_flight"] == float64(adm.MaxInFlight) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests waiting for their bodies never held the %d admission slots: bulkhead_http_in_flight = %v",
				adm.MaxInFlight, adm.MaxInFlight, m["bulkhead_http_in_flight"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	const storm = 120
	answers := make([]answer, storm)
	var wg sync.WaitGroup
	for i := range storm {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = getAnswer(c, rooms, "alice") }()
	}
	health := getAnswer(c, srv.URL+"/healthz", "")
	wg.Wait()
	if health.err != nil || health.code != http.StatusOK {
		t.Errorf("/healthz with every slot taken: %v, want 200 (probes are not admitted)", health)
	}
	for i, a := range answers {
		if !a.overloaded() {
			t.Errorf("storm request %d with every slot held: %v, want 503 overloaded with Retry-After", i, a)
		}
	}

	// 2. Slots free: a storm of storms from many clients at once. Each
	// answer is a 2xx or the admission refusal; nothing else.
	for i, pw := range pipes {
		fmt.Fprintf(pw, `{"world_id":"%s","name":"held %d"}`, demo.T1.World1, i)
		pw.Close()
	}
	holders.Wait()
	holderCodes.Range(func(k, v any) bool {
		if code, ok := v.(int); !ok || code >= 500 {
			t.Errorf("slot holder %v: %v, want an answer below 500", k, v)
		}
		return true
	})
	const clients, each = 200, 5
	var mu sync.Mutex
	classes := map[string]int{}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				a := getAnswer(c, rooms, "alice")
				class := "2xx"
				switch {
				case a.err != nil:
					class = "error: " + a.err.Error()
				case a.overloaded():
					class = "503 overloaded"
				case a.code/100 != 2:
					class = fmt.Sprintf("%d %s Retry-After=%q", a.code, a.problem, a.retryAfter)
				}
				mu.Lock()
				classes[class]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for class, n := range classes {
		if class != "2xx" && class != "503 overloaded" {
			t.Errorf("%d answers %s during the storm, want only 2xx and 503 overloaded", n, class)
		}
	}
	if classes["2xx"] == 0 {
		t.Errorf("no request succeeded during the storm with free slots: %v", classes)
	}
	t.Logf("storm of %d clients × %d requests: %v", clients, each, classes)

	// 3. Recovery: plain requests succeed, nothing is left queued or in
	// flight, and the high-water marks stayed within the bounds.
	for i := range 20 {
		if a := getAnswer(c, rooms, "alice"); a.err != nil || a.code != http.StatusOK {
			t.Fatalf("request %d after the storm: %v, want 200", i, a)
		}
	}
	close(stop)
	watched.Wait()
	for _, e := range watchErrs {
		t.Error(e)
	}
	m, err := scrape(t, c, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"bulkhead_http_in_flight":      0,
		"bulkhead_http_queued":         0,
		"bulkhead_http_in_flight_peak": float64(adm.MaxInFlight), // reached by the holders
		"bulkhead_http_queued_peak":    float64(adm.MaxQueue),    // reached by the first storm
	}
	for name, v := range want {
		if m[name] != v {
			t.Errorf("%s = %v after the storm, want %v", name, m[name], v)
		}
	}
	refused := m[`bulkhead_http_rejected_total{reason="queue_full"}`] + m[`bulkhead_http_rejected_total{reason="queue_timeout"}`]
	if refused < storm {
		t.Errorf("bulkhead_http_rejected_total counts %v refusals, want at least the first storm's %d", refused, storm)
	}
}

// TestPoolAcquireIsBounded checks that a request that can't get a database
// connection answers 503 with Retry-After after the acquire timeout, rather
// than waiting for a connection until the client gives up.
func TestPoolAcquireIsBounded(t *testing.T) {
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: d.AppDSN(), MaintenanceDSN: d.MaintenanceDSN(),
		Keyring: d.Keyring, ContextKey: testdb.ContextKey(), MaxConns: 1, AcquireTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tk := tokens{"alice": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}}
	srv := httptest.NewServer(httpapi.NewServer(db, slog.New(slog.DiscardHandler), nil, httpapi.Options{Auth: tk}))
	defer srv.Close()
	c := overloadClient()

	held, err := db.Pool().Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a := getAnswer(c, srv.URL+"/v1/rooms", "alice")
	if a.err != nil || a.code != http.StatusServiceUnavailable || a.retryAfter == "" || a.problem != "https://bulkhead.dev/problems/unavailable" {
		t.Errorf("with the pool's only connection taken: %v, want 503 unavailable with Retry-After", a)
	}
	m, err := scrape(t, c, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if n := m["bulkhead_db_acquire_timeouts_total"]; n < 1 {
		t.Errorf("bulkhead_db_acquire_timeouts_total = %v, want at least 1", n)
	}
	held.Release()
	if a := getAnswer(c, srv.URL+"/v1/rooms", "alice"); a.err != nil || a.code != http.StatusOK {
		t.Errorf("with the connection back: %v, want 200", a)
	}
}

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s Retry-After=%q", a.code, a.problem, a.retryAfter)
}
