package audit

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func mustAudit(t testing.TB, dsn string, opts Options) *Report {
	t.Helper()
	conn := testdb.MustConnect(t, dsn)
	rep, err := Run(context.Background(), conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func text(r *Report) string {
	var b strings.Builder
	WriteText(&b, r)
	return b.String()
}

// TestBulkheadIsClean: bulkhead's own migrated database, audited with its
// runtime role, has no finding and every check ran.
func TestBulkheadIsClean(t *testing.T) {
	d := testdb.New(t)
	for _, dsn := range []struct{ name, dsn string }{{"superuser", d.AdminDSN()}, {"owner", d.OwnerDSN()}, {"runtime", d.AppDSN()}} {
		t.Run(dsn.name, func(t *testing.T) {
			rep := mustAudit(t, dsn.dsn, Options{RuntimeRole: postgres.Runtime, Migrations: "../postgres/migrations"})
			if len(rep.Findings) != 0 || len(rep.Skipped) != 0 {
				t.Errorf("bulkhead's own database is not clean:\n%s", text(rep))
			}
			if len(rep.TenantTables) != len(postgres.Tables) {
				t.Errorf("found %d tenant tables %v, want the %d of postgres.Tables", len(rep.TenantTables), rep.TenantTables, len(postgres.Tables))
			}
		})
	}
}

var _ = pgx.Identifier{}

func pgxConnect(dsn string) (*pgx.Conn, error) { return pgx.Connect(context.Background(), dsn) }

// TestBulkheadContextSettingsAreAudited: the audit finds bulkhead's own
// context settings behind its context functions (since migration 00021,
// SQL calls to bulkhead_context's C functions, whose bodies name no
// setting), so a tenant given to the runtime role by ALTER ROLE ... SET is
// reported (BH801) on bulkhead's database as on any other.
func TestBulkheadContextSettingsAreAudited(t *testing.T) {
	d := testdb.New(t)
	admin := testdb.MustConnect(t, d.AdminDSN())
	for _, name := range []string{"bulkhead.tenant_id", "bulkhead.entity_id", "bulkhead.acting_for"} {
		if _, err := admin.Exec(context.Background(), "ALTER ROLE "+postgres.Runtime+" IN DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" SET "+name+" = '6f0c3c39-6d1b-4f5c-9a43-3b1f8f3f0a11'"); err != nil {
			t.Fatal(err)
		}
	}
	rep := mustAudit(t, d.AdminDSN(), Options{RuntimeRole: postgres.Runtime, Migrations: "../postgres/migrations"})
	found := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Check == "BH801" {
			found[strings.Split(f.Object.Name, "@")[0]] = true
		}
	}
	for _, name := range []string{"bulkhead.tenant_id", "bulkhead.entity_id", "bulkhead.acting_for"} {
		if !found[name] {
			t.Errorf("no BH801 for %s given to the runtime role:\n%s", name, text(rep))
		}
	}
}
