package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
)

// Issue 17, scenario 2: bulkhead itself killed (SIGKILL) in the middle of
// ingestion and key rotation.

// lenientWriters post confidential documents until stopped and keep the
// ones acknowledged (201); any other outcome (the server is gone) is
// neither an acknowledgement nor a test failure.
type lenientWriters struct {
	mu    sync.Mutex
	acked map[string]string // id -> content
	stop  atomic.Bool
	wg    sync.WaitGroup
}

func startLenientWriters(base, tok string, n int) *lenientWriters {
	w := &lenientWriters{acked: map[string]string{}}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for j := 0; !w.stop.Load(); j++ {
				content := fmt.Sprintf("killed writer %d document %d: confidential", i, j)
				body, _ := json.Marshal(map[string]any{"title": content, "content": content, "confidential": true})
				req, _ := http.NewRequest("POST", base+"/v1/documents", strings.NewReader(string(body)))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the server is gone: don't spin
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var d struct{ ID string }
				if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &d) != nil || d.ID == "" {
					continue
				}
				w.mu.Lock()
				w.acked[d.ID] = content
				w.mu.Unlock()
			}
		}()
	}
	return w
}

func (w *lenientWriters) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *lenientWriters) finish() map[string]string {
	w.stop.Store(true)
	w.wg.Wait()
	return w.acked
}

// postmasterPID reads the pid in dir's postmaster.pid (0 if none).
func postmasterPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pg", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// poll waits until cond holds, failing the test after limit (a bound
// against hanging, not a timing assertion).
func poll(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

var progressed = regexp.MustCompile(`re-encrypt \[[#.]+\] [1-9]\d*/`)

// TestServeKilledMidIngestionAndRotation: serve (whose PostgreSQL its
// supervisor has already restarted once) and a keys rotate beside it are
// killed with SIGKILL while writers post confidential documents and the
// rotation re-encrypts. No PostgreSQL is left behind; after a restart,
// keys rotate --resume and tenant reconcile converge and every acknowledged
// document opens. Then serve and its postmaster are killed together (as an
// OOM kill or a power cut would): the next serve starts over the stale
// postmaster.pid, recovers, and still loses nothing.
func TestServeKilledMidIngestionAndRotation(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, nil, "--addr", addr, "--rate-per-entity", "0")
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	tenant := idOf(mustRun(t, dir, "tenant", "create", "acme", "--json"))
	alice := idOf(mustRun(t, dir, "entity", "create", "alice", "--tenant", tenant, "--json"))
	tok := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tenant, "--entity", alice).stdout)

	// The supervisor restarts a killed postmaster: the one serve dies with
	// below was started by the supervisor, not at serve's start.
	first := postmasterPID(dir)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll(t, "a restarted postmaster", 60*time.Second, func() bool { p := postmasterPID(dir); return p != 0 && p != first })
	s.waitOK(t, "/readyz", 60*time.Second)

	w := startLenientWriters(s.base, tok, 3)
	poll(t, "100 acknowledged documents", 60*time.Second, func() bool { return w.count() >= 100 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rot := command(ctx, dir, nil, "keys", "rotate", "--tenant", tenant, "--batch", "5")
	var rotErr syncbuf.Buffer
	rot.Stderr = &rotErr
	if err := rot.Start(); err != nil {
		t.Fatal(err)
	}
	rotDone := make(chan struct{})
	go func() { rot.Wait(); close(rotDone) }()
	poll(t, "the rotation re-encrypting", 60*time.Second, func() bool { return progressed.MatchString(rotErr.String()) })
	pm := postmasterPID(dir)
	rot.Process.Signal(syscall.SIGKILL)
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	<-rotDone
	acked := w.finish()
	t.Logf("serve and keys rotate killed with %d documents acknowledged; rotation: %q", len(acked), lastLine(rotErr.String()))
	assertNoProcesses(t, dir) // the supervised postmaster died with serve
	// Waited for, not read once: its parent killed, the postmaster is
	// reaped by whoever adopts it, and a process in the middle of exiting
	// has already lost the cmdline and cwd assertNoProcesses looks for
	// while /proc still shows it running (once in ~60 runs here).
	for deadline := time.Now().Add(15 * time.Second); alive(pm); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d outlived serve by 15 s", pm)
		}
	}

	// Restart: the rotation resumes and converges, reconcile converges,
	// nothing acknowledged is lost.
	s = startServe(t, dir, addr, nil, "--addr", addr, "--rate-per-entity", "0")
	r := mustRun(t, dir, "keys", "rotate", "--resume", "--tenant", tenant)
	if !strings.Contains(r.stdout, "values re-encrypted") {
		t.Errorf("keys rotate --resume: %s", r)
	}
	assertOnePrimary(t, dir)
	var rec1, rec2 struct{ Chunks, Added, Removed int }
	json.Unmarshal([]byte(mustRun(t, dir, "tenant", "reconcile", tenant).stdout), &rec1)
	json.Unmarshal([]byte(mustRun(t, dir, "tenant", "reconcile", tenant).stdout), &rec2)
	if rec2.Added != 0 || rec2.Chunks != rec1.Chunks || rec1.Chunks < len(acked) {
		t.Errorf("tenant reconcile did not converge: first %+v, second %+v (%d documents acknowledged)", rec1, rec2, len(acked))
	}
	if n := readAll(t, s.base, tok, acked); n != 0 {
		t.Errorf("%d of %d acknowledged documents lost or unreadable after serve was killed", n, len(acked))
	}

	// serve and its postmaster killed at once: postmaster.pid stays behind.
	w = startLenientWriters(s.base, tok, 2)
	poll(t, "20 more acknowledged documents", 60*time.Second, func() bool { return w.count() >= 20 })
	pm = postmasterPID(dir)
	syscall.Kill(pm, syscall.SIGKILL)
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	for id, c := range w.finish() {
		acked[id] = c
	}
	assertNoProcesses(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "pg", "postmaster.pid")); err != nil {
		t.Fatalf("no stale postmaster.pid after the postmaster was killed: %v", err)
	}
	if r := run(t, dir, nil, "db", "status"); r.code != 3 {
		t.Errorf("db status with a stale postmaster.pid: %s, want exit 3 (not running)", r)
	}
	s = startServe(t, dir, addr, nil, "--addr", addr, "--rate-per-entity", "0")
	if !strings.Contains(s.stderr.String(), "removing stale postmaster.pid") {
		t.Errorf("serve did not say it found a stale postmaster.pid:\n%s", s.output())
	}
	if n := readAll(t, s.base, tok, acked); n != 0 {
		t.Errorf("%d of %d acknowledged documents lost or unreadable after serve and PostgreSQL were killed", n, len(acked))
	}
	s.interrupt(t)
	assertNoProcesses(t, dir)
}

// assertOnePrimary checks that keys status reports every sealed value
// under its tenant's primary key.
func assertOnePrimary(t *testing.T, dir string) {
	t.Helper()
	var st []struct {
		Primary uint32           `json:"primary_key"`
		Values  map[string]int64 `json:"values_by_key"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "keys", "status", "--json").stdout), &st); err != nil || len(st) == 0 {
		t.Fatalf("keys status: %+v %v", st, err)
	}
	for _, s := range st {
		for k, n := range s.Values {
			if k != fmt.Sprint(s.Primary) && n > 0 {
				t.Errorf("keys status: %d values under key %s, not the primary %d", n, k, s.Primary)
			}
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexAny(s, "\r\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}
