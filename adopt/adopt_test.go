package adopt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func kinds(p *Plan) map[string]string {
	out := map[string]string{}
	for _, t := range p.Tables {
		k := t.Kind
		if t.Decide {
			k = "decide"
		}
		if t.AddColumn {
			k += "+add"
		}
		out[t.Name] = k
	}
	return out
}

// TestInspectFixture: the plan classifies what it can and leaves the rest
// to the operator, never guessing.
func TestInspectFixture(t *testing.T) {
	d := newDB(t)
	conn := mustConnect(t, d.adminDSN())
	p, err := Inspect(context.Background(), conn, InspectOptions{RuntimeRole: d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"servers": "decide", "agents": "tenant", "entities": "tenant", "worlds": "tenant", "rooms": "tenant",
		// two parents could give the tenant of their NULL rows: not guessed
		"participants": "decide", "memories": "decide",
		"message_servers": "decide", "message_server_agents": "tenant+add", "logs": "tenant",
	}
	got := kinds(p)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: kind %q, want %q (notes %v)", k, got[k], v, mustTable(p, k).Notes)
		}
	}
	if p.Runtime.AppRole != appRole || !p.Runtime.Create || p.TenantSetting == "" {
		t.Errorf("runtime %+v, setting %q", p.Runtime, p.TenantSetting)
	}
	msa := mustTable(p, "message_server_agents")
	if len(msa.Backfill) != 1 || msa.Backfill[0].Parent == nil || msa.Backfill[0].Parent.Table != "agents" {
		t.Errorf("message_server_agents rules %+v", msa.Backfill)
	}
	if !strings.Contains(strings.Join(mustTable(p, "logs").Notes, "\n"), "no primary key") {
		t.Errorf("logs notes %v", mustTable(p, "logs").Notes)
	}
	// memories has a room_id: kind room is named, with participants (room_id
	// and entity_id) as the candidate membership, memories itself not.
	if n := strings.Join(mustTable(p, "memories").Notes, "\n"); !strings.Contains(n, "kind room") || !strings.Contains(n, "(candidates: participants)") {
		t.Errorf("memories notes %v", mustTable(p, "memories").Notes)
	}
	if err := p.Validate(); err == nil || !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), "decide") {
		t.Errorf("Validate of an undecided plan: %v", err)
	}
	// Round trip through YAML (with comments) and JSON.
	dir := t.TempDir()
	for _, json := range []bool{false, true} {
		p2 := reviewedPlan(t, conn, d)
		b, err := p2.Encode(json)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(dir, "plan.yaml")
		if json {
			name = filepath.Join(dir, "plan.json")
		} else if !strings.Contains(string(b), "# ") {
			t.Errorf("YAML plan has no comments:\n%s", b)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(name); err != nil {
			t.Errorf("load %s: %v", name, err)
		}
	}
	sql, err := SQL(reviewedPlan(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"ALTER TABLE public.message_server_agents ADD COLUMN server_id uuid", "CREATE POLICY bulkhead_adopt_tenant ON public.memories", "shadow_open", "WARNING"} {
		if !strings.Contains(sql, w) {
			t.Errorf("plan SQL lacks %q", w)
		}
	}
}

func mustTable(p *Plan, name string) Table {
	t, _ := p.Table(name)
	return t
}
