package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAuditCLI: bulkhead audit on bulkhead's own embedded database is
// clean (exit 0) in every format; an unreachable database, a bad flag and
// an unknown runtime role each exit 2 with one clear message and no panic.
func TestAuditCLI(t *testing.T) {
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	mustRun(t, dir, "migrate", "up")
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info); err != nil || info.SuperuserDSN == "" {
		t.Fatalf("db info: %v %+v", err, info)
	}
	text := mustRun(t, dir, "audit", "--database-url", info.SuperuserDSN, "--runtime-role", "bulkhead_app", "--fail-on", "info")
	if !strings.Contains(text.stdout, "0 errors, 0 warnings, 0 notes; 67 of 67 checks ran") {
		t.Errorf("text report:\n%s", text.stdout)
	}
	sarif := mustRun(t, dir, "audit", "--database-url", info.SuperuserDSN, "--runtime-role", "bulkhead_app", "--format", "sarif")
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []any `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(sarif.stdout), &log); err != nil || log.Version != "2.1.0" || len(log.Runs) != 1 || len(log.Runs[0].Results) != 0 {
		t.Errorf("sarif: %v\n%s", err, sarif.stdout)
	}
	// Without --runtime-role the runtime checks are listed as not run (not
	// an incomplete audit), and the key service's tables, which only a
	// runtime role shows to be out of the application's reach, are
	// audited like any table with tenant_id: they have no RLS (exit 1).
	if r := run(t, dir, nil, "audit", "--database-url", info.SuperuserDSN, "--format", "json"); r.code != 1 || !strings.Contains(r.stdout, `"needs --runtime-role"`) ||
		!strings.Contains(r.stdout, `"bulkhead_keys"`) {
		t.Errorf("without --runtime-role: %s", r)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"--database-url", "postgres://nobody:pw@127.0.0.1:1/x"}, "connection refused"},
		{"bad format", []string{"--database-url", info.SuperuserDSN, "--format", "yaml"}, `--format "yaml"`},
		{"bad fail-on", []string{"--database-url", info.SuperuserDSN, "--fail-on", "high"}, "--fail-on"},
		{"unknown role", []string{"--database-url", info.SuperuserDSN, "--runtime-role", "Nobody"}, `runtime role "Nobody" does not exist`},
	} {
		r := run(t, dir, nil, append([]string{"audit"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "panic") || strings.Count(r.stderr, "bulkhead audit:") != 1 {
			t.Errorf("%s: %s", c.name, r)
		}
		if strings.Contains(r.stderr, ":pw@") {
			t.Errorf("%s: the password is in the message: %s", c.name, r.stderr)
		}
	}
}
