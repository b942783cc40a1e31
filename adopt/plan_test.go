package adopt

import (
	"os"
	"path/filepath"
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
