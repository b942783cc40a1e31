package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
)

// TestErasureHoldsAgainstDatabaseBackup (issue 12, finding 3): a superuser
// pg_dump taken before tenant delete, restored afterwards into a fresh
// database with everything bulkhead still holds (same KEK, same tenant key
// directory), opens nothing of the deleted tenant, and the other tenant
// restored from the same dump opens.
func TestErasureHoldsAgainstDatabaseBackup(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, nil, "--addr", addr)
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	type side struct{ tenant, tok, doc, secret string }
	mk := func(name string) side {
		tenant := idOf(mustRun(t, dir, "tenant", "create", name, "--json"))
		user := idOf(mustRun(t, dir, "entity", "create", "alice", "--tenant", tenant, "--json"))
		tok := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tenant, "--entity", user).stdout)
		secret := name + " merger terms: confidential-" + tenant
		body, _ := json.Marshal(map[string]any{"title": "terms", "content": secret, "confidential": true})
		code, raw := api(t, s.base, tok, "POST", "/v1/documents", string(body))
		if code != 201 {
			t.Fatalf("POST /v1/documents: %d %s", code, raw)
		}
		var d struct{ ID string }
		json.Unmarshal(raw, &d)
		return side{tenant, tok, d.ID, secret}
	}
	gone, kept := mk("gone"), mk("kept")

	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
		Database     string `json:"database"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info); err != nil || info.SuperuserDSN == "" {
		t.Fatalf("db info: %+v %v", info, err)
	}
	bin, err := pgcluster.FindBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "before-delete.dump")
	if out, err := exec.Command(bin.Path("pg_dump"), "-Fc", "-f", dump, "-d", info.SuperuserDSN).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v %s", err, out)
	}
	if r := mustRun(t, dir, "tenant", "delete", gone.tenant); !strings.Contains(r.stdout, "deleted") {
		t.Fatalf("tenant delete: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "tenant-keys", gone.tenant+".key")); !os.IsNotExist(err) {
		t.Errorf("the deleted tenant's key file is still there: %v", err)
	}
	s.interrupt(t)

	// Restore the dump into a fresh database of the same name.
	mustRun(t, dir, "db", "start")
	admin := testdb.MustConnect(t, strings.Replace(info.SuperuserDSN, "/"+info.Database+"?", "/postgres?", 1))
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "DROP DATABASE "+info.Database+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+info.Database); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin.Path("pg_restore"), "--exit-on-error", "-d", info.SuperuserDSN, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v %s", err, out)
	}
	admin.Close(ctx)
	mustRun(t, dir, "db", "stop")

	s = startServe(t, dir, addr, nil, "--addr", addr)
	code, raw := api(t, s.base, gone.tok, "GET", "/v1/documents/"+gone.doc, "")
	if code == 200 || strings.Contains(string(raw), gone.secret) || strings.Contains(s.output(), gone.secret) {
		t.Errorf("the deleted tenant's document from the restored dump: %d %s", code, raw)
	}
	t.Logf("deleted tenant's document after restore: %d %s", code, raw)
	code, raw = api(t, s.base, kept.tok, "GET", "/v1/documents/"+kept.doc, "")
	var d struct{ Content string }
	json.Unmarshal(raw, &d)
	if code != 200 || d.Content != kept.secret {
		t.Errorf("the other tenant's document from the same dump: %d %s", code, raw)
	}
	st := mustRun(t, dir, "keys", "status").stdout
	if l := lineMentioning(st, gone.tenant); !strings.Contains(l, "error") {
		t.Errorf("keys status of the deleted tenant: %q", l)
	}
	if l := lineMentioning(st, kept.tenant); !strings.Contains(l, "tenant-key") {
		t.Errorf("keys status of the other tenant: %q", l)
	}
	s.interrupt(t)
}
