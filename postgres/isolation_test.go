package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The proof suite: every case asserts both sides, the rightful reader sees
// the row and everyone else sees nothing. Queries deliberately omit any
// tenant or entity filter: row-level security alone must confine them.

func TestRoomsAndMemoriesFollowMembership(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	for _, tn := range []postgres.DemoTenant{demo.T1, demo.T2} {
		T := tn.Tenant.ID
		cases := []struct {
			name     string
			entity   uuid.UUID
			rooms    []uuid.UUID
			memories []uuid.UUID
		}{
			{"alice", tn.Alice, []uuid.UUID{tn.Room1}, []uuid.UUID{tn.Memories["room1/alice"], tn.Memories["room1/bob"]}},
			{"bob", tn.Bob, []uuid.UUID{tn.Room1, tn.Room2}, []uuid.UUID{tn.Memories["room1/alice"], tn.Memories["room1/bob"], tn.Memories["room2/bob"], tn.Memories["room2/charlie"]}},
			{"charlie", tn.Charlie, []uuid.UUID{tn.Room2}, []uuid.UUID{tn.Memories["room2/bob"], tn.Memories["room2/charlie"]}},
			{"unknown entity", uuid.New(), nil, nil},
			{"no entity", uuid.Nil, nil, nil},
		}
		for _, c := range cases {
			ctx := as(t, T, c.entity, uuid.Nil)
			if got := ids(t, d.DB, ctx, `SELECT id FROM bulkhead.rooms`); !sameSet(got, c.rooms) {
				t.Errorf("%s/%s rooms: got %v, want %v", tn.Tenant.Name, c.name, got, c.rooms)
			}
			if got := ids(t, d.DB, ctx, `SELECT id FROM bulkhead.memories`); !sameSet(got, c.memories) {
				t.Errorf("%s/%s memories: got %v, want %v", tn.Tenant.Name, c.name, got, c.memories)
			}
			// Strict tables show nothing without a (known) entity.
			if c.rooms == nil {
				if got := ids(t, d.DB, ctx, `SELECT room_id FROM bulkhead.participants`); len(got) != 0 {
					t.Errorf("%s/%s participants: got %v, want none", tn.Tenant.Name, c.name, got)
				}
			}
		}
	}
}

func TestNoScopeSeesNothing(t *testing.T) {
	t.Parallel()
	d, _ := seeded(t)
	// InScope refuses before sending SQL.
	called := false
	err := d.DB.InScope(context.Background(), func(tx pgx.Tx) error { called = true; return nil })
	if !errors.Is(err, bulkhead.ErrUnauthenticated) || called {
		t.Fatalf("InScope without scope: err %v, fn called %v; want ErrUnauthenticated before fn", err, called)
	}
	if _, err := d.DB.Room(context.Background(), uuid.New()); !errors.Is(err, bulkhead.ErrUnauthenticated) {
		t.Fatalf("Room without scope: %v, want ErrUnauthenticated", err)
	}
	// A raw connection as the runtime role with no context sees no row of any table.
	conn := mustConnect(t, d.AppDSN())
	for _, tb := range postgres.Tables {
		var n int
		err := conn.QueryRow(context.Background(), "SELECT count(*) FROM bulkhead."+tb.Name).Scan(&n)
		if tb.Name == "audit_log" {
			if sqlState(err) != "42501" {
				t.Errorf("audit_log without context: %v, want permission denied (insert-only)", err)
			}
			continue
		}
		if err != nil || n != 0 {
			t.Errorf("%s without context: %d rows, err %v; want 0", tb.Name, n, err)
		}
	}
	// And a malformed setting is an error, never "all". Only a superuser
	// can set one (the runtime role can't: context_test.go), who then
	// becomes the runtime role.
	admin := mustConnect(t, d.AdminDSN())
	_, err = admin.Exec(context.Background(), "SELECT set_config('bulkhead.tenant_id', 'not-a-uuid', false), set_config('role', '"+postgres.Runtime+"', false)")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM bulkhead.rooms").Scan(&n); sqlState(err) != "22P02" {
		t.Errorf("malformed tenant setting: count %d err %v, want invalid_text_representation", n, err)
	}
}

func TestWrongTenantSeesNothing(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	// The right entity with the wrong tenant.
	ctx := as(t, t2.Tenant.ID, t1.Bob, uuid.Nil)
	for _, table := range []string{"rooms", "memories", "documents", "chunks", "participants"} {
		col := "id"
		if table == "participants" {
			col = "room_id"
		}
		got := ids(t, d.DB, ctx, "SELECT "+col+" FROM bulkhead."+table+" WHERE tenant_id = $1", t1.Tenant.ID)
		if len(got) != 0 {
			t.Errorf("T1's Bob id in T2's scope sees %d %s of T1", len(got), table)
		}
	}
	// T1 rows looked up by their known ids from T2: not found, through every repository.
	t2bob := as(t, t2.Tenant.ID, t2.Bob, uuid.Nil)
	checks := map[string]error{}
	_, checks["room"] = d.DB.Room(t2bob, t1.Room1)
	_, checks["world"] = d.DB.World(t2bob, t1.World2)
	_, checks["agent"] = d.DB.Agent(t2bob, t1.Agent)
	_, checks["entity"] = d.DB.Entity(t2bob, t1.Alice)
	_, checks["document"] = d.DB.Document(t2bob, t1.TenantDoc)
	for what, err := range checks {
		if !errors.Is(err, bulkhead.ErrNotFound) {
			t.Errorf("T1 %s from T2: %v, want ErrNotFound", what, err)
		}
	}
	// The owner side: the same lookups in T1 succeed.
	t1bob := as(t, t1.Tenant.ID, t1.Bob, uuid.Nil)
	if _, err := d.DB.Room(t1bob, t1.Room1); err != nil {
		t.Errorf("T1 Bob reads room1: %v", err)
	}
	if _, err := d.DB.Document(t1bob, t1.TenantDoc); err != nil {
		t.Errorf("T1 Bob reads tenant doc: %v", err)
	}
	if _, err := d.DB.Agent(t1bob, t1.Agent); err != nil {
		t.Errorf("T1 Bob reads agent metadata: %v", err)
	}
	// History of a T1 room from T2 is empty, from T1 it is not.
	if h, _, err := d.DB.RoomHistory(t2bob, t1.Room1, postgres.Page{}); err != nil || len(h) != 0 {
		t.Errorf("T1 room history from T2: %d rows, %v", len(h), err)
	}
	if h, _, err := d.DB.RoomHistory(t1bob, t1.Room1, postgres.Page{}); err != nil || len(h) != 2 {
		t.Errorf("room1 history for T1 Bob: %d rows, %v; want 2", len(h), err)
	}
	// The runtime role sees only its own tenant's row in tenants.
	if got := ids(t, d.DB, t2bob, `SELECT id FROM bulkhead.tenants`); !sameSet(got, []uuid.UUID{t2.Tenant.ID}) {
		t.Errorf("tenants visible from T2: %v, want only T2", got)
	}
}

func TestCrossTenantWritesChangeNothing(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	before := checksum(t, d.DB)
	t2bob := as(t, t2.Tenant.ID, t2.Bob, uuid.Nil)

	// Targeted and blind UPDATE / DELETE of T1 rows from T2.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE bulkhead.memories SET content = 'pwned' WHERE id = $1`, []any{t1.Memories["room1/bob"]}},
		{`DELETE FROM bulkhead.memories WHERE id = $1`, []any{t1.Memories["room2/bob"]}},
		{`UPDATE bulkhead.rooms SET name = 'pwned' WHERE id = $1`, []any{t1.Room2}},
		{`DELETE FROM bulkhead.documents WHERE id = $1`, []any{t1.TenantDoc}},
		{`UPDATE bulkhead.entities SET name = 'pwned' WHERE id = $1`, []any{t1.Bob}},
		{`DELETE FROM bulkhead.participants WHERE room_id = $1`, []any{t1.Room2}},
	} {
		n, err := exec(t, d.DB, t2bob, q.sql, q.args...)
		if err != nil || n != 0 {
			t.Errorf("%s from T2: %d rows, err %v; want 0 rows", q.sql, n, err)
		}
	}
	after := checksum(t, d.DB)
	for table, sum := range before {
		if after[table] != sum {
			t.Errorf("table %s changed after T2's targeted writes", table)
		}
	}
	// The same targeted statements by T1's Bob, who owns those rows
	// (room2 is his, and the wiki; the memories are his), change exactly
	// one row each: the refusal above is T2's, not everyone's. (Entities
	// and participants are not his to write by id; the verifier covers
	// their rightful writers.)
	t1bob := as(t, t1.Tenant.ID, t1.Bob, uuid.Nil)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE bulkhead.memories SET content = 'edited' WHERE id = $1`, []any{t1.Memories["room1/bob"]}},
		{`DELETE FROM bulkhead.memories WHERE id = $1`, []any{t1.Memories["room2/bob"]}},
		{`UPDATE bulkhead.rooms SET name = 'renamed' WHERE id = $1`, []any{t1.Room2}},
		{`DELETE FROM bulkhead.documents WHERE id = $1`, []any{t1.TenantDoc}},
	} {
		if n, err := exec(t, d.DB, t1bob, q.sql, q.args...); err != nil || n != 1 {
			t.Errorf("%s by its owner T1 Bob: %d rows, err %v; want 1", q.sql, n, err)
		}
	}
	// Blind writes touch only the writer's own rows (the other side).
	n, err := exec(t, d.DB, t2bob, `UPDATE bulkhead.memories SET metadata = '{"touched": true}'`)
	if err != nil || n != 2 { // T2's Bob authored two memories
		t.Errorf("blind UPDATE from T2 Bob: %d rows, err %v; want his own 2", n, err)
	}
	n, err = exec(t, d.DB, t2bob, `DELETE FROM bulkhead.memories WHERE author_id <> $1`, t2.Bob)
	if err != nil || n != 0 {
		t.Errorf("blind DELETE of others' memories from T2 Bob: %d rows, err %v; want 0", n, err)
	}
	var t1Touched int
	if err := d.DB.InMaintenance(bulkhead.AsMaintenance(context.Background(), "test"), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM bulkhead.memories WHERE tenant_id = $1 AND metadata ? 'touched'`, t1.Tenant.ID).Scan(&t1Touched)
	}); err != nil || t1Touched != 0 {
		t.Errorf("T1 memories touched by T2's blind update: %d (%v)", t1Touched, err)
	}

	// INSERT with T1's tenant_id, and moves to another tenant or room, are refused.
	refused := []struct {
		name string
		sql  string
		args []any
	}{
		{"insert into T1", `INSERT INTO bulkhead.memories (tenant_id, id, room_id, author_id, content) VALUES ($1, $2, $3, $4, 'x')`, []any{t1.Tenant.ID, uuid.New(), t1.Room1, t1.Bob}},
		{"insert audit into T1", `INSERT INTO bulkhead.audit_log (tenant_id, action) VALUES ($1, 'forged')`, []any{t1.Tenant.ID}},
		{"move memory to T1", `UPDATE bulkhead.memories SET tenant_id = $1 WHERE author_id = $2`, []any{t1.Tenant.ID, t2.Bob}},
	}
	for _, r := range refused {
		if _, err := exec(t, d.DB, t2bob, r.sql, r.args...); !errors.Is(err, bulkhead.ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden (42501)", r.name, err)
		}
	}
	// T2's Alice moves her memory into room2, where she is not a participant.
	t2alice := as(t, t2.Tenant.ID, t2.Alice, uuid.Nil)
	if _, err := exec(t, d.DB, t2alice, `UPDATE bulkhead.memories SET room_id = $1 WHERE id = $2`, t2.Room2, t2.Memories["room1/alice"]); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("move memory to a room she is not in: %v, want ErrForbidden", err)
	}
	// Reassigning authorship to someone else is refused too.
	if _, err := exec(t, d.DB, t2alice, `UPDATE bulkhead.memories SET author_id = $1 WHERE id = $2`, t2.Bob, t2.Memories["room1/alice"]); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("reassign authorship: %v, want ErrForbidden", err)
	}
}

func TestConstraintProbesRevealNothing(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	t2alice := as(t, t2.Tenant.ID, t2.Alice, uuid.Nil)
	// Unique probe: T1's message server (platform, external_id) is free in T2.
	if _, err := d.DB.CreateMessageServer(t2alice, "discord", "guild-"+t1.Tenant.ID.String(), "probe"); err != nil {
		t.Errorf("T2 registering T1's guild id: %v; a conflict would reveal T1's data", err)
	}
	// ...while within T1 it conflicts (the constraint works).
	t1alice := as(t, t1.Tenant.ID, t1.Alice, uuid.Nil)
	if _, err := d.DB.CreateMessageServer(t1alice, "discord", "guild-"+t1.Tenant.ID.String(), "dup"); !errors.Is(err, bulkhead.ErrConflict) {
		t.Errorf("duplicate guild within T1: %v, want ErrConflict", err)
	}
	// ON CONFLICT probe: T2 upserting on T1's primary key inserts its own row; T1's stays.
	n, err := exec(t, d.DB, t2alice, `INSERT INTO bulkhead.worlds (id, owner_id, name) VALUES ($1, $2, 'probe') ON CONFLICT DO NOTHING`, t1.World1, t2.Alice)
	if err != nil || n != 1 {
		t.Errorf("ON CONFLICT with T1's world id from T2: %d rows, %v; want 1 (no conflict across tenants)", n, err)
	}
	// FK probe: referencing T1's room fails exactly as a random id does.
	errKnown := d.DB.AddParticipant(t2alice, t1.Room1, t2.Alice, bulkhead.RoleMember)
	errRandom := d.DB.AddParticipant(t2alice, uuid.New(), t2.Alice, bulkhead.RoleMember)
	if sqlState(errKnown) != sqlState(errRandom) || errKnown == nil {
		t.Errorf("FK probe distinguishes T1's room: known %v vs random %v", errKnown, errRandom)
	}
}

func TestRoomMembershipRules(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	T := tn.Tenant.ID
	alice, bob, charlie := as(t, T, tn.Alice, uuid.Nil), as(t, T, tn.Bob, uuid.Nil), as(t, T, tn.Charlie, uuid.Nil)

	// Self-join to a closed room is refused; Charlie stays outside room1.
	if err := d.DB.JoinRoom(charlie, tn.Room1); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("self-join closed room1: %v, want ErrForbidden", err)
	}
	// Bob (a plain member of room1) can't add Charlie; Alice (owner) can't add to Bob's room2.
	if err := d.DB.AddParticipant(bob, tn.Room1, tn.Charlie, bulkhead.RoleMember); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("member adds participant: %v, want ErrForbidden", err)
	}
	if err := d.DB.AddParticipant(alice, tn.Room2, tn.Alice, bulkhead.RoleOwner); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("Alice adds herself to Bob's room2: %v, want ErrForbidden", err)
	}
	if ok, err := d.DB.IsRoomParticipant(alice, tn.Room1, tn.Charlie); ok || err != nil {
		t.Errorf("Charlie a participant of room1: %v (%v), want false", ok, err)
	}
	if ok, err := d.DB.IsRoomParticipant(alice, tn.Room1, tn.Bob); !ok || err != nil {
		t.Errorf("Bob a participant of room1: %v (%v), want true", ok, err)
	}
	// An open room: self-join as member works, as admin does not.
	open, err := d.DB.CreateRoom(alice, postgres.NewRoom{WorldID: tn.World1, Name: "lobby", Open: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DB.AddParticipant(charlie, open.ID, tn.Charlie, bulkhead.RoleAdmin); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("self-join open room as admin: %v, want ErrForbidden", err)
	}
	if err := d.DB.JoinRoom(charlie, open.ID); err != nil {
		t.Errorf("self-join open room: %v", err)
	}
	if ok, err := d.DB.IsRoomParticipant(charlie, open.ID, tn.Charlie); !ok || err != nil {
		t.Errorf("Charlie in lobby after join: %v %v", ok, err)
	}
	// Writing a memory as another author is refused; as oneself in a room one is not in, too.
	if _, err := d.DB.AppendMemory(bob, postgres.NewMemory{RoomID: tn.Room1, AuthorID: tn.Alice, Content: "forged"}); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("memory as another author: %v, want ErrForbidden", err)
	}
	if _, err := d.DB.AppendMemory(charlie, postgres.NewMemory{RoomID: tn.Room1, Content: "gatecrash"}); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("memory in a room one is not in: %v, want ErrForbidden", err)
	}
	if _, err := d.DB.AppendMemory(bob, postgres.NewMemory{RoomID: tn.Room1, Content: "legit"}); err != nil {
		t.Errorf("Bob writes in room1: %v", err)
	}
	// Channel participant check.
	if ok, err := d.DB.IsChannelParticipant(bob, tn.Server, "general", tn.Bob); !ok || err != nil {
		t.Errorf("Bob in channel general: %v %v", ok, err)
	}
	if ok, err := d.DB.IsChannelParticipant(charlie, tn.Server, "general", tn.Charlie); ok || err != nil {
		t.Errorf("Charlie in channel general: %v (%v), want false", ok, err)
	}
	// Leaving: Bob removes himself from room1; then he no longer sees it.
	if err := d.DB.RemoveParticipant(bob, tn.Room1, tn.Bob); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.Room(bob, tn.Room1); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("room1 after Bob left: %v, want ErrNotFound", err)
	}
}

func TestDelegation(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	T := tn.Tenant.ID
	privateDocs := func(ctx context.Context) []uuid.UUID {
		return ids(t, d.DB, ctx, `SELECT id FROM bulkhead.documents WHERE visibility = 'private'`)
	}
	agentForAlice := as(t, T, tn.Agent, tn.Alice)
	agentAlone := as(t, T, tn.Agent, uuid.Nil)
	agentForBob := as(t, T, tn.Agent, tn.Bob)
	if got := privateDocs(agentForAlice); !sameSet(got, []uuid.UUID{tn.PrivateDoc}) {
		t.Errorf("agent acting for Alice under a valid delegation: %v, want Alice's private doc", got)
	}
	if got := privateDocs(agentAlone); len(got) != 0 {
		t.Errorf("agent as itself sees private docs %v", got)
	}
	if got := privateDocs(agentForBob); len(got) != 0 {
		t.Errorf("agent claiming to act for Bob (no delegation) sees %v", got)
	}
	if got := privateDocs(as(t, T, tn.Bob, uuid.Nil)); len(got) != 0 {
		t.Errorf("Bob sees Alice's private docs %v", got)
	}
	// Scopes are enforced in SQL: the demo delegation holds documents:read
	// only, so the agent can't write a memory as Alice (finding 6 of issue
	// 10: it could, whatever the scopes).
	if _, err := d.DB.AppendMemory(agentForAlice, postgres.NewMemory{RoomID: tn.Room1, AuthorID: tn.Alice, Content: "out of scope"}); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("agent writes as Alice under a documents:read delegation: %v, want ErrForbidden", err)
	}
	alice0 := as(t, T, tn.Alice, uuid.Nil)
	writer, err := d.DB.GrantDelegation(alice0, tn.Agent, []string{"memories:read", "memories:write"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.AppendMemory(agentForAlice, postgres.NewMemory{RoomID: tn.Room1, AuthorID: tn.Alice, Content: "on behalf of Alice"}); err != nil {
		t.Errorf("agent writes as Alice under a memories:read+write delegation: %v", err)
	}
	if err := d.DB.RevokeDelegation(alice0, writer.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.GrantDelegation(alice0, tn.Agent, []string{"memories:delete-everything"}, nil); !errors.Is(err, bulkhead.ErrInvalid) {
		t.Errorf("a delegation with an unknown scope: %v, want ErrInvalid", err)
	}
	// Bob can't grant himself Alice's authority, and the agent's owner can only revoke.
	bob := as(t, T, tn.Bob, uuid.Nil)
	if _, err := exec(t, d.DB, bob, `INSERT INTO bulkhead.delegations (id, agent_id, principal_id) VALUES ($1, $2, $3)`, uuid.New(), tn.Agent, tn.Alice); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("Bob grants a delegation for Alice: %v, want ErrForbidden", err)
	}
	// Expired: no longer honoured.
	alice := as(t, T, tn.Alice, uuid.Nil)
	if err := d.DB.ExpireDelegation(alice, tn.Delegation); err != nil {
		t.Fatal(err)
	}
	if got := privateDocs(agentForAlice); len(got) != 0 {
		t.Errorf("after expiry the agent still sees %v", got)
	}
	if _, err := d.DB.AppendMemory(agentForAlice, postgres.NewMemory{RoomID: tn.Room1, AuthorID: tn.Alice, Content: "expired"}); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("agent writes as Alice after expiry: %v, want ErrForbidden", err)
	}
	// A fresh grant works again; revocation ends it.
	del, err := d.DB.GrantDelegation(alice, tn.Agent, []string{"documents:read"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := privateDocs(agentForAlice); len(got) != 1 {
		t.Errorf("after a new grant: %v", got)
	}
	if err := d.DB.RevokeDelegation(alice, del.ID); err != nil {
		t.Fatal(err)
	}
	if got := privateDocs(agentForAlice); len(got) != 0 {
		t.Errorf("after revocation the agent still sees %v", got)
	}
}

func TestVisibilityOfDocumentsAndChunks(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	T := tn.Tenant.ID
	cases := []struct {
		name   string
		entity uuid.UUID
		docs   []uuid.UUID
	}{
		{"alice", tn.Alice, []uuid.UUID{tn.PrivateDoc, tn.RoomDoc, tn.TenantDoc}},
		{"bob", tn.Bob, []uuid.UUID{tn.RoomDoc, tn.TenantDoc}},
		{"charlie", tn.Charlie, []uuid.UUID{tn.TenantDoc}},
		{"no entity", uuid.Nil, []uuid.UUID{tn.TenantDoc}},
	}
	for _, c := range cases {
		ctx := as(t, T, c.entity, uuid.Nil)
		if got := ids(t, d.DB, ctx, `SELECT id FROM bulkhead.documents`); !sameSet(got, c.docs) {
			t.Errorf("%s documents: %v, want %v", c.name, got, c.docs)
		}
		// Chunks inherit: the documents behind visible chunks are exactly the visible documents.
		if got := ids(t, d.DB, ctx, `SELECT DISTINCT document_id FROM bulkhead.chunks`); !sameSet(got, c.docs) {
			t.Errorf("%s chunks' documents: %v, want %v", c.name, got, c.docs)
		}
	}
	// Only the owner deletes; Bob can't delete Alice's room doc.
	if err := d.DB.DeleteDocument(as(t, T, tn.Bob, uuid.Nil), tn.RoomDoc, nil); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("Bob deletes Alice's doc: %v, want ErrNotFound", err)
	}
	// A room document for a room the writer is not in is refused.
	room1 := tn.Room1
	if _, err := d.DB.CreateDocument(as(t, T, tn.Charlie, uuid.Nil), postgres.NewDocument{Title: "x", Content: "x", Visibility: bulkhead.VisibilityRoom, RoomID: &room1}, nil); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("Charlie posts a room1 document: %v, want ErrForbidden", err)
	}
	// Secrets columns of agents are readable as metadata but only the owner updates.
	if err := d.DB.UpdateAgent(as(t, T, tn.Bob, uuid.Nil), tn.Agent, postgres.NewAgent{Name: "hijacked"}); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("Bob updates Alice's agent: %v, want ErrNotFound", err)
	}
	if err := d.DB.UpdateAgent(as(t, T, tn.Alice, uuid.Nil), tn.Agent, postgres.NewAgent{Name: "renamed"}); err != nil {
		t.Errorf("Alice updates her agent: %v", err)
	}
}

// TestRoomMessagesTellsHiddenFromEmpty: one statement answers both the
// room check and the page.
func TestRoomMessagesTellsHiddenFromEmpty(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	empty, err := d.DB.CreateRoom(alice, postgres.NewRoom{WorldID: tn.World1, Name: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	if ms, next, err := d.DB.RoomMessages(alice, empty.ID, postgres.Page{}); err != nil || len(ms) != 0 || next != "" {
		t.Errorf("visible empty room: %v %q %v, want an empty page", ms, next, err)
	}
	if ms, _, err := d.DB.RoomMessages(alice, tn.Room1, postgres.Page{Limit: 1}); err != nil || len(ms) != 1 || ms[0].ID != tn.Memories["room1/bob"] {
		t.Errorf("room1 newest message: %v %v", ms, err)
	}
	for name, ctx := range map[string]context.Context{
		"non-participant": as(t, tn.Tenant.ID, tn.Charlie, uuid.Nil),
		"other tenant":    as(t, demo.T2.Tenant.ID, demo.T2.Alice, uuid.Nil),
	} {
		if ms, _, err := d.DB.RoomMessages(ctx, tn.Room1, postgres.Page{}); !errors.Is(err, bulkhead.ErrNotFound) || len(ms) != 0 {
			t.Errorf("%s: %v %v, want ErrNotFound", name, ms, err)
		}
	}
}

// TestMembershipLookupFailsClosed: member_rooms_native and
// can_author_native (C) find participants' (tenant_id, entity_id[,
// room_id]) index themselves; without it, a read of a strict table and a
// write of a memory are errors, never every row, a silent empty answer or
// a write let through, and Alice's own rooms and writes come back once the
// index does.
func TestMembershipLookupFailsClosed(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	ctx := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	if got := ids(t, d.DB, ctx, `SELECT id FROM bulkhead.rooms`); !sameSet(got, []uuid.UUID{tn.Room1}) {
		t.Fatalf("alice's rooms with the index: %v", got)
	}
	admin := mustConnect(t, d.AdminDSN())
	bg := context.Background()
	if _, err := admin.Exec(bg, `DROP INDEX bulkhead.participants_entity_id_room_id_idx`); err != nil {
		t.Fatal(err)
	}
	err := d.DB.InScope(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM bulkhead.memories`)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			n++
		}
		if rows.Err() == nil {
			return fmt.Errorf("read %d memories without the membership index", n)
		}
		return rows.Err()
	})
	if err == nil || !strings.Contains(err.Error(), "no btree index on (tenant_id, entity_id)") {
		t.Fatalf("a strict read without the membership index: %v, want the look-up's error", err)
	}
	// No RETURNING: only the insert's own check (can_author) runs.
	insert := `INSERT INTO bulkhead.memories (id, room_id, author_id, content) VALUES ($1, $2, $3, 'x')`
	if n, err := exec(t, d.DB, ctx, insert, uuid.New(), tn.Room1, tn.Alice); err == nil || !strings.Contains(err.Error(), "bulkhead.can_author: participants has no btree index on (tenant_id, entity_id, room_id)") {
		t.Fatalf("a memory written without the membership index: %d rows, %v, want can_author's error", n, err)
	}
	if _, err := admin.Exec(bg, `CREATE INDEX participants_entity_id_room_id_idx ON bulkhead.participants (tenant_id, entity_id, room_id)`); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, d.DB, ctx, `SELECT id FROM bulkhead.rooms`); !sameSet(got, []uuid.UUID{tn.Room1}) {
		t.Fatalf("alice's rooms with the index back: %v", got)
	}
	if n, err := exec(t, d.DB, ctx, insert, uuid.New(), tn.Room1, tn.Alice); err != nil || n != 1 {
		t.Fatalf("alice's memory with the index back: %d rows, %v", n, err)
	}
}
