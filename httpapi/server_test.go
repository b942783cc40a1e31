package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

func TestReadiness(t *testing.T) {
	d := testdb.New(t)
	log := slog.New(slog.DiscardHandler)
	ok := httptest.NewServer(httpapi.NewServer(d.DB, log, nil, httpapi.Options{}))
	defer ok.Close()
	if resp, body := get(t, ok, "/readyz"); resp.StatusCode != 200 || body["status"] != "ready" {
		t.Errorf("/readyz on a clean database: %d %v", resp.StatusCode, body)
	}
	if resp, _ := get(t, ok, "/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	// A failed self-check makes the server unready, naming the failing check but no detail.
	bad := httptest.NewServer(httpapi.NewServer(d.DB, log, []postgres.Finding{{Check: "rls", Object: "bulkhead.memories", Detail: "row-level security is not forced"}}, httpapi.Options{}))
	defer bad.Close()
	resp, body := get(t, bad, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("/readyz with a finding: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if detail, _ := body["detail"].(string); !strings.Contains(detail, "rls") || strings.Contains(detail, "memories") {
		t.Errorf("/readyz problem detail %q: want the check's name, not the object", detail)
	}
	// Unknown routes are problem+json 404s.
	resp, body = get(t, ok, "/v1/nothing")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" || body["status"] != float64(404) {
		t.Errorf("unknown route: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// The database going away makes it unready too.
	d.DB.Close()
	if resp, _ := get(t, ok, "/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the pool closed: %d, want 503", resp.StatusCode)
	}
}

// TestSuiteConnectionMode shows which way this run of the suite reaches
// PostgreSQL, so the PgBouncer run in CI (BULKHEAD_TEST_PGBOUNCER=1) can't
// silently test the direct path: through PgBouncer, every server pool uses
// TCP to the bouncer and pgx's exec mode; otherwise the statement cache.
func TestSuiteConnectionMode(t *testing.T) {
	d := testdb.New(t)
	cc := d.DB.Pool().Config().ConnConfig
	bouncer := os.Getenv(testdb.PgBouncerEnv) == "1"
	if testdb.ThroughPgBouncer() != bouncer {
		t.Fatalf("%s=%v but ThroughPgBouncer() = %v", testdb.PgBouncerEnv, bouncer, testdb.ThroughPgBouncer())
	}
	if bouncer && (cc.Host != "127.0.0.1" || cc.DefaultQueryExecMode != pgx.QueryExecModeExec) {
		t.Errorf("PgBouncer run: pool reaches %s:%d in mode %v, want PgBouncer in exec mode", cc.Host, cc.Port, cc.DefaultQueryExecMode)
	}
	if !bouncer && cc.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		t.Errorf("direct run: mode %v, want the statement cache", cc.DefaultQueryExecMode)
	}
	var server string
	err := d.DB.Pool().QueryRow(context.Background(), "SHOW server_version").Scan(&server)
	if err != nil || server == "" {
		t.Fatalf("server_version: %q %v", server, err)
	}
	t.Logf("through PgBouncer: %v; PostgreSQL %s", bouncer, server)
}
