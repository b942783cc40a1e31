package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/google/uuid"
)

// serveProc is a `bulkhead serve` process of the real binary on a data
// dir of its own, with the embedded cluster.
type serveProc struct {
	cmd     *exec.Cmd
	dir     string
	base    string
	log     *lockedLog
	done    chan struct{}
	client  *http.Client
	opToken string
}

// lockedLog keeps serve's log (its stderr) and copies it to w.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
	w  io.Writer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if l.w != nil {
		l.w.Write(p)
	}
	return len(p), nil
}

// count returns how many lines of the log contain s.
func (l *lockedLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// startServe runs bin serve on dir (created if empty) and waits until
// /readyz answers 200 (at most a minute).
func startServe(ctx context.Context, bin, dir string, logTo io.Writer, extra ...string) (*serveProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	p := &serveProc{dir: dir, base: "http://" + addr, log: &lockedLog{w: logTo}, done: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second}}
	args := append([]string{"serve", "--addr", addr, "--data-dir", dir, "--rate-per-entity", "0", "--log-format", "json"}, extra...)
	p.cmd = exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULKHEAD_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx, time.Minute); err != nil {
		p.kill()
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		p.kill()
		return nil, err
	}
	p.opToken = strings.TrimSpace(string(b))
	return p, nil
}

// waitReady polls /readyz until it answers 200, serve exits or limit passes.
func (p *serveProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if p.readyz() == http.StatusOK {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("bulkhead serve exited (%v) before it was ready", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bulkhead serve not ready within %s", limit)
		}
	}
}

// readyz returns GET /readyz's status (0 when it did not answer).
func (p *serveProc) readyz() int {
	c := &http.Client{Timeout: 4 * time.Second}
	resp, err := c.Get(p.base + "/readyz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (p *serveProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill ends serve with SIGKILL and waits for it.
func (p *serveProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// terminate sends SIGTERM and waits at most limit for serve to exit.
func (p *serveProc) terminate(limit time.Duration) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("bulkhead serve exited %d after SIGTERM", code)
		}
		return nil
	case <-time.After(limit):
		p.kill()
		return fmt.Errorf("bulkhead serve still running %s after SIGTERM", limit)
	}
}

// postmasterPID reads the embedded cluster's postmaster pid.
func (p *serveProc) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, "pg", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// cluster describes the embedded cluster (for the superuser's checks).
func (p *serveProc) cluster() (*pgcluster.Cluster, error) {
	return pgcluster.Inspect(pgcluster.Config{DataDir: p.dir})
}

// call sends a JSON request with a bearer token and decodes a 2xx body
// into out.
func (p *serveProc) call(ctx context.Context, tok, method, path string, in, out any) error {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// writer is one tenant's identity with a room to post in.
type writer struct {
	tenant, entity, room uuid.UUID
	jwt                  string
}

// setupWriters creates n tenants through the control plane, each with a
// user who owns a world and a room, and mints the users' tokens with the
// data dir's signing key (as bulkhead token mint does).
func (p *serveProc) setupWriters(ctx context.Context, n int) ([]writer, error) {
	signer, err := token.LoadOrCreate(filepath.Join(p.dir, "token-key.json"), "bulkhead")
	if err != nil {
		return nil, err
	}
	var out []writer
	for i := range n {
		var t, e, w, r struct{ ID uuid.UUID }
		if err := p.call(ctx, p.opToken, "POST", "/admin/v1/tenants", map[string]string{"name": fmt.Sprintf("tenant %d", i)}, &t); err != nil {
			return nil, err
		}
		if err := p.call(ctx, p.opToken, "POST", "/admin/v1/tenants/"+t.ID.String()+"/entities", map[string]string{"name": "writer", "kind": "user"}, &e); err != nil {
			return nil, err
		}
		jwt, _, err := signer.Mint(t.ID, e.ID, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		if err := p.call(ctx, jwt, "POST", "/v1/worlds", map[string]string{"name": "w"}, &w); err != nil {
			return nil, err
		}
		if err := p.call(ctx, jwt, "POST", "/v1/rooms", map[string]string{"world_id": w.ID.String(), "name": "r"}, &r); err != nil {
			return nil, err
		}
		out = append(out, writer{tenant: t.ID, entity: e.ID, room: r.ID, jwt: jwt})
	}
	if len(out) == 0 {
		return nil, errors.New("no tenants")
	}
	return out, nil
}
