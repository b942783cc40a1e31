package bench

import (
	"bytes"
	"context"
	"crypto/rand"
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
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
)

// APIConfig sizes the HTTP benchmark.
type APIConfig struct {
	Tenants  int           // default 200
	Memories int           // default 200,000
	Clients  int           // concurrent clients; default 32
	Duration time.Duration // per side; default 10 s
	Rounds   int           // slices per side, in a random order per round; default 5
	// PinPostgres is the CPU PostgreSQL's backends run on while the sides
	// are measured (as in Config); negative leaves the scheduler free.
	PinPostgres int
	Progress    io.Writer
}

// APICase is one side's throughput and latency.
type APICase struct {
	Name     string
	RPS      float64
	P50, P99 time.Duration
	Errors   int64
	requests int      // answered requests the CPU times cover (0: not measured)
	cpu      cpuTimes // spent while the side ran
}

// CPUPerRequest is the CPU time the machine spent per answered request
// while the side ran, and of it this process's (client and server: the
// rest is PostgreSQL's, and anything else running); false when it was not
// measured.
func (c APICase) CPUPerRequest() (machine, self time.Duration, ok bool) {
	return c.cpu.per(c.requests)
}

// APIResult is one run.
type APIResult struct {
	Config             APIConfig
	Cases              []APICase // full stack, fixed scope (RLS on), fixed scope (RLS bypassed: the baseline), the baseline again (A/A)
	QuietP99, StormP99 time.Duration
	Logins, StormReads int64
	LoginP50           time.Duration
}

// fixedScope is "authentication replaced by a fixed scope": the bearer
// token is an index into the samples, looked up without any crypto.
type fixedScope []sample

func (f fixedScope) Authenticate(r *http.Request) (bulkhead.Scope, error) {
	i, err := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if err != nil || i < 0 || i >= len(f) {
		return bulkhead.Scope{}, bulkhead.ErrUnauthenticated
	}
	return bulkhead.Scope{Tenant: f[i].tenant, Entity: f[i].member}, nil
}

// RunAPI measures the HTTP API on loopback: room history reads (80 %) and
// message posts (20 %) by many concurrent clients against four servers in
// the same process, each with a pool of its own: the full stack (JWT
// verification + signed context + RLS), the same with authentication
// replaced by a fixed scope (RLS on), that as a role that bypasses
// row-level security on the same database (the baseline), and the
// baseline again (the A/A control: what the harness reads between two
// identical sides). Then the p99 of reads with and without a storm of
// argon2id logins.
func RunAPI(ctx context.Context, cfg APIConfig) (*APIResult, error) {
	if cfg.Tenants <= 0 {
		cfg.Tenants = 200
	}
	if cfg.Memories <= 0 {
		cfg.Memories = 200_000
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 32
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	res := &APIResult{Config: cfg}
	env, err := setup(ctx, Config{Tenants: cfg.Tenants, Memories: cfg.Memories, BigRoom: 10, Progress: cfg.Progress}, &Result{Rows: map[string]int64{}})
	if err != nil {
		return nil, err
	}
	defer env.close()
	const database = "bench_rls"
	// The baseline reads the same database as a role that bypasses
	// row-level security (as bench rls does, and for the same reason: a
	// copy's pages are warmed differently).
	baselineDSN, err := env.baselineRole(ctx, database)
	if err != nil {
		return nil, err
	}
	if err := pinPostgres(env.cl.PID(), cfg.PinPostgres, cfg.Progress); err != nil {
		return nil, err
	}
	open := func(appDSN string) (*postgres.DB, error) {
		return postgres.Open(ctx, postgres.Config{AppDSN: appDSN,
			MaintenanceDSN: env.cl.DSN(postgres.Maintenance, env.creds.Maintenance, database), ContextKey: env.ctxKey, MaxConns: int32(2 * runtime.NumCPU())})
	}
	// One pool per side, never shared (bench rls: a side that follows
	// another on the same backends is favoured).
	runtimeDSN := env.cl.DSN(postgres.Runtime, env.creds.Runtime, database)
	var pools [4]*postgres.DB
	for i, dsn := range []string{runtimeDSN, runtimeDSN, baselineDSN, baselineDSN} {
		if pools[i], err = open(dsn); err != nil {
			return nil, err
		}
		defer pools[i].Close()
	}
	dbFull, dbRLS, dbBase, dbAA := pools[0], pools[1], pools[2], pools[3]
	signer, err := token.LoadOrCreate(filepath.Join(env.dir, "token-key.json"), "bulkhead")
	if err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(ctx, []auth.IssuerConfig{{Issuer: "bulkhead", JWKS: signer.JWKS(), Algorithms: []string{"EdDSA"}, Audience: token.Audience, TenantClaim: token.TenantClaim}}, auth.Options{})
	if err != nil {
		return nil, err
	}
	defer verifier.Close()
	pepper := make([]byte, 32)
	rand.Read(pepper)
	accounts, err := auth.NewAccounts(dbFull, signer, auth.NewHasher(0), pepper)
	if err != nil {
		return nil, err
	}
	jwts := make([]string, len(env.samples))
	for i, s := range env.samples {
		if jwts[i], _, err = signer.Mint(s.tenant, s.member, time.Hour); err != nil {
			return nil, err
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	serve := func(h http.Handler) (string, func(), error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(l)
		return "http://" + l.Addr().String(), func() { srv.Close() }, nil
	}
	// Every client is admitted (it waits for a slot, never refused): the
	// sides are compared on the work they do, not on how fast the server
	// refuses what exceeds its admission bound (bench overload measures
	// that).
	admit := httpapi.Admission{MaxInFlight: cfg.Clients, MaxQueue: cfg.Clients, QueueTimeout: time.Minute}
	fixed := httpapi.Options{Auth: fixedScope(env.samples), Admission: admit}
	var base [4]string
	for i, sv := range []struct {
		db   *postgres.DB
		opts httpapi.Options
	}{{dbFull, httpapi.Options{Auth: auth.NewAuthenticator(verifier, "bulkhead"), Accounts: accounts, Admission: admit}},
		{dbRLS, fixed}, {dbBase, fixed}, {dbAA, fixed}} {
		var stop func()
		if base[i], stop, err = serve(httpapi.NewServer(sv.db, quiet, nil, sv.opts)); err != nil {
			return nil, err
		}
		defer stop()
	}
	full := base[0]

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients * 2, MaxConnsPerHost: cfg.Clients * 2}}
	type side struct {
		name, base string
		token      func(i int) string
	}
	sides := []side{
		{"full stack (JWT + signed context + RLS)", full, func(i int) string { return jwts[i] }},
		{"fixed scope, RLS on", base[1], strconv.Itoa},
		{"fixed scope, RLS bypassed (baseline)", base[2], strconv.Itoa},
		{"baseline again (A/A control)", base[3], strconv.Itoa},
	}
	lats := make([][]time.Duration, len(sides))
	errs := make([]atomic.Int64, len(sides))
	done := make([]int64, len(sides))
	elapsed := make([]time.Duration, len(sides))
	order := mrand.New(mrand.NewPCG(1, uint64(time.Now().UnixNano())))
	for r := range cfg.Rounds {
		// A random order per round: no side always follows the same other.
		for _, sd := range order.Perm(len(sides)) {
			fmt.Fprintf(cfg.Progress, "round %d: %s\n", r+1, sides[sd].name)
			got, d := load(ctx, client, cfg.Clients, cfg.Duration/time.Duration(cfg.Rounds), func(rnd *mrand.Rand) (*http.Request, error) {
				i := rnd.IntN(len(env.samples))
				s := env.samples[i]
				path := sides[sd].base + "/v1/rooms/" + s.room.String() + "/messages"
				var req *http.Request
				if rnd.IntN(5) == 0 {
					req, _ = http.NewRequest("POST", path, strings.NewReader(`{"content":"benchmark message"}`))
					req.Header.Set("Content-Type", "application/json")
				} else {
					req, _ = http.NewRequest("GET", path+"?limit=20", nil)
				}
				req.Header.Set("Authorization", "Bearer "+sides[sd].token(i))
				return req, nil
			}, &errs[sd])
			lats[sd] = append(lats[sd], got...)
			done[sd] += int64(len(got))
			elapsed[sd] += d
		}
	}
	for k, sd := range sides {
		res.Cases = append(res.Cases, APICase{Name: sd.name, RPS: float64(done[k]) / elapsed[k].Seconds(),
			P50: pct(lats[k], 50), P99: pct(lats[k], 99), Errors: errs[k].Load()})
	}

	// Reads during a login storm, against reads alone.
	s0 := env.samples[0]
	mctx := bulkhead.AsMaintenance(ctx, "bench api: registration for the login storm")
	if err := dbFull.SetOpenRegistration(mctx, s0.tenant, true); err != nil {
		return nil, err
	}
	if err := accounts.Register(ctx, s0.tenant, "storm@example.com", "storm", "correct horse battery"); err != nil {
		return nil, err
	}
	readers := max(1, cfg.Clients/2)
	read := func(rnd *mrand.Rand) (*http.Request, error) {
		i := rnd.IntN(len(env.samples))
		req, _ := http.NewRequest("GET", full+"/v1/rooms/"+env.samples[i].room.String()+"/messages?limit=20", nil)
		req.Header.Set("Authorization", "Bearer "+jwts[i])
		return req, nil
	}
	var e atomic.Int64
	fmt.Fprintln(cfg.Progress, "reads alone")
	quietLat, _ := load(ctx, client, readers, cfg.Duration/2, read, &e)
	res.QuietP99 = pct(quietLat, 99)
	fmt.Fprintln(cfg.Progress, "reads during a login storm")
	stormCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var loginLat []time.Duration
	var mu sync.Mutex
	for range 2 * runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for stormCtx.Err() == nil {
				req, _ := http.NewRequest("POST", full+"/v1/tenants/"+s0.tenant.String()+"/auth/login",
					bytes.NewReader([]byte(`{"email":"storm@example.com","password":"correct horse battery"}`)))
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						loginLat = append(loginLat, time.Since(t0))
						mu.Unlock()
					}
				}
			}
		}()
	}
	stormLat, _ := load(ctx, client, readers, cfg.Duration/2, read, &e)
	stop()
	wg.Wait()
	res.StormP99, res.StormReads, res.Logins, res.LoginP50 = pct(stormLat, 99), int64(len(stormLat)), int64(len(loginLat)), pct(loginLat, 50)
	return res, nil
}

// load runs clients goroutines making requests until d has passed and
// returns the latencies of successful (2xx) requests and the time taken.
func load(ctx context.Context, client *http.Client, clients int, d time.Duration, next func(*mrand.Rand) (*http.Request, error), errs *atomic.Int64) ([]time.Duration, time.Duration) {
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(c), uint64(start.UnixNano())))
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				req, err := next(rnd)
				if err != nil {
					errs.Add(1)
					continue
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, time.Since(start)
}

// baseline is the side every ratio divides by: the fixed scope as the
// role that bypasses row-level security.
func (r *APIResult) baseline() APICase { return r.Cases[2] }

// Markdown writes r as the docs/BENCHMARKS.md API section.
func (r *APIResult) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## HTTP API (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores, client and server in one process on loopback: %d concurrent clients, 80 %% room-history reads (20 messages) and 20 %% message posts, each as a random participant of a random room of %d tenants. Four servers, each with a pool of its own, on one database; the baseline connects as a role that bypasses row-level security, and the A/A control is the baseline again, through its own server and pool: its ratio is what the harness reads between two identical sides. %d rounds, the sides in a random order in each, %s per side in all. PostgreSQL's backends %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), r.Config.Clients, r.Config.Tenants, r.Config.Rounds, r.Config.Duration, pinned(r.Config.PinPostgres))
	fmt.Fprintln(w, "| side | requests/s | vs baseline (target ≥ 0.95 for the full stack) | p50 | p99 | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	base := r.baseline()
	for _, c := range r.Cases {
		fmt.Fprintf(w, "| %s | %.0f | %.3f | %s µs | %s µs | %d |\n", c.Name, c.RPS, c.RPS/base.RPS, us(c.P50), us(c.P99), c.Errors)
	}
	fmt.Fprintf(w, "\nReads during an argon2id login storm (%d logins, median %.1f ms each, hashing bounded to half the CPUs): read p99 **%s µs** vs %s µs without the storm (%.2f×).\n",
		r.Logins, float64(r.LoginP50)/float64(time.Millisecond), us(r.StormP99), us(r.QuietP99), float64(r.StormP99)/float64(r.QuietP99))
	fmt.Fprintln(w)
}

func pinned(cpu int) string {
	if cpu < 0 {
		return "not pinned"
	}
	return fmt.Sprintf("pinned to CPU %d", cpu)
}

// Table prints a terminal summary.
func (r *APIResult) Table(w io.Writer) {
	base := r.baseline()
	for _, c := range r.Cases {
		fmt.Fprintf(w, "%-42s %8.0f req/s (%.3f of baseline)  p50 %8s µs  p99 %8s µs  errors %d\n", c.Name, c.RPS, c.RPS/base.RPS, us(c.P50), us(c.P99), c.Errors)
	}
	fmt.Fprintf(w, "login storm: %d logins; read p99 %s µs vs %s µs quiet\n", r.Logins, us(r.StormP99), us(r.QuietP99))
}
