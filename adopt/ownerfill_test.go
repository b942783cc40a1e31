package adopt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// fullRow is the test's model of one memory: every column backfill must
// leave alone, and the two it may fill ("" for NULL).
type fullRow struct{ tenant, owner, room, content string }

func loadFullRows(t *testing.T, op *pgx.Conn) map[string]fullRow {
	t.Helper()
	rows, err := op.Query(context.Background(), "SELECT id::text, coalesce(server_id::text, ''), coalesce(entity_id::text, ''), room_id::text, content FROM memories")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]fullRow{}
	for rows.Next() {
		var id string
		var r fullRow
		if err := rows.Scan(&id, &r.tenant, &r.owner, &r.room, &r.content); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRows fails on the first rows (up to five) where got differs from
// want, and on rows one has and the other hasn't.
func sameRows(t *testing.T, what string, want, got map[string]fullRow) {
	t.Helper()
	bad := 0
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			if bad++; bad <= 5 {
				t.Errorf("%s: memory %s is %+v, want %+v", what, id, g, w)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d memories, want %d", what, len(got), len(want))
	}
	if bad > 5 {
		t.Errorf("%s: %d memories differ in all", what, bad)
	}
}

// TestOwnerBackfill adopts memories as kind owned after making a fifth of
// them ownerless (among them every row without a tenant, so the owner
// rule must run after the tenant rule: it reads the tenant). Bad owner
// rules are refused with nothing written. A run killed inside the owner
// rule resumes; the result is compared, row by row and column by column,
// with the test's model: tenants from the room's server, owners the
// tenant's first user except the rows the rule's WHERE leaves out, which
// are reported and counted into the status. A rule added once the table
// is backfilled fills those; one added in shadow is refused; rollback to
// original restores every value, NULLs included, but a tenant and an
// owner the application changed since.
func TestOwnerBackfill(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	ownedWithoutOwners(t, op, p, "right(content, 1) IN ('0', '3')")
	orig := loadFullRows(t, op)
	before := checksums(t, op, p)
	roomServer := map[string]string{}
	for i := 1; i <= fixtureServers; i++ {
		for j := 1; j <= 5; j++ {
			roomServer[md5UUID(fmt.Sprintf("r%d.%d", i, j))] = server(i)
		}
	}
	// The model: what backfill must leave.
	want := map[string]fullRow{}
	var wantFilled, wantOwnerless, tenantless int64
	for id, r := range orig {
		w := r
		if w.tenant == "" {
			w.tenant = roomServer[r.room]
			tenantless++
		}
		if w.owner == "" {
			if r.content != "hello 3" {
				w.owner = fixtureUser(w.tenant, 1)
				wantFilled++
			} else {
				wantOwnerless++
			}
		}
		want[id] = w
	}
	if tenantless == 0 || wantFilled == 0 || wantOwnerless == 0 {
		t.Fatalf("model: %d rows without a tenant, %d owners to fill, %d to leave", tenantless, wantFilled, wantOwnerless)
	}
	firstUserRule := userRule("first_user", 1)
	firstUserRule.Where = "t.content <> 'hello 3'"
	withOwnerRules := func(rules ...Rule) *Plan { return withMemoryOwnerRules(t, p, rules...) }

	t.Run("bad owner rules change nothing", func(t *testing.T) {
		for _, c := range []struct {
			rule Rule
			want error
			msg  string
		}{
			// A room has three participants: three owners for each row.
			{Rule{Name: "a_participant", Parent: &ParentRule{Column: "room_id", Table: "participants", Key: "room_id", OwnerColumn: "entity_id"}},
				ErrRule, "two different owners"},
			{Rule{Name: "bots", Constant: md5UUID("e1.1"), Where: "t.type = 'bot'"}, ErrRule, "bots (constant " + md5UUID("e1.1") + ") matches no row without an owner"},
			// rooms has no owner column in the plan, and the rule names none.
			{Rule{Name: "room_owner", Parent: &ParentRule{Column: "room_id", Table: "rooms"}}, ErrDatabase, "the plan gives parent rooms no owner column"},
		} {
			_, err := Backfill(ctx, op, withOwnerRules(c.rule), nil, Options{})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("rule %s: got %v, want %v containing %q", c.rule.Name, err, c.want, c.msg)
			}
			untouched(t, op, d, p, before)
		}
	})

	// Killed inside the owner rule, after the tenants were filled.
	q := withOwnerRules(firstUserRule)
	kctx, o := killedAfter(2, 300, func(table, rule string) bool { return rule == "first_user" })
	if _, err := Backfill(kctx, op, q, []string{"memories"}, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed backfill: %v", err)
	}
	if ph := phases(t, op, q)["memories"]; ph != PhaseOriginal {
		t.Fatalf("killed backfill: memories is %s", ph)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.owner_backfilled WHERE rel = 'public.memories'"); n == 0 || n >= wantFilled {
		t.Fatalf("after the kill %d of %d owners filled", n, wantFilled)
	}
	o.Progress = nil
	res, err := Backfill(ctx, op, q, []string{"memories"}, o)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Phase != PhaseBackfilled || r.Rules[0].Rows != tenantless || len(r.OwnerRules) != 1 || r.OwnerRules[0].Rows != wantFilled ||
		r.OwnerUncovered != wantOwnerless || len(r.OwnerUncoveredKeys) != 10 {
		t.Fatalf("resumed: %+v; want %d tenants and %d owners filled, %d left", r, tenantless, wantFilled, wantOwnerless)
	}
	if r.ChecksumBefore != r.ChecksumAfter {
		t.Errorf("checksum of the other columns %s -> %s", r.ChecksumBefore, r.ChecksumAfter)
	}
	sameRows(t, "backfilled", want, loadFullRows(t, op))
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.owner_backfilled WHERE rel = 'public.memories' AND col = 'entity_id'"); n != wantFilled {
		t.Errorf("recorded %d filled owners, want %d", n, wantFilled)
	}
	note := func() string {
		t.Helper()
		st, err := Status(ctx, op, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Table == "memories" {
				return s.Note
			}
		}
		t.Fatal("no status for memories")
		return ""
	}
	if n, w := note(), fmt.Sprintf("%d rows have no entity_id", wantOwnerless); !strings.HasPrefix(n, w) {
		t.Errorf("status note %q, want one starting %q", n, w)
	}

	// A rule added later, on the backfilled table, fills the rest.
	later := userRule("hello_3", 2)
	res, err = Backfill(ctx, op, withOwnerRules(firstUserRule, later), []string{"memories"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Phase != PhaseBackfilled || len(r.OwnerRules) != 2 || r.OwnerRules[1].Rows != wantOwnerless || r.OwnerUncovered != 0 || r.ChecksumBefore != r.ChecksumAfter {
		t.Fatalf("later rule: %+v; want %d filled, none left", r, wantOwnerless)
	}
	for id, w := range want {
		if w.owner == "" {
			w.owner = fixtureUser(w.tenant, 2)
			want[id] = w
		}
	}
	sameRows(t, "after the later rule", want, loadFullRows(t, op))
	if n := note(); n != "" {
		t.Errorf("status note %q once every row has an owner", n)
	}

	// In shadow a new owner rule is refused, and changes nothing; rules
	// already done are not run again.
	both := withOwnerRules(firstUserRule, later)
	if err := Shadow(ctx, op, both, []string{"memories"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, op, both, []string{"memories"}, o); err != nil {
		t.Fatalf("backfill of a shadow table whose owner rules are done: %v", err)
	}
	// The application writes a memory without an owner: a rule for it
	// now has a row to fill, and is refused all the same.
	var cleared string
	for id, r := range orig {
		if r.owner != "" && (cleared == "" || id < cleared) {
			cleared = id
		}
	}
	if _, err := op.Exec(ctx, "UPDATE memories SET entity_id = NULL WHERE id = $1", cleared); err != nil {
		t.Fatal(err)
	}
	cr := want[cleared]
	cr.owner = ""
	want[cleared] = cr
	third := userRule("third", 3)
	if _, err := Backfill(ctx, op, withOwnerRules(third), []string{"memories"}, o); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "owner rules (third)") {
		t.Fatalf("a new owner rule on a shadow table: %v", err)
	}
	sameRows(t, "after the refused rule", want, loadFullRows(t, op))

	// The application hands one filled memory to another entity: that
	// owner is the application's now, and rollback keeps it.
	var moved string
	for id, r := range orig {
		if r.owner == "" && (moved == "" || id < moved) {
			moved = id
		}
	}
	after := maps.Clone(orig)
	cr = after[cleared]
	cr.owner = "" // the application's write: rollback leaves it
	after[cleared] = cr
	mr := after[moved]
	mr.owner = md5UUID("e1.9")
	after[moved] = mr
	if _, err := op.Exec(ctx, "UPDATE memories SET entity_id = $2 WHERE id = $1", moved, mr.owner); err != nil {
		t.Fatal(err)
	}
	// And moves a memory whose tenant backfill filled to another tenant:
	// that tenant is kept too.
	var rehomed string
	for id, r := range orig {
		if r.tenant == "" && id != moved && id != cleared && (rehomed == "" || id < rehomed) {
			rehomed = id
		}
	}
	rr := after[rehomed]
	rr.tenant = server(1)
	if want[rehomed].tenant == rr.tenant {
		rr.tenant = server(2)
	}
	after[rehomed] = rr
	if _, err := op.Exec(ctx, "UPDATE memories SET server_id = $2 WHERE id = $1", rehomed, rr.tenant); err != nil {
		t.Fatal(err)
	}

	// Rollback to original: every tenant and owner backfill wrote is NULL
	// again, and nothing else changed.
	if _, err := Rollback(ctx, op, q, []string{"memories"}, PhaseOriginal, Options{BatchSize: 250}); err != nil {
		t.Fatal(err)
	}
	sameRows(t, "rolled back", after, loadFullRows(t, op))
	now := checksums(t, op, p)
	delete(now, "memories")
	delete(before, "memories")
	if s := diffMaps(before, now); s != "" {
		t.Errorf("after rollback:\n%s", s)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.owner_backfilled"); n != 0 {
		t.Errorf("%d owner records left after rollback", n)
	}
}

// fixtureUser is the fixture's entity "user n" of tenant.
func fixtureUser(tenant string, n int) string {
	for i := 1; i <= fixtureServers; i++ {
		if server(i) == tenant {
			return md5UUID(fmt.Sprintf("e%d.%d", i, n))
		}
	}
	return ""
}

// userRule is an owner rule giving each row its tenant's "user n" (it
// reads the row's tenant).
func userRule(name string, n int) Rule {
	return Rule{Name: name, Expression: fmt.Sprintf("(SELECT e.id FROM entities e WHERE e.server_id = t.server_id AND e.names = ARRAY['user %d'])", n)}
}

// withMemoryOwnerRules is a copy of p (validated) whose memories table
// has the owner rules given.
func withMemoryOwnerRules(t testing.TB, p *Plan, rules ...Rule) *Plan {
	t.Helper()
	return planWith(t, p, "memories", func(tb *Table) { tb.OwnerBackfill = rules })
}

// TestOwnerRulesReadTheTenant: owner rules that read the tenant, on rows
// whose tenant backfill has yet to fill. Two such rules give no value
// before the tenants are filled, so they can't disagree yet; once filled
// they would give every row two owners, and are refused before either
// writes one (the tenants stay filled: resumable). One of them alone
// passes the checks before and after, and fills every row with the owner
// the model expects.
func TestOwnerRulesReadTheTenant(t *testing.T) {
	ctx := context.Background()
	_, op, p := newReviewed(t)
	tenantless := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL")
	ownedWithoutOwners(t, op, p, "server_id IS NULL")
	_, err := Backfill(ctx, op, withMemoryOwnerRules(t, p, userRule("user_1", 1), userRule("user_2", 2)), []string{"memories"}, Options{})
	if !errors.Is(err, ErrRule) || !strings.Contains(err.Error(), fmt.Sprintf("%d rows would get two different owners", tenantless)) {
		t.Fatalf("two owner rules disagreeing once the tenants are filled: %v", err)
	}
	if n := count(t, op, "SELECT count(*) FROM memories WHERE entity_id IS NULL"); n != tenantless {
		t.Fatalf("after the refusal %d memories have no owner, want all %d", n, tenantless)
	}
	if n := count(t, op, "SELECT count(*) FROM memories WHERE server_id IS NULL"); n != 0 {
		t.Fatalf("after the refusal %d memories have no tenant: the tenant rule should have run", n)
	}

	res, err := Backfill(ctx, op, withMemoryOwnerRules(t, p, userRule("user_1", 1)), []string{"memories"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Phase != PhaseBackfilled || len(r.OwnerRules) != 1 || r.OwnerRules[0].Rows != tenantless || r.OwnerUncovered != 0 {
		t.Fatalf("one owner rule: %+v, want %d owners filled", r, tenantless)
	}
	filled, err := op.Query(ctx, "SELECT m.server_id::text, m.entity_id::text FROM memories m JOIN bulkhead_adopt.owner_backfilled b ON b.key->>'id' = m.id::text")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for filled.Next() {
		var tenant, owner string
		if err := filled.Scan(&tenant, &owner); err != nil {
			t.Fatal(err)
		}
		if n++; owner != fixtureUser(tenant, 1) {
			t.Errorf("a memory of %s got owner %s, want its first user %s", tenant, owner, fixtureUser(tenant, 1))
		}
	}
	if err := filled.Err(); err != nil {
		t.Fatal(err)
	}
	if n != tenantless {
		t.Errorf("%d filled owners recorded, want %d", n, tenantless)
	}
}

// TestOwnerRulesStopAtAPhaseChange: owner rules running on a backfilled
// table while another run moves it to shadow stop after the batch in
// flight, with ErrPhase: no owner is written once the table is in shadow
// (the recorder would take the operator's updates for the application's).
func TestOwnerRulesStopAtAPhaseChange(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	ownedWithoutOwners(t, op, p, "right(content, 1) = '3'")
	ownerless := count(t, op, "SELECT count(*) FROM memories WHERE entity_id IS NULL")
	if _, err := Backfill(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	other := mustConnect(t, d.adminDSN())
	shadowed := false
	o := Options{BatchSize: 500, Progress: func(table, rule string, done, total int64, rps float64) {
		if rule == "u1" && !shadowed {
			shadowed = true
			if err := Shadow(ctx, other, p, []string{"memories"}, Options{}); err != nil {
				t.Errorf("shadow beside the owner rule: %v", err)
			}
		}
	}}
	_, err := Backfill(ctx, op, withMemoryOwnerRules(t, p, userRule("u1", 1)), []string{"memories"}, o)
	if !errors.Is(err, ErrPhase) {
		t.Fatalf("owner rule across a move to shadow: %v", err)
	}
	filled := count(t, op, "SELECT count(*) FROM bulkhead_adopt.owner_backfilled")
	if filled == 0 || filled >= ownerless {
		t.Errorf("%d of %d owners filled: want those of the first batch only", filled, ownerless)
	}
	if n := count(t, op, "SELECT count(*) FROM memories WHERE entity_id IS NULL"); n != ownerless-filled {
		t.Errorf("%d memories without an owner, want %d - %d filled", n, ownerless, filled)
	}
	if ph := phases(t, op, p)["memories"]; ph != PhaseShadow {
		t.Errorf("memories is %s, want shadow", ph)
	}
}
