package postgres_test

import (
	"errors"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
)

// TestGeneratorProtectsAUsersTable declares a table a Go user of the
// library owns and lets the generator protect it, on real PostgreSQL.
func TestGeneratorProtectsAUsersTable(t *testing.T) {
	// Not parallel: applyAsOwner makes the owner a member of the definer
	// role for a while.
	d, demo := seeded(t)
	bookmarks := rls.Table{Name: "bookmarks", Kind: rls.Owned, Entity: "owner_id"}
	stmts, err := rls.Generate(postgres.RLSConfig, []rls.Table{bookmarks})
	if err != nil {
		t.Fatal(err)
	}
	applyAsOwner(t, d.OwnerDSN(), append([]string{`CREATE TABLE bulkhead.bookmarks (
		tenant_id uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
		id uuid NOT NULL, owner_id uuid NOT NULL, url text NOT NULL,
		PRIMARY KEY (tenant_id, id),
		FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id))`}, stmts...))

	t1, t2 := demo.T1, demo.T2
	alice := as(t, t1.Tenant.ID, t1.Alice, uuid.Nil)
	mark := uuid.New()
	if _, err := exec(t, d.DB, alice, `INSERT INTO bulkhead.bookmarks (id, owner_id, url) VALUES ($1, $2, 'https://example.com')`, mark, t1.Alice); err != nil {
		t.Fatalf("owner inserts: %v", err)
	}
	// Tenant-wide read inside T1, nothing in T2.
	if got := ids(t, d.DB, as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), `SELECT id FROM bulkhead.bookmarks`); !sameSet(got, []uuid.UUID{mark}) {
		t.Errorf("T1 Bob reads %v, want the bookmark", got)
	}
	if got := ids(t, d.DB, as(t, t2.Tenant.ID, t2.Alice, uuid.Nil), `SELECT id FROM bulkhead.bookmarks`); len(got) != 0 {
		t.Errorf("T2 reads T1's bookmarks: %v", got)
	}
	// Only the owner writes; nobody writes as someone else.
	bob := as(t, t1.Tenant.ID, t1.Bob, uuid.Nil)
	if n, err := exec(t, d.DB, bob, `UPDATE bulkhead.bookmarks SET url = 'https://evil.example'`); n != 0 || err != nil {
		t.Errorf("Bob updates Alice's bookmark: %d rows, %v", n, err)
	}
	if _, err := exec(t, d.DB, bob, `INSERT INTO bulkhead.bookmarks (id, owner_id, url) VALUES ($1, $2, 'x')`, uuid.New(), t1.Alice); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("Bob inserts as Alice: %v, want ErrForbidden", err)
	}
	if n, err := exec(t, d.DB, bob, `DELETE FROM bulkhead.bookmarks`); n != 0 || err != nil {
		t.Errorf("Bob deletes Alice's bookmark: %d rows, %v", n, err)
	}
	t2alice := as(t, t2.Tenant.ID, t2.Alice, uuid.Nil)
	for _, q := range []string{`UPDATE bulkhead.bookmarks SET url = 'https://evil.example'`, `DELETE FROM bulkhead.bookmarks`} {
		if n, err := exec(t, d.DB, t2alice, q); n != 0 || err != nil {
			t.Errorf("T2's Alice: %s: %d rows, %v", q, n, err)
		}
	}
	// The rightful owner: she updates (blind, no RETURNING), may not give
	// the row away, and deletes it.
	if n, err := exec(t, d.DB, alice, `UPDATE bulkhead.bookmarks SET url = 'https://example.org'`); n != 1 || err != nil {
		t.Errorf("Alice updates her bookmark: %d rows, %v", n, err)
	}
	if _, err := exec(t, d.DB, alice, `UPDATE bulkhead.bookmarks SET owner_id = $1`, t1.Bob); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("Alice gives her bookmark to Bob: %v, want ErrForbidden", err)
	}
	if n, err := exec(t, d.DB, alice, `DELETE FROM bulkhead.bookmarks`); n != 1 || err != nil {
		t.Errorf("Alice deletes her bookmark: %d rows, %v", n, err)
	}
	if got := ids(t, d.DB, as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), `SELECT id FROM bulkhead.bookmarks`); len(got) != 0 {
		t.Errorf("after Alice's delete T1 still reads %v", got)
	}
}
