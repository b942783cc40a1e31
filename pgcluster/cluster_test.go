package pgcluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/jackc/pgx/v5"
)

// helperEnv, when set, turns the test binary into a process that starts a
// cluster on that data dir, prints its pid and waits to be killed (see
// TestParentDeathStopsCluster).
const helperEnv = "PGCLUSTER_TEST_HELPER_DATA_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(helper(dir))
	}
	// A machine without PostgreSQL fails here, saying how to install it;
	// it never skips.
	if _, err := pgcluster.FindBinaries(""); err != nil {
		fmt.Fprintln(os.Stderr, "pgcluster tests need PostgreSQL server binaries:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func helper(dir string) int {
	c, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("pid", c.PID())
	select {} // until killed
}

// mustDataDir returns a fresh, short data dir (the socket lives inside it and
// its path must stay under ~100 bytes) that the postgres user can enter.
func mustDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bhc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// mustStart starts an ephemeral cluster on dir and shuts it down (whoever
// started it) when the test ends.
func mustStart(t *testing.T, cfg pgcluster.Config) *pgcluster.Cluster {
	t.Helper()
	cfg.Ephemeral = true
	c, err := pgcluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.DataDir, err)
	}
	t.Cleanup(func() {
		if err := c.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return c
}

func mustConnect(t *testing.T, c *pgcluster.Cluster) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.SuperuserDSN("postgres"))
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// processesOn lists the live processes that belong to the cluster in
// dataDir: a command line that mentions it (the postmaster, initdb) or a
// working directory inside it (postgres backends and auxiliary processes
// rewrite their command line to "postgres: checkpointer" etc. but keep
// their cwd in the cluster directory). Zombies are not counted.
func processesOn(dataDir string) []string {
	dataDir = filepath.Clean(dataDir)
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmdline) == 0 { // gone, or a zombie / kernel thread
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if strings.Contains(cmd, dataDir) || cwd == dataDir || strings.HasPrefix(cwd, dataDir+"/") {
			found = append(found, fmt.Sprintf("pid %d (%s, cwd %s)", pid, cmd, cwd))
		}
	}
	return found
}

// assertNoProcesses fails if a process of the cluster in dataDir is still
// alive a few seconds from now.
func assertNoProcesses(t *testing.T, dataDir string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = processesOn(dataDir); len(left) == 0 {
			return
		}
	}
	t.Fatalf("processes left running on %s:\n%s", dataDir, strings.Join(left, "\n"))
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func TestStartConnectStop(t *testing.T) {
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir})
	if !c.Owned() {
		t.Error("Owned() = false for a cluster this process started")
	}
	if !c.Running() || !c.Initialised() {
		t.Errorf("Running() = %v, Initialised() = %v; want true, true", c.Running(), c.Initialised())
	}
	if c.SocketDir() != filepath.Join(dir, "pg") {
		t.Errorf("SocketDir() = %s, want the cluster dir %s for a short data dir", c.SocketDir(), filepath.Join(dir, "pg"))
	}
	// The orphan check below must see a running cluster's processes, or it
	// proves nothing.
	if ps := processesOn(dir); len(ps) < 2 || !strings.Contains(strings.Join(ps, "\n"), fmt.Sprintf("pid %d ", c.PID())) {
		t.Fatalf("processesOn(%s) = %v, want the postmaster %d and its auxiliary processes", dir, ps, c.PID())
	}
	conn := mustConnect(t, c)
	var one int
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	var major int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		t.Fatal(err)
	}
	if major != c.Major() {
		t.Errorf("server major version %d, Major() = %d", major, c.Major())
	}
	conn.Close(context.Background())

	// Without the password, nobody logs in.
	bad := c.DSN(pgcluster.Superuser, "wrong", "postgres")
	if conn, err := pgx.Connect(context.Background(), bad); err == nil {
		conn.Close(context.Background())
		t.Error("connected as the superuser with a wrong password")
	}

	pid := c.PID()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) {
		t.Errorf("postmaster pid %d still alive after Stop", pid)
	}
	assertNoProcesses(t, dir)
	if c.Running() {
		t.Error("Running() = true after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pg", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid after a clean stop: %v", err)
	}
}

func TestReuseRunningCluster(t *testing.T) {
	dir := mustDataDir(t)
	first := mustStart(t, pgcluster.Config{DataDir: dir})
	second := mustStart(t, pgcluster.Config{DataDir: dir})
	if second.Owned() {
		t.Error("second Start: Owned() = true, want false (it reused a running cluster)")
	}
	if second.PID() != first.PID() {
		t.Errorf("second Start: PID() = %d, want the first one's %d", second.PID(), first.PID())
	}
	mustConnect(t, second).Close(context.Background())

	if err := second.Stop(); err != nil {
		t.Fatalf("Stop of the reusing cluster: %v", err)
	}
	if !first.Running() || !alive(first.PID()) {
		t.Fatal("Stop of the reusing cluster stopped postgres; only its starter may")
	}
	mustConnect(t, first).Close(context.Background())

	attached, err := pgcluster.Attach(pgcluster.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if attached.Owned() || attached.PID() != first.PID() {
		t.Errorf("Attach: Owned() = %v, PID() = %d; want false, %d", attached.Owned(), attached.PID(), first.PID())
	}

	if err := first.Stop(); err != nil {
		t.Fatalf("Stop of the starter: %v", err)
	}
	if alive(first.PID()) {
		t.Errorf("postmaster %d alive after its starter's Stop", first.PID())
	}
	assertNoProcesses(t, dir)
	if _, err := pgcluster.Attach(pgcluster.Config{DataDir: dir}); !errors.Is(err, pgcluster.ErrNotRunning) {
		t.Errorf("Attach to a stopped cluster: %v, want ErrNotRunning", err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir})
	conn := mustConnect(t, c)
	mustExec(t, conn, "CREATE TABLE kept (v text)")
	mustExec(t, conn, "INSERT INTO kept VALUES ('still here')")
	conn.Close(context.Background())
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, dir)

	c2 := mustStart(t, pgcluster.Config{DataDir: dir})
	if !c2.Owned() || c2.PID() == c.PID() {
		t.Errorf("restart: Owned() = %v, PID() = %d (old %d); want a new owned postmaster", c2.Owned(), c2.PID(), c.PID())
	}
	var v string
	if err := mustConnect(t, c2).QueryRow(context.Background(), "SELECT v FROM kept").Scan(&v); err != nil || v != "still here" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
}

func TestVersionMismatchRefused(t *testing.T) {
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pg", "PG_VERSION"), []byte("14\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true})
	if err == nil {
		t.Fatal("Start on a PostgreSQL 14 data dir succeeded")
	}
	for _, want := range []string{"PostgreSQL 14", "pg_upgrade", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	assertNoProcesses(t, dir)
	// Inspect refuses it too: nothing may touch another version's data.
	if _, err := pgcluster.Inspect(pgcluster.Config{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "PostgreSQL 14") {
		t.Errorf("Inspect: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pg", "PG_VERSION")); strings.TrimSpace(string(b)) != "14" {
		t.Errorf("PG_VERSION rewritten to %q", b)
	}
}

// TestStalePIDFile: after a crash (postmaster killed: postmaster.pid and
// the socket file stay behind), the pid in postmaster.pid may be dead or,
// after a reboot, belong to another program or another cluster's postgres.
// Start must start this cluster's own postgres in every case.
func TestStalePIDFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  func(t *testing.T) int
	}{
		{"dead pid", func(t *testing.T) int { return 999999 }},
		{"live pid of another program", func(t *testing.T) int { return os.Getpid() }},
		{"live postgres of another cluster", func(t *testing.T) int {
			return mustStart(t, pgcluster.Config{DataDir: mustDataDir(t)}).PID()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mustDataDir(t)
			c := mustStart(t, pgcluster.Config{DataDir: dir})
			if err := syscall.Kill(c.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := c.Stop(); err != nil { // waits for the exit
				t.Fatal(err)
			}
			assertNoProcesses(t, dir)
			pidFile := filepath.Join(dir, "pg", "postmaster.pid")
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatalf("no postmaster.pid after a crash: %v", err)
			}
			pid := tc.pid(t)
			_, rest, _ := strings.Cut(string(b), "\n")
			if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"+rest), 0o600); err != nil {
				t.Fatal(err)
			}
			// The socket's lock file names the same pid: PostgreSQL itself
			// refuses to start while that pid is alive (a zombie counts).
			lock := filepath.Join(c.SocketDir(), ".s.PGSQL."+strconv.Itoa(c.Port())+".lock")
			if err := os.WriteFile(lock, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c2, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: dir, Ephemeral: true})
			if err != nil {
				t.Fatalf("Start with a stale postmaster.pid (pid %d): %v", pid, err)
			}
			t.Cleanup(func() { c2.Shutdown() })
			if !c2.Owned() || c2.PID() == pid {
				t.Fatalf("Start with a stale postmaster.pid: Owned() = %v, PID() = %d; want a new owned postmaster, not %d", c2.Owned(), c2.PID(), pid)
			}
			mustConnect(t, c2).Close(context.Background())
			if err := c2.Stop(); err != nil {
				t.Fatal(err)
			}
			assertNoProcesses(t, dir)
			if !alive(pid) && pid != 999999 {
				t.Errorf("pid %d, named in the stale file, was stopped", pid)
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dir := mustDataDir(t)
	c, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Port: port, Ephemeral: true})
	if err == nil {
		c.Shutdown()
		t.Fatalf("Start on port %d, which is in use, succeeded", port)
	}
	for _, want := range []string{strconv.Itoa(port), "in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	assertNoProcesses(t, dir)
}

func TestTCPPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir, Port: port})
	if c.Port() != port {
		t.Errorf("Port() = %d, want %d", c.Port(), port)
	}
	// The TCP listener takes the same password as the socket.
	pw, err := os.ReadFile(filepath.Join(dir, "superuser.password"))
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/postgres?sslmode=disable", pgcluster.Superuser, strings.TrimSpace(string(pw)), port)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect over TCP: %v", err)
	}
	conn.Close(context.Background())
	// A reuse finds the port from postmaster.pid, whatever its config says.
	again := mustStart(t, pgcluster.Config{DataDir: dir})
	if again.Port() != port || again.Owned() {
		t.Errorf("reuse: Port() = %d, Owned() = %v; want %d, false", again.Port(), again.Owned(), port)
	}
	mustConnect(t, again).Close(context.Background())
}

// TestTLSHalfGiven: a certificate without its key (or the other way
// round) is refused before anything is created or started.
func TestTLSHalfGiven(t *testing.T) {
	for _, cfg := range []pgcluster.Config{{TLSCert: []byte("cert")}, {TLSKey: []byte("key")}} {
		dir := mustDataDir(t)
		cfg.DataDir, cfg.Ephemeral = dir, true
		c, err := pgcluster.Start(context.Background(), cfg)
		if err == nil {
			c.Shutdown()
			t.Fatal("Start with half of TLS succeeded")
		}
		if !strings.Contains(err.Error(), "both a certificate and its key") {
			t.Errorf("error %q", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "pg")); err == nil {
			t.Error("the cluster was initialised anyway")
		}
		assertNoProcesses(t, dir)
	}
}

func TestDataDirNotWritable(t *testing.T) {
	parent := mustDataDir(t)
	file := filepath.Join(parent, "file")
	if err := os.WriteFile(file, []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Root ignores permission bits, so a path under a regular file is the
	// reliable way to get a data dir nobody can create.
	dir := filepath.Join(file, "x")
	_, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true})
	if err == nil {
		t.Fatalf("Start on %s succeeded", dir)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !(strings.Contains(msg, "not usable") || strings.Contains(msg, "not writable")) {
		t.Errorf("error %q does not name the data dir and the problem", err)
	}
	assertNoProcesses(t, dir)
}

func TestDetach(t *testing.T) {
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir, Detach: true})
	if c.Owned() {
		t.Error("Detach: Owned() = true; a detached cluster outlives this process")
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if !c.Running() {
		t.Fatal("Stop stopped a detached cluster")
	}
	// Its own session: a terminal's Ctrl-C or a killed process group misses it.
	if sid, err := getsid(c.PID()); err != nil || sid != c.PID() {
		t.Errorf("detached postmaster: session id %d (%v), want its own pid %d", sid, err, c.PID())
	}

	seen, err := pgcluster.Inspect(pgcluster.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !seen.Running() || seen.PID() != c.PID() {
		t.Fatalf("Inspect: Running() = %v, PID() = %d; want true, %d", seen.Running(), seen.PID(), c.PID())
	}
	mustConnect(t, seen).Close(context.Background())
	if err := seen.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if alive(c.PID()) {
		t.Errorf("postmaster %d alive after Shutdown", c.PID())
	}
	assertNoProcesses(t, dir)
	if seen.Running() {
		t.Error("Running() = true after Shutdown")
	}
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

// TestLongDataDir: a data dir too deep for a Unix socket path gets its
// socket in a short directory derived from it.
func TestLongDataDir(t *testing.T) {
	dir := mustDataDir(t)
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	c := mustStart(t, pgcluster.Config{DataDir: long})
	if strings.HasPrefix(c.SocketDir(), dir) {
		t.Fatalf("SocketDir() = %s, inside the long data dir", c.SocketDir())
	}
	t.Cleanup(func() { os.RemoveAll(c.SocketDir()) })
	if n := len(filepath.Join(c.SocketDir(), ".s.PGSQL.5432")); n >= 100 {
		t.Errorf("socket path is %d bytes long", n)
	}
	mustConnect(t, c).Close(context.Background())
	// A second Start finds the running cluster and the same socket.
	again := mustStart(t, pgcluster.Config{DataDir: long})
	if again.Owned() || again.SocketDir() != c.SocketDir() {
		t.Errorf("reuse: Owned() = %v, SocketDir() = %s; want false, %s", again.Owned(), again.SocketDir(), c.SocketDir())
	}
	mustConnect(t, again).Close(context.Background())
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, long)
	// A restart uses the socket dir the first start left behind.
	c = mustStart(t, pgcluster.Config{DataDir: long})
	if !c.Owned() || c.SocketDir() != again.SocketDir() {
		t.Errorf("restart: Owned() = %v, SocketDir() = %s; want true, %s", c.Owned(), c.SocketDir(), again.SocketDir())
	}
	mustConnect(t, c).Close(context.Background())
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, long)
}

// TestLongDataDirPlantedSocketDir: the short socket directory has a
// predictable name in a world-writable place; a symlink planted there must
// not make Start (run as root) hand the link's target to the postgres user.
func TestLongDataDirPlantedSocketDir(t *testing.T) {
	dir := mustDataDir(t)
	long := filepath.Join(dir, strings.Repeat("p", 60), strings.Repeat("q", 60))
	c := mustStart(t, pgcluster.Config{DataDir: long})
	sockDir := c.SocketDir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(sockDir); err != nil {
		t.Fatal(err)
	}
	victim := mustDataDir(t) // stands for /etc or a home directory
	if err := os.Symlink(victim, sockDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sockDir) })

	c, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: long, Ephemeral: true})
	if err == nil {
		c.Shutdown()
		t.Error("Start used a socket dir that is a symlink")
	} else if !strings.Contains(err.Error(), sockDir) {
		t.Errorf("error %q does not name the socket dir %s", err, sockDir)
	}
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() || fi.Mode().Perm() != 0o755 {
		t.Errorf("the symlink's target is now owned by uid %d, mode %v", st.Uid, fi.Mode().Perm())
	}
	assertNoProcesses(t, long)
}

// TestParentDeathStopsCluster: a process killed without running Stop does
// not leave its attached cluster behind.
func TestParentDeathStopsCluster(t *testing.T) {
	dir := mustDataDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if c, err := pgcluster.Inspect(pgcluster.Config{DataDir: dir}); err == nil {
			c.Shutdown()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %q, %v", line, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("postmaster %d not running", pid)
	}
	// SIGKILL: no deferred function, no Stop, only the parent-death signal.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for deadline := time.Now().Add(15 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		t.Fatalf("postmaster %d outlived the process that started it", pid)
	}
	assertNoProcesses(t, dir)
}

// TestStartCancelled: a start interrupted during initdb or during
// postgres' start-up says so, leaves nothing running, and the next start
// works.
func TestStartCancelled(t *testing.T) {
	for _, tc := range []struct {
		name        string
		initialised bool
		cancelWhen  string // cancel as soon as this file exists in the data dir
	}{
		// template1 exists: initdb is in its bootstrap phase.
		{"during initdb", false, "pg/base/1"},
		// The postmaster has written its pid file but is not ready yet.
		{"during start-up", true, "pg/postmaster.pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mustDataDir(t)
			if tc.initialised {
				c := mustStart(t, pgcluster.Config{DataDir: dir})
				if err := c.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			go func() {
				for ctx.Err() == nil {
					if _, err := os.Stat(filepath.Join(dir, tc.cancelWhen)); err == nil {
						cancel()
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			c, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: dir, Ephemeral: true})
			if err == nil { // this machine was quicker than the watcher
				t.Logf("Start finished before it was cancelled")
				if err := c.Stop(); err != nil {
					t.Fatal(err)
				}
			} else if !errors.Is(err, context.Canceled) {
				t.Errorf("interrupted Start: %v, want an error wrapping context.Canceled", err)
			} else if !tc.initialised && strings.Contains(err.Error(), "\n") {
				t.Errorf("interrupted initdb: the error carries its output:\n%v", err)
			}
			assertNoProcesses(t, dir)
			c = mustStart(t, pgcluster.Config{DataDir: dir})
			mustConnect(t, c).Close(context.Background())
		})
	}
}

func TestMissingBinaries(t *testing.T) {
	if _, err := pgcluster.FindBinaries("/nonexistent"); !errors.Is(err, pgcluster.ErrNoBinaries) {
		t.Errorf("FindBinaries(/nonexistent) = %v, want ErrNoBinaries", err)
	}
	dir := mustDataDir(t)
	_, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, BinDir: "/nonexistent", Ephemeral: true})
	if !errors.Is(err, pgcluster.ErrNoBinaries) {
		t.Fatalf("Start with BinDir /nonexistent = %v, want ErrNoBinaries", err)
	}
	if !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("error %q does not say how to install PostgreSQL", err)
	}
	assertNoProcesses(t, dir)
}

func TestFindBinaries(t *testing.T) {
	b, err := pgcluster.FindBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	if b.Major < 13 {
		t.Errorf("Major = %d", b.Major)
	}
	for _, name := range []string{"postgres", "initdb"} {
		if _, err := os.Stat(b.Path(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	again, err := pgcluster.FindBinaries(b.Dir)
	if err != nil || again != b {
		t.Errorf("FindBinaries(%s) = %+v, %v; want %+v", b.Dir, again, err, b)
	}
}
