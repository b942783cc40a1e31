package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
)

// mutant is one policy of the generator's output changed in one clause.
type mutant struct {
	table rls.Table
	what  string
	p     rls.Policy
}

// mutants returns, for every policy of every table: USING replaced by true,
// WITH CHECK replaced by true, WITH CHECK dropped (UPDATE then checks new
// rows with USING), a restrictive policy made permissive, one operand of an
// AND or OR dropped (clauseDrops), and the named widenings a review found. A
// mutant that
// means the same as the original (dropping a WITH CHECK equal to USING) is
// not generated.
func mutants() []mutant {
	var out []mutant
	for _, t := range postgres.Tables {
		ps, err := rls.Policies(postgres.RLSConfig, t)
		if err != nil {
			panic(err)
		}
		for _, p := range ps {
			add := func(what string, q rls.Policy) {
				out = append(out, mutant{t, fmt.Sprintf("%s.%s: %s", t.Name, p.Name, what), q})
			}
			if p.Using != "" {
				q := p
				q.Using = "true"
				add("USING true", q)
			}
			if p.Check != "" {
				q := p
				q.Check = "true"
				add("WITH CHECK true", q)
				if p.Command == "UPDATE" && p.Check != p.Using {
					q := p
					q.Check = ""
					add("WITH CHECK dropped", q)
				}
			}
			if !p.Permissive {
				q := p
				q.Permissive = true
				add("permissive", q)
			}
			for _, v := range clauseDrops(p.Using) {
				q := p
				q.Using = v
				add("USING "+v, q)
			}
			for _, v := range clauseDrops(p.Check) {
				q := p
				q.Check = v
				add("WITH CHECK "+v, q)
			}
			// A rule widened by one more way in, as a review found it:
			// room creation open to the world's members, not only its owner.
			if t.Kind == rls.Rooms && p.Command == "INSERT" {
				q := p
				q.Check = "(" + p.Check + ") OR " + t.Name + ".world_id = ANY((SELECT bulkhead.member_worlds())::uuid[])"
				add("WITH CHECK also world members", q)
			}
		}
	}
	return out
}

// TestVerifierKillsEveryMutant shows the verifier can fail: each mutant of
// the generated policies is installed in turn, and the verifier must find a
// disagreement with the model on that table. It takes minutes, so it runs
// when BULKHEAD_MUTATION=1 (.ci/run sets it in its own step).
func TestVerifierKillsEveryMutant(t *testing.T) {
	if os.Getenv("BULKHEAD_MUTATION") != "1" {
		t.Skip("mutation test: set BULKHEAD_MUTATION=1 to run it (.ci/run does)")
	}
	d := testdb.New(t)
	v := newVerifier(t, d, postgres.Tables)
	owner := testdb.MustConnect(t, d.OwnerDSN())
	ctx := context.Background()
	ms := mutants()
	var survived []string
	killed, skipped := 0, 0
	for _, m := range ms {
		if why := equivalent(m); why != "" {
			skipped++
			t.Logf("not run: %s: %s", m.what, why)
			continue
		}
		orig, err := rls.Policies(postgres.RLSConfig, m.table)
		if err != nil {
			t.Fatal(err)
		}
		apply := func(p rls.Policy) {
			for _, q := range p.SQL(postgres.RLSConfig, m.table) {
				if _, err := owner.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %s: %v", m.what, q, err)
				}
			}
		}
		apply(m.p)
		res := v.run(t, []rls.Table{m.table}, true)
		for _, p := range orig {
			if p.Name == m.p.Name {
				apply(p)
			}
		}
		if len(res.disagreements) == 0 {
			survived = append(survived, m.what)
			continue
		}
		killed++
		t.Logf("killed %s by %s", m.what, res.disagreements[0])
	}
	t.Logf("mutation score: %d of %d mutants killed (%d more are equivalent: listed above with the reason)", killed, len(ms)-skipped, skipped)
	for _, s := range survived {
		t.Errorf("mutant survived: %s", s)
	}
}

// equivalent says why a mutant can't change what the runtime role can do,
// or "" when it can (and must then be killed).
func equivalent(m mutant) string {
	granted := func(c rls.Command) bool {
		if m.table.Grants == nil {
			return true
		}
		for _, g := range m.table.Grants {
			if g == c {
				return true
			}
		}
		return false
	}
	switch m.p.Command {
	case "INSERT", "UPDATE", "DELETE", "SELECT":
		if !granted(rls.Command(m.p.Command)) {
			return "the runtime role has no " + m.p.Command + " privilege on " + m.table.Name
		}
	case "ALL":
		checkTrue := m.what == m.table.Name+"."+m.p.Name+": WITH CHECK true"
		tenantFixed := !granted(rls.Update) || (m.table.UpdateColumns != nil && !contains(m.table.UpdateColumns, "tenant_id"))
		switch {
		case checkTrue && !granted(rls.Insert) && tenantFixed:
			return "no INSERT, and the runtime role may not UPDATE tenant_id: no row can change tenant"
		case checkTrue && m.table.Kind == rls.Agents:
			return "tenant_id is not updatable, and layer 2's INSERT check reads the entity in the row's tenant, which entities' own layer 1 hides"
		case m.what == m.table.Name+"."+m.p.Name+": USING true" && !granted(rls.Select) && !granted(rls.Update) && !granted(rls.Delete):
			return "insert-only: no command of the runtime role reads existing rows"
		}
	}
	if m.p.Command == "UPDATE" && m.what == m.table.Name+"."+m.p.Name+": WITH CHECK true" && m.table.UpdateColumns != nil && m.table.Entity != "" &&
		!contains(m.table.UpdateColumns, m.table.Entity) {
		return "the CHECK only pins " + m.table.Entity + ", which is not among the columns the runtime role may UPDATE"
	}
	if m.table.Kind == rls.Worlds && m.what == m.table.Name+"."+m.p.Name+": WITH CHECK true" {
		return "the CHECK only pins owner_id, which is not among the columns the runtime role may UPDATE"
	}
	if why, ok := reviewedEquivalents[m.what]; ok {
		return why
	}
	if m.table.Kind == rls.Link && m.p.Command == "SELECT" {
		return "both ends (message_servers, agents) are readable tenant-wide, so the rule is implied by layer 1"
	}
	return ""
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// reviewedEquivalents are clause drops that a person checked and found to
// mean the same as the original, each for the reason given. They are keyed
// by the mutant's full text: when the generator's output changes, the key no
// longer matches, the mutant runs, and if it survives it must be reviewed
// again.
var reviewedEquivalents = map[string]string{
	"delegations.bulkhead_update: WITH CHECK delegations.principal_id = (SELECT bulkhead.current_entity()) OR (delegations.revoked_at IS NOT NULL)":                                                                                                   "the dropped conjunct (agent owned by the caller) is on agent_id, which the runtime role may not UPDATE, and USING already requires it of the old row when principal_id is not the caller's",
	"rooms.bulkhead_update: WITH CHECK (rooms.message_server_id IS NULL OR (EXISTS (SELECT 1 FROM bulkhead.message_servers bh_ref WHERE bh_ref.id = rooms.message_server_id AND bh_ref.owner_id = (SELECT bulkhead.current_entity()))))":              "managed_rooms() depends on id, world_id and participants only; id and world_id are not among the columns the runtime role may UPDATE, and USING requires the same id to be managed",
	"participants.bulkhead_update: WITH CHECK participants.room_id = ANY((SELECT bulkhead.owned_rooms())::uuid[]) OR (participants.role = 'member')":                                                                                                  "only role is updatable: room_id is the old row's, which USING requires to be owned, or managed with role member; the new row keeps that room",
	"documents.bulkhead_select: USING documents.visibility = 'tenant' OR documents.owner_id = ANY((SELECT bulkhead.current_actors('documents:read'))::uuid[]) OR (documents.room_id = ANY((SELECT bulkhead.member_rooms('documents:read'))::uuid[]))": "the table's CHECK ((visibility = 'room') = (room_id IS NOT NULL)) makes room_id non-null exactly when visibility = 'room'",
}
