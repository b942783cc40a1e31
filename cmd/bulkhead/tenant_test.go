package main

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestTenantCreateDeleteTruthful (issue 12, finding 4) with serve running,
// so the CLI goes through its /admin/v1: a create in an unserved region
// fails saying why and leaves no tenant; deleting a tenant that never
// existed says it was not found.
func TestTenantCreateDeleteTruthful(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, nil, "--addr", addr)
	r := run(t, dir, nil, "tenant", "create", "x", "--region", "nowhere")
	if r.code == 0 || !strings.Contains(r.stderr, "400") {
		t.Errorf("tenant create --region nowhere: %s, want a 400 refusal", r)
	}
	if out := mustRun(t, dir, "tenant", "list", "--json").stdout; strings.TrimSpace(out) != "[]" {
		t.Errorf("tenants after the failed create: %s, want none", out)
	}
	missing := uuid.NewString()
	r = mustRun(t, dir, "tenant", "delete", missing)
	if !strings.Contains(r.stdout, "not found") || strings.Contains(r.stdout, "deleted tenant") {
		t.Errorf("tenant delete of a tenant that never existed: %s", r)
	}
	s.interrupt(t)
}
