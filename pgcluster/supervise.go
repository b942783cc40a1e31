package pgcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// SuperviseConfig tunes Supervise. Zero values take the defaults.
type SuperviseConfig struct {
	// MinBackoff is the delay before the first restart attempt after a
	// crash; default 100 ms. Each failed attempt doubles it.
	MinBackoff time.Duration
	// MaxBackoff caps the delay between attempts; default 10 s.
	MaxBackoff time.Duration
	// Stable is how long a postmaster must have run for its crash to start
	// the backoff afresh; a crash loop keeps doubling it. Default 30 s.
	Stable time.Duration
}

func (c SuperviseConfig) withDefaults() SuperviseConfig {
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Stable <= 0 {
		c.Stable = 30 * time.Second
	}
	return c
}

// SupervisorStats counts what a supervisor did.
type SupervisorStats struct {
	// Up is false from the moment the postmaster is found dead until a
	// restarted (or adopted) one is ready.
	Up bool
	// Crashes counts postmasters that died without a clean shutdown.
	Crashes int64
	// Restarts counts postmasters the supervisor started after a crash.
	Restarts int64
	// FailedStarts counts restart attempts that failed (and were retried).
	FailedStarts int64
}

type supervisor struct {
	cancel                    context.CancelFunc
	exited                    chan struct{}
	up                        atomic.Bool
	crashes, restarts, failed atomic.Int64
}

// ErrSupervised means Supervise was called on a cluster that is already
// supervised, or that was started detached (bulkhead db start), whose
// lifetime is not this process's.
var ErrSupervised = errors.New("pgcluster: cluster already supervised or started detached")

// Supervise makes this process the postmaster's supervisor until Stop or
// Shutdown. It returns at once; the watching happens in a goroutine.
//
// Guarantees:
//   - A postmaster that dies without a clean shutdown (killed, crashed:
//     its postmaster.pid is left behind, or its exit status is not 0) is
//     started again on the same data dir and settings, after a delay that
//     doubles with each failed attempt (MinBackoff up to MaxBackoff) and
//     with each crash within Stable of the previous start. PostgreSQL runs
//     its crash recovery on that start; its log lines from the restart are
//     copied to the cluster's logger.
//   - Never two postmasters: every restart takes the data dir's lock (as
//     Start does) and first looks for a live postmaster on the data dir;
//     one started meanwhile by another bulkhead process is adopted
//     (watched, not owned, not stopped by Stop) instead.
//   - A clean shutdown of the postmaster this process started, by someone
//     else (bulkhead db stop), is respected: nothing is restarted; a
//     postmaster started later on the data dir is adopted. A postmaster
//     another process started (reused or adopted) that stops, cleanly or
//     not, is replaced by one of this process's own: its owner, such as a
//     CLI command that started it during an outage, stops it when it exits.
//   - Stop and Shutdown end the supervisor first (an attempt in progress
//     is abandoned and its postmaster killed), so nothing restarts behind
//     them.
//
// It returns ErrSupervised for a cluster already supervised or started
// with Config.Detach.
func (c *Cluster) Supervise(cfg SuperviseConfig) error {
	cfg = cfg.withDefaults()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sup != nil || c.cfg.Detach {
		return ErrSupervised
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{cancel: cancel, exited: make(chan struct{})}
	s.up.Store(true)
	c.sup = s
	go c.supervise(ctx, s, cfg)
	return nil
}

// SupervisorStats returns what the supervisor did so far (zero values and
// Up true when the cluster is not supervised). Safe for concurrent use.
func (c *Cluster) SupervisorStats() SupervisorStats {
	c.mu.Lock()
	s := c.sup
	c.mu.Unlock()
	if s == nil {
		return SupervisorStats{Up: true}
	}
	return SupervisorStats{Up: s.up.Load(), Crashes: s.crashes.Load(), Restarts: s.restarts.Load(), FailedStarts: s.failed.Load()}
}

// stopSupervisor ends the supervisor, if any, and waits until it has.
func (c *Cluster) stopSupervisor() {
	c.mu.Lock()
	s := c.sup
	c.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	<-s.exited
	// c.sup stays set: Supervise on a stopped cluster is refused, and
	// SupervisorStats still reports what happened.
}

func (c *Cluster) supervise(ctx context.Context, s *supervisor, cfg SuperviseConfig) {
	defer close(s.exited)
	delay := cfg.MinBackoff
	upSince := time.Now()
	for {
		pid, done, owned := c.current()
		if !waitExit(ctx, pid, done) {
			return
		}
		s.up.Store(false)
		how, crashed := c.howExited(done)
		if !crashed && owned {
			c.log.Warn("PostgreSQL was shut down cleanly by another process (bulkhead db stop?): not restarting it; requests answer 503 until one runs again",
				"data_dir", c.dataDir, "pid", pid, "exit", how)
			if !c.adoptWhenStarted(ctx) {
				return
			}
			s.up.Store(true)
			upSince = time.Now()
			continue
		}
		down := time.Now()
		if time.Since(upSince) >= cfg.Stable {
			delay = cfg.MinBackoff
		}
		if crashed {
			s.crashes.Add(1)
			c.log.Error("PostgreSQL postmaster died; restarting it (crash recovery follows)", "data_dir", c.dataDir, "pid", pid, "exit", how, "restart_in", delay.String())
		} else {
			// Another process's postmaster (reused or adopted) stopped
			// cleanly: most likely a CLI command that started it during an
			// outage has exited and stopped it. Nothing says it was meant
			// to stay down, and this process needs it.
			c.log.Warn("the PostgreSQL another process started has stopped; starting this process's own", "data_dir", c.dataDir, "pid", pid, "exit", how, "restart_in", delay.String())
		}
		for attempt := 1; ; attempt++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, cfg.MaxBackoff)
			adopted, err := c.restart(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				newPID, _, _ := c.current()
				if adopted {
					c.log.Warn("adopted the PostgreSQL another bulkhead process started meanwhile", "data_dir", c.dataDir, "pid", newPID, "down_for", time.Since(down).Round(time.Millisecond).String())
				} else {
					s.restarts.Add(1)
					c.log.Info("PostgreSQL restarted after a crash", "data_dir", c.dataDir, "pid", newPID, "attempt", attempt, "down_for", time.Since(down).Round(time.Millisecond).String())
				}
				break
			}
			s.failed.Add(1)
			c.log.Warn("PostgreSQL restart failed; retrying", "data_dir", c.dataDir, "attempt", attempt, "retry_in", delay.String(), "err", err)
		}
		s.up.Store(true)
		upSince = time.Now()
	}
}

// waitExit waits until the postmaster exits (done closed, or, for one
// this process did not start, pid gone) and reports true, or until ctx
// ends and reports false.
func waitExit(ctx context.Context, pid int, done <-chan struct{}) bool {
	if done != nil {
		select {
		case <-done:
			return true
		case <-ctx.Done():
			return false
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if !isPostgres(pid) {
			return true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

// howExited describes how the postmaster ended and whether that was a
// crash. A child of this process: its exit status (0 after a clean
// shutdown). Another's: a clean shutdown removes postmaster.pid, a crash
// leaves it (or a new postmaster's, which restart adopts).
func (c *Cluster) howExited(done <-chan struct{}) (string, bool) {
	if done != nil {
		c.mu.Lock()
		err := c.exitErr
		c.mu.Unlock()
		if err == nil {
			return "exit status 0", false
		}
		return err.Error(), true
	}
	if _, err := os.Stat(filepath.Join(c.pgdata, "postmaster.pid")); err == nil {
		return "gone, postmaster.pid left behind", true
	}
	return "gone, postmaster.pid removed", false
}

// recoveryLimit bounds a supervised restart: crash recovery replays the
// WAL written since the last checkpoint, which can take minutes on a big
// cluster, and killing it midway would only start it over.
const recoveryLimit = time.Hour

// restart starts the postmaster again under the data dir's lock, or
// adopts one that another process started meanwhile (adopted true).
func (c *Cluster) restart(ctx context.Context) (adopted bool, err error) {
	unlock, err := lockDir(ctx, c.dataDir)
	if err != nil {
		return false, err
	}
	defer unlock()
	if c.adopt(ctx) {
		return true, nil
	}
	logPath := filepath.Join(c.dataDir, "postgres.log")
	var from int64
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	cfg := c.cfg
	cfg.Detach = false
	if err := c.start(ctx, cfg, recoveryLimit); err != nil {
		return false, err
	}
	c.copyLog(logPath, from)
	return false, nil
}

// adopt makes a live postmaster found on the data dir the watched one
// (not owned: Stop leaves it to whoever started it).
func (c *Cluster) adopt(ctx context.Context) bool {
	pid, _, _, ok := c.livePostmaster()
	if !ok {
		return false
	}
	if err := c.waitReady(ctx, nil, recoveryLimit); err != nil {
		return false
	}
	c.mu.Lock()
	c.pid, c.done, c.exitErr, c.owned = pid, nil, nil, false
	c.mu.Unlock()
	return true
}

// adoptWhenStarted waits until a postmaster runs on the data dir again and
// adopts it; false when ctx ended first.
func (c *Cluster) adoptWhenStarted(ctx context.Context) bool {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		if c.adopt(ctx) {
			pid, _, _ := c.current()
			c.log.Info("adopted the PostgreSQL started on the data dir", "data_dir", c.dataDir, "pid", pid)
			return true
		}
	}
}

// copyLog copies PostgreSQL's log lines written since offset from (crash
// recovery's) to the cluster's logger, at most 50 of them. Connection
// attempts refused while it started ("the database system is starting
// up", "... not yet accepting connections": one per client retry) are
// counted, not copied.
func (c *Cluster) copyLog(path string, from int64) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return
	}
	sc := bufio.NewScanner(f)
	copied, refused := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "FATAL:  the database system is ") { // starting up, not yet accepting connections, in recovery mode
			refused++
			continue
		}
		if copied == 50 {
			c.log.Info("postgres log: more lines in "+path, "data_dir", c.dataDir)
			break
		}
		copied++
		c.log.Info("postgres log: "+line, "data_dir", c.dataDir)
	}
	if refused > 0 {
		c.log.Info(fmt.Sprintf("postgres log: %d connection attempts refused while it started (\"FATAL:  the database system is ...\")", refused), "data_dir", c.dataDir)
	}
}
