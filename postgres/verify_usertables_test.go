package postgres_test

import (
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/bulkhead-dev/bulkhead/rls/model"
)

// A library user's own tables, one per generic rls.Kind, protected by the
// generator exactly as bulkhead's are.
var userTables = []rls.Table{
	{Name: "lib_notes", Kind: rls.Tenant},
	{Name: "lib_bookmarks", Kind: rls.Owned, Entity: "owner_id"},
	{Name: "lib_secrets", Kind: rls.Private, Entity: "owner_id"},
	{Name: "lib_chat", Kind: rls.Room, Entity: "author_id", RoomColumn: "room_id"},
	{Name: "lib_files", Kind: rls.Visibility, Entity: "owner_id", RoomColumn: "room_id"},
	{Name: "lib_parts", Kind: rls.Inherit, Parent: "lib_files", ParentKey: "file_id", ParentOwner: "owner_id"},
	// Room-scoped over a declared membership relation: bulkhead's own
	// participants, read through their own policies.
	{Name: "lib_threads", Kind: rls.Member, Entity: "author_id", RoomColumn: "room_id",
		Membership: &rls.Membership{Table: "participants", Room: "room_id", Entity: "entity_id"}},
}

var userDDL = []string{
	`CREATE TABLE bulkhead.lib_notes (tenant_id uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id), id uuid NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, id))`,
	`CREATE TABLE bulkhead.lib_bookmarks (tenant_id uuid NOT NULL REFERENCES bulkhead.tenants (id), id uuid NOT NULL, owner_id uuid NOT NULL, url text NOT NULL,
		PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id))`,
	`CREATE TABLE bulkhead.lib_secrets (tenant_id uuid NOT NULL REFERENCES bulkhead.tenants (id), id uuid NOT NULL, owner_id uuid NOT NULL, value text NOT NULL,
		PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id))`,
	`CREATE TABLE bulkhead.lib_chat (tenant_id uuid NOT NULL REFERENCES bulkhead.tenants (id), id uuid NOT NULL, room_id uuid NOT NULL, author_id uuid NOT NULL, body text NOT NULL,
		PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, room_id) REFERENCES bulkhead.rooms (tenant_id, id), FOREIGN KEY (tenant_id, author_id) REFERENCES bulkhead.entities (tenant_id, id))`,
	`CREATE TABLE bulkhead.lib_files (tenant_id uuid NOT NULL REFERENCES bulkhead.tenants (id), id uuid NOT NULL, owner_id uuid NOT NULL, room_id uuid,
		visibility text NOT NULL CHECK (visibility IN ('private', 'room', 'tenant')), name text NOT NULL,
		PRIMARY KEY (tenant_id, id), CHECK ((visibility = 'room') = (room_id IS NOT NULL)),
		FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id), FOREIGN KEY (tenant_id, room_id) REFERENCES bulkhead.rooms (tenant_id, id))`,
	`CREATE TABLE bulkhead.lib_parts (tenant_id uuid NOT NULL REFERENCES bulkhead.tenants (id), id uuid NOT NULL, file_id uuid NOT NULL, body text NOT NULL,
		PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, file_id) REFERENCES bulkhead.lib_files (tenant_id, id) ON DELETE CASCADE)`,
	`CREATE TABLE bulkhead.lib_threads (tenant_id uuid NOT NULL REFERENCES bulkhead.tenants (id), id uuid NOT NULL, room_id uuid, author_id uuid NOT NULL, body text NOT NULL,
		PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, room_id) REFERENCES bulkhead.rooms (tenant_id, id), FOREIGN KEY (tenant_id, author_id) REFERENCES bulkhead.entities (tenant_id, id))`,
}

func init() {
	model.Specs["lib_notes"] = model.Spec{Inserts: []model.Row{{"body": "x"}}, Updates: []model.Row{{"body": "x"}}}
	model.Specs["lib_bookmarks"] = model.Spec{Inserts: []model.Row{{"owner_id": "@alice"}, {"owner_id": "@bob"}}, Updates: []model.Row{{"url": "x"}, {"owner_id": "@bob"}, {"owner_id": "@alice"}}}
	model.Specs["lib_secrets"] = model.Spec{Inserts: []model.Row{{"owner_id": "@alice"}, {"owner_id": "@bob"}}, Updates: []model.Row{{"value": "x"}, {"owner_id": "@bob"}, {"owner_id": "@alice"}}}
	model.Specs["lib_chat"] = model.Spec{
		Inserts: []model.Row{{"room_id": "@r1", "author_id": "@alice"}, {"room_id": "@r1", "author_id": "@dave"}, {"room_id": "@r2", "author_id": "@alice"}, {"room_id": "@r2", "author_id": "@dave"}},
		Updates: []model.Row{{"body": "x"}, {"room_id": "@r2"}, {"room_id": "@r1"}, {"author_id": "@alice"}, {"author_id": "@carol"}},
	}
	model.Specs["lib_files"] = model.Spec{
		Inserts: []model.Row{{"owner_id": "@alice", "visibility": "private", "room_id": nil}, {"owner_id": "@alice", "visibility": "room", "room_id": "@r2"},
			{"owner_id": "@alice", "visibility": "room", "room_id": "@r1"}, {"owner_id": "@bob", "visibility": "tenant", "room_id": nil}},
		Updates: []model.Row{{"name": "x"}, {"visibility": "tenant", "room_id": nil}, {"visibility": "room", "room_id": "@r2"}, {"owner_id": "@dave"}},
	}
	model.Specs["lib_threads"] = model.Spec{
		Inserts: []model.Row{{"room_id": "@r1", "author_id": "@alice"}, {"room_id": "@r1", "author_id": "@dave"}, {"room_id": "@r2", "author_id": "@dave"},
			{"room_id": "@r3", "author_id": "@alice"}, {"room_id": nil, "author_id": "@alice"}},
		Updates: []model.Row{{"body": "x"}, {"room_id": "@r2"}, {"room_id": "@r1"}, {"room_id": nil}, {"author_id": "@alice"}, {"author_id": "@carol"}},
	}
	model.Specs["lib_parts"] = model.Spec{Inserts: []model.Row{{"file_id": "@f1"}, {"file_id": "@f2"}, {"file_id": "@f3"}}, Updates: []model.Row{{"body": "x"}, {"file_id": "@f1"}, {"file_id": "@f3"}}}
}

// TestUserTablesMatchTheModel runs the verifier on a library user's own
// tables, one per rls.Kind a user may declare. Not parallel: applying
// generator output makes the owner a member of the definer role for a
// moment, which other tests' self-checks would see.
func TestUserTablesMatchTheModel(t *testing.T) {
	d := testdb.New(t)
	stmts, err := rls.Generate(postgres.RLSConfig, userTables)
	if err != nil {
		t.Fatal(err)
	}
	applyAsOwner(t, d.OwnerDSN(), append(append([]string{}, userDDL...), stmts...))
	fx := model.NewFixture(nowForFixture())
	for _, tn := range []string{"t1", "t2"} {
		id := func(n string) any { return fx.ID(tn, n) }
		T := id("tenant")
		add := func(table string, r model.Row) { r["tenant_id"] = T; fx.Rows[table] = append(fx.Rows[table], r) }
		add("lib_notes", model.Row{"id": id("n1"), "body": "n1"})
		add("lib_bookmarks", model.Row{"id": id("b1"), "owner_id": id("alice"), "url": "u"})
		add("lib_bookmarks", model.Row{"id": id("b2"), "owner_id": id("dave"), "url": "u"})
		add("lib_secrets", model.Row{"id": id("s-alice"), "owner_id": id("alice"), "value": "v"})
		add("lib_secrets", model.Row{"id": id("s-dave"), "owner_id": id("dave"), "value": "v"})
		add("lib_chat", model.Row{"id": id("ch1"), "room_id": id("r1"), "author_id": id("alice"), "body": "b"})
		add("lib_chat", model.Row{"id": id("ch2"), "room_id": id("r2"), "author_id": id("dave"), "body": "b"})
		add("lib_files", model.Row{"id": id("f1"), "owner_id": id("alice"), "visibility": "private", "room_id": nil, "name": "f1"})
		add("lib_files", model.Row{"id": id("f2"), "owner_id": id("bob"), "visibility": "room", "room_id": id("r1"), "name": "f2"})
		add("lib_files", model.Row{"id": id("f3"), "owner_id": id("dave"), "visibility": "tenant", "room_id": nil, "name": "f3"})
		add("lib_threads", model.Row{"id": id("th1"), "room_id": id("r1"), "author_id": id("alice"), "body": "b"})
		add("lib_threads", model.Row{"id": id("th2"), "room_id": id("r2"), "author_id": id("dave"), "body": "b"})
		add("lib_threads", model.Row{"id": id("th3"), "room_id": id("r3"), "author_id": id("alice"), "body": "b"})
		add("lib_threads", model.Row{"id": id("th4"), "room_id": nil, "author_id": id("alice"), "body": "b"})
		for _, f := range []string{"f1", "f2", "f3"} {
			add("lib_parts", model.Row{"id": id("p-" + f), "file_id": id(f), "body": "p"})
		}
	}
	all := append(append([]rls.Table{}, postgres.Tables...), userTables...)
	v := newVerifierWith(t, d, all, fx)
	res := v.run(t, userTables, false)
	t.Logf("user tables: %d statements (%d tables × %d callers), %d disagreements, %d inconclusive", res.statements, len(userTables), len(fx.Callers), len(res.disagreements), res.inconclusive)
	for _, dis := range res.disagreements {
		t.Error(dis)
	}
}
