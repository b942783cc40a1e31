package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// DemoTenant is what SeedDemo creates in one tenant: users Alice, Bob and
// Charlie, an agent owned by Alice (with Alice's delegation), room1 =
// {Alice, Bob} in Alice's world, room2 = {Bob, Charlie} in Bob's world,
// memories in both, and documents of each visibility.
type DemoTenant struct {
	Tenant     bulkhead.Tenant      `json:"tenant"`
	Alice      uuid.UUID            `json:"alice"`
	Bob        uuid.UUID            `json:"bob"`
	Charlie    uuid.UUID            `json:"charlie"`
	Agent      uuid.UUID            `json:"agent"`
	Delegation uuid.UUID            `json:"delegation"`
	World1     uuid.UUID            `json:"world1"`
	World2     uuid.UUID            `json:"world2"`
	Room1      uuid.UUID            `json:"room1"`
	Room2      uuid.UUID            `json:"room2"`
	Server     uuid.UUID            `json:"message_server"` // Alice's; room1 is its channel "general"
	Memories   map[string]uuid.UUID `json:"memories"`
	PrivateDoc uuid.UUID            `json:"private_doc"` // Alice's, confidential (sealed)
	RoomDoc    uuid.UUID            `json:"room_doc"`    // Alice's, in room1
	TenantDoc  uuid.UUID            `json:"tenant_doc"`  // Bob's, tenant-wide
}

// Demo is the two-tenant fixture: T2 mirrors T1.
type Demo struct {
	T1 DemoTenant `json:"t1"`
	T2 DemoTenant `json:"t2"`
}

// As returns ctx scoped to entity in t's tenant.
func (t DemoTenant) As(ctx context.Context, entity uuid.UUID) context.Context {
	ctx, _ = bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: t.Tenant.ID, Entity: entity})
	return ctx
}

// SeedDemo creates the fixture in db through the same paths the server
// uses: tenants and users by the control plane, everything else in the
// users' own scopes. ctx must allow maintenance (bulkhead.AsMaintenance).
func SeedDemo(ctx context.Context, db *DB, prefix string) (Demo, error) {
	var d Demo
	var err error
	if d.T1, err = seedTenant(ctx, db, prefix+"T1"); err != nil {
		return d, err
	}
	if d.T2, err = seedTenant(ctx, db, prefix+"T2"); err != nil {
		return d, err
	}
	return d, nil
}

func seedTenant(ctx context.Context, db *DB, name string) (DemoTenant, error) {
	fail := func(step string, err error) (DemoTenant, error) {
		return DemoTenant{}, fmt.Errorf("seed %s: %s: %w", name, step, err)
	}
	t := DemoTenant{Memories: map[string]uuid.UUID{}}
	var err error
	if t.Tenant, err = db.CreateTenant(ctx, name, ""); err != nil {
		return fail("tenant", err)
	}
	for _, u := range []struct {
		name string
		id   *uuid.UUID
	}{{"Alice", &t.Alice}, {"Bob", &t.Bob}, {"Charlie", &t.Charlie}} {
		e, err := db.CreateEntity(ctx, t.Tenant.ID, bulkhead.KindUser, u.name, fmt.Sprintf("%s@%s.example", u.name, t.Tenant.ID))
		if err != nil {
			return fail(u.name, err)
		}
		*u.id = e.ID
	}
	alice, bob := t.As(ctx, t.Alice), t.As(ctx, t.Bob)
	agent, err := db.CreateAgent(alice, NewAgent{Name: "Alice's agent", Bio: "helps Alice",
		SystemPrompt: bulkhead.Secret("You are Alice's assistant in " + name + "."),
		Secrets:      map[string]bulkhead.Secret{"openai_api_key": bulkhead.Secret("sk-demo-" + t.Tenant.ID.String())}})
	if err != nil {
		return fail("agent", err)
	}
	t.Agent = agent.ID
	exp := time.Now().Add(24 * time.Hour)
	del, err := db.GrantDelegation(alice, t.Agent, []string{"documents:read"}, &exp)
	if err != nil {
		return fail("delegation", err)
	}
	t.Delegation = del.ID
	w1, err := db.CreateWorld(alice, "Alice's world")
	if err != nil {
		return fail("world1", err)
	}
	w2, err := db.CreateWorld(bob, "Bob's world")
	if err != nil {
		return fail("world2", err)
	}
	t.World1, t.World2 = w1.ID, w2.ID
	srv, err := db.CreateMessageServer(alice, "discord", "guild-"+t.Tenant.ID.String(), "Alice's guild")
	if err != nil {
		return fail("message server", err)
	}
	t.Server = srv.ID
	if err := db.LinkAgent(alice, srv.ID, t.Agent); err != nil {
		return fail("link agent", err)
	}
	r1, err := db.CreateRoom(alice, NewRoom{WorldID: w1.ID, Name: "room1", MessageServerID: &srv.ID, ChannelID: "general"})
	if err != nil {
		return fail("room1", err)
	}
	r2, err := db.CreateRoom(bob, NewRoom{WorldID: w2.ID, Name: "room2"})
	if err != nil {
		return fail("room2", err)
	}
	t.Room1, t.Room2 = r1.ID, r2.ID
	if err := db.AddParticipant(alice, t.Room1, t.Bob, bulkhead.RoleMember); err != nil {
		return fail("room1 += Bob", err)
	}
	if err := db.AddParticipant(bob, t.Room2, t.Charlie, bulkhead.RoleMember); err != nil {
		return fail("room2 += Charlie", err)
	}
	for _, m := range []struct {
		key    string
		as     uuid.UUID
		room   uuid.UUID
		saying string
	}{
		{"room1/alice", t.Alice, t.Room1, "Alice in room1 of " + name},
		{"room1/bob", t.Bob, t.Room1, "Bob in room1 of " + name},
		{"room2/bob", t.Bob, t.Room2, "Bob in room2 of " + name},
		{"room2/charlie", t.Charlie, t.Room2, "Charlie in room2 of " + name},
	} {
		mem, err := db.AppendMemory(t.As(ctx, m.as), NewMemory{RoomID: m.room, Content: m.saying})
		if err != nil {
			return fail(m.key, err)
		}
		t.Memories[m.key] = mem.ID
	}
	for _, doc := range []struct {
		id    *uuid.UUID
		as    context.Context
		title string
		vis   bulkhead.Visibility
		room  *uuid.UUID
		conf  bool
	}{
		{&t.PrivateDoc, alice, "Alice's private notes (" + name + ")", bulkhead.VisibilityPrivate, nil, true},
		{&t.RoomDoc, alice, "room1 handbook (" + name + ")", bulkhead.VisibilityRoom, &t.Room1, false},
		{&t.TenantDoc, bob, "company wiki (" + name + ")", bulkhead.VisibilityTenant, nil, false},
	} {
		d, err := db.CreateDocument(doc.as, NewDocument{Title: doc.title, Content: doc.title + ": the body of the document.", Visibility: doc.vis, RoomID: doc.room, Confidential: doc.conf}, nil)
		if err != nil {
			return fail(doc.title, err)
		}
		*doc.id = d.ID
	}
	// Credentials exist only as hashes; the demo's are random (unusable).
	if _, err := db.InsertAPIKey(alice, uuid.New(), "demo key", randomBytes(32), []string{"read"}, nil); err != nil {
		return fail("api key", err)
	}
	if err := db.InsertRefreshToken(alice, uuid.New(), uuid.New(), randomBytes(32), time.Now().Add(time.Hour)); err != nil {
		return fail("refresh token", err)
	}
	return t, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
