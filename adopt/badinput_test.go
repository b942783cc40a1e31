package adopt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// untouched fails unless the database is as the fixture made it: no state
// schema, no catalog change, the same data.
func untouched(t *testing.T, op *pgx.Conn, d *db, p *Plan, before map[string]string) {
	t.Helper()
	if n := count(t, op, "SELECT count(*) FROM pg_namespace WHERE nspname = 'bulkhead_adopt'"); n != 0 {
		t.Errorf("the state schema was created")
	}
	assertOriginalCatalog(t, op, d)
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Errorf("data changed:\n%s", s)
	}
}

// TestBadInput: each bad input gives a clear error of the documented
// kind and leaves the database untouched.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	d := newDB(t)
	op := mustConnect(t, d.adminDSN())
	base := reviewedPlan(t, op, d)
	before := checksums(t, op, base)
	edit := func(f func(p *Plan)) *Plan {
		p := reviewedPlan(t, op, d)
		f(p)
		return p
	}
	set := func(p *Plan, name string, f func(tb *Table)) {
		for i := range p.Tables {
			if p.Tables[i].Name == name {
				f(&p.Tables[i])
			}
		}
	}
	cases := []struct {
		name string
		plan *Plan
		want error
		msg  string
	}{
		{"missing table", edit(func(p *Plan) {
			p.Tables = append(p.Tables, Table{Name: "ghosts", Kind: KindTenant, TenantColumn: "server_id"})
		}), ErrDatabase, "ghosts does not exist"},
		{"missing column", edit(func(p *Plan) { set(p, "rooms", func(tb *Table) { tb.TenantColumn = "tenant_id" }) }), ErrDatabase, "rooms has no column tenant_id"},
		{"no primary key", edit(func(p *Plan) {
			set(p, "logs", func(tb *Table) { tb.Kind, tb.TenantColumn = KindTenant, "server_id" })
		}), ErrDatabase, "logs has no primary key"},
		{"rule matching no row", edit(func(p *Plan) {
			set(p, "memories", func(tb *Table) {
				tb.Backfill = append(tb.Backfill, Rule{Name: "old_bots", Constant: server(1), Where: "t.type = 'bot'"})
			})
		}), ErrRule, "old_bots (constant " + server(1) + ") matches no row"},
		{"rule giving two tenants", edit(func(p *Plan) {
			set(p, "memories", func(tb *Table) {
				tb.Backfill = append(tb.Backfill, Rule{Name: "all_to_one", Constant: server(1)})
			})
		}), ErrRule, "two different tenants"},
		{"parent column missing", edit(func(p *Plan) {
			set(p, "participants", func(tb *Table) { tb.Backfill[0].Parent.Column = "chat_id" })
		}), ErrDatabase, "no column chat_id"},
		{"owner column missing", edit(func(p *Plan) {
			p.EntitySetting = "app.current_entity_id"
			set(p, "memories", func(tb *Table) { tb.Kind, tb.OwnerColumn = KindOwned, "author_id" })
		}), ErrDatabase, "memories has no column author_id (its owner_column)"},
		{"room column missing", edit(func(p *Plan) {
			roomPlan(p)
			set(p, "memories", func(tb *Table) { tb.RoomColumn = "chat_id" })
		}), ErrDatabase, "memories has no column chat_id (its room_column)"},
		{"room columns of two types", edit(func(p *Plan) {
			roomPlan(p)
			set(p, "memories", func(tb *Table) { tb.RoomColumn = "content" })
		}), ErrDatabase, "room_column content is text but participants.room_id is uuid"},
		{"membership entity not a uuid", edit(func(p *Plan) {
			roomPlan(p)
			set(p, "memories", func(tb *Table) { tb.Membership = &Membership{Table: "rooms", RoomColumn: "id", EntityColumn: "name"} })
		}), ErrDatabase, "membership entity_column rooms.name is text"},
		{"owner column not a uuid", edit(func(p *Plan) {
			p.EntitySetting = "app.current_entity_id"
			set(p, "memories", func(tb *Table) { tb.Kind, tb.OwnerColumn = KindPrivate, "content" })
		}), ErrDatabase, "owner_column content is text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Backfill(ctx, op, c.plan, nil, Options{})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v containing %q", err, c.want, c.msg)
			}
			untouched(t, op, d, base, before)
		})
	}
	t.Run("entity kinds without what they need", func(t *testing.T) {
		for _, c := range []struct {
			f   func(p *Plan)
			msg string
		}{
			{func(p *Plan) {
				p.EntitySetting = "app.current_entity_id"
				set(p, "memories", func(tb *Table) { tb.Kind = KindOwned })
			}, "kind owned needs owner_column"},
			{func(p *Plan) {
				set(p, "memories", func(tb *Table) { tb.Kind, tb.OwnerColumn = KindPrivate, "entity_id" })
			}, "kind private needs the plan's entity_setting"},
			{func(p *Plan) {
				p.EntitySetting, p.TenantType = "app.current_entity_id", "text"
				set(p, "memories", func(tb *Table) { tb.Kind, tb.OwnerColumn = KindOwned, "entity_id" })
			}, "kind owned needs tenant_type uuid"},
			{func(p *Plan) { set(p, "rooms", func(tb *Table) { tb.OwnerColumn = "world_id" }) }, "owner_column is for kinds owned, private and room"},
			{func(p *Plan) { p.EntitySetting = p.TenantSetting }, "differ from tenant_setting"},
			{func(p *Plan) {
				set(p, "rooms", func(tb *Table) { tb.OwnerBackfill = []Rule{{Name: "x", Constant: md5UUID("e1.1")}} })
			}, "rooms: owner_backfill is for kinds owned, private and room"},
			{func(p *Plan) {
				roomPlan(p)
				set(p, "memories", func(tb *Table) { tb.Membership = nil })
			}, "kind room needs membership"},
			{func(p *Plan) {
				roomPlan(p)
				set(p, "memories", func(tb *Table) { tb.RoomColumn = "" })
			}, "kind room needs room_column"},
			{func(p *Plan) {
				roomPlan(p)
				set(p, "memories", func(tb *Table) { tb.Membership.Table = "members" })
			}, "membership table members is not in the plan"},
			{func(p *Plan) {
				roomPlan(p)
				set(p, "memories", func(tb *Table) { tb.Membership.Table = "memories" })
			}, "its membership table can't be itself"},
			{func(p *Plan) {
				roomPlan(p)
				set(p, "participants", func(tb *Table) { tb.Kind, tb.OwnerColumn = KindPrivate, "entity_id" })
			}, "membership table participants must be isolated as tenant or owned"},
			{func(p *Plan) {
				roomPlan(p)
				set(p, "memories", func(tb *Table) { tb.Membership.EntityColumn = "entity_id; --" })
			}, "membership entity_column"},
			{func(p *Plan) { set(p, "rooms", func(tb *Table) { tb.RoomColumn = "id" }) }, "room_column and membership are for kind room"},
			{func(p *Plan) {
				setKind(p, "memories", KindOwned, "entity_id")
				set(p, "memories", func(tb *Table) {
					tb.OwnerBackfill = []Rule{{Name: "up", Parent: &ParentRule{Column: "room_id", Table: "rooms", TenantColumn: "server_id"}}}
				})
			}, "an owner rule copies the parent's owner_column, not its tenant_column"},
			{func(p *Plan) {
				set(p, "rooms", func(tb *Table) {
					tb.Backfill = []Rule{{Name: "up", Parent: &ParentRule{Column: "world_id", Table: "worlds", OwnerColumn: "agent_id"}}}
				})
			}, "a tenant rule copies the parent's tenant_column, not its owner_column"},
			{func(p *Plan) {
				setKind(p, "memories", KindOwned, "entity_id")
				set(p, "memories", func(tb *Table) { tb.OwnerBackfill = []Rule{{Name: "one", Constant: "42"}} })
			}, `rule one: constant "42" is not a uuid`},
			{func(p *Plan) {
				setKind(p, "memories", KindOwned, "entity_id")
				set(p, "memories", func(tb *Table) { tb.OwnerBackfill = []Rule{{Name: "from_room", Constant: md5UUID("e1.1")}} })
			}, "rule name from_room used twice"},
		} {
			if err := edit(c.f).Validate(); !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v, want %q", err, c.msg)
			}
		}
	})
	t.Run("undecided plan", func(t *testing.T) {
		p := edit(func(p *Plan) { set(p, "servers", func(tb *Table) { tb.Decide = true }) })
		if err := p.Validate(); !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), "servers is marked decide") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("phase out of order", func(t *testing.T) {
		if err := Shadow(ctx, op, base, nil, Options{}); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "run adopt backfill first") {
			t.Fatalf("shadow before backfill: %v", err)
		}
		if err := Enforce(ctx, op, base, []string{"rooms"}, EnforceOptions{}); !errors.Is(err, ErrPhase) {
			t.Fatalf("enforce before shadow: %v", err)
		}
		if _, err := Rollback(ctx, op, base, nil, "", Options{}); !errors.Is(err, ErrPhase) {
			t.Fatalf("rollback of the original: %v", err)
		}
		untouched(t, op, d, base, before)
	})
	t.Run("insufficient privileges", func(t *testing.T) {
		admin := mustConnect(t, cluster.SuperuserDSN("postgres"))
		admin.Exec(ctx, "CREATE ROLE adopt_intruder LOGIN PASSWORD 'pw'")
		t.Cleanup(func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS adopt_intruder") })
		conn := mustConnect(t, cluster.DSN("adopt_intruder", "pw", d.name))
		_, err := Backfill(ctx, conn, base, nil, Options{})
		if !errors.Is(err, ErrDatabase) || !strings.Contains(err.Error(), "can't alter it") {
			t.Fatalf("got %v", err)
		}
		untouched(t, op, d, base, before)
	})
}

// TestBackfillResume: a backfill killed between batches resumes where it
// stopped and ends exactly like an uninterrupted one; status says where
// each table is all along.
func TestBackfillResume(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	nulls := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL")
	kctx, o := killedAfter(3, 500, func(table, rule string) bool { return table == "memories" })
	_, err := Backfill(kctx, op, p, []string{"memories"}, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("killed backfill: %v", err)
	}
	if ph := phases(t, op, p)["memories"]; ph != PhaseOriginal {
		t.Fatalf("killed backfill: memories is %s", ph)
	}
	partial := count(t, op, "SELECT rows FROM bulkhead_adopt.progress WHERE rel = 'public.memories'")
	if partial == 0 || partial >= nulls {
		t.Fatalf("after the kill %d of %d rows filled", partial, nulls)
	}
	o.Progress = nil
	res, err := Backfill(ctx, op, p, []string{"memories"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Phase != PhaseBackfilled || res[0].Rules[0].Rows != nulls {
		t.Fatalf("resumed: %+v, want %d rows", res[0], nulls)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.backfilled WHERE rel = 'public.memories'"); n != nulls {
		t.Fatalf("recorded %d filled keys, want %d", n, nulls)
	}
}

// TestBackfillUncovered: rows no rule covers are counted and listed, not
// guessed; the table stays original (status says why) and shadow refuses it.
// Rollback restores it exactly, also from state with no recorded values.
func TestBackfillUncovered(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	for i := range p.Tables {
		if p.Tables[i].Name == "memories" {
			p.Tables[i].Backfill[0].Where = "t.content <> 'hello 0'"
		}
	}
	before := checksums(t, op, p)
	want := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL AND content = 'hello 0'")
	res, err := Backfill(ctx, op, p, []string{"memories"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Uncovered != want || want == 0 || len(res[0].UncoveredKeys) != 10 || res[0].Phase != PhaseOriginal {
		t.Fatalf("uncovered %d (want %d), keys %v, phase %s", res[0].Uncovered, want, res[0].UncoveredKeys, res[0].Phase)
	}
	st, err := Status(ctx, op, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Table == "memories" && (s.Phase != PhaseOriginal || !strings.Contains(s.Note, "rows no rule covers")) {
			t.Fatalf("status %+v", s)
		}
	}
	if err := Shadow(ctx, op, p, []string{"memories"}, Options{}); !errors.Is(err, ErrPhase) {
		t.Fatalf("shadow of an incompletely backfilled table: %v", err)
	}
	if n := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL"); n != want {
		t.Fatalf("%d rows without a tenant, want the %d uncovered", n, want)
	}
	// Rolling the partial backfill back restores the original exactly, from
	// state as a version that recorded no values left it, too.
	if _, err := op.Exec(ctx, "ALTER TABLE bulkhead_adopt.backfilled DROP COLUMN val"); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, Options{}); err != nil {
		t.Fatal(err)
	}
	assertOriginalCatalog(t, op, d)
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Fatalf("after rollback:\n%s", s)
	}
}

// TestBackfillRerunLeavesFinishedRules: once a table is backfilled, a
// run of backfill over it doesn't judge its finished rules again: a rule
// that can no longer run (here it reads a table since dropped) neither
// stops the run nor changes a row; a table still original is judged in
// full, and the same rule stops its run before anything is written.
func TestBackfillRerunLeavesFinishedRules(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	if _, err := Backfill(ctx, op, p, []string{"memories"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "CREATE TABLE gone (id uuid)"); err != nil {
		t.Fatal(err)
	}
	broken := func(tb *Table) {
		tb.Backfill = []Rule{{Name: "from_gone", Expression: "(SELECT g.id FROM gone g LIMIT 1)"}}
	}
	q := planWith(t, planWith(t, p, "memories", broken), "participants", broken)
	if _, err := op.Exec(ctx, "DROP TABLE gone"); err != nil {
		t.Fatal(err)
	}
	before := checksums(t, op, p)
	res, err := Backfill(ctx, op, q, []string{"memories"}, Options{})
	if err != nil || len(res) != 1 || res[0].Phase != PhaseBackfilled || len(res[0].Rules) != 0 {
		t.Fatalf("re-run over the backfilled table: %+v, %v", res, err)
	}
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Errorf("the re-run changed rows:\n%s", s)
	}
	// participants is still original: its rule is judged, and refused.
	if _, err := Backfill(ctx, op, q, nil, Options{}); !errors.Is(err, ErrRule) || !strings.Contains(err.Error(), "participants") {
		t.Fatalf("a run with the broken rule on an original table: %v", err)
	}
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Errorf("the refused run changed rows:\n%s", s)
	}
	if ph := phases(t, op, p)["participants"]; ph != PhaseOriginal {
		t.Errorf("participants is %s", ph)
	}
}

// TestTableHierarchiesRefused: row-level security applies per table, so a
// query naming a partition (or an inheritance child) bypasses the
// policies of its parent (review finding: a forced parent leaked another
// tenant's rows through its partition). Inspect leaves such tables for the
// operator to decide, with the reason, and a plan that isolates one is
// refused before anything is written.
func TestTableHierarchiesRefused(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	app := mustConnect(t, d.appDSN())
	if _, err := app.Exec(ctx, fmt.Sprintf(`CREATE TABLE pm (server_id uuid, id int, PRIMARY KEY (server_id, id)) PARTITION BY LIST (server_id);
CREATE TABLE pm_1 PARTITION OF pm FOR VALUES IN ('%s');
CREATE TABLE base (server_id uuid, id int PRIMARY KEY);
CREATE TABLE child (PRIMARY KEY (id)) INHERITS (base)`, server(1))); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"pm": "is partitioned", "base": "has inheritance children", "child": "inherits from another table"}
	ip, err := Inspect(ctx, op, InspectOptions{RuntimeRole: d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	for name, what := range want {
		tb, ok := ip.Table(name)
		if !ok || !tb.Decide || !strings.Contains(strings.Join(tb.Notes, "; "), what) {
			t.Errorf("inspect %s: %+v, want it left to decide, noting it %s", name, tb, what)
		}
	}
	if _, ok := ip.Table("pm_1"); ok {
		t.Errorf("inspect proposed the partition pm_1")
	}
	want["pm_1"] = "is a partition"
	before := checksums(t, op, p)
	for name, what := range want {
		q := planWith(t, p, "", nil, Table{Name: name, Kind: KindTenant, TenantColumn: "server_id"})
		if _, err := Backfill(ctx, op, q, nil, Options{}); !errors.Is(err, ErrDatabase) || !strings.Contains(err.Error(), "table "+name+" "+what) {
			t.Errorf("backfill with %s: %v, want ErrDatabase saying it %s", name, err, what)
		}
		if err := Shadow(ctx, op, q, []string{name}, Options{}); !errors.Is(err, ErrDatabase) || !strings.Contains(err.Error(), what) {
			t.Errorf("shadow of %s: %v, want ErrDatabase saying it %s", name, err, what)
		}
	}
	if n := count(t, op, "SELECT count(*) FROM pg_namespace WHERE nspname = 'bulkhead_adopt'"); n != 0 {
		t.Errorf("the state schema was created")
	}
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Errorf("data changed:\n%s", s)
	}
}

// TestRollbackKilledMidway: a rollback to original killed while it sets
// tenants back to NULL leaves the table original with a note saying so
// (before, it still said backfilled, with NULL tenants and no NOT NULL,
// and shadow took it: review finding), so shadow refuses it. While one
// run works on a table no other backfill or rollback may; a backfill run
// again fills it as the first did, and a rollback run again restores the
// original exactly.
func TestRollbackKilledMidway(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	before := checksums(t, op, p)
	orig := loadFullRows(t, op)
	mem := []string{"memories"}
	if _, err := Backfill(ctx, op, p, mem, Options{}); err != nil {
		t.Fatal(err)
	}
	filled := loadFullRows(t, op)
	kctx, o := killedAfter(2, 250, func(table, rule string) bool { return rule == "restore server_id" })
	if _, err := Rollback(kctx, op, p, mem, PhaseOriginal, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed rollback: %v", err)
	}
	op = mustConnect(t, d.adminDSN()) // the killed run's session may be gone
	st, err := Status(ctx, op, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Table == "memories" && (s.Phase != PhaseOriginal || !strings.HasPrefix(s.Note, "rollback to original in progress")) {
			t.Errorf("after the kill: %+v, want original with a note saying the rollback is in progress", s)
		}
	}
	if n := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL"); n != 500 {
		t.Errorf("after two batches of 250, %d tenants are NULL again", n)
	}
	if err := Shadow(ctx, op, p, mem, Options{}); !errors.Is(err, ErrPhase) {
		t.Errorf("shadow of a table half rolled back: %v, want ErrPhase", err)
	}

	// Another session holds the table's run lock: backfill and rollback wait.
	other := mustConnect(t, d.adminDSN())
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended('bulkhead_adopt run public.memories', 0))"); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, op, p, mem, Options{}); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "another adopt run") {
		t.Errorf("backfill beside another run: %v", err)
	}
	if _, err := Rollback(ctx, op, p, mem, PhaseOriginal, Options{}); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "another adopt run") {
		t.Errorf("rollback beside another run: %v", err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}

	// Backfill again: as the first run left it.
	if res, err := Backfill(ctx, op, p, mem, Options{}); err != nil || res[0].Phase != PhaseBackfilled {
		t.Fatalf("backfill after the killed rollback: %+v, %v", res, err)
	}
	sameRows(t, "backfilled again", filled, loadFullRows(t, op))
	// Killed again, then run to the end: the original, exactly.
	kctx, o = killedAfter(1, 250, func(table, rule string) bool { return rule == "restore server_id" })
	if _, err := Rollback(kctx, op, p, mem, PhaseOriginal, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed rollback: %v", err)
	}
	op = mustConnect(t, d.adminDSN())
	if _, err := Rollback(ctx, op, p, mem, PhaseOriginal, Options{BatchSize: 250}); err != nil {
		t.Fatal(err)
	}
	sameRows(t, "rolled back", orig, loadFullRows(t, op))
	assertOriginalCatalog(t, op, d)
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Errorf("after rollback:\n%s", s)
	}
}

// TestTriggersFireOnlyWhenAccepted: backfill and rollback update the
// application's rows as the role running adopt, which fires the table's
// own UPDATE triggers with that role's rights (review finding: an
// updated_at or audit trigger moved every row backfill filled, and the
// application's code ran as the operator). A table with such a trigger is
// refused by both, nothing written, unless its plan entry says
// fire_triggers: true; then they fire, once per row filled or restored.
// Inspect names the trigger.
func TestTriggersFireOnlyWhenAccepted(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	app := mustConnect(t, d.appDSN())
	if _, err := app.Exec(ctx, `CREATE TABLE memory_audit (id uuid, by_role text);
CREATE FUNCTION audit_memory() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.memory_audit VALUES (NEW.id, current_user);
  RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER UPDATE ON memories FOR EACH ROW EXECUTE FUNCTION audit_memory()`); err != nil {
		t.Fatal(err)
	}
	ip, err := Inspect(ctx, op, InspectOptions{RuntimeRole: d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	if tb, _ := ip.Table("memories"); !strings.Contains(strings.Join(tb.Notes, "; "), "triggers fire on UPDATE (audit)") {
		t.Errorf("inspect's notes on memories: %q", tb.Notes)
	}
	audited := func() int64 { t.Helper(); return count(t, op, "SELECT count(*) FROM memory_audit") }
	tenantless := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL")
	before := checksums(t, op, p)
	mem := []string{"memories"}
	if _, err := Backfill(ctx, op, p, mem, Options{}); !errors.Is(err, ErrDatabase) || !strings.Contains(err.Error(), "triggers that fire on UPDATE (audit)") {
		t.Fatalf("backfill of a table with a trigger: %v", err)
	}
	if s := diffMaps(before, checksums(t, op, p)); s != "" || audited() != 0 {
		t.Fatalf("the refused backfill wrote (%d audited):\n%s", audited(), s)
	}
	accept := func(on bool) *Plan {
		return planWith(t, p, "memories", func(tb *Table) { tb.FireTriggers = on })
	}
	if _, err := Backfill(ctx, op, accept(true), mem, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := audited(); n != tenantless || tenantless == 0 {
		t.Errorf("the trigger fired %d times, want once per row filled (%d)", n, tenantless)
	}
	// From shadow, the rollback is refused before its first step.
	if err := Shadow(ctx, op, accept(true), mem, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, accept(false), mem, PhaseOriginal, Options{}); !errors.Is(err, ErrDatabase) || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("rollback of a table with a trigger: %v", err)
	}
	if ph := phases(t, op, p)["memories"]; ph != PhaseShadow || audited() != tenantless {
		t.Fatalf("the refused rollback: memories is %s, %d audited", ph, audited())
	}
	if _, err := Rollback(ctx, op, accept(true), mem, PhaseOriginal, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := audited(); n != 2*tenantless {
		t.Errorf("after rollback the trigger fired %d times, want %d", n, 2*tenantless)
	}
	if s := diffMaps(before, checksums(t, op, p)); s != "" {
		t.Errorf("after rollback:\n%s", s)
	}
}

// TestKeysAdoptCantRecordRefused and round trips: keys are recorded as
// their types' text and read back by their input functions. A json key
// doesn't survive that, nor does a comma in a key column's name
// survive the recorder's argument list: such tables are refused before
// anything is written (review finding: a jsonb key made backfill loop on
// its first batch). A timestamp key backfilled under one DateStyle is
// found again by a rollback under another (the output settings are
// pinned in every step's transaction).
func TestKeysAdoptCantRecordRefused(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	app := mustConnect(t, d.appDSN())
	if _, err := app.Exec(ctx, fmt.Sprintf(`CREATE TABLE jkeys (server_id uuid, k jsonb PRIMARY KEY);
CREATE TABLE commas (server_id uuid, "a,b" int PRIMARY KEY);
CREATE TABLE stamps (server_id uuid, at timestamp PRIMARY KEY);
INSERT INTO stamps VALUES (NULL, '2026-01-02 03:04:05'), (NULL, '2026-02-01 00:00:00'), ('%s', '2026-03-04 00:00:00')`, server(2))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ table, column, want string }{
		{"jkeys", "server_id", "primary key column k is json"},
		{"commas", "server_id", "has a comma in its name"},
	} {
		q := planWith(t, p, "", nil, Table{Name: c.table, Kind: KindTenant, TenantColumn: c.column})
		if _, err := Backfill(ctx, op, q, []string{c.table}, Options{}); !errors.Is(err, ErrDatabase) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("backfill of %s: %v, want ErrDatabase saying %q", c.table, err, c.want)
		}
	}
	if n := count(t, op, "SELECT count(*) FROM pg_namespace WHERE nspname = 'bulkhead_adopt'"); n != 0 {
		t.Errorf("the state schema was created")
	}
	q := planWith(t, p, "", nil, Table{Name: "stamps", Kind: KindTenant, TenantColumn: "server_id",
		Backfill: []Rule{{Name: "first", Constant: server(1)}}})
	dmy := mustConnect(t, d.adminDSN())
	if _, err := dmy.Exec(ctx, "SET DateStyle = 'SQL, DMY'"); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, dmy, q, []string{"stamps"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, q, []string{"stamps"}, PhaseOriginal, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := id(t, op, "SELECT string_agg(coalesce(server_id::text, '-'), ' ' ORDER BY at) FROM stamps"); got != "- - "+server(2) {
		t.Errorf("after rollback, tenants by time: %s, want two NULL and the one that was there", got)
	}
}

// TestBackfillSeesAPhaseMovedMeanwhile: a run over several tables judges
// them all first, then fills them in turn; another run may move a later
// table meanwhile. That table is refused (ErrPhase) with its new phase,
// not filled from the state read at the start (review finding).
func TestBackfillSeesAPhaseMovedMeanwhile(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	other := mustConnect(t, d.adminDSN())
	moved := false
	o := Options{BatchSize: 500, Progress: func(table, rule string, done, total int64, rps float64) {
		if table != "memories" || moved {
			return
		}
		moved = true
		if _, err := Backfill(ctx, other, p, []string{"participants"}, Options{}); err != nil {
			t.Error(err)
		}
		if err := Shadow(ctx, other, p, []string{"participants"}, Options{}); err != nil {
			t.Error(err)
		}
	}}
	_, err := Backfill(ctx, op, p, []string{"memories", "participants"}, o)
	if !moved || !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "participants moved to shadow") {
		t.Fatalf("backfill over a table another run moved: %v", err)
	}
	if ph := phases(t, op, p); ph["memories"] != PhaseBackfilled || ph["participants"] != PhaseShadow {
		t.Errorf("phases %v, want memories backfilled and participants left in shadow", ph)
	}
	if n := count(t, op, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'participants'::regclass AND conname LIKE 'bulkhead_adopt%'"); n != 0 {
		t.Errorf("%d of adopt's constraints added to the shadow table", n)
	}
}

// TestRollbackRefusesBeforeAnyStep: a rollback over several tables is
// refused, with nothing rolled back, when one of them can't move (here
// one still original, with nothing to roll back), wherever it comes in
// the list.
func TestRollbackRefusesBeforeAnyStep(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	if _, err := Backfill(ctx, op, p, []string{"participants"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, p, []string{"participants", "memories"}, "", Options{}); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "memories is original") {
		t.Fatalf("rollback with a table that can't move: %v", err)
	}
	if ph := phases(t, op, p)["participants"]; ph != PhaseBackfilled {
		t.Errorf("participants is %s after the refused rollback, want backfilled", ph)
	}
}
