package model

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Fixture is a two-tenant world in which every caller relation the rules
// distinguish exists, built from names so that ids are stable (UUIDv5).
type Fixture struct {
	Rows    map[string][]Row
	Callers []Caller
	Now     time.Time
	names   map[uuid.UUID]string
}

var ns = uuid.MustParse("6d1a3c1e-6a43-4f6b-9a0e-1f6ad4b3c0de")

// ID returns the id of the fixture object named name in tenant t ("t1"/"t2").
// Only the tenants' own ids differ: every other object has the same id in
// both tenants (as an external user's UUIDv5(issuer, sub) entity does), so
// nothing but layer 1 tells t1's alice from t2's.
func (f *Fixture) ID(t, name string) uuid.UUID {
	if name != "tenant" {
		t = ""
	}
	return uuid.NewSHA1(ns, []byte(t+"/"+name))
}

// Scopes every full delegation holds.
var allScopes = []string{"rooms:read", "memories:read", "memories:write", "documents:read"}

// NewFixture builds the world. In each tenant:
//
//   - users alice, bob, carol, dave, erin; agent entities ag-full, ag-docs,
//     ag-expired, ag-revoked (owned by alice), ag-dave (owned by dave), and
//     ag-spare (an agent entity without an agents row);
//   - worlds w1 (alice) and w2 (erin); rooms r1 (w1, closed, bound to
//     alice's message server s1), r2 (w2, open), r3 (w1, nobody in it);
//   - r1: alice owner, bob admin, carol member; r2: erin owner, carol
//     admin, dave member;
//   - delegations alice → ag-full (every scope), ag-docs (documents:read),
//     ag-expired (expired), ag-revoked (revoked); bob → ag-dave (revoked);
//   - message servers s1 (alice), s2 (dave); links s1–ag-full, s2–ag-dave,
//     s2–ag-docs (owners differ, as only the operator can link);
//   - memories, documents of each visibility, a chunk per document, an
//     audit entry, API keys and a refresh token.
func NewFixture(now time.Time) *Fixture {
	f := &Fixture{Rows: map[string][]Row{}, Now: now, names: map[uuid.UUID]string{}}
	for _, tn := range []string{"t1", "t2"} {
		f.tenant(tn)
	}
	t1 := f.ID("t1", "tenant")
	t2 := f.ID("t2", "tenant")
	id := func(n string) uuid.UUID { return f.ID("t1", n) }
	f.Callers = []Caller{
		{Name: "none", Relation: "no context"},
		{Name: "t1-tenant-only", Relation: "tenant, no entity", Tenant: t1},
		{Name: "t2-alice", Relation: "another tenant", Tenant: t2, Entity: f.ID("t2", "alice")},
		{Name: "alice", Relation: "world w1 owner, r1 owner, owns s1 and the agents", Tenant: t1, Entity: id("alice")},
		{Name: "bob", Relation: "r1 admin", Tenant: t1, Entity: id("bob")},
		{Name: "carol", Relation: "r1 member, r2 admin", Tenant: t1, Entity: id("carol")},
		{Name: "dave", Relation: "r2 member, not in r1, owns s2", Tenant: t1, Entity: id("dave")},
		{Name: "erin", Relation: "world w2 owner, r2 owner", Tenant: t1, Entity: id("erin")},
		{Name: "ag-full", Relation: "agent as itself", Tenant: t1, Entity: id("ag-full")},
		{Name: "ag-full-for-alice", Relation: "agent for alice, valid delegation, every scope", Tenant: t1, Entity: id("ag-full"), ActingFor: id("alice")},
		{Name: "ag-docs-for-alice", Relation: "agent for alice, documents:read only", Tenant: t1, Entity: id("ag-docs"), ActingFor: id("alice")},
		{Name: "ag-expired-for-alice", Relation: "agent for alice, expired delegation", Tenant: t1, Entity: id("ag-expired"), ActingFor: id("alice")},
		{Name: "ag-revoked-for-alice", Relation: "agent for alice, revoked delegation", Tenant: t1, Entity: id("ag-revoked"), ActingFor: id("alice")},
		{Name: "ag-dave-for-alice", Relation: "agent for alice, no delegation", Tenant: t1, Entity: id("ag-dave"), ActingFor: id("alice")},
		{Name: "bob-for-alice", Relation: "user claiming to act for alice", Tenant: t1, Entity: id("bob"), ActingFor: id("alice")},
	}
	return f
}

func (f *Fixture) add(table string, r Row) { f.Rows[table] = append(f.Rows[table], r) }

func (f *Fixture) tenant(tn string) {
	id := func(n string) uuid.UUID {
		v := f.ID(tn, n)
		if n == "tenant" {
			n = tn
		}
		f.names[v] = n
		return v
	}
	T := id("tenant")
	f.add("tenants", Row{"id": T, "name": tn})
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		f.add("entities", Row{"tenant_id": T, "id": id(u), "kind": "user", "name": u})
		f.add("users", Row{"tenant_id": T, "id": id(u), "email": u + "@" + tn + ".example"})
	}
	agents := map[string]string{"ag-full": "alice", "ag-docs": "alice", "ag-expired": "alice", "ag-revoked": "alice", "ag-dave": "dave"}
	for _, a := range []string{"ag-full", "ag-docs", "ag-expired", "ag-revoked", "ag-dave", "ag-spare"} {
		f.add("entities", Row{"tenant_id": T, "id": id(a), "kind": "agent", "name": a})
		if owner, ok := agents[a]; ok {
			f.add("agents", Row{"tenant_id": T, "id": id(a), "owner_id": id(owner), "name": a})
		}
	}
	past, future := f.Now.Add(-time.Hour), f.Now.Add(time.Hour)
	for _, d := range []struct {
		agent   string
		scopes  []string
		expires any
		revoked any
	}{
		{"ag-full", allScopes, future, nil},
		{"ag-docs", []string{"documents:read"}, nil, nil},
		{"ag-expired", allScopes, past, nil},
		{"ag-revoked", allScopes, nil, past},
		{"ag-dave", allScopes, nil, past},
	} {
		principal := "alice"
		if d.agent == "ag-dave" {
			principal = "bob" // dave owns the agent, bob granted (and revoked): dave may not revive it
		}
		f.add("delegations", Row{"tenant_id": T, "id": id("del-" + d.agent), "agent_id": id(d.agent), "principal_id": id(principal),
			"scopes": d.scopes, "expires_at": d.expires, "revoked_at": d.revoked})
	}
	f.add("worlds", Row{"tenant_id": T, "id": id("w1"), "owner_id": id("alice"), "name": "w1"})
	f.add("worlds", Row{"tenant_id": T, "id": id("w2"), "owner_id": id("erin"), "name": "w2"})
	f.add("message_servers", Row{"tenant_id": T, "id": id("s1"), "owner_id": id("alice"), "platform": "discord", "external_id": "g1"})
	f.add("message_servers", Row{"tenant_id": T, "id": id("s2"), "owner_id": id("dave"), "platform": "discord", "external_id": "g2"})
	f.add("message_server_agents", Row{"tenant_id": T, "message_server_id": id("s1"), "agent_id": id("ag-full")})
	f.add("message_server_agents", Row{"tenant_id": T, "message_server_id": id("s2"), "agent_id": id("ag-dave")})
	// Linked by the operator: server and agent of different owners, either of whom may unlink.
	f.add("message_server_agents", Row{"tenant_id": T, "message_server_id": id("s2"), "agent_id": id("ag-docs")})
	f.add("rooms", Row{"tenant_id": T, "id": id("r1"), "world_id": id("w1"), "name": "r1", "is_open": false, "message_server_id": id("s1"), "channel_id": "c1"})
	f.add("rooms", Row{"tenant_id": T, "id": id("r2"), "world_id": id("w2"), "name": "r2", "is_open": true, "message_server_id": nil, "channel_id": nil})
	f.add("rooms", Row{"tenant_id": T, "id": id("r3"), "world_id": id("w1"), "name": "r3", "is_open": false, "message_server_id": nil, "channel_id": nil})
	for _, p := range [][3]string{{"r1", "alice", "owner"}, {"r1", "bob", "admin"}, {"r1", "carol", "member"},
		{"r2", "erin", "owner"}, {"r2", "carol", "admin"}, {"r2", "dave", "member"}} {
		f.add("participants", Row{"tenant_id": T, "room_id": id(p[0]), "entity_id": id(p[1]), "role": p[2]})
	}
	for _, mm := range [][3]string{{"m1", "r1", "alice"}, {"m2", "r1", "carol"}, {"m3", "r2", "dave"}} {
		f.add("memories", Row{"tenant_id": T, "id": id(mm[0]), "room_id": id(mm[1]), "author_id": id(mm[2]), "content": mm[0]})
	}
	for _, d := range []struct{ name, owner, vis, room string }{
		{"d1", "alice", "private", ""}, {"d2", "bob", "room", "r1"}, {"d3", "carol", "tenant", ""},
		{"d4", "dave", "private", ""}, {"d5", "dave", "room", "r2"},
	} {
		var room any
		if d.room != "" {
			room = id(d.room)
		}
		f.add("documents", Row{"tenant_id": T, "id": id(d.name), "owner_id": id(d.owner), "visibility": d.vis, "room_id": room, "title": d.name})
		f.add("chunks", Row{"tenant_id": T, "id": id("c-" + d.name), "document_id": id(d.name), "ord": 0, "content": "chunk of " + d.name})
	}
	f.add("audit_log", Row{"tenant_id": T, "id": id("a1"), "actor_id": id("alice"), "action": "fixture"})
	for _, k := range []string{"alice", "bob"} {
		f.add("api_keys", Row{"tenant_id": T, "id": id("k-" + k), "entity_id": id(k), "name": "k", "secret_hash": []byte("h-" + k + tn), "scopes": []string{}})
	}
	f.add("refresh_tokens", Row{"tenant_id": T, "id": id("rt-alice"), "entity_id": id("alice"), "family_id": id("fam-alice"), "secret_hash": []byte("h"), "expires_at": f.Now.Add(time.Hour)})
}

// Name returns the fixture name of id, or its text.
func (f *Fixture) Name(v any) string {
	switch x := v.(type) {
	case uuid.UUID:
		if n, ok := f.names[x]; ok {
			return n
		}
		return x.String()
	case nil:
		return "null"
	case time.Time:
		return "now"
	}
	return fmt.Sprint(v)
}

// Label names a row for reports: "m1", or "r1/alice" for a membership.
func (f *Fixture) Label(r Row) string {
	switch {
	case r["room_id"] != nil && r["entity_id"] != nil && r["id"] == nil:
		return f.Name(r["room_id"]) + "/" + f.Name(r["entity_id"])
	case r["message_server_id"] != nil && r["agent_id"] != nil && r["id"] == nil:
		return f.Name(r["message_server_id"]) + "/" + f.Name(r["agent_id"])
	}
	return f.Name(r["id"])
}
