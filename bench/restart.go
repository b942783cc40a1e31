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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// RestartConfig sizes the PgBouncer restart scenario.
type RestartConfig struct {
	Tenants  int           // default 20 (10 users, 10 rooms of 5 each)
	Clients  int           // concurrent HTTP clients; default 16
	PoolSize int           // PgBouncer's server pool; default 2
	Before   time.Duration // load before the kill; default 3 s
	Outage   time.Duration // PgBouncer down; default 3 s
	After    time.Duration // load after the restart; default 5 s
	Progress io.Writer
	// Log receives the server's JSON log (5xx errors in full); nil
	// discards it.
	Log io.Writer
}

func (c RestartConfig) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewJSONHandler(c.Log, nil))
}

// RestartPhase counts the answers of one phase.
type RestartPhase struct {
	Name      string
	Requests  int64
	OK        int64 // 2xx
	Unavail   int64 // 503 with Retry-After
	NoRetry   int64 // 503 without Retry-After
	Other     int64 // any other status, or a transport error
	OtherSeen map[string]int64
}

// RestartResult is one run.
type RestartResult struct {
	Config     RestartConfig
	PGVersion  string
	PgBouncer  string
	Identities int
	Phases     []RestartPhase // before, outage, after
	// WrongRows counts message rows in any 2xx answer that belong to
	// another tenant or another room than the request's; Rows counts the
	// rows checked.
	WrongRows, Rows int64
	// Recovery is the time from PgBouncer listening again to the first 2xx
	// answer started after it.
	Recovery time.Duration
	// ReadyDown and ReadyUp are /readyz's status during the outage and
	// after recovery.
	ReadyDown, ReadyUp int
}

// Others is the number of answers other than 2xx and 503-with-Retry-After.
func (r *RestartResult) Others() int64 {
	var n int64
	for _, p := range r.Phases {
		n += p.Other + p.NoRetry
	}
	return n
}

type restartSample struct {
	tenant, room, entity uuid.UUID
	jwt                  string
}

// RunRestart puts the HTTP API (JWT authentication, RLS) over a pool
// through a real PgBouncer in transaction mode under a load of many
// tenants' users reading and posting messages, kills PgBouncer (SIGKILL)
// mid-load, starts it again on the same port after cfg.Outage, and keeps
// the load going: the same server process must recover by itself. Every
// 2xx answer is checked row by row: each message's content names its
// tenant, so a row of another tenant (or another room) is counted.
func RunRestart(ctx context.Context, cfg RestartConfig) (*RestartResult, error) {
	if cfg.Tenants <= 0 {
		cfg.Tenants = 20
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 2
	}
	if cfg.Before <= 0 {
		cfg.Before = 3 * time.Second
	}
	if cfg.Outage <= 0 {
		cfg.Outage = 3 * time.Second
	}
	if cfg.After <= 0 {
		cfg.After = 5 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	res := &RestartResult{Config: cfg}
	env, err := newCluster(ctx, cfg.Progress, nil)
	if err != nil {
		return nil, err
	}
	defer env.close()
	const dbName = "bench_restart"
	if err := env.migrated(ctx, dbName); err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, env.cl.SuperuserDSN(dbName))
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	admin.QueryRow(ctx, "SHOW server_version").Scan(&res.PGVersion)
	if err := generate(ctx, admin, Config{Tenants: cfg.Tenants, Memories: cfg.Tenants * 10 * 5, BigRoom: 1, Progress: cfg.Progress}, &Result{Rows: map[string]int64{}}); err != nil {
		return nil, err
	}
	// Every message names its tenant, so any answer can be checked alone.
	if _, err := admin.Exec(ctx, `UPDATE bulkhead.memories SET content = 'tenant ' || tenant_id || ': ' || content`); err != nil {
		return nil, err
	}
	signer, err := token.LoadOrCreate(filepath.Join(env.dir, "token-key.json"), "bulkhead")
	if err != nil {
		return nil, err
	}
	var samples []restartSample
	rows, err := admin.Query(ctx, `SELECT tenant_id, room_id, entity_id FROM bulkhead.participants WHERE room_id <> '00000000-0000-4000-8000-00000000b16b'`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var s restartSample
		if err := rows.Scan(&s.tenant, &s.room, &s.entity); err != nil {
			return nil, err
		}
		samples = append(samples, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range samples {
		if samples[i].jwt, _, err = signer.Mint(samples[i].tenant, samples[i].entity, time.Hour); err != nil {
			return nil, err
		}
	}
	res.Identities = len(samples)

	bnc, err := startBouncer(env.cl, env.creds, dbName, cfg.PoolSize)
	if err != nil {
		return nil, err
	}
	defer bnc.Stop()
	res.PgBouncer = bnc.Version()
	db, err := postgres.Open(ctx, postgres.Config{AppDSN: bnc.DSN(postgres.Runtime, env.creds.Runtime, dbName), QueryExecMode: "exec",
		ContextKey: env.ctxKey, MaxConns: int32(cfg.Clients)})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	verifier, err := auth.NewVerifier(ctx, []auth.IssuerConfig{{Issuer: "bulkhead", JWKS: signer.JWKS(), Algorithms: []string{"EdDSA"}, Audience: token.Audience, TenantClaim: token.TenantClaim}}, auth.Options{})
	if err != nil {
		return nil, err
	}
	defer verifier.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: httpapi.NewServer(db, cfg.logger(), nil, httpapi.Options{Auth: auth.NewAuthenticator(verifier, "bulkhead")})}
	go srv.Serve(l)
	defer srv.Close()
	base := "http://" + l.Addr().String()

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients * 2}}
	phases := []*RestartPhase{{Name: "before the kill"}, {Name: "PgBouncer down"}, {Name: "after the restart"}}
	var phase atomic.Int32
	var restartedAt atomic.Int64 // unix nanos; 0 until PgBouncer listens again
	var firstOK atomic.Int64     // unix nanos of the start of the first 2xx after the restart
	var mu sync.Mutex
	var wrong, nrows atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(c), 0x8b))
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := samples[rnd.IntN(len(samples))]
				post := rnd.IntN(5) == 0
				path := base + "/v1/rooms/" + s.room.String() + "/messages"
				content := fmt.Sprintf("tenant %s: load from client %d", s.tenant, c)
				var req *http.Request
				if post {
					req, _ = http.NewRequest("POST", path, strings.NewReader(fmt.Sprintf(`{"content":%q}`, content)))
					req.Header.Set("Content-Type", "application/json")
				} else {
					req, _ = http.NewRequest("GET", path+"?limit=50", nil)
				}
				req.Header.Set("Authorization", "Bearer "+s.jwt)
				ph := phases[phase.Load()]
				t0 := time.Now()
				resp, err := client.Do(req)
				var status int
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				ph.Requests++
				switch {
				case err != nil:
					ph.Other++
					ph.seen("transport error")
				case status/100 == 2:
					ph.OK++
				case status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
					ph.Unavail++
				case status == http.StatusServiceUnavailable:
					ph.NoRetry++
					ph.seen("503 without Retry-After")
				default:
					ph.Other++
					ph.seen(fmt.Sprintf("%d %s", status, strings.TrimSpace(string(body))))
				}
				mu.Unlock()
				if err != nil || status/100 != 2 {
					continue
				}
				if r := restartedAt.Load(); r != 0 && t0.UnixNano() >= r {
					firstOK.CompareAndSwap(0, t0.UnixNano())
				}
				// Check every row of the answer.
				var items []bulkhead.Memory
				if post {
					var m bulkhead.Memory
					if json.Unmarshal(body, &m) != nil {
						items = []bulkhead.Memory{{}}
					} else {
						items = []bulkhead.Memory{m}
					}
				} else {
					var l struct{ Items []bulkhead.Memory }
					if json.Unmarshal(body, &l) != nil {
						l.Items = []bulkhead.Memory{{}}
					}
					items = l.Items
				}
				prefix := "tenant " + s.tenant.String() + ": "
				for _, m := range items {
					nrows.Add(1)
					if m.RoomID != s.room || !strings.HasPrefix(m.Content, prefix) {
						wrong.Add(1)
					}
				}
			}
		}()
	}
	ready := func() int {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	finish := func() { close(stop); wg.Wait() }
	fmt.Fprintf(cfg.Progress, "load: %d clients over %d identities of %d tenants\n", cfg.Clients, len(samples), cfg.Tenants)
	if err := wait(cfg.Before); err != nil {
		finish()
		return nil, err
	}
	fmt.Fprintln(cfg.Progress, "killing PgBouncer (SIGKILL)")
	phase.Store(1)
	bnc.Kill()
	if err := wait(cfg.Outage / 2); err != nil {
		finish()
		return nil, err
	}
	res.ReadyDown = ready()
	if err := wait(cfg.Outage - cfg.Outage/2); err != nil {
		finish()
		return nil, err
	}
	fmt.Fprintln(cfg.Progress, "starting PgBouncer again")
	if err := bnc.Restart(); err != nil {
		finish()
		return nil, err
	}
	restartedAt.Store(time.Now().UnixNano())
	phase.Store(2)
	err = wait(cfg.After)
	finish()
	if err != nil {
		return nil, err
	}
	res.ReadyUp = ready()
	if f := firstOK.Load(); f != 0 {
		res.Recovery = time.Duration(f - restartedAt.Load())
	} else {
		res.Recovery = -1
	}
	for _, p := range phases {
		res.Phases = append(res.Phases, *p)
	}
	res.WrongRows, res.Rows = wrong.Load(), nrows.Load()
	return res, nil
}

func (p *RestartPhase) seen(what string) {
	if p.OtherSeen == nil {
		p.OtherSeen = map[string]int64{}
	}
	if len(what) > 200 {
		what = what[:200]
	}
	p.OtherSeen[what]++
}

// Markdown writes r as the docs/RELIABILITY.md PgBouncer section.
func (r *RestartResult) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## PgBouncer restarted under load (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores, PostgreSQL %s, %s in transaction mode (server pool %d, no reset query), private cluster. The HTTP API (JWT authentication, RLS, pgx exec mode `exec`) runs in one process over a pool of %d connections to PgBouncer; %d HTTP clients on loopback read room history (80 %%, 50 messages) and post messages (20 %%) as random participants (%d identities, %d tenants). PgBouncer is killed with SIGKILL after %s, started again on the same port %s later, and the load goes on for %s against the **same server process**. Every message of every 2xx answer is checked: its content names its tenant, and it must be the requested room's.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), r.PGVersion, r.PgBouncer, r.Config.PoolSize, r.Config.Clients, r.Config.Clients, r.Identities, r.Config.Tenants, r.Config.Before, r.Config.Outage, r.Config.After)
	fmt.Fprintln(w, "| phase | requests | 2xx | 503 + Retry-After | other (target 0) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "| %s | %d | %d | %d | **%d** |\n", p.Name, p.Requests, p.OK, p.Unavail, p.Other+p.NoRetry)
	}
	rec := "never"
	if r.Recovery >= 0 {
		rec = fmt.Sprintf("%.0f ms", float64(r.Recovery)/float64(time.Millisecond))
	}
	fmt.Fprintf(w, "\nRows checked: %d; rows of another tenant or room: **%d**. First 2xx after PgBouncer listened again: %s. `/readyz` during the outage: %d; after: %d.\n", r.Rows, r.WrongRows, rec, r.ReadyDown, r.ReadyUp)
	for _, p := range r.Phases {
		keys := make([]string, 0, len(p.OtherSeen))
		for k := range p.OtherSeen {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "\n- %s: %d × `%s`", p.Name, p.OtherSeen[k], k)
		}
	}
	fmt.Fprintln(w)
}

// Table prints a terminal summary.
func (r *RestartResult) Table(w io.Writer) {
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-18s %7d requests  %7d 2xx  %6d 503+Retry-After  %6d other\n", p.Name, p.Requests, p.OK, p.Unavail, p.Other+p.NoRetry)
		for k, n := range p.OtherSeen {
			fmt.Fprintf(w, "%-18s   %d × %s\n", "", n, k)
		}
	}
	fmt.Fprintf(w, "rows checked %d, wrong rows %d, recovery %s, /readyz down %d up %d\n", r.Rows, r.WrongRows, r.Recovery, r.ReadyDown, r.ReadyUp)
}
