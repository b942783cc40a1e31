package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

//go:embed testdata/ci_app.sql
var ciAppSQL string

// TestCIFlow is docs/CI.md's GitHub Actions job, run here on real
// PostgreSQL: a migrated database stands in for the workflow's service
// container; the probe (bulkhead's signed context, as the runtime role)
// finds nothing; policy check passes for the migrations and for the live
// database against the committed policies.lock. (bulkhead audit is not on
// main yet: the workflow's audit step is not run here.)
func TestCIFlow(t *testing.T) {
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	mustRun(t, dir, "migrate", "up")
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
		AppDSN       string `json:"app_dsn"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "pg", "bulkhead_context.key")
	url := []string{"--database-url", info.SuperuserDSN, "--context-key-file", key}

	t.Run("probe", func(t *testing.T) {
		r := run(t, dir, nil, append([]string{"probe", "--bulkhead"}, url...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "no leak found") || !strings.Contains(r.stdout, " tables probed") || strings.Contains(r.stdout, "NOT PROBED") {
			t.Errorf("probe: %s", r)
		}
		if !strings.Contains(r.stderr, "probing [") {
			t.Errorf("probe drew no progress bar: %q", r.stderr)
		}
		r = run(t, dir, nil, append([]string{"probe", "--bulkhead", "--read-only", "--format", "json", "--quiet"}, url...)...)
		var rep struct {
			ReadOnly bool  `json:"read_only"`
			Findings []any `json:"findings"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || !rep.ReadOnly || len(rep.Findings) != 0 {
			t.Errorf("probe --read-only --format json: %s", r)
		}
	})
	t.Run("policy check, migrations", func(t *testing.T) {
		r := run(t, dir, nil, "policy", "check", "--migrations", "../../postgres/migrations", "--lock", "../../policies.lock")
		if r.code != 0 || !strings.Contains(r.stdout, "matches") {
			t.Errorf("policy check --migrations: %s", r)
		}
	})
	t.Run("policy check, live database", func(t *testing.T) {
		r := run(t, dir, nil, append([]string{"policy", "check", "--lock", "../../policies.lock"}, url...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "matches") {
			t.Errorf("policy check --database-url: %s", r)
		}
	})

	// The workflow for an application's own schema (docs/CI.md, second
	// job): a plain tenant setting, no visibility matrix.
	t.Run("application schema", func(t *testing.T) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, info.SuperuserDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE DATABASE ciapp"); err != nil {
			t.Fatal(err)
		}
		cfg := conn.Config().Copy()
		cfg.Database = "ciapp"
		app, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close(ctx)
		if _, err := app.Exec(ctx, ciAppSQL); err != nil {
			t.Fatal(err)
		}
		appURL := strings.Replace(info.SuperuserDSN, "/bulkhead?", "/ciapp?", 1)
		r := run(t, dir, nil, "probe", "--database-url", appURL, "--role", "app_user", "--tenant-setting", "app.tenant_id", "--allow-forgeable-context", "--quiet")
		if r.code != 0 || !strings.Contains(r.stdout, "2 tables probed") || !strings.Contains(r.stdout, "no leak found") {
			t.Errorf("probe of the application schema: %s", r)
		}
		lock := filepath.Join(dir, "app.lock")
		mustRun(t, dir, "policy", "lock", "--database-url", appURL, "--no-matrix", "--lock", lock)
		if r := run(t, dir, nil, "policy", "check", "--database-url", appURL, "--no-matrix", "--lock", lock); r.code != 0 {
			t.Errorf("policy check of an unchanged schema: %s", r)
		}
		// A pull request that opens the tasks policy up fails the gate.
		if _, err := app.Exec(ctx, "ALTER POLICY tenant ON app.tasks USING (true)"); err != nil {
			t.Fatal(err)
		}
		r = run(t, dir, nil, "policy", "check", "--database-url", appURL, "--no-matrix", "--lock", lock)
		if r.code != 1 || !strings.Contains(r.stdout, "policy tenant on app.tasks: USING changed") {
			t.Errorf("policy check after opening app.tasks: %s", r)
		}
		r = run(t, dir, nil, "probe", "--database-url", appURL, "--role", "app_user", "--tenant-setting", "app.tenant_id", "--allow-forgeable-context", "--quiet")
		if r.code != 1 || !strings.Contains(r.stdout, "LEAK app.tasks [read-id]") {
			t.Errorf("probe after opening app.tasks: %s", r)
		}
		r = run(t, dir, nil, "policy", "check", "--database-url", appURL, "--lock", lock)
		if r.code != 2 || !strings.Contains(r.stderr, "--no-matrix") {
			t.Errorf("policy check with the matrix on a foreign schema: %s", r)
		}
		if _, err := os.Stat(lock); err != nil {
			t.Error(err)
		}
	})

	// Bad input: a clear message and a non-zero exit, never a panic.
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"probe unreachable", []string{"probe", "--tenant-setting", "app.tenant_id", "--database-url", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}, 1, "connect to 127.0.0.1:1"},
		{"probe no context convention", []string{"probe", "--database-url", info.SuperuserDSN}, 1, "say how to enter a tenant's context"},
		{"probe missing role", append([]string{"probe", "--bulkhead", "--role", "no_such_role"}, url...), 1, `role "no_such_role" does not exist`},
		{"probe bypassing role", append([]string{"probe", "--bulkhead", "--role", "postgres"}, url...), 1, "bypasses row-level security"},
		{"probe as the runtime role writes nothing", []string{"probe", "--bulkhead", "--database-url", info.AppDSN, "--context-key-file", key}, 1, "one context per transaction"},
		{"policy check unreachable", []string{"policy", "check", "--lock", "../../policies.lock", "--database-url", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}, 2, "connect to 127.0.0.1:1"},
		{"policy check missing lock", []string{"policy", "check", "--lock", filepath.Join(dir, "none.lock"), "--migrations", "../../postgres/migrations"}, 1, "make one with bulkhead policy lock"},
		{"policy lock empty migrations dir", []string{"policy", "lock", "--lock", filepath.Join(dir, "x.lock"), "--migrations", dir + "/nothing-here"}, 1, "--migrations"},
		{"policy check matrix without key", []string{"policy", "check", "--lock", "../../policies.lock", "--database-url", info.SuperuserDSN}, 2, "context key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, dir, nil, c.args...)
			if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) || strings.Contains(r.stderr, "panic") {
				t.Errorf("want exit %d and %q: %s", c.code, c.want, r)
			}
		})
	}
	// Read-only as the runtime role itself needs no superuser.
	r := run(t, dir, nil, "probe", "--bulkhead", "--read-only", "--quiet", "--database-url", info.AppDSN, "--context-key-file", key)
	if r.code != 0 || !strings.Contains(r.stdout, "no leak found") {
		t.Errorf("probe --read-only as the runtime role: %s", r)
	}
}
