package adopt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: any plan file gives a plan that validates or an error, never
// a panic.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("version: 1\nschema: public\ntenant_setting: app.current_tenant_id\nruntime_role: {name: app_runtime, create: true}\ntables:\n  - {name: rooms, kind: tenant, tenant_column: server_id}\n"), false)
	f.Add([]byte(`{"version":1,"schema":"public","tenant_setting":"app.t","runtime_role":{"name":"r"},"tables":[{"name":"m","kind":"tenant","tenant_column":"server_id","backfill":[{"name":"x","parent":{"column":"room_id","table":"rooms"}}]}]}`), true)
	f.Add([]byte("tables: [{name: x, decide: true}]"), false)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, json bool) {
		name := filepath.Join(dir, "p.yaml")
		if json {
			name = filepath.Join(dir, "p.json")
		}
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Load(name)
		if err == nil {
			if err := p.Validate(); err != nil {
				t.Fatalf("Load accepted a plan Validate refuses: %v", err)
			}
			if _, err := SQL(p); err != nil {
				t.Fatalf("SQL of a valid plan: %v", err)
			}
		}
	})
}

// TestPlanTenantType: the plan's tenant_type is one of the four, and a
// constant backfill rule must be a value of it; the SQL the plan implies
// adds and compares columns of that type.
func TestPlanTenantType(t *testing.T) {
	plan := func(typ, constant string) *Plan {
		return &Plan{Version: 1, Schema: "public", TenantSetting: "app.org", TenantType: typ, Runtime: RuntimeRole{Name: "app_runtime"},
			Tables: []Table{{Name: "notes", Kind: KindTenant, TenantColumn: "org_id", AddColumn: true, Backfill: []Rule{{Name: "all", Constant: constant}}}}}
	}
	for _, c := range []struct {
		typ, constant string
		ok            bool
	}{
		{"", "0b9d3a2e-8d4c-4c1e-9a57-1f0f3c0c7f11", true},
		{"uuid", "0b9d3a2e8d4c4c1e9a571f0f3c0c7f11", false},
		{"text", "org_acme", true},
		{"text", "a\x00b", false},
		{"bigint", "9000000001", true},
		{"bigint", "acme", false},
		{"integer", "2147483647", true},
		{"integer", "2147483648", false},
		{"numeric", "1", false},
		{"UUID", "0b9d3a2e-8d4c-4c1e-9a57-1f0f3c0c7f11", false},
	} {
		err := plan(c.typ, c.constant).Validate()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrPlan)) {
			t.Errorf("tenant_type %q, constant %q: %v, want ok %v", c.typ, c.constant, err, c.ok)
		}
	}
	sql, err := SQL(plan("bigint", "1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ADD COLUMN org_id bigint", "current_tenant() RETURNS bigint", "::pg_catalog.int8"} {
		if !strings.Contains(sql, want) {
			t.Errorf("SQL of a bigint plan lacks %q", want)
		}
	}
	if strings.Contains(sql, "ADD COLUMN org_id uuid") {
		t.Error("SQL of a bigint plan adds a uuid column")
	}
}
