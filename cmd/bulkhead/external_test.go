package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPsqlSeesWhatTheEntitySees opens db psql in several scopes and counts
// the rooms each sees, through the database's policies.
func TestPsqlSeesWhatTheEntitySees(t *testing.T) {
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	var seeded struct {
		T1, T2 struct {
			Tenant struct{ ID string }
			Alice  string
			Bob    string
		}
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "demo", "seed", "--json").stdout), &seeded); err != nil {
		t.Fatal(err)
	}
	count := func(args ...string) string {
		t.Helper()
		args = append(append([]string{"db", "psql"}, args...), "--", "-XAtc", "SELECT count(*) FROM bulkhead.rooms")
		return strings.TrimSpace(mustRun(t, dir, args...).stdout)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"T1 Alice", []string{"--tenant", seeded.T1.Tenant.ID, "--entity", seeded.T1.Alice}, "1"},
		{"T1 Bob", []string{"--tenant", seeded.T1.Tenant.ID, "--entity", seeded.T1.Bob}, "2"},
		{"T1 Alice's id in T2", []string{"--tenant", seeded.T2.Tenant.ID, "--entity", seeded.T1.Alice}, "0"},
		{"T1 without entity", []string{"--tenant", seeded.T1.Tenant.ID}, "0"},
		{"no scope", nil, "0"},
	} {
		if got := count(c.args...); got != c.want {
			t.Errorf("%s: psql counts %q rooms, want %s", c.name, got, c.want)
		}
	}
	if r := run(t, dir, nil, "db", "psql", "--tenant", "nope"); r.code == 0 || !strings.Contains(r.stderr, "--tenant") {
		t.Errorf("db psql --tenant nope: %s, want an error naming the flag", r)
	}
}

// TestExternalDatabase runs bulkhead against a PostgreSQL it did not start
// (--database-url as a superuser): migrate up creates the roles and schema
// there, and serve connects as the runtime role.
func TestExternalDatabase(t *testing.T) {
	host := mustDataDir(t) // a cluster standing in for "someone else's PostgreSQL"
	mustRun(t, host, "db", "start")
	var info map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, host, "db", "info", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	su := info["superuser_dsn"].(string)
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatal("psql not found: apt-get install -y postgresql-client")
	}
	u, _ := url.Parse(su)
	u.Path = "/postgres" // db start creates no bulkhead database: this is a bare cluster
	if out, err := exec.Command(psql, u.String(), "-Xqc", "CREATE DATABASE ext").CombinedOutput(); err != nil {
		t.Fatalf("create database: %v\n%s", err, out)
	}
	// The operator closes the cluster's other databases to PUBLIC (bulkhead
	// does that itself only on a cluster of its own): until then the
	// runtime role could connect to postgres and template1, and serve's
	// self-check refuses to start.
	for _, db := range []string{"postgres", "template1"} {
		if out, err := exec.Command(psql, u.String(), "-Xqc", "REVOKE CONNECT, TEMPORARY ON DATABASE "+db+" FROM PUBLIC").CombinedOutput(); err != nil {
			t.Fatalf("close %s: %v\n%s", db, err, out)
		}
	}
	u.Path = "/ext"
	// The external server's bulkhead_context extension verifies contexts
	// with its key file; bulkhead signs with the same key.
	env := []string{"DATABASE_URL=" + u.String(), "BULKHEAD_CONTEXT_KEY_FILE=" + filepath.Join(host, "pg", "bulkhead_context.key")}

	dir := mustDataDir(t) // bulkhead's own state (credentials) for the external database
	if r := run(t, dir, env, "migrate", "up"); r.code != 0 || !strings.Contains(r.stdout, "applied") {
		t.Fatalf("migrate up against DATABASE_URL: %s", r)
	}
	if r := run(t, dir, env, "migrate", "up"); r.code != 0 || !strings.Contains(r.stdout, "no pending") {
		t.Fatalf("second migrate up: %s", r)
	}
	r := run(t, dir, env, "db", "info", "--json")
	var ext map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &ext); err != nil {
		t.Fatalf("db info: %s", r)
	}
	if _, ok := ext["superuser_dsn"]; ok || ext["database"] != "ext" || !strings.Contains(ext["app_dsn"].(string), "bulkhead_app") {
		t.Errorf("db info for an external database: %v", ext)
	}
	if r := run(t, dir, env, "tenant", "create", "external-co", "--json"); r.code != 0 || !strings.Contains(r.stdout, "external-co") {
		t.Fatalf("tenant create on the external database: %s", r)
	}
	addr := freeAddr(t)
	s := startServe(t, dir, addr, env, "--addr", addr)
	if !strings.Contains(s.stdout.String(), "external database ext") {
		t.Errorf("serve does not say it uses the external database:\n%s", s.output())
	}
	// The external PostgreSQL killed (issue 17, scenario 1, external
	// database): bulkhead does not start it (not its to supervise); it
	// answers 503 with Retry-After and /readyz 503 meanwhile, and recovers
	// by itself, without a restart, once the operator starts it again.
	pm := postmasterPID(host)
	if err := syscall.Kill(pm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	op, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "/readyz 503", 30*time.Second, func() bool { code, _, _ := s.get("/readyz"); return code == http.StatusServiceUnavailable })
	req, _ := http.NewRequest("GET", s.base+"/admin/v1/tenants", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(op)))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET /admin/v1/tenants with the database down: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if r := run(t, host, nil, "db", "status"); r.code != 3 {
		t.Errorf("serve started the external database itself: %s", r)
	}
	mustRun(t, host, "db", "start")
	up := time.Now()
	s.waitOK(t, "/readyz", 30*time.Second) // guarantee 5 s; bound 30 s against a loaded machine
	t.Logf("external database restarted: /readyz 200 %s after db start returned", time.Since(up).Round(time.Millisecond))
	select {
	case <-s.done:
		t.Fatal("serve exited while the database was down")
	default:
	}
	s.interrupt(t)
	// The external cluster is not bulkhead's to stop.
	if r := run(t, host, nil, "db", "status"); r.code != 0 {
		t.Errorf("the external cluster stopped with bulkhead: %s", r)
	}
}
