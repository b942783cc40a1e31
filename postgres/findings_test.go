package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/postgres/migrations"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
)

// TestReviewFindingsOfIssue10 replays, as the runtime role, each hole the
// policy review found, with exactly the statement shape that got through
// (no RETURNING, no WHERE that would apply the SELECT policy). Each must be
// refused by the current policies; then the policies of migration 00006
// are put back and every replay must succeed, which shows each test fails
// where the bug is.
func TestReviewFindingsOfIssue10(t *testing.T) {
	t.Parallel()
	for _, old := range []bool{false, true} {
		d, demo := seeded(t)
		if old {
			installOldPolicies(t, d)
		}
		tn := demo.T1
		T := tn.Tenant.ID
		admin := mustConnect(t, d.AdminDSN())
		ctx := context.Background()
		charlie, alice, bob := as(t, T, tn.Charlie, uuid.Nil), as(t, T, tn.Alice, uuid.Nil), as(t, T, tn.Bob, uuid.Nil)
		// hole reports whether a write that must be refused went through.
		hole := func(n int64, err error) bool {
			if err != nil && !errors.Is(err, bulkhead.ErrForbidden) && !errors.Is(err, bulkhead.ErrNotFound) && sqlState(err) != "42501" {
				t.Fatalf("unexpected error: %v", err)
			}
			return err == nil && n > 0
		}
		cases := []struct {
			name string
			try  func() bool // true: the hole is open
		}{
			// Before the cases that change membership (an admin removing the owner).
			{"6. a documents:read delegation writes memories as the principal", func() bool {
				return hole(exec(t, d.DB, as(t, T, tn.Agent, tn.Alice), `INSERT INTO bulkhead.memories (id, room_id, author_id, content) VALUES ($1, $2, $3, 'x')`, uuid.New(), tn.Room1, tn.Alice))
			}},
			{"1. memory written into a room the author is not in", func() bool {
				return hole(exec(t, d.DB, charlie, `INSERT INTO bulkhead.memories (id, room_id, author_id, content) VALUES ($1, $2, $3, 'x')`, uuid.New(), tn.Room1, tn.Charlie))
			}},
			{"1. blind UPDATE moves memories into a room the author is not in", func() bool {
				return hole(exec(t, d.DB, alice, `UPDATE bulkhead.memories SET room_id = $1`, tn.Room2))
			}},
			{"2. room admin promotes himself to owner", func() bool {
				if _, err := exec(t, d.DB, alice, `UPDATE bulkhead.participants SET role = 'admin' WHERE room_id = $1 AND entity_id = $2`, tn.Room1, tn.Bob); err != nil {
					t.Fatal(err)
				}
				return hole(exec(t, d.DB, bob, `UPDATE bulkhead.participants SET role = 'owner' WHERE room_id = $1 AND entity_id = $2`, tn.Room1, tn.Bob))
			}},
			{"2. room admin removes the owner", func() bool {
				return hole(exec(t, d.DB, bob, `DELETE FROM bulkhead.participants WHERE room_id = $1 AND entity_id = $2`, tn.Room1, tn.Alice))
			}},
			{"2. room admin moves the room into his own world", func() bool {
				return hole(exec(t, d.DB, bob, `UPDATE bulkhead.rooms SET world_id = $1 WHERE id = $2`, tn.World2, tn.Room1))
			}},
			{"3. a user adopted as someone's agent", func() bool {
				return hole(exec(t, d.DB, alice, `INSERT INTO bulkhead.agents (id, owner_id, name) VALUES ($1, $2, 'adopted')`, tn.Bob, tn.Alice))
			}},
			{"4. audit entry forged in another entity's name", func() bool {
				return hole(exec(t, d.DB, charlie, `INSERT INTO bulkhead.audit_log (actor_id, action) VALUES ($1, 'tenant.delete')`, tn.Alice))
			}},
			{"5. someone else's agent linked to my server", func() bool {
				srv := uuid.New()
				if _, err := exec(t, d.DB, charlie, `INSERT INTO bulkhead.message_servers (id, owner_id, platform, external_id) VALUES ($1, $2, 'discord', 'charlie-guild')`, srv, tn.Charlie); err != nil {
					t.Fatal(err)
				}
				return hole(exec(t, d.DB, charlie, `INSERT INTO bulkhead.message_server_agents (message_server_id, agent_id) VALUES ($1, $2)`, srv, tn.Agent))
			}},
			{"5. the agent's owner can't unlink it from another's server", func() bool {
				srv := uuid.New()
				if _, err := admin.Exec(ctx, `INSERT INTO bulkhead.message_servers (tenant_id, id, owner_id, platform, external_id) VALUES ($1, $2, $3, 'discord', 'other-guild')`, T, srv, tn.Charlie); err != nil {
					t.Fatal(err)
				}
				if _, err := admin.Exec(ctx, `INSERT INTO bulkhead.message_server_agents (tenant_id, message_server_id, agent_id) VALUES ($1, $2, $3)`, T, srv, tn.Agent); err != nil {
					t.Fatal(err)
				}
				n, err := exec(t, d.DB, alice, `DELETE FROM bulkhead.message_server_agents WHERE message_server_id = $1 AND agent_id = $2`, srv, tn.Agent)
				return err != nil || n == 0
			}},
			{"5. a room bound to someone else's message server", func() bool {
				w := uuid.New()
				if _, err := exec(t, d.DB, charlie, `INSERT INTO bulkhead.worlds (id, owner_id, name) VALUES ($1, $2, 'c')`, w, tn.Charlie); err != nil {
					t.Fatal(err)
				}
				return hole(exec(t, d.DB, charlie, `INSERT INTO bulkhead.rooms (id, world_id, name, message_server_id, channel_id) VALUES ($1, $2, 'squat', $3, 'squatted')`, uuid.New(), w, tn.Server))
			}},
		}
		for _, c := range cases {
			open := c.try()
			switch {
			case !old && open:
				t.Errorf("%s: the hole is open", c.name)
			case old && !open:
				t.Errorf("%s: with the policies of 00006 the replay was refused; the test can't tell the bug from the fix", c.name)
			}
		}
	}
}

// installOldPolicies replaces the current policies and helpers with those
// migration 00006 installed (the ones the review attacked).
func installOldPolicies(t *testing.T, d *testdb.Database) {
	t.Helper()
	admin := mustConnect(t, d.AdminDSN())
	ctx := context.Background()
	rm, err := rls.Remove(postgres.RLSConfig, postgres.Tables)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rm {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	b, err := migrations.FS.ReadFile("00006_policies.sql")
	if err != nil {
		t.Fatal(err)
	}
	_, up, _ := strings.Cut(string(b), "-- +goose Up\n")
	up, _, _ = strings.Cut(up, "-- +goose Down")
	if _, err := admin.Exec(ctx, up); err != nil {
		t.Fatalf("00006 policies: %v", err)
	}
}
