package rls_test

import (
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/rls"
)

var cfg = rls.Config{
	Schema: "app", Runtime: "app_rt", Maintenance: "app_maint", Owner: "app_owner", Definer: "app_definer",
	TenantSetting: "app.tenant_id", EntitySetting: "app.entity_id", ActingForSetting: "app.acting_for",
}

func TestEveryKindIsLayeredAndForced(t *testing.T) {
	tables := []rls.Table{
		{Name: "notes", Kind: rls.Tenant},
		{Name: "people", Kind: rls.Entities, Entity: "id"},
		{Name: "prefs", Kind: rls.Private, Entity: "owner_id"},
		{Name: "bots", Kind: rls.Owned, Entity: "owner_id"},
		{Name: "messages", Kind: rls.Room, Entity: "author_id", RoomColumn: "room_id"},
		{Name: "files", Kind: rls.Visibility, Entity: "owner_id", RoomColumn: "room_id"},
		{Name: "parts", Kind: rls.Inherit, Parent: "files", ParentKey: "file_id", ParentOwner: "owner_id"},
		{Name: "worlds", Kind: rls.Worlds},
		{Name: "rooms", Kind: rls.Rooms},
		{Name: "participants", Kind: rls.Participants},
		{Name: "delegations", Kind: rls.Delegations},
	}
	stmts, err := rls.Generate(cfg, tables)
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(stmts, ";\n")
	for _, tb := range tables {
		for _, want := range []string{"ALTER TABLE app." + tb.Name + " ENABLE ROW LEVEL SECURITY", "ALTER TABLE app." + tb.Name + " FORCE ROW LEVEL SECURITY"} {
			if !strings.Contains(sql, want) {
				t.Errorf("%s: missing %q", tb.Name, want)
			}
		}
		ps, err := rls.Policies(cfg, tb)
		if err != nil {
			t.Fatal(err)
		}
		if ps[0].Name != rls.TenantPolicy || !ps[0].Permissive || ps[0].Command != "ALL" ||
			!strings.Contains(ps[0].Using, "(SELECT app.current_tenant())") || ps[0].Using != ps[0].Check {
			t.Errorf("%s: layer 1 is %+v", tb.Name, ps[0])
		}
		for _, p := range ps[1:] {
			if p.Permissive {
				t.Errorf("%s: layer-2 policy %s is permissive (permissive policies are OR-ed: it would widen access)", tb.Name, p.Name)
			}
			if (p.Command == "INSERT" || p.Command == "UPDATE") && p.Check == "" {
				t.Errorf("%s: %s has no WITH CHECK", tb.Name, p.Name)
			}
			if strings.Contains(p.Using+p.Check, "IN (SELECT") {
				t.Errorf("%s: %s uses IN (SELECT ...); membership must be = ANY(array)", tb.Name, p.Name)
			}
		}
		if tb.Kind != rls.Tenant && len(ps) < 2 {
			t.Errorf("%s (%s): no layer-2 policy", tb.Name, tb.Kind)
		}
	}
	// The runtime role is never granted more than DML.
	for _, s := range stmts {
		if strings.HasPrefix(s, "GRANT") && strings.Contains(s, "app_rt") && !strings.Contains(s, "EXECUTE") {
			for _, bad := range []string{"TRUNCATE", "TRIGGER", "REFERENCES", "ALL"} {
				if strings.Contains(strings.SplitN(s, " ON ", 2)[0], bad) {
					t.Errorf("grant gives the runtime role %s: %s", bad, s)
				}
			}
		}
	}
	// Definer helpers pin their search_path and are owned by the definer
	// role; invoker helpers qualify what they call instead.
	for _, s := range stmts {
		if strings.Contains(s, "SECURITY DEFINER") && !strings.Contains(s, "SET search_path = pg_catalog, pg_temp") {
			t.Errorf("definer function without pinned search_path: %s", s)
		}
		if strings.HasPrefix(s, "CREATE OR REPLACE FUNCTION") && !strings.Contains(s, "SECURITY DEFINER") &&
			(strings.Contains(s, " now()") || strings.Contains(s, " current_setting(") || strings.Contains(s, " uuid :=")) {
			t.Errorf("invoker function with an unqualified name: %s", s)
		}
		if strings.Contains(s, "SECURITY DEFINER") {
			name := strings.Fields(strings.TrimPrefix(s, "CREATE OR REPLACE FUNCTION "))[0]
			name = name[:strings.Index(name, "(")]
			if !strings.Contains(sql, "ALTER FUNCTION "+name+"(") {
				t.Errorf("definer function %s is not handed to the definer role", name)
			}
		}
	}
}

func TestStrictKindsNeedAnEntity(t *testing.T) {
	// Strict reads go through the member helpers, which are empty without an entity.
	ps, _ := rls.Policies(cfg, rls.Table{Name: "messages", Kind: rls.Room, Entity: "author_id", RoomColumn: "room_id"})
	for _, p := range ps {
		if p.Command == "SELECT" && !strings.Contains(p.Using, "messages.room_id = ANY((SELECT app.member_rooms('messages:read'))") {
			t.Errorf("room-scoped SELECT does not check membership: %s", p.Using)
		}
	}
}

func TestGenerateRejectsBadDeclarations(t *testing.T) {
	bad := []rls.Table{
		{Name: "x; DROP TABLE y", Kind: rls.Tenant},
		{Name: "ok", Kind: rls.Owned},                                     // no entity column
		{Name: "ok", Kind: rls.Room, Entity: "author_id"},                 // no room column
		{Name: "ok", Kind: rls.Inherit, Parent: "p"},                      // no parent key/owner
		{Name: "ok", Kind: rls.Tenant, Grants: []rls.Command{"TRUNCATE"}}, // not DML
		{Name: "ok", Kind: rls.Kind(99)},
		{Name: "Ok", Kind: rls.Tenant},
		{Name: "ok", Kind: rls.Member, Entity: "author_id", RoomColumn: "room_id"}, // no membership relation
		{Name: "ok", Kind: rls.Member, Entity: "author_id", RoomColumn: "room_id", // itself as membership: recursion
			Membership: &rls.Membership{Table: "ok", Room: "room_id", Entity: "entity_id"}},
		{Name: "ok", Kind: rls.Member, Entity: "author_id", RoomColumn: "room_id",
			Membership: &rls.Membership{Table: "members", Room: "room_id", Entity: "e; --"}},
		{Name: "ok", Kind: rls.Member, Entity: "author_id", RoomColumn: "room_id",
			Membership: &rls.Membership{Schema: "Bad", Table: "members", Room: "room_id", Entity: "entity_id"}},
	}
	for _, tb := range bad {
		if _, err := rls.Generate(cfg, []rls.Table{tb}); err == nil {
			t.Errorf("Generate accepted %+v", tb)
		}
	}
	badCfg := cfg
	badCfg.TenantSetting = "tenant'); DROP"
	if _, err := rls.Generate(badCfg, nil); err == nil {
		t.Error("Generate accepted a malformed setting name")
	}
	badCfg = cfg
	badCfg.Runtime = "rt; --"
	if _, err := rls.ContextFunctions(badCfg); err == nil {
		t.Error("ContextFunctions accepted a malformed role name")
	}
}

// TestTenantTypeIsLayerOneOnly: a tenant that is not a uuid types
// current_tenant() (and nothing else) and is taken for layer 1 alone:
// every other kind, and the membership helpers, compare it with bulkhead's
// uuid columns, so they are refused; an unknown type is refused everywhere.
func TestTenantTypeIsLayerOneOnly(t *testing.T) {
	for _, typ := range []string{"text", "bigint", "integer"} {
		c := cfg
		c.TenantType = typ
		fns, err := rls.ContextFunctions(c)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		joined := strings.Join(fns, "\n")
		if !strings.Contains(joined, "current_tenant() RETURNS "+typ+"\n") || strings.Count(joined, "() RETURNS uuid\n") != 2 {
			t.Errorf("%s: context functions:\n%s", typ, joined)
		}
		if _, err := rls.Policies(c, rls.Table{Name: "notes", Kind: rls.Tenant}); err != nil {
			t.Errorf("%s: layer 1 refused: %v", typ, err)
		}
		if _, err := rls.Policies(c, rls.Table{Name: "bots", Kind: rls.Owned, Entity: "owner_id"}); err == nil {
			t.Errorf("%s: Policies accepted an owned table", typ)
		}
		if _, err := rls.Generate(c, []rls.Table{{Name: "notes", Kind: rls.Tenant}}); err == nil {
			t.Errorf("%s: Generate accepted it (its helpers compare uuid tenants)", typ)
		}
	}
	def, err := rls.ContextFunctions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(strings.Join(def, "\n"), "() RETURNS uuid\n") != 3 {
		t.Errorf("default context functions are not all uuid:\n%s", strings.Join(def, "\n"))
	}
	for _, typ := range []string{"numeric", "uuid; DROP TABLE x", "UUID"} {
		c := cfg
		c.TenantType = typ
		if _, err := rls.ContextFunctions(c); err == nil {
			t.Errorf("ContextFunctions accepted tenant type %q", typ)
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	tables := []rls.Table{{Name: "bots", Kind: rls.Owned, Entity: "owner_id", Indexes: []string{"name"}}}
	a, _ := rls.Generate(cfg, tables)
	b, _ := rls.Generate(cfg, tables)
	if strings.Join(a, ";") != strings.Join(b, ";") {
		t.Error("two runs of Generate differ")
	}
	rm, err := rls.Remove(cfg, tables)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(rm, ";")
	for _, want := range []string{"DROP POLICY IF EXISTS bulkhead_tenant ON app.bots", "NO FORCE ROW LEVEL SECURITY", "DISABLE ROW LEVEL SECURITY"} {
		if !strings.Contains(joined, want) {
			t.Errorf("Remove lacks %q", want)
		}
	}
}
