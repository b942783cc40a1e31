package postgres_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// TestAuthLookupsStayInTheirTenantAndRow checks the pre-authentication
// SECURITY DEFINER look-ups: the right row, in the scope's tenant only.
func TestAuthLookupsStayInTheirTenantAndRow(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	bobEmail := fmt.Sprintf("Bob@%s.example", t1.Tenant.ID)
	id, _, err := d.DB.UserByEmail(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), bobEmail)
	if err != nil || id != t1.Bob {
		t.Errorf("T1 look-up of Bob's email: %s %v, want Bob %s", id, err, t1.Bob)
	}
	if id, _, err := d.DB.UserByEmail(as(t, t2.Tenant.ID, uuid.Nil, uuid.Nil), bobEmail); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("T2 look-up of T1 Bob's email: %s %v, want ErrNotFound", id, err)
	}
	if _, _, err := d.DB.UserByEmail(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), "nobody@example.com"); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("unknown email: %v", err)
	}
	// Registration is closed by default.
	if _, err := d.DB.RegisterUser(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), "new@example.com", "New", "x"); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("register in a closed tenant: %v", err)
	}
	// The runtime role can't read other entities' credential rows even in its tenant.
	keys := ids(t, d.DB, as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), `SELECT id FROM bulkhead.api_keys`)
	if len(keys) != 0 {
		t.Errorf("Bob sees %d API keys (Alice's)", len(keys))
	}
	if own := ids(t, d.DB, as(t, t1.Tenant.ID, t1.Alice, uuid.Nil), `SELECT id FROM bulkhead.api_keys`); len(own) != 1 {
		t.Errorf("Alice sees %d of her API keys, want 1", len(own))
	}
}
