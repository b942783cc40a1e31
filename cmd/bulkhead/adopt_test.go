package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/adopt"
	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

// TestAdoptCLI: the adoption cycle through the command line on a small
// copy of the elizaOS-like fixture, and the exit status and message of a
// plan left undecided and of a phase run out of order.
func TestAdoptCLI(t *testing.T) {
	ctx := context.Background()
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	// db start makes no database until migrate: create the legacy one from postgres.
	admin, err := pgx.Connect(ctx, strings.Replace(info.SuperuserDSN, "/bulkhead?", "/postgres?", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE legacy"); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(info.SuperuserDSN, "/bulkhead?", "/legacy?", 1)
	legacy, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer legacy.Close(ctx)
	sql, err := os.ReadFile("../../adopt/testdata/elizaos_fixture.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.Exec(ctx, strings.NewReplacer(":S", "5", ":M", "20").Replace(string(sql))); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	db := []string{"--database-url", url}
	adoptRun := func(args ...string) result {
		return run(t, dir, nil, append(append([]string{"adopt"}, args...), db...)...)
	}

	if r := adoptRun("plan", "--out", plan, "--sql", plan+".sql"); r.code != 0 || !strings.Contains(r.stderr, "left for you to decide") || !strings.Contains(r.stderr, "superuser") {
		t.Fatalf("plan: %s", r)
	}
	if r := adoptRun("backfill", "--plan", plan); r.code != 1 || !strings.Contains(r.stderr, "memories is marked decide") {
		t.Fatalf("backfill of an undecided plan: %s", r)
	}
	if r := adoptRun("enforce", "--plan", plan+".missing"); r.code != 1 || !strings.Contains(r.stderr, "read plan") {
		t.Fatalf("missing plan: %s", r)
	}
	// The operator's review.
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	var p adopt.Plan
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	for i := range p.Tables {
		tb := &p.Tables[i]
		switch tb.Name {
		case "servers", "message_servers", "logs":
			tb.Kind, tb.Decide = adopt.KindGlobal, false
		case "participants", "memories":
			tb.Kind, tb.Decide = adopt.KindTenant, false
			tb.Backfill = []adopt.Rule{{Name: "from_room", Parent: &adopt.ParentRule{Column: "room_id", Table: "rooms"}}}
		}
	}
	if b, err = p.Encode(false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plan, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := adoptRun("enforce", "--plan", plan); r.code != 1 || !strings.Contains(r.stderr, "run adopt backfill first") {
		t.Fatalf("enforce before backfill: %s", r)
	}
	if r := adoptRun("proxy", "--plan", plan, "--listen", "127.0.0.1:0"); r.code != 1 || !strings.Contains(r.stderr, "run adopt shadow first") {
		t.Fatalf("proxy before shadow: %s", r)
	}
	if r := adoptRun("backfill", "--plan", plan); r.code != 0 || !strings.Contains(r.stdout, "from_room 50") {
		t.Fatalf("backfill: %s", r)
	}
	if r := adoptRun("shadow", "--plan", plan); r.code != 0 {
		t.Fatalf("shadow: %s", r)
	}
	if r := adoptRun("status", "--plan", plan); r.code != 0 || strings.Count(r.stdout, " shadow ") != 7 {
		t.Fatalf("status: %s", r)
	}
	adoptProxy(t, dir, url, plan, legacy)
	if r := adoptRun("enforce", "--plan", plan, "--tables", "memories,rooms"); r.code != 0 || !strings.Contains(r.stdout, "self-check") || !strings.Contains(r.stdout, "audit") {
		t.Fatalf("enforce: %s", r)
	}
	if r := adoptRun("keys", "--plan", plan); r.code != 0 || strings.Count(r.stdout, "replaced by bulkhead_adopt_fk_") == 0 || !strings.Contains(r.stdout, "keys done") {
		t.Fatalf("keys: %s", r)
	}
	if r := adoptRun("harden", "--plan", plan); r.code != 1 || !strings.Contains(r.stderr, "--context-key-file is required") {
		t.Fatalf("harden without a key: %s", r)
	}
	key := filepath.Join(dir, "pg", "bulkhead_context.key")
	if r := adoptRun("harden", "--plan", plan, "--context-key-file", key, "--prepare"); r.code != 0 || !strings.Contains(r.stdout, "prepared: bulkhead_context is installed") {
		t.Fatalf("harden --prepare: %s", r)
	}
	if r := adoptRun("status", "--plan", plan); r.code != 0 || !strings.Contains(r.stdout, "context: legacy") {
		t.Fatalf("status after harden --prepare: %s", r)
	}
	if r := adoptRun("harden", "--plan", plan, "--context-key-file", key); r.code != 0 || !strings.Contains(r.stdout, "hardened: the policies read bulkhead.tenant_id") || !strings.Contains(r.stdout, "0 forgeable tenant settings") {
		t.Fatalf("harden: %s", r)
	}
	if r := adoptRun("status", "--plan", plan); r.code != 0 || !strings.Contains(r.stdout, "context: signed") {
		t.Fatalf("status after harden: %s", r)
	}
	if r := adoptRun("harden", "--plan", plan, "--undo"); r.code != 0 || !strings.Contains(r.stdout, "again: any role can SET it") {
		t.Fatalf("harden --undo: %s", r)
	}
	if r := adoptRun("status", "--plan", plan); r.code != 0 || !strings.Contains(r.stdout, "context: legacy (app.current_tenant_id") {
		t.Fatalf("status after harden --undo: %s", r)
	}
	r := adoptRun("report", "--plan", plan, "--format", "json")
	var rep adopt.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || len(rep.Tables) != 7 || rep.Total != 0 {
		t.Fatalf("report: %v %s", err, r)
	}
	if r := adoptRun("rollback", "--plan", plan, "--to", "original"); r.code != 0 || strings.Count(r.stdout, " original ") != 7 {
		t.Fatalf("rollback: %s", r)
	}
}

// adoptProxy runs `adopt proxy` in front of the legacy database in shadow:
// an application role reading through it with a query that forgets its
// filter gets every row (shadow blocks nothing), and after SIGINT the
// report holds exactly the foreign rows it read. Bad flags exit 1.
func adoptProxy(t *testing.T, dir, url, plan string, legacy *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	if r := run(t, dir, nil, "adopt", "proxy", "--plan", plan, "--database-url", url, "--sample", "2"); r.code != 1 || !strings.Contains(r.stderr, "not between 0 and 1") {
		t.Fatalf("proxy --sample 2: %s", r)
	}
	for _, c := range []struct{ flag, value, want string }{
		{"--skip", "(", "--skip"},
		{"--stats-every", "0s", "positive duration"},
		{"--auth-timeout", "0s", "positive duration"},
		{"--replay-timeout", "100us", "below a millisecond"},
		{"--tls-cert", filepath.Join(dir, "missing.pem"), "go together"},
		{"--require-tls=true", "--sample=1", "needs a certificate"},
	} {
		if r := run(t, dir, nil, "adopt", "proxy", "--plan", plan, "--database-url", url, c.flag, c.value); r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Fatalf("proxy %s %s: %s", c.flag, c.value, r)
		}
	}
	// The application: a role that is not the tables' owner nor a superuser.
	for _, q := range []string{"CREATE ROLE cli_app LOGIN PASSWORD 'cli-app-pw'", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO cli_app"} {
		if _, err := legacy.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var tenant string
	if err := legacy.QueryRow(ctx, "SELECT server_id::text FROM rooms ORDER BY id LIMIT 1").Scan(&tenant); err != nil {
		t.Fatal(err)
	}
	var want int
	if err := legacy.QueryRow(ctx, "SELECT count(*) FROM rooms WHERE server_id <> $1", tenant).Scan(&want); err != nil || want == 0 {
		t.Fatalf("foreign rooms: %d %v", want, err)
	}

	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := command(pctx, dir, nil, "adopt", "proxy", "--plan", plan, "--database-url", url, "--listen", "127.0.0.1:0", "--sample", "1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "adopt proxy: listening on "); ok {
			addr, _, _ = strings.Cut(a, " ")
		}
	}
	if addr == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("adopt proxy printed no listening address")
	}
	var rest strings.Builder
	drained := make(chan struct{})
	go func() {
		for lines.Scan() {
			rest.WriteString(lines.Text() + "\n")
		}
		close(drained)
	}()
	app, err := pgx.Connect(ctx, "postgres://cli_app:cli-app-pw@"+addr+"/legacy?sslmode=disable")
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+tenant+"'"); err != nil {
		t.Fatal(err)
	}
	var got int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM (SELECT id FROM rooms) r").Scan(&got); err != nil || got != want+5 {
		t.Fatalf("forgetful count through the proxy: %d, %v (want %d: shadow blocks nothing)", got, err, want+5)
	}
	rows, err := app.Query(ctx, "SELECT id FROM rooms")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	app.Close(ctx)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("adopt proxy after SIGINT: %v", err)
	}
	<-drained
	if !strings.Contains(rest.String(), "2 replayed") {
		t.Errorf("proxy counters: %s", rest.String())
	}
	if strings.Contains(rest.String(), "not a loopback address") {
		t.Errorf("the plain-text warning on a loopback address: %s", rest.String())
	}
	r := run(t, dir, nil, "adopt", "report", "--plan", plan, "--format", "json", "--database-url", url)
	var rep adopt.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil {
		t.Fatalf("report: %v %s", err, r)
	}
	var n int64
	for _, v := range rep.Violations {
		if v.Table == "query" && v.Tenant == tenant {
			n += v.Count
		}
	}
	// Replay compares results: the count's one row differs in strict
	// mode (5), so it is one hidden row; the plain read hides each
	// foreign room.
	if n != int64(want)+1 {
		t.Fatalf("report holds %d hidden rows for the proxy's reads, want %d: %+v", n, want+1, rep.Violations)
	}
	if _, err := legacy.Exec(ctx, "TRUNCATE bulkhead_adopt.violation"); err != nil {
		t.Fatal(err)
	}
}

// TestProxyListenLoopback: the plain-text warning is due for every
// address but loopback ones; listening on all interfaces (0.0.0.0, ::)
// is not loopback. (TestAdoptCLI checks the binary prints no warning on
// 127.0.0.1.)
func TestProxyListenLoopback(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:6543", true}, {"127.9.9.9:1", true}, {"[::1]:6543", true},
		{"0.0.0.0:6543", false}, {"[::]:6543", false}, {"10.0.0.5:6543", false}, {"192.168.1.2:5432", false},
	} {
		a, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopback(a); got != c.want {
			t.Errorf("loopback(%s) = %v, want %v", c.addr, got, c.want)
		}
		// The warning: exactly where plain text could cross a network.
		if w := plainTextWarning(a, false); (w == "") != c.want || (w != "" && !strings.Contains(w, "plain text")) {
			t.Errorf("plainTextWarning(%s, TLS not required) = %q", c.addr, w)
		}
		if w := plainTextWarning(a, true); w != "" {
			t.Errorf("plainTextWarning(%s, TLS required) = %q, want none", c.addr, w)
		}
	}
	// The default listen address is a loopback one.
	def := newAdoptProxyCmd(&config{}).Flags().Lookup("listen").DefValue
	a, err := net.ResolveTCPAddr("tcp", def)
	if err != nil || !loopback(a) {
		t.Errorf("default --listen %q is not a loopback address (%v)", def, err)
	}
}

// TestUpstreamTLSFollowsSSLMode: the proxy speaks TLS to the database
// exactly when the database URL's sslmode requires it, with that URL's
// verification (verify-full checks the host name).
func TestUpstreamTLSFollowsSSLMode(t *testing.T) {
	for mode, want := range map[string]bool{"disable": false, "allow": false, "prefer": false, "": false, "require": true, "verify-ca": true, "verify-full": true} {
		url := "postgres://u:p@db.example:5432/d"
		if mode != "" {
			url += "?sslmode=" + mode
		}
		c, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		got := upstreamTLS(c)
		if (got != nil) != want {
			t.Fatalf("sslmode=%q: upstream TLS %v, want %v", mode, got != nil, want)
		}
		if mode == "verify-full" && (got.ServerName != "db.example" || got.InsecureSkipVerify) {
			t.Fatalf("verify-full: server name %q, skip verify %v", got.ServerName, got.InsecureSkipVerify)
		}
	}
}
