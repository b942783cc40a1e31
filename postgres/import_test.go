package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// TestUnfinishedImport: only a disabled tenant whose newest tenant.import
// audit record is "rows verified" counts as what an interrupted import
// left (tenant import deletes such a tenant before importing it again);
// a live tenant, a tenant disabled by an operator, a completed import and
// an unknown id do not.
func TestUnfinishedImport(t *testing.T) {
	t.Parallel()
	d := mustDB(t)
	ctx := bulkhead.AsMaintenance(context.Background(), "test")
	admin := mustConnect(t, d.AdminDSN())
	steps := []struct {
		name string
		sql  string // run as the superuser on the tenant ($1) before asking
		want bool
	}{
		{"live tenant", ``, false},
		{"disabled by an operator", `UPDATE bulkhead.tenants SET disabled_at = now() WHERE id = $1`, false},
		{"rows verified, disabled", `INSERT INTO bulkhead.audit_log (tenant_id, action, target, at) VALUES ($1, 'tenant.import', 'rows verified', now() - interval '1 minute')`, true},
		{"an unrelated later record", `INSERT INTO bulkhead.audit_log (tenant_id, action, target) VALUES ($1, 'tenant.export', 'complete')`, true},
		{"rows verified, enabled", `UPDATE bulkhead.tenants SET disabled_at = NULL WHERE id = $1`, false},
		{"complete, disabled again", `UPDATE bulkhead.tenants SET disabled_at = now() WHERE id = $1;
			INSERT INTO bulkhead.audit_log (tenant_id, action, target) VALUES ($1, 'tenant.import', 'complete')`, false},
	}
	tn, err := d.DB.CreateTenant(ctx, "imported", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.sql != "" {
			for _, stmt := range splitStatements(s.sql) {
				if _, err := admin.Exec(context.Background(), stmt, tn.ID); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
		}
		got, err := d.DB.UnfinishedImport(ctx, tn.ID)
		if err != nil || got != s.want {
			t.Errorf("%s: UnfinishedImport = %v, %v; want %v", s.name, got, err, s.want)
		}
	}
	if got, err := d.DB.UnfinishedImport(ctx, uuid.New()); err != nil || got {
		t.Errorf("unknown tenant: %v, %v; want false, nil", got, err)
	}
	if _, err := d.DB.UnfinishedImport(context.Background(), tn.ID); err == nil {
		t.Error("UnfinishedImport without a maintenance context: no error")
	}
}

func splitStatements(sql string) []string {
	var out []string
	for _, s := range strings.Split(sql, ";") {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}
