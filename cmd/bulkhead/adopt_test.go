package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if r := adoptRun("backfill", "--plan", plan); r.code != 0 || !strings.Contains(r.stdout, "from_room 50") {
		t.Fatalf("backfill: %s", r)
	}
	if r := adoptRun("shadow", "--plan", plan); r.code != 0 {
		t.Fatalf("shadow: %s", r)
	}
	if r := adoptRun("status", "--plan", plan); r.code != 0 || strings.Count(r.stdout, " shadow ") != 7 {
		t.Fatalf("status: %s", r)
	}
	if r := adoptRun("enforce", "--plan", plan, "--tables", "memories,rooms"); r.code != 0 || !strings.Contains(r.stdout, "self-check") || !strings.Contains(r.stdout, "audit") {
		t.Fatalf("enforce: %s", r)
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
