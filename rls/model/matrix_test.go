package model_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/google/go-cmp/cmp"
)

// TestPoliciesDocIsTheModel fails when docs/POLICIES.md drifts from the
// model (regenerate: go run ./cmd/bulkhead policy show > docs/POLICIES.md).
func TestPoliciesDocIsTheModel(t *testing.T) {
	var b strings.Builder
	if err := model.WriteMarkdown(&b, model.Matrix(postgres.Tables, model.NewFixture(time.Now()))); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/POLICIES.md")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(doc), b.String()); diff != "" {
		t.Errorf("docs/POLICIES.md is not the model's matrix (-doc +model); run go run ./cmd/bulkhead policy show > docs/POLICIES.md:\n%s", diff)
	}
}

// TestMatrixShowsTheReviewFindingsClosed reads the model's matrix for the
// six findings of the policy review: each is a cell that must stay empty.
func TestMatrixShowsTheReviewFindingsClosed(t *testing.T) {
	ms := model.Matrix(postgres.Tables, model.NewFixture(time.Now()))
	cell := func(table, caller string) model.Cell {
		for _, tm := range ms {
			if tm.Table != table {
				continue
			}
			for _, c := range tm.Cells {
				if c.Caller == caller {
					return c
				}
			}
		}
		t.Fatalf("no cell %s/%s", table, caller)
		return model.Cell{}
	}
	has := func(xs []string, s string) bool {
		for _, x := range xs {
			if strings.Contains(x, s) {
				return true
			}
		}
		return false
	}
	// 1. dave (not in r1) writes into r1; alice moves her memory to r2 (she isn't in r2).
	if c := cell("memories", "dave"); has(c.Inserts, "room_id=r1") {
		t.Errorf("dave inserts into r1: %v", c.Inserts)
	}
	if c := cell("memories", "alice"); has(c.Moves, "room_id=r2") {
		t.Errorf("alice moves a memory into r2: %v", c.Moves)
	}
	// 2. bob (admin of r1) promotes anyone to owner or admin, or removes the owner.
	if c := cell("participants", "bob"); has(c.Moves, "role=owner") || has(c.Moves, "role=admin") || has(c.Deletes, "r1/alice") {
		t.Errorf("admin outranks the owner: moves %v, deletes %v", c.Moves, c.Deletes)
	}
	if c := cell("rooms", "bob"); has(c.Moves, "world_id") {
		t.Errorf("admin moves the room to another world: %v", c.Moves)
	}
	// 3. alice adopts bob (a user) as her agent.
	if c := cell("agents", "alice"); has(c.Inserts, "id=bob") {
		t.Errorf("alice adopts a user as an agent: %v", c.Inserts)
	}
	// 4. bob logs an audit entry as alice.
	if c := cell("audit_log", "bob"); has(c.Inserts, "actor_id=alice") {
		t.Errorf("bob forges alice's audit entry: %v", c.Inserts)
	}
	// 5. dave links alice's agent to his server; alice can't unlink hers.
	if c := cell("message_server_agents", "dave"); has(c.Inserts, "agent_id=ag-full") {
		t.Errorf("dave links alice's agent: %v", c.Inserts)
	}
	if c := cell("message_server_agents", "alice"); !has(c.Deletes, "s1/ag-full") {
		t.Errorf("alice can't unlink her own agent: %v", c.Deletes)
	}
	// 6. an agent with documents:read writes memories as alice.
	if c := cell("memories", "ag-docs-for-alice"); has(c.Inserts, "author_id=alice") {
		t.Errorf("documents:read delegation writes memories: %v", c.Inserts)
	}
	if c := cell("memories", "ag-full-for-alice"); !has(c.Inserts, "author_id=alice room_id=r1") {
		t.Errorf("a memories:write delegation can't write as alice in her room: %v", c.Inserts)
	}
}
