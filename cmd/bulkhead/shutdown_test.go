package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestGracefulShutdownUnderLoad: SIGTERM while writers post documents and
// a room stream is open. The stream closes with 1001 (going away), serve
// exits 0 within its drain bound, its PostgreSQL stops, and every document
// acknowledged before or during the drain is there after a restart (a
// request in flight either completed with 2xx and is present, or got no
// acknowledgement). The drain time is logged; the test bounds it at 30 s
// (--shutdown-timeout 10 s plus the cluster's stop), a bound against
// hanging, not a timing assertion.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	args := []string{"--addr", addr, "--rate-per-entity", "0", "--shutdown-timeout", "10s"}
	s := startServe(t, dir, addr, nil, args...)
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
	code, raw := api(t, s.base, tok, "POST", "/v1/worlds", `{"name":"hq"}`)
	var world, room struct{ ID string }
	if json.Unmarshal(raw, &world); code != 201 {
		t.Fatalf("create world: %d %s", code, raw)
	}
	code, raw = api(t, s.base, tok, "POST", "/v1/rooms", `{"world_id":"`+world.ID+`","name":"general"}`)
	if json.Unmarshal(raw, &room); code != 201 {
		t.Fatalf("create room: %d %s", code, raw)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/rooms/"+room.ID+"/stream", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("open the room stream: %v", err)
	}
	defer ws.CloseNow()
	streamEnd := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				streamEnd <- err
				return
			}
		}
	}()

	w := startLenientWriters(s.base, tok, 4)
	poll(t, "50 acknowledged documents", 60*time.Second, func() bool { return w.count() >= 50 })
	before := w.count()
	sent := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-streamEnd:
		if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
			t.Errorf("the room stream ended with %v (status %d), want 1001 going away", err, st)
		}
	case <-time.After(30 * time.Second):
		t.Error("the room stream stayed open 30 s after SIGTERM")
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve still running 30 s after SIGTERM\n%s", s.output())
	}
	exited := time.Since(sent)
	acked := w.finish()
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM, want 0\n%s", code, s.output())
	}
	t.Logf("SIGTERM with %d documents acknowledged; %d acknowledged in all; serve exited %s after SIGTERM; %s",
		before, len(acked), exited.Round(time.Millisecond), logLine(s.stderr.String(), "shutting down: drained"))
	assertNoProcesses(t, dir)

	s = startServe(t, dir, addr, nil, args...)
	if n := readAll(t, s.base, tok, acked); n != 0 {
		t.Errorf("%d of %d acknowledged documents missing after a graceful shutdown", n, len(acked))
	}
	s.interrupt(t)
	assertNoProcesses(t, dir)
}

// logLine returns the first line of log containing s.
func logLine(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return "(no " + s + " line)"
}
