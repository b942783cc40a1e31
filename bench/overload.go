package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OverloadConfig sizes the overload scenario (issue 17, scenario 7).
type OverloadConfig struct {
	// Binary is the bulkhead binary run as `serve` (required).
	Binary   string
	Tenants  int           // default 4, one user each
	Duration time.Duration // the overload phase; default 30 s
	Measure  time.Duration // the before and after phases; default 10 s
	Factor   float64       // overload rate as a multiple of the sustainable rate; default 10
	// P99Bound is the p99 a rate must keep to count as sustainable;
	// default 50 ms.
	P99Bound time.Duration
	// Step is each closed-loop step of the search; default 3 s.
	Step time.Duration
	// Deadline is each request's client deadline; default 10 s. An answer
	// that does not come within it is counted as a timeout.
	Deadline time.Duration
	// Share is the before and after phases' rate as a share of the
	// sustainable rate; default 0.8 (at 1.0 an open loop has no headroom
	// for its own bursts).
	Share float64
	// Conns bounds the load generator's connections and requests
	// outstanding at once; default 512. A request due while all are busy
	// is not sent and counted as Unsent: the generator models a fleet of
	// clients (or a load balancer) with a bounded connection pool, not a
	// flood of new TCP connections (see docs/RELIABILITY.md).
	Conns int
	// ServeArgs are extra flags for serve (e.g. --max-in-flight).
	ServeArgs []string
	Progress  io.Writer
	Log       io.Writer // serve's log; nil keeps it only in memory
}

// OverloadStep is one closed-loop step of the search for the sustainable
// rate.
type OverloadStep struct {
	Clients  int
	Rate     float64 // answers per second
	P99      time.Duration
	AllOK    bool
	Accepted bool
}

// OverloadPhase is one open-loop phase.
type OverloadPhase struct {
	Name      string
	Offered   float64 // requests sent per second
	Due       float64 // requests due per second (sent + unsent)
	Requests  int64
	OK        int64 // 2xx
	Refused   int64 // 503 or 429 with Retry-After
	Timeouts  int64 // no answer within the client deadline
	Other     int64 // anything else (500, 503 without Retry-After, transport errors)
	Unsent    int64 // due while all Conns were busy: not sent
	OtherSeen map[string]int64
	P50, P99  time.Duration // over all answers
	OKP99     time.Duration // over 2xx answers
	Max       time.Duration
	Elapsed   time.Duration
	// Server side, sampled from /metrics and /proc while the phase ran.
	PeakRSS        float64 // bytes
	PeakHeap       float64 // bytes (go_memstats_heap_alloc_bytes)
	PeakQueued     float64
	PeakInFlight   float64
	PeakGoroutines float64

	// Seconds are the answers by the second the request was due in:
	// [2xx, all answered].
	Seconds [][2]int64

	mu  sync.Mutex
	lat []time.Duration
	ok  []time.Duration
}

// OverloadResult is one run.
type OverloadResult struct {
	Config      OverloadConfig
	Search      []OverloadStep
	Sustainable float64 // answers per second
	Phases      []*OverloadPhase
	MaxInFlight float64
	MaxQueue    float64
	// HWM is serve's peak resident set (VmHWM) over the whole run.
	HWM float64
	// Drained: after the run, nothing was left queued or in flight.
	Drained bool
}

// Failed reports whether a guarantee failed: an answer other than 2xx or
// a refusal with Retry-After, a timeout, or a server that did not drain.
func (r *OverloadResult) Failed() bool {
	for _, p := range r.Phases {
		if p.Other > 0 || p.Timeouts > 0 {
			return true
		}
	}
	return !r.Drained
}

// RunOverload runs the real bulkhead serve with its embedded cluster,
// finds the sustainable request rate (closed loop: the highest throughput
// whose p99 stays under cfg.P99Bound with only 2xx answers), then sends
// requests open loop at that rate (before), at cfg.Factor times it for
// cfg.Duration (overload), and at that rate again (after), and reports the
// answers, latencies and serve's memory in each phase.
func RunOverload(ctx context.Context, cfg OverloadConfig) (*OverloadResult, error) {
	if cfg.Binary == "" {
		return nil, errors.New("bench overload: no bulkhead binary")
	}
	if cfg.Tenants <= 0 {
		cfg.Tenants = 4
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Measure <= 0 {
		cfg.Measure = 10 * time.Second
	}
	if cfg.Factor <= 0 {
		cfg.Factor = 10
	}
	if cfg.P99Bound <= 0 {
		cfg.P99Bound = 50 * time.Millisecond
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 10 * time.Second
	}
	if cfg.Step <= 0 {
		cfg.Step = 3 * time.Second
	}
	if cfg.Share <= 0 {
		cfg.Share = 0.8
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 512
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "bhover")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // PostgreSQL runs as another user under root
	fmt.Fprintln(cfg.Progress, "starting bulkhead serve (embedded PostgreSQL) in", dir)
	p, err := startServe(ctx, cfg.Binary, dir, cfg.Log, cfg.ServeArgs...)
	if err != nil {
		return nil, err
	}
	defer func() {
		p.terminate(30 * time.Second)
		if cl, err := p.cluster(); err == nil && cl.Running() {
			cl.Shutdown()
		}
	}()
	writers, err := p.setupWriters(ctx, cfg.Tenants)
	if err != nil {
		return nil, err
	}
	res := &OverloadResult{Config: cfg}
	client := &http.Client{Timeout: cfg.Deadline, Transport: &http.Transport{MaxIdleConns: cfg.Conns, MaxIdleConnsPerHost: cfg.Conns, MaxConnsPerHost: cfg.Conns}}
	o := &overload{p: p, writers: writers, client: client, slots: make(chan struct{}, cfg.Conns),
		metrics: &http.Client{Timeout: cfg.Deadline}}
	if m, err := o.scrape(); err == nil {
		res.MaxInFlight, res.MaxQueue = m["bulkhead_http_max_in_flight"], m["bulkhead_http_max_queue"]
	}

	// The sustainable rate: closed loop, doubling the clients while the
	// p99 stays under the bound with only 2xx answers.
	for clients := 1; clients <= 256; clients *= 2 {
		st := o.closedLoop(ctx, clients, cfg.Step)
		st.Accepted = st.AllOK && st.P99 <= cfg.P99Bound
		res.Search = append(res.Search, st)
		fmt.Fprintf(cfg.Progress, "closed loop, %d clients: %.0f/s, p99 %s, only 2xx: %v\n", clients, st.Rate, st.P99.Round(time.Microsecond), st.AllOK)
		if !st.Accepted {
			break
		}
		res.Sustainable = max(res.Sustainable, st.Rate)
	}
	if res.Sustainable == 0 {
		return nil, fmt.Errorf("bench overload: not even one client kept p99 under %s with only 2xx answers", cfg.P99Bound)
	}
	for _, ph := range []struct {
		name string
		rate float64
		d    time.Duration
	}{
		{fmt.Sprintf("before (%g× the sustainable rate)", cfg.Share), cfg.Share * res.Sustainable, cfg.Measure},
		{fmt.Sprintf("overload (%g× the sustainable rate)", cfg.Factor), cfg.Factor * res.Sustainable, cfg.Duration},
		{fmt.Sprintf("after (%g× the sustainable rate)", cfg.Share), cfg.Share * res.Sustainable, cfg.Measure},
	} {
		fmt.Fprintf(cfg.Progress, "%s: %.0f requests/s for %s\n", ph.name, ph.rate, ph.d)
		phase, err := o.openLoop(ctx, ph.name, ph.rate, ph.d)
		if err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, phase)
		fmt.Fprintf(cfg.Progress, "  %d requests (%d unsent): %d 2xx, %d refused, %d timeouts, %d other; p50 %s p99 %s; peak RSS %.0f MiB\n",
			phase.Requests, phase.Unsent, phase.OK, phase.Refused, phase.Timeouts, phase.Other, phase.P50.Round(time.Microsecond), phase.P99.Round(time.Microsecond), phase.PeakRSS/(1<<20))
	}
	if m, err := o.scrape(); err == nil {
		res.Drained = m["bulkhead_http_queued"] == 0 && m["bulkhead_http_in_flight"] == 0
	}
	res.HWM = procStatus(p.cmd.Process.Pid, "VmHWM")
	return res, nil
}

// overload drives one serve process.
type overload struct {
	p       *serveProc
	writers []writer
	client  *http.Client
	metrics *http.Client // its own connection: /metrics is not queued behind the load's
	slots   chan struct{}
}

// request sends one request of the mix: 80 % list rooms, 20 % post a
// message, as a random tenant's user.
func (o *overload) request(rnd *mrand.Rand, seq int) (status int, retryAfter string, took time.Duration, err error) {
	w := o.writers[rnd.IntN(len(o.writers))]
	var req *http.Request
	if rnd.IntN(10) < 8 {
		req, _ = http.NewRequest("GET", o.p.base+"/v1/rooms", nil)
	} else {
		b, _ := json.Marshal(map[string]string{"content": fmt.Sprintf("overload %d", seq)})
		req, _ = http.NewRequest("POST", o.p.base+"/v1/rooms/"+w.room.String()+"/messages", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+w.jwt)
	t0 := time.Now()
	resp, err := o.client.Do(req)
	if err != nil {
		return 0, "", time.Since(t0), err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(t0), nil
}

func (o *overload) closedLoop(ctx context.Context, clients int, d time.Duration) OverloadStep {
	var mu sync.Mutex
	var lat []time.Duration
	allOK := true
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(c), 7))
			for seq := 0; time.Now().Before(end) && ctx.Err() == nil; seq++ {
				status, _, took, err := o.request(rnd, seq)
				mu.Lock()
				lat = append(lat, took)
				allOK = allOK && err == nil && status/100 == 2
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return OverloadStep{Clients: clients, Rate: float64(len(lat)) / d.Seconds(), P99: quantile(lat, 0.99), AllOK: allOK}
}

// openLoop sends requests at rate for d whatever the answers, each in its
// own goroutine, while sampling serve's metrics and memory.
func (o *overload) openLoop(ctx context.Context, name string, rate float64, d time.Duration) (*OverloadPhase, error) {
	ph := &OverloadPhase{Name: name, OtherSeen: map[string]int64{}}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if m, err := o.scrape(); err == nil {
				ph.PeakHeap = max(ph.PeakHeap, m["go_memstats_heap_alloc_bytes"])
				ph.PeakQueued = max(ph.PeakQueued, m["bulkhead_http_queued"])
				ph.PeakInFlight = max(ph.PeakInFlight, m["bulkhead_http_in_flight"])
				ph.PeakGoroutines = max(ph.PeakGoroutines, m["go_goroutines"])
			}
			ph.PeakRSS = max(ph.PeakRSS, procStatus(o.p.cmd.Process.Pid, "VmRSS"))
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	rnd := mrand.New(mrand.NewPCG(uint64(start.UnixNano()), 11))
	var sent int64
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		seed := rnd.Uint64()
		select {
		case o.slots <- struct{}{}:
		default:
			ph.mu.Lock()
			ph.Unsent++
			ph.mu.Unlock()
			continue
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-o.slots }()
			status, retry, took, err := o.request(mrand.New(mrand.NewPCG(seed, 13)), i)
			ph.record(int(at.Sub(start)/time.Second), status, retry, took, err)
		}()
	}
	sendTime := time.Since(start)
	wg.Wait()
	ph.Elapsed = sendTime
	close(stop)
	<-sampled
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ph.Offered = float64(sent) / sendTime.Seconds()
	ph.Due = float64(sent+ph.Unsent) / sendTime.Seconds()
	ph.P50, ph.P99, ph.OKP99 = quantile(ph.lat, 0.5), quantile(ph.lat, 0.99), quantile(ph.ok, 0.99)
	ph.lat, ph.ok = nil, nil
	return ph, nil
}

func (ph *OverloadPhase) record(second, status int, retry string, took time.Duration, err error) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	for len(ph.Seconds) <= second {
		ph.Seconds = append(ph.Seconds, [2]int64{})
	}
	ph.Seconds[second][1]++
	if err == nil && status/100 == 2 {
		ph.Seconds[second][0]++
	}
	ph.Requests++
	ph.Max = max(ph.Max, took)
	if err == nil {
		ph.lat = append(ph.lat, took)
	}
	var te interface{ Timeout() bool }
	switch {
	case err != nil && errors.As(err, &te) && te.Timeout():
		ph.Timeouts++
	case err != nil:
		ph.Other++
		ph.OtherSeen["transport error: "+err.Error()]++
	case status/100 == 2:
		ph.OK++
		ph.ok = append(ph.ok, took)
	case (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && retry != "":
		ph.Refused++
	default:
		ph.Other++
		ph.OtherSeen[fmt.Sprintf("%d Retry-After=%q", status, retry)]++
	}
}

// scrape reads serve's unlabelled /metrics samples.
func (o *overload) scrape() (map[string]float64, error) {
	resp, err := o.metrics.Get(o.p.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", resp.StatusCode)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// procStatus reads a "kB" field of /proc/pid/status, in bytes (0 if
// unavailable).
func procStatus(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024
		}
	}
	return 0
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

// Table prints a terminal summary.
func (r *OverloadResult) Table(w io.Writer) {
	fmt.Fprintf(w, "sustainable rate: %.0f requests/s (p99 under %s, only 2xx); admission: %g in flight, %g queued; generator: %d connections\n", r.Sustainable, r.Config.P99Bound, r.MaxInFlight, r.MaxQueue, r.Config.Conns)
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-36s offered %6.0f/s unsent %d %7d requests %7d 2xx %7d refused %4d timeouts %4d other  p50 %-9s p99 %-9s 2xx p99 %-9s max %-9s RSS %s heap %s queued %g in flight %g\n",
			p.Name, p.Offered, p.Unsent, p.Requests, p.OK, p.Refused, p.Timeouts, p.Other, p.P50.Round(time.Microsecond), p.P99.Round(time.Microsecond), p.OKP99.Round(time.Microsecond), p.Max.Round(time.Millisecond), mib(p.PeakRSS), mib(p.PeakHeap), p.PeakQueued, p.PeakInFlight)
		for k, n := range p.OtherSeen {
			fmt.Fprintf(w, "%-36s   %d × %s\n", "", n, k)
		}
	}
	for _, p := range r.Phases {
		fmt.Fprintf(w, "2xx share by second, %s: %s\n", p.Name, p.secondShares())
	}
	fmt.Fprintf(w, "serve's peak RSS (VmHWM): %s; drained afterwards: %v\n", mib(r.HWM), r.Drained)
}

// Markdown writes r as the docs/RELIABILITY.md section.
func (r *OverloadResult) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## Overload (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores shared by the load generator, `bulkhead serve` and its embedded PostgreSQL (and other engineers' builds). The real binary with default admission settings: %g requests in flight (twice the runtime pool), %g queued, 1 s longest queue wait, 2 s longest wait for a database connection. The mix: 80 %% `GET /v1/rooms`, 20 %% `POST /v1/rooms/{id}/messages`, as %d tenants' users with bulkhead's own JWTs, each request with a %s client deadline. The load generator holds at most %d connections and requests outstanding (a fleet of clients or a load balancer with a bounded pool); a request due while all are busy is not sent and counted as unsent.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), r.MaxInFlight, r.MaxQueue, r.Config.Tenants, r.Config.Deadline, r.Config.Conns)
	fmt.Fprintf(w, "The sustainable rate is the highest closed-loop throughput (%s per step, doubling the clients) whose p99 stayed under %s with only 2xx answers:\n\n", r.Config.Step, r.Config.P99Bound)
	fmt.Fprintln(w, "| clients | answers/s | p99 | only 2xx | sustainable |")
	fmt.Fprintln(w, "|---:|---:|---:|---|---|")
	for _, s := range r.Search {
		fmt.Fprintf(w, "| %d | %.0f | %s | %v | %v |\n", s.Clients, s.Rate, s.P99.Round(time.Microsecond), s.AllOK, s.Accepted)
	}
	fmt.Fprintf(w, "\n**Sustainable rate: %.0f requests/s.** Then open loop (each request due on schedule whatever the answers): %g× that rate, %g× that rate, %g× that rate again.\n\n", r.Sustainable, r.Config.Share, r.Config.Factor, r.Config.Share)
	fmt.Fprintln(w, "| phase | due/s | unsent | requests | 2xx | 503/429 + Retry-After | timeouts (target 0) | other (target 0) | p50 | p99 | p99 of 2xx | slowest | peak RSS | peak heap | peak queued | peak in flight | peak goroutines |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "| %s | %.0f | %d | %d | %d | %d | **%d** | **%d** | %s | %s | %s | %s | %s | %s | %g | %g | %g |\n",
			p.Name, p.Due, p.Unsent, p.Requests, p.OK, p.Refused, p.Timeouts, p.Other, p.P50.Round(time.Microsecond), p.P99.Round(time.Microsecond), p.OKP99.Round(time.Microsecond), p.Max.Round(time.Millisecond), mib(p.PeakRSS), mib(p.PeakHeap), p.PeakQueued, p.PeakInFlight, p.PeakGoroutines)
	}
	fmt.Fprintf(w, "\nserve's peak resident set over the whole run (VmHWM): %s (bulkhead only; PostgreSQL's backends are bounded by the pool). Nothing left queued or in flight afterwards: %v. RSS and heap are sampled every 250 ms from `/proc` and `/metrics` (which, like `/healthz` and `/readyz`, is never queued behind API traffic).\n", mib(r.HWM), r.Drained)
	fmt.Fprintln(w, "\nShare of 2xx answers by the second the request was due in, phase by phase (refusals are the rest):")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "\n- %s: %s", p.Name, p.secondShares())
	}
	fmt.Fprintln(w)
	for _, p := range r.Phases {
		keys := make([]string, 0, len(p.OtherSeen))
		for k := range p.OtherSeen {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "\n- other answer, %s: %d × `%s`", p.Name, p.OtherSeen[k], k)
		}
	}
	fmt.Fprintln(w)
}

// secondShares formats Seconds as percentages of 2xx.
func (ph *OverloadPhase) secondShares() string {
	parts := make([]string, 0, len(ph.Seconds))
	for _, c := range ph.Seconds {
		if c[1] == 0 {
			parts = append(parts, "–")
			continue
		}
		parts = append(parts, fmt.Sprintf("%.0f %%", 100*float64(c[0])/float64(c[1])))
	}
	return strings.Join(parts, ", ")
}
