package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

// CrashConfig sizes the PostgreSQL-killed-under-load scenario (issue 17,
// scenario 1).
type CrashConfig struct {
	// Binary is the bulkhead binary run as `serve` (required).
	Binary   string
	Tenants  int           // default 8, one writer identity each
	Clients  int           // concurrent HTTP clients; default 16
	Kills    int           // PostgreSQL is killed this many times; default 1
	Interval time.Duration // load between kills (and before the first); default 3 s
	After    time.Duration // load after the last recovery; default 3 s
	Deadline time.Duration // each request's client deadline; default 10 s
	Progress io.Writer
	// Log receives serve's log (JSON lines); nil keeps it only for the
	// line counts.
	Log io.Writer
}

// CrashKill is one kill's timeline.
type CrashKill struct {
	// PGDown: from SIGKILL to PostgreSQL accepting connections again.
	PGDown time.Duration
	// Ready: from PostgreSQL accepting connections to /readyz answering
	// 200 (the guarantee: within 5 s).
	Ready time.Duration
	// ReadyzDown counts /readyz polls that answered 503 while PostgreSQL
	// was down; ReadyzOK, those that answered 200 (target 0).
	ReadyzDown, ReadyzOK int
}

// CrashResult is one run.
type CrashResult struct {
	Config    CrashConfig
	PGVersion string
	Phases    []LoadPhase // before the first kill, PostgreSQL down (kill to ready), after recovery
	Kills     []CrashKill
	Writes    WriteCheck
	// ServeRestarted is true if the serve process had exited by the end
	// (target false: the same process recovers).
	ServeRestarted bool
	// LogLines counts serve's log lines an operator sees, by message.
	LogLines map[string]int
	// Stopped: after SIGTERM, serve exited 0 and no PostgreSQL was left.
	Stopped bool
	StopErr string
}

// crashLogLines are the log messages an operator sees during the scenario.
var crashLogLines = []string{
	"PostgreSQL postmaster died; restarting it",
	"postgres log:",
	"automatic recovery in progress",
	"PostgreSQL restarted after a crash",
	"PostgreSQL restart failed; retrying",
	"readiness: database unreachable",
	"request failed",
}

// Others is the number of answers other than 2xx and 503 with Retry-After.
func (r *CrashResult) Others() int64 {
	var n int64
	for _, p := range r.Phases {
		n += p.Other
	}
	return n
}

// RunCrash runs the real bulkhead serve with its embedded cluster under a
// write load of many tenants (messages and documents), kills the
// postmaster with SIGKILL cfg.Kills times, and measures: the answers by
// phase, how long PostgreSQL was down (bulkhead restarts it), how long
// /readyz took to answer 200 after PostgreSQL accepted connections again,
// and, after the load, whether every acknowledged write is in the database
// exactly once. Then it stops serve with SIGTERM and checks that no
// PostgreSQL is left running.
func RunCrash(ctx context.Context, cfg CrashConfig) (*CrashResult, error) {
	if cfg.Binary == "" {
		return nil, errors.New("bench crash: no bulkhead binary")
	}
	if cfg.Tenants <= 0 {
		cfg.Tenants = 8
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	if cfg.Kills <= 0 {
		cfg.Kills = 1
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 3 * time.Second
	}
	if cfg.After <= 0 {
		cfg.After = 3 * time.Second
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 10 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "bhcrash")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // PostgreSQL runs as another user under root
	fmt.Fprintln(cfg.Progress, "starting bulkhead serve (embedded PostgreSQL) in", dir)
	p, err := startServe(ctx, cfg.Binary, dir, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p.alive() {
			p.kill()
		}
		if cl, err := p.cluster(); err == nil && cl.Running() {
			cl.Shutdown()
		}
	}()
	res := &CrashResult{Config: cfg, LogLines: map[string]int{}}
	writers, err := p.setupWriters(ctx, cfg.Tenants)
	if err != nil {
		return nil, err
	}
	cl, err := p.cluster()
	if err != nil {
		return nil, err
	}
	superDSN := cl.SuperuserDSN(postgres.Database)
	if conn, err := pgx.Connect(ctx, superDSN); err == nil {
		conn.QueryRow(ctx, "SHOW server_version").Scan(&res.PGVersion)
		conn.Close(ctx)
	}

	phases := []*LoadPhase{{Name: "before the kill"}, {Name: "PostgreSQL down (kill to /readyz 200)"}, {Name: "after recovery"}}
	fmt.Fprintf(cfg.Progress, "load: %d clients writing as %d tenants\n", cfg.Clients, cfg.Tenants)
	load := startWriteLoad(p, writers, cfg.Clients, cfg.Deadline, phases[0])
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for k := range cfg.Kills {
		if err := wait(cfg.Interval); err != nil {
			load.finish()
			return nil, err
		}
		if k > 0 {
			load.setPhase(phases[2])
		}
		kill, err := killPostgres(ctx, p, superDSN, func() { load.setPhase(phases[1]) })
		if err != nil {
			load.finish()
			return nil, fmt.Errorf("kill %d: %w", k+1, err)
		}
		load.setPhase(phases[2])
		res.Kills = append(res.Kills, kill)
		fmt.Fprintf(cfg.Progress, "kill %d: PostgreSQL accepting connections %s after SIGKILL, /readyz 200 %s after that\n", k+1, kill.PGDown.Round(time.Millisecond), kill.Ready.Round(time.Millisecond))
	}
	err = wait(cfg.After)
	load.finish()
	if err != nil {
		return nil, err
	}
	for _, ph := range phases {
		res.Phases = append(res.Phases, *ph)
	}
	if res.Writes, err = load.check(ctx); err != nil {
		return nil, fmt.Errorf("checking the writes: %w", err)
	}
	res.ServeRestarted = !p.alive()
	for _, l := range crashLogLines {
		res.LogLines[l] = p.log.count(l)
	}
	if err := p.terminate(30 * time.Second); err != nil {
		res.StopErr = err.Error()
	} else if cl, err := p.cluster(); err == nil && cl.Running() {
		res.StopErr = "PostgreSQL still running after serve exited"
	} else {
		res.Stopped = true
	}
	return res, nil
}

// killPostgres kills the postmaster with SIGKILL, calls down, then polls
// until PostgreSQL accepts connections and /readyz answers 200 (at most a
// minute each), sampling /readyz meanwhile.
func killPostgres(ctx context.Context, p *serveProc, superDSN string, down func()) (CrashKill, error) {
	var k CrashKill
	pid, err := p.postmasterPID()
	if err != nil {
		return k, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return k, err
	}
	killed := time.Now()
	down()
	pgUp := make(chan time.Time, 1)
	pollCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		for pollCtx.Err() == nil {
			cctx, ccancel := context.WithTimeout(pollCtx, time.Second)
			conn, err := pgx.Connect(cctx, superDSN)
			ccancel()
			if err == nil {
				at := time.Now()
				conn.Close(context.Background())
				pgUp <- at
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var upAt time.Time
	for {
		if upAt.IsZero() {
			select {
			case upAt = <-pgUp:
				k.PGDown = upAt.Sub(killed)
			default:
			}
		}
		code := p.readyz()
		switch {
		case upAt.IsZero() && code == http.StatusOK:
			k.ReadyzOK++
		case upAt.IsZero():
			k.ReadyzDown++
		case code == http.StatusOK:
			k.Ready = time.Since(upAt)
			return k, nil
		}
		if !p.alive() {
			return k, errors.New("bulkhead serve exited")
		}
		select {
		case <-pollCtx.Done():
			return k, fmt.Errorf("PostgreSQL up: %v, /readyz still %d after a minute", !upAt.IsZero(), code)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Markdown writes r as the docs/RELIABILITY.md section.
func (r *CrashResult) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## PostgreSQL killed under a write load (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores (shared with other engineers' builds), PostgreSQL %s. The real `bulkhead serve` binary with its embedded cluster (durable settings), %d HTTP clients on loopback posting messages (70 %%) and documents (30 %%, chunked, embedded, indexed) as %d tenants' users, each request with a %s client deadline. The postmaster is killed with SIGKILL %d time(s), %s apart; bulkhead restarts it itself (no restart of bulkhead). Answers are counted in the phase in which their request started; the outage phase runs from the kill to `/readyz` answering 200.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), r.PGVersion, r.Config.Clients, r.Config.Tenants, r.Config.Deadline, r.Config.Kills, r.Config.Interval)
	fmt.Fprintln(w, "| phase | requests | 2xx | 503 + Retry-After | other (target 0) | slowest answer |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "| %s | %d | %d | %d | **%d** | %s |\n", p.Name, p.Requests, p.OK, p.Unavail, p.Other, p.MaxLatency.Round(time.Millisecond))
	}
	wc := r.Writes
	fmt.Fprintf(w, "\nAcknowledged writes: %d (%d messages, %d documents); **lost: %d**, **duplicated: %d** (checked by the superuser after the load, each write's content is unique). Writes not acknowledged: %d, of which %d committed anyway (the answer was 503 because the commit's outcome was unknown, or lost): not a loss, a client retry would duplicate them.\n\n",
		wc.Acked, wc.AckedMessages, wc.AckedDocuments, wc.Lost, wc.Duplicated, wc.Unacked, wc.UnackedPresent)
	fmt.Fprintln(w, "| kill | PostgreSQL accepting connections after SIGKILL | `/readyz` 200 after that (guarantee: 5 s) | `/readyz` while down: 503 / 200 |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|")
	for i, k := range r.Kills {
		fmt.Fprintf(w, "| %d | %s | **%s** | %d / %d |\n", i+1, k.PGDown.Round(time.Millisecond), k.Ready.Round(time.Millisecond), k.ReadyzDown, k.ReadyzOK)
	}
	fmt.Fprintln(w, "\nReading the figures: the one `/readyz` 200 counted while down per kill is the first poll, sent within about a millisecond of the SIGKILL, before the postmaster's death was observable (its backends still answered); every later poll answered 503 until PostgreSQL was back. The time to ready includes one `/readyz` answer (a ping and the isolation self-check, queued behind the load for the pool's connections). A 503 answered in the \"before\" or \"after\" row belongs to a request that started just before the kill, or just after `/readyz` turned 200 while the pool was still dialing. The time to PostgreSQL accepting connections is crash recovery: its pre-replay flush (`recovery_init_sync_method=syncfs`), the WAL replay and the end-of-recovery checkpoint.")
	fmt.Fprintf(w, "\nbulkhead process restarted: %v. SIGTERM afterwards: ", r.ServeRestarted)
	if r.Stopped {
		fmt.Fprintln(w, "exit 0, no PostgreSQL left running.")
	} else {
		fmt.Fprintf(w, "%s.\n", r.StopErr)
	}
	fmt.Fprintln(w, "\nLog lines seen in bulkhead's log during the run:")
	for _, l := range crashLogLines {
		fmt.Fprintf(w, "\n- `%s`: %d", l, r.LogLines[l])
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

// Table prints a terminal summary.
func (r *CrashResult) Table(w io.Writer) {
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-38s %7d requests %7d 2xx %6d 503+Retry-After %5d other  slowest %s\n", p.Name, p.Requests, p.OK, p.Unavail, p.Other, p.MaxLatency.Round(time.Millisecond))
		for k, n := range p.OtherSeen {
			fmt.Fprintf(w, "%-38s   %d × %s\n", "", n, k)
		}
	}
	wc := r.Writes
	fmt.Fprintf(w, "acknowledged %d (messages %d, documents %d): lost %d, duplicated %d; unacknowledged %d, of which present %d\n", wc.Acked, wc.AckedMessages, wc.AckedDocuments, wc.Lost, wc.Duplicated, wc.Unacked, wc.UnackedPresent)
	for i, k := range r.Kills {
		fmt.Fprintf(w, "kill %d: PostgreSQL back after %s, /readyz 200 %s later; /readyz while down: %d×503, %d×200\n", i+1, k.PGDown.Round(time.Millisecond), k.Ready.Round(time.Millisecond), k.ReadyzDown, k.ReadyzOK)
	}
	fmt.Fprintf(w, "serve restarted: %v; stopped cleanly: %v %s\n", r.ServeRestarted, r.Stopped, r.StopErr)
	for _, l := range crashLogLines {
		fmt.Fprintf(w, "log %q: %d\n", l, r.LogLines[l])
	}
}
