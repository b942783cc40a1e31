package postgres_test

import (
	"context"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// applyAsOwner runs stmts in one transaction as the owner role.
func applyAsOwner(t *testing.T, dsn string, stmts []string) {
	t.Helper()
	conn := mustConnect(t, dsn)
	ctx := context.Background()
	// The generator hands its helpers to the definer role: the owner must
	// be its member while they are applied, as in a migration.
	err := postgres.WithDefinerMembership(ctx, testdb.Cluster().SuperuserDSN("postgres"), func() error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, s); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSuiteFailsWithoutPolicies is the RLS-off baseline: with the
// generator's policies removed the same unfiltered reads leak the other
// tenant's rows (so the suite can fail), and with them reinstalled they don't.
func TestSuiteFailsWithoutPolicies(t *testing.T) {
	// Not parallel: applying generated SQL makes the owner a member of the
	// definer role for a while (applyAsOwner).
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	probe := func() (foreignMemories, foreignRooms, foreignDocs int) {
		ctx := as(t, t2.Tenant.ID, t2.Charlie, uuid.Nil) // Charlie: room2 only, no private docs
		for _, id := range ids(t, d.DB, ctx, `SELECT tenant_id FROM bulkhead.memories`) {
			if id == t1.Tenant.ID {
				foreignMemories++
			}
		}
		for _, id := range ids(t, d.DB, ctx, `SELECT tenant_id FROM bulkhead.rooms`) {
			if id == t1.Tenant.ID {
				foreignRooms++
			}
		}
		for _, id := range ids(t, d.DB, ctx, `SELECT tenant_id FROM bulkhead.documents WHERE visibility = 'private'`) {
			if id == t1.Tenant.ID {
				foreignDocs++
			}
		}
		return
	}
	if m, r, doc := probe(); m+r+doc != 0 {
		t.Fatalf("with policies: T2 sees %d memories, %d rooms, %d private docs of T1", m, r, doc)
	}

	down, err := rls.Remove(postgres.RLSConfig, postgres.Tables)
	if err != nil {
		t.Fatal(err)
	}
	applyAsOwner(t, d.OwnerDSN(), down)
	m, r, doc := probe()
	if m != 4 || r != 2 || doc != 1 {
		t.Fatalf("without policies: T2 sees %d memories, %d rooms, %d private docs of T1; want the leak (4, 2, 1)", m, r, doc)
	}
	findings, err := postgres.SelfCheck(context.Background(), d.DB.Pool())
	if err != nil || len(findings) == 0 {
		t.Fatalf("self-check without policies: %v findings, err %v; want findings", len(findings), err)
	}

	up, err := rls.Generate(postgres.RLSConfig, postgres.Tables)
	if err != nil {
		t.Fatal(err)
	}
	applyAsOwner(t, d.OwnerDSN(), up)
	if m, r, doc := probe(); m+r+doc != 0 {
		t.Fatalf("policies reinstalled: T2 sees %d memories, %d rooms, %d private docs of T1", m, r, doc)
	}
	if findings, err := postgres.SelfCheck(context.Background(), d.DB.Pool()); err != nil || len(findings) != 0 {
		t.Fatalf("self-check after reinstall: %v, %v", findings, err)
	}
}
