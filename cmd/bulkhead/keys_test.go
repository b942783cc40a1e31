package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/jackc/pgx/v5"
)

// TestKEKGuardsStartUp: a missing, wrong or exposed key-encryption key
// stops bulkhead with a clear message before it serves anything.
func TestKEKGuardsStartUp(t *testing.T) {
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	r := mustRun(t, dir, "demo", "seed")
	kek := filepath.Join(dir, "kek.json")
	if !strings.Contains(r.stderr, "created key-encryption key "+kek) {
		t.Errorf("first run did not say it created the KEK:\n%s", r.stderr)
	}
	if fi, err := os.Stat(kek); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK file: %v %v, want mode 0600", fi, err)
	}

	os.Chmod(kek, 0o644)
	if r := run(t, dir, nil, "tenant", "list"); r.code == 0 || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("KEK readable by others: %s", r)
	}
	os.Chmod(kek, 0o600)

	other := filepath.Join(dir, "other-kek.json")
	if r := run(t, dir, []string{"BULKHEAD_KEK_FILE=" + other}, "tenant", "list"); r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("a missing KEK for a database with keys: %s, want a refusal (and no new key made)", r)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("bulkhead created a new KEK for a database whose keys are wrapped by another")
	}
	// serve with a missing KEK, and with a valid but different one: refused, nothing served.
	addr := freeAddr(t)
	if r := run(t, dir, []string{"BULKHEAD_KEK_FILE=" + kek + ".missing"}, "serve", "--addr", addr); r.code == 0 || !strings.Contains(r.stderr, "wrapped by local:") {
		t.Errorf("serve without its KEK: %s", r)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.json")
	if _, _, err := fieldcrypt.LocalKEK(wrong, true); err != nil {
		t.Fatal(err)
	}
	if r := run(t, dir, []string{"BULKHEAD_KEK_FILE=" + wrong}, "serve", "--addr", addr); r.code == 0 || !strings.Contains(r.stderr, "wrong key-encryption key") {
		t.Errorf("serve with another KEK: %s", r)
	}
	if r := run(t, dir, nil, "tenant", "list"); r.code != 0 {
		t.Errorf("the right KEK: %s", r)
	}
}

// TestKeysCLI rotates every tenant's key from the command line and checks
// the status the command reports.
func TestKeysCLI(t *testing.T) {
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	mustRun(t, dir, "demo", "seed")
	type status struct {
		Tenant    string           `json:"tenant"`
		Primary   uint32           `json:"primary_key"`
		Keys      []uint32         `json:"keys"`
		Values    map[string]int64 `json:"values_by_key"`
		Plaintext int64            `json:"plaintext_values"`
	}
	read := func() []status {
		t.Helper()
		var st []status
		if err := json.Unmarshal([]byte(mustRun(t, dir, "keys", "status", "--json").stdout), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := read()
	if len(before) != 2 {
		t.Fatalf("keys status: %+v, want two tenants", before)
	}
	if r := run(t, dir, nil, "keys", "rotate"); r.code == 0 || !strings.Contains(r.stderr, "--all") {
		t.Errorf("keys rotate with no target: %s", r)
	}
	if r := mustRun(t, dir, "keys", "rotate", "--all", "--dry-run"); !strings.Contains(r.stdout, "would add a key and re-encrypt 4 values") {
		t.Errorf("dry run: %s", r.stdout)
	}
	if after := read(); after[0].Primary != before[0].Primary {
		t.Error("a dry run rotated the key")
	}
	r := mustRun(t, dir, "keys", "rotate", "--all")
	if strings.Count(r.stdout, "4 values re-encrypted") != 2 {
		t.Errorf("keys rotate --all:\n%s", r.stdout)
	}
	for i, st := range read() {
		if st.Primary == before[i].Primary || len(st.Keys) != 1 || st.Values[jsonKey(st.Primary)] != 4 || st.Plaintext != 0 {
			t.Errorf("after rotation, tenant %s: %+v (before: primary %d)", st.Tenant, st, before[i].Primary)
		}
	}
	// --resume adds no key: the primaries stay, nothing is left to re-encrypt.
	rotated := read()
	if r := mustRun(t, dir, "keys", "rotate", "--all", "--resume"); strings.Count(r.stdout, " 0 values re-encrypted") != 2 {
		t.Errorf("keys rotate --resume:\n%s", r.stdout)
	}
	for i, st := range read() {
		if st.Primary != rotated[i].Primary || len(st.Keys) != 1 {
			t.Errorf("--resume changed tenant %s's keys: %+v, before %+v", st.Tenant, st, rotated[i])
		}
	}
	// Everything still opens: demo show reads what each entity sees, including sealed columns' owners.
	if out := mustRun(t, dir, "demo", "show").stdout; !strings.Contains(out, "Alice's private notes") {
		t.Errorf("demo show after rotation:\n%s", out)
	}
	// KEK rotation re-wraps; the old KEK is refused afterwards, the new one works.
	next := filepath.Join(dir, "kek2.json")
	if r := mustRun(t, dir, "keys", "rotate-kek", "--to-file", next); !strings.Contains(r.stdout, "--kek-file "+next) {
		t.Errorf("rotate-kek: %s", r.stdout)
	}
	if r := run(t, dir, nil, "tenant", "list"); r.code == 0 {
		t.Errorf("the old KEK still works after rotate-kek: %s", r)
	}
	if r := run(t, dir, []string{"BULKHEAD_KEK_FILE=" + next}, "demo", "show"); r.code != 0 || !strings.Contains(r.stdout, "Alice's private notes") {
		t.Errorf("the new KEK: %s", r)
	}
}

func jsonKey(id uint32) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// TestCorruptKeysetFailsOnlyItsTenant (issue 12, finding 2): one tenant's
// corrupt keyset makes keys status, keys rotate --all and keys rotate-kek
// fail for that tenant only; the other tenant is rotated and re-wrapped.
func TestCorruptKeysetFailsOnlyItsTenant(t *testing.T) {
	dir := mustDataDir(t)
	mustRun(t, dir, "db", "start")
	var demo struct {
		T1, T2 struct {
			Tenant struct{ ID string } `json:"tenant"`
		}
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "demo", "seed", "--json").stdout), &demo); err != nil || demo.T1.Tenant.ID == "" {
		t.Fatalf("demo seed --json: %v", err)
	}
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), info.SuperuserDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `UPDATE bulkhead_keys.keysets SET aead = 'garbage' WHERE tenant_id = $1`, demo.T1.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	broken, ok := demo.T1.Tenant.ID, demo.T2.Tenant.ID

	r := mustRun(t, dir, "keys", "status")
	if !strings.Contains(lineMentioning(r.stdout, broken), "error") || strings.Contains(lineMentioning(r.stdout, ok), "error") {
		t.Errorf("keys status: want an error on %s's line only:\n%s", broken, r.stdout)
	}
	r = run(t, dir, nil, "keys", "rotate", "--all")
	if r.code == 0 || !strings.Contains(r.stdout, "tenant "+ok+": new primary key") || !strings.Contains(r.stderr, "tenant "+broken+": rotation not finished") {
		t.Errorf("keys rotate --all: %s, want %s rotated, %s reported, exit 1", r, ok, broken)
	}
	r = run(t, dir, nil, "keys", "rotate-kek", "--to-file", filepath.Join(dir, "kek-2.json"))
	if r.code == 0 || !strings.Contains(r.stdout, "1 keysets re-wrapped") || !strings.Contains(r.stderr, "tenant "+broken+": keyset not re-wrapped") {
		t.Errorf("keys rotate-kek: %s, want one re-wrapped, %s reported, exit 1", r, broken)
	}
}

// lineMentioning returns the first line of s that mentions sub.
func lineMentioning(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
