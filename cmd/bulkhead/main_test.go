package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
)

// These tests run the built binary, as an operator would: one build in
// TestMain, a fresh short data dir per test (the cluster's socket lives in
// it), no t.Parallel for tests that start clusters.

var bin string // the built bulkhead binary

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// A machine without PostgreSQL fails here, saying how to install it.
	if _, err := pgcluster.FindBinaries(""); err != nil {
		fmt.Fprintln(os.Stderr, "cmd/bulkhead tests need PostgreSQL server binaries:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "bhbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "bulkhead")
	gobin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		gobin = filepath.Join(root, "bin", "go")
	}
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// command prepares bin with args on dataDir. env adds to (and overrides)
// the test's environment, from which every BULKHEAD_* and DATABASE_URL
// variable is removed first.
func command(ctx context.Context, dataDir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULKHEAD_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BULKHEAD_LOG_FORMAT=text")
	if dataDir != "" {
		cmd.Env = append(cmd.Env, "BULKHEAD_DATA_DIR="+dataDir)
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// run runs bin to completion (at most a minute) and returns what it did.
func run(t *testing.T, dataDir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := command(ctx, dataDir, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("bulkhead %s: %v", strings.Join(args, " "), err)
		}
		r.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("bulkhead %s did not finish within a minute:\n%s", strings.Join(args, " "), r)
	}
	return r
}

// mustRun runs bin and fails the test unless it exits 0.
func mustRun(t *testing.T, dataDir string, args ...string) result {
	t.Helper()
	r := run(t, dataDir, nil, args...)
	if r.code != 0 {
		t.Fatalf("bulkhead %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// mustDataDir returns a fresh, short data dir the postgres user can enter.
// When the test ends, whatever cluster runs there is stopped.
func mustDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bhe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r := run(t, dir, nil, "db", "stop"); r.code != 0 {
			t.Errorf("cleanup: db stop: %s", r)
		}
		// Last resort, so that a failing test does not leak processes into
		// the next one: kill what is left, by pid.
		for _, p := range processesOn(dir) {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		os.RemoveAll(dir)
	})
	return dir
}

type process struct {
	pid      int
	cmd, cwd string
}

func (p process) String() string { return fmt.Sprintf("pid %d (%s, cwd %s)", p.pid, p.cmd, p.cwd) }

// processesOn lists the live processes of the cluster in dataDir: a command
// line that mentions it (the postmaster, initdb) or a working directory in
// it (backends and auxiliary processes rename themselves "postgres:
// checkpointer" etc. but keep their cwd in the cluster). Zombies, whose
// command line is empty, are not counted.
func processesOn(dataDir string) []process {
	dataDir = filepath.Clean(dataDir)
	entries, _ := os.ReadDir("/proc")
	var found []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if strings.Contains(cmd, dataDir) || cwd == dataDir || strings.HasPrefix(cwd, dataDir+"/") {
			found = append(found, process{pid, cmd, cwd})
		}
	}
	return found
}

// assertNoProcesses fails if a process of the cluster in dataDir is still
// alive a few seconds from now.
func assertNoProcesses(t *testing.T, dataDir string) {
	t.Helper()
	var left []process
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = processesOn(dataDir); len(left) == 0 {
			return
		}
	}
	t.Fatalf("processes left running on %s: %v", dataDir, left)
}

// server is a running bulkhead serve.
type server struct {
	cmd            *exec.Cmd
	base           string // http://addr
	stdout, stderr *syncbuf.Buffer
	done           chan struct{} // closed when the process has exited
}

func (s *server) output() string {
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", s.stdout, s.stderr)
}

// startServe starts bulkhead serve with env and args and waits until
// /healthz and /readyz answer 200. The process is killed when the test ends
// if it is still running.
func startServe(t *testing.T, dataDir, addr string, env []string, args ...string) *server {
	t.Helper()
	s := &server{base: "http://" + addr, stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	s.cmd = command(context.Background(), dataDir, env, append([]string{"serve"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		s.waitOK(t, path, 60*time.Second)
	}
	return s
}

// get returns the status and body of GET path.
func (s *server) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (s *server) waitOK(t *testing.T, path string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := s.get(path)
		if err == nil && code == http.StatusOK {
			return body
		}
		select {
		case <-s.done:
			t.Fatalf("serve exited (%v) before GET %s answered 200\n%s", s.cmd.ProcessState, path, s.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q %v after %s\n%s", path, code, body, err, timeout, s.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and expects a clean exit within
// 20 seconds.
func (s *server) interrupt(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still running 20 s after SIGINT\n%s", s.output())
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve exited %d after SIGINT, want 0\n%s", code, s.output())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage:", "serve", "db", "migrate", "tenant", "demo", "--data-dir", "--database-url", "BULKHEAD_DATA_DIR", "DATABASE_URL"}},
		{[]string{"serve", "--help"}, []string{"Usage:", "bulkhead serve", "--addr", "--migrate", "--data-dir", "/healthz", "/readyz", "SIGINT"}},
		{[]string{"db", "--help"}, []string{"start", "stop", "status", "info", "psql"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, "", nil, tc.args...)
			if r.code != 0 {
				t.Fatal(r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("help does not mention %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestBadUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"--bogus"}, "unknown flag: --bogus"},
		{"unknown serve flag", nil, []string{"serve", "--bogus"}, "unknown flag: --bogus"},
		{"unknown command", nil, []string{"nosuchcmd"}, `unknown command "nosuchcmd"`},
		{"stray argument", nil, []string{"serve", "extra"}, `"extra"`},
		{"missing argument", nil, []string{"tenant", "create"}, "accepts 1 arg"},
		{"bad env value", []string{"BULKHEAD_PG_PORT=abc"}, []string{"db", "status"}, "BULKHEAD_PG_PORT"},
		{"bad log format", []string{"BULKHEAD_LOG_FORMAT=xml"}, []string{"db", "start"}, "--log-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mustDataDir(t)
			r := run(t, dir, tc.env, tc.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want an error\n%s", r)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not mention %q\n%s", tc.want, r)
			}
			if n := strings.Count(r.stderr, "bulkhead:"); n != 1 || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("want one error message, got:\n%s", r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "pg")); err == nil {
				t.Errorf("a usage error initialised a cluster in %s", dir)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	r := run(t, "", nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "bulkhead ") {
		t.Fatalf("version: %s", r)
	}
}

func TestMigrateStatusUnreachable(t *testing.T) {
	dir := mustDataDir(t)
	r := run(t, dir, []string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/x"}, "migrate", "status")
	if r.code == 0 {
		t.Fatalf("migrate status against an unreachable database exited 0\n%s", r)
	}
	if strings.Count(r.stderr, "bulkhead:") != 1 || strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("want one error message and no panic, got:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "127.0.0.1:1") || !strings.Contains(r.stderr, "refused") {
		t.Errorf("the message does not say what could not be reached:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "pg")); err == nil {
		t.Error("an external --database-url initialised the embedded cluster")
	}
}

// TestServe: serve comes up ready, stops cleanly on SIGINT and leaves no
// PostgreSQL behind; the data survives a restart; a CLI command run while
// serve runs shares its cluster without stopping it; a serve killed outright
// does not leave its cluster running.
func TestServe(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, nil, "--addr", addr)
	var ready map[string]string
	if code, body, err := s.get("/readyz"); err != nil || code != 200 || json.Unmarshal([]byte(body), &ready) != nil || len(ready) != 1 || ready["status"] != "ready" {
		t.Fatalf("GET /readyz = %d %q %v, want 200 {\"status\":\"ready\"}", code, body, err)
	}
	if !strings.Contains(s.stdout.String(), "bulkhead serving on http://"+addr) {
		t.Errorf("serve did not say where it serves:\n%s", s.output())
	}
	if code, _, _ := s.get("/no/such/route"); code != http.StatusNotFound {
		t.Errorf("GET /no/such/route = %d, want 404", code)
	}
	s.interrupt(t)
	assertNoProcesses(t, dir)

	// In between, with nothing running: the CLI starts the cluster for
	// the duration of the command.
	var acme struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	r := mustRun(t, dir, "tenant", "create", "acme", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &acme); err != nil || acme.Name != "acme" || acme.ID == "" {
		t.Fatalf("tenant create --json printed %q (%v)", r.stdout, err)
	}
	assertNoProcesses(t, dir)

	// Second serve, the address from the environment this time.
	addr = freeAddr(t)
	s = startServe(t, dir, addr, []string{"BULKHEAD_ADDR=" + addr})
	r = mustRun(t, dir, "tenant", "list", "--json")
	var tenants []struct{ ID, Name string }
	if err := json.Unmarshal([]byte(r.stdout), &tenants); err != nil {
		t.Fatalf("tenant list --json printed %q: %v", r.stdout, err)
	}
	if len(tenants) != 1 || tenants[0].ID != acme.ID || tenants[0].Name != "acme" {
		t.Errorf("after restart, tenant list = %+v, want acme %s", tenants, acme.ID)
	}
	// tenant list reused serve's cluster and must have left it running.
	s.waitOK(t, "/readyz", 5*time.Second)
	s.interrupt(t)
	assertNoProcesses(t, dir)

	// A serve killed without a chance to clean up takes its cluster down
	// with it (parent-death signal), and the next start finds no stale state.
	addr = freeAddr(t)
	s = startServe(t, dir, addr, nil, "--addr", addr)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	assertNoProcesses(t, dir)
	if r := run(t, dir, nil, "db", "status"); r.code != 3 {
		t.Errorf("db status after serve was killed: %s, want exit 3", r)
	}
	r = mustRun(t, dir, "tenant", "list", "--json")
	if !strings.Contains(r.stdout, acme.ID) {
		t.Errorf("after serve was killed, tenant list = %s, want acme", r.stdout)
	}
	assertNoProcesses(t, dir)
}

// TestServeInterruptedStart: Ctrl-C while serve initialises its cluster
// ends it promptly with a short message, leaves no PostgreSQL behind and
// does not spoil the data dir.
func TestServeInterruptedStart(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	cmd := command(context.Background(), dir, nil, "serve", "--addr", addr)
	var stdout, stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	// Interrupt initdb in its bootstrap phase (template1 exists), when it
	// has the most to say.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "pg", "base", "1")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start initdb\nstderr:\n%s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still running 20 s after SIGINT\nstderr:\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		// Interrupted before it served: one line (besides the logs), not
		// initdb's output.
		var msgs []string
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if !strings.HasPrefix(l, "time=") { // a log line (BULKHEAD_LOG_FORMAT=text)
				msgs = append(msgs, l)
			}
		}
		if len(msgs) != 1 || !strings.HasPrefix(msgs[0], "bulkhead: ") {
			t.Errorf("serve interrupted during start-up (exit %d) printed, besides its logs:\n%s", code, strings.Join(msgs, "\n"))
		}
	}
	assertNoProcesses(t, dir)
	r := mustRun(t, dir, "tenant", "list", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("tenant list after an interrupted first start = %q, want []", r.stdout)
	}
	assertNoProcesses(t, dir)
}

func TestServePortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	dir := mustDataDir(t)
	r := run(t, dir, nil, "serve", "--addr", addr)
	if r.code == 0 {
		t.Fatalf("serve on a busy address exited 0\n%s", r)
	}
	if !strings.Contains(r.stderr, addr) || !strings.Contains(r.stderr, "in use") {
		t.Errorf("the error does not name the busy address %s:\n%s", addr, r.stderr)
	}
	assertNoProcesses(t, dir)
	// It checks the address before it starts anything.
	if _, err := os.Stat(filepath.Join(dir, "pg")); err == nil {
		t.Error("serve initialised a cluster although it could not listen")
	}
}

// TestDBLifecycle drives a background cluster with the db commands and
// runs the tenant and demo commands against it.
func TestDBLifecycle(t *testing.T) {
	dir := mustDataDir(t)
	if r := run(t, dir, nil, "db", "status"); r.code != 3 || !strings.Contains(r.stdout, "not running") {
		t.Fatalf("db status before start: %s, want exit 3, not running", r)
	}
	r := mustRun(t, dir, "db", "start")
	if !strings.Contains(r.stdout, "running") {
		t.Errorf("db start printed %q", r.stdout)
	}
	r = mustRun(t, dir, "db", "status")
	if !strings.Contains(r.stdout, "running: PostgreSQL") {
		t.Errorf("db status printed %q", r.stdout)
	}
	mustRun(t, dir, "db", "start") // already running: fine

	r = mustRun(t, dir, "db", "info", "--json")
	var info map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("db info --json printed %q: %v", r.stdout, err)
	}
	for _, k := range []string{"superuser_dsn", "owner_dsn", "app_dsn", "database", "schema", "tenant_setting", "entity_setting", "acting_for_setting"} {
		if v, ok := info[k].(string); !ok || v == "" {
			t.Errorf("db info --json: %s = %v, want a non-empty string", k, info[k])
		}
	}
	if info["running"] != true {
		t.Errorf("db info --json: running = %v, want true", info["running"])
	}

	t.Run("tenant create and delete", func(t *testing.T) {
		r := mustRun(t, dir, "tenant", "create", "X", "--json")
		var created map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
			t.Fatalf("tenant create --json printed %q: %v", r.stdout, err)
		}
		id, _ := created["id"].(string)
		if len(id) != 36 || created["name"] != "X" {
			t.Fatalf("tenant create --json = %v, want an id and name X", created)
		}
		for i := 0; i < 2; i++ { // idempotent
			if r := run(t, dir, nil, "tenant", "delete", id); r.code != 0 || !strings.Contains(r.stdout, id) {
				t.Errorf("tenant delete %s (#%d): %s", id, i+1, r)
			}
		}
		r = mustRun(t, dir, "tenant", "list", "--json")
		if strings.Contains(r.stdout, id) {
			t.Errorf("tenant %s listed after delete:\n%s", id, r.stdout)
		}
		r = run(t, dir, nil, "tenant", "delete", "not-a-uuid")
		if r.code == 0 || !strings.Contains(r.stderr, "not-a-uuid") {
			t.Errorf("tenant delete not-a-uuid: %s, want an error naming it", r)
		}
	})

	t.Run("demo", func(t *testing.T) {
		r := mustRun(t, dir, "demo", "seed", "--json")
		var seeded struct {
			T1, T2 struct {
				Tenant struct{ ID, Name string }
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &seeded); err != nil || seeded.T1.Tenant.Name == "" || seeded.T2.Tenant.Name == "" {
			t.Fatalf("demo seed --json printed %q (%v)", r.stdout, err)
		}
		out := mustRun(t, dir, "demo", "show").stdout
		for _, tn := range []struct{ ID, Name string }{seeded.T1.Tenant, seeded.T2.Tenant} {
			section := demoSection(out, tn.Name)
			if section == nil {
				t.Errorf("demo show has no section for tenant %s:\n%s", tn.Name, out)
				continue
			}
			// SeedDemo: room1 = {Alice, Bob}, room2 = {Bob, Charlie}.
			for _, want := range []struct {
				who        string
				sees, hide []string
			}{
				{"Alice", []string{"room1"}, []string{"room2"}},
				{"Bob", []string{"room1", "room2"}, nil},
				{"Charlie", []string{"room2"}, []string{"room1"}},
			} {
				line := lineOf(section, " "+want.who+" ")
				if line == "" {
					t.Errorf("tenant %s: no line for %s:\n%s", tn.Name, want.who, strings.Join(section, "\n"))
					continue
				}
				rooms := line[strings.Index(line, "rooms:"):strings.Index(line, "messages:")]
				for _, room := range want.sees {
					if !strings.Contains(rooms, room) {
						t.Errorf("tenant %s: %s does not see %s: %q", tn.Name, want.who, room, line)
					}
				}
				for _, room := range want.hide {
					if strings.Contains(rooms, room) {
						t.Errorf("tenant %s: %s sees %s: %q", tn.Name, want.who, room, line)
					}
				}
			}
		}
	})

	// serve reuses the background cluster and leaves it running on exit.
	addr := freeAddr(t)
	startServe(t, dir, addr, nil, "--addr", addr).interrupt(t)
	if r := run(t, dir, nil, "db", "status"); r.code != 0 {
		t.Errorf("db status after serve reused the background cluster and exited: %s, want exit 0", r)
	}

	r = mustRun(t, dir, "db", "stop")
	if !strings.Contains(r.stdout, "stopped") {
		t.Errorf("db stop printed %q", r.stdout)
	}
	if r := run(t, dir, nil, "db", "status"); r.code != 3 {
		t.Errorf("db status after stop: %s, want exit 3", r)
	}
	assertNoProcesses(t, dir)
	mustRun(t, dir, "db", "stop") // not running: fine
}

// demoSection returns the lines of demo show's output under "tenant name (".
func demoSection(out, name string) []string {
	var section []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tenant ") {
			if in {
				break
			}
			in = strings.HasPrefix(l, "tenant "+name+" (")
			continue
		}
		if in {
			section = append(section, l)
		}
	}
	if !in {
		return nil
	}
	return section
}

func lineOf(lines []string, sub string) string {
	for _, l := range lines {
		if strings.Contains(l, sub) && strings.Contains(l, "rooms:") && strings.Contains(l, "messages:") {
			return l
		}
	}
	return ""
}
