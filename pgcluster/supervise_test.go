package pgcluster_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/jackc/pgx/v5"
)

// waitFor polls cond every 20 ms until it holds or limit passes (a bound
// against hanging, not a timing assertion).
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// TestSuperviseRestartsKilledPostmaster: a postmaster killed with SIGKILL
// is started again by the supervisor, which runs crash recovery (its log
// lines reach the logger); committed data survives; Stop ends the
// supervisor and the new postmaster, leaving no process behind.
func TestSuperviseRestartsKilledPostmaster(t *testing.T) {
	dir := mustDataDir(t)
	var log syncbuf.Buffer
	c := mustStart(t, pgcluster.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err := c.Supervise(pgcluster.SuperviseConfig{MinBackoff: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := c.Supervise(pgcluster.SuperviseConfig{}); !errors.Is(err, pgcluster.ErrSupervised) {
		t.Errorf("second Supervise: %v, want ErrSupervised", err)
	}
	conn := mustConnect(t, c)
	// The test cluster is ephemeral (synchronous_commit off): this commit
	// waits for its WAL, as every commit of a durable cluster does.
	mustExec(t, conn, `SET synchronous_commit = on; CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`)
	conn.Close(context.Background())

	for round := 1; round <= 2; round++ { // a second crash is handled as well
		old := c.PID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a new postmaster", 30*time.Second, func() bool { return c.PID() != old && c.SupervisorStats().Up })
		if alive(old) {
			t.Fatalf("round %d: the killed postmaster %d is alive", round, old)
		}
		st := c.SupervisorStats()
		if st.Crashes != int64(round) || st.Restarts != int64(round) || !c.Owned() {
			t.Errorf("round %d: stats %+v, owned %v; want %d crashes and restarts, owned", round, st, c.Owned(), round)
		}
		conn = mustConnect(t, c)
		var v int
		if err := conn.QueryRow(context.Background(), `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
			t.Fatalf("round %d: after the restart, SELECT v = %d, %v", round, v, err)
		}
		conn.Close(context.Background())
	}
	out := log.String()
	for _, want := range []string{"PostgreSQL postmaster died; restarting it", "PostgreSQL restarted after a crash", "postgres log:", "database system is ready to accept connections"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "not properly shut down") && !strings.Contains(out, "interrupted") {
		t.Errorf("the log does not show crash recovery:\n%s", out)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, dir)
}

// TestSuperviseRespectsCleanShutdown: a postmaster stopped cleanly by
// another process (bulkhead db stop) is not restarted; one started later
// by another process is adopted, and the supervisor's Stop leaves it
// running. While any postmaster runs, no second one is started.
func TestSuperviseRespectsCleanShutdown(t *testing.T) {
	dir := mustDataDir(t)
	var log syncbuf.Buffer
	c := mustStart(t, pgcluster.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err := c.Supervise(pgcluster.SuperviseConfig{MinBackoff: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	other, err := pgcluster.Inspect(pgcluster.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	old := c.PID()
	if err := other.Shutdown(); err != nil { // what bulkhead db stop does
		t.Fatal(err)
	}
	waitFor(t, "the supervisor noticing", 10*time.Second, func() bool { return !c.SupervisorStats().Up })
	if st := c.SupervisorStats(); st.Crashes != 0 || st.Restarts != 0 {
		t.Errorf("after a clean shutdown: %+v, want no crash and no restart", st)
	}
	if other.Running() {
		t.Fatal("a postmaster runs after a clean shutdown: the supervisor restarted it")
	}

	// Another process starts it (bulkhead db start): adopted.
	started, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { started.Shutdown() })
	waitFor(t, "adoption", 10*time.Second, func() bool { return c.PID() == started.PID() && c.SupervisorStats().Up })
	if c.Owned() || started.PID() == old {
		t.Errorf("adopted: owned %v, pid %d (old %d)", c.Owned(), started.PID(), old)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if !alive(started.PID()) {
		t.Error("Stop stopped an adopted postmaster that another process started")
	}
	conn, err := pgx.Connect(context.Background(), started.SuperuserDSN("postgres"))
	if err != nil {
		t.Fatalf("the adopted cluster does not answer after the supervisor's Stop: %v", err)
	}
	conn.Close(context.Background())
	if err := started.Shutdown(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, dir)
}

// TestSuperviseBacksOff: while the postmaster can't start (another
// program took its TCP port), the supervisor keeps trying with growing
// delays and counts the failures, and never reports up; once the port is
// free it starts it. Stop then leaves nothing running.
func TestSuperviseBacksOff(t *testing.T) {
	dir := mustDataDir(t)
	port := freePort(t)
	var log syncbuf.Buffer
	c := mustStart(t, pgcluster.Config{DataDir: dir, Port: port, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err := c.Supervise(pgcluster.SuperviseConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	old := c.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the supervisor noticing", 10*time.Second, func() bool { return !c.SupervisorStats().Up })
	var l net.Listener
	waitFor(t, "taking the port", 10*time.Second, func() bool {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err == nil
	})
	if c.SupervisorStats().Up {
		// The supervisor was quicker than the test: kill again, with the
		// port taken this time.
		old = c.PID()
		syscall.Kill(old, syscall.SIGKILL)
	}
	waitFor(t, "three failed attempts", 20*time.Second, func() bool { return c.SupervisorStats().FailedStarts >= 3 })
	if st := c.SupervisorStats(); st.Up {
		t.Errorf("reported up while it could not start: %+v", st)
	}
	l.Close()
	waitFor(t, "the restart", 30*time.Second, func() bool { return c.SupervisorStats().Up })
	if c.PID() == old {
		t.Fatal("same pid after the restart")
	}
	if !strings.Contains(log.String(), "PostgreSQL restart failed; retrying") {
		t.Errorf("the log does not show the failed attempts:\n%s", log.String())
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, dir)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSuperviseStopDuringRestart: Stop while the supervisor keeps failing
// to restart (its port taken) ends the attempts and returns; nothing of
// the cluster runs afterwards, and no attempt starts one later.
func TestSuperviseStopDuringRestart(t *testing.T) {
	dir := mustDataDir(t)
	port := freePort(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir, Port: port})
	if err := c.Supervise(pgcluster.SuperviseConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(c.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	waitFor(t, "taking the port", 10*time.Second, func() bool {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err == nil
	})
	defer l.Close()
	if c.SupervisorStats().Up {
		// The supervisor was quicker than the test: kill again, with the
		// port taken this time.
		syscall.Kill(c.PID(), syscall.SIGKILL)
	}
	waitFor(t, "a failed attempt", 20*time.Second, func() bool { return c.SupervisorStats().FailedStarts >= 1 })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	failed := c.SupervisorStats().FailedStarts
	l.Close() // an attempt still running would now succeed
	assertNoProcesses(t, dir)
	if n := c.SupervisorStats().FailedStarts; n != failed {
		t.Errorf("attempts went on after Stop: %d failed starts, then %d", failed, n)
	}
}

// TestSuperviseReplacesAdoptedCluster: the postmaster that another process
// started during an outage (adopted) is stopped cleanly by that process
// when it exits, as a CLI command does: the supervisor starts its own.
func TestSuperviseReplacesAdoptedCluster(t *testing.T) {
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir})
	if err := c.Supervise(pgcluster.SuperviseConfig{MinBackoff: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	other, err := pgcluster.Inspect(pgcluster.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Shutdown(); err != nil { // db stop: respected
		t.Fatal(err)
	}
	waitFor(t, "the supervisor noticing", 10*time.Second, func() bool { return !c.SupervisorStats().Up })
	cli, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "adoption", 10*time.Second, func() bool { return c.PID() == cli.PID() && c.SupervisorStats().Up })
	if err := cli.Stop(); err != nil { // the CLI command exits
		t.Fatal(err)
	}
	waitFor(t, "a postmaster of the supervisor's own", 30*time.Second, func() bool {
		return c.PID() != cli.PID() && c.Owned() && c.SupervisorStats().Up
	})
	conn := mustConnect(t, c)
	conn.Close(context.Background())
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, dir)
}
