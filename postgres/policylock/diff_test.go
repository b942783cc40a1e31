package policylock_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/postgres/policylock"
	"github.com/bulkhead-dev/bulkhead/rls/model"
)

// Every kind of catalog drift is a line of the diff; no drift is no line.
func TestCompareCatalog(t *testing.T) {
	base := func() *policylock.Lock {
		return &policylock.Lock{
			Format: policylock.FormatVersion, ServerMajor: 15,
			Tables:          []policylock.Table{{Name: "s.t", Kind: "table", Owner: "own", RLS: true, Force: true}},
			Policies:        []policylock.Policy{{Table: "s.t", Name: "p", Permissive: "PERMISSIVE", Roles: []string{"public"}, Command: "ALL", Using: "(a = b)"}},
			Grants:          []policylock.Grant{{Object: "table s.t", Grantee: "app", Privilege: "SELECT"}},
			Definers:        []policylock.Function{{Signature: "s.f()", Owner: "definer", Config: []string{"search_path=pg_catalog"}, BodyMD5: "x", Executors: []string{"app"}}},
			PolicyFunctions: []policylock.Function{{Signature: "s.current_tenant()", Owner: "own", BodyMD5: "x", Executors: []string{"app"}}},
			Matrix:          []model.TableMatrix{{Table: "t", Cells: []model.Cell{{Caller: "bob", Relation: "r1 admin", Sees: []string{"m1"}, Refused: []string{"DELETE"}}}}},
		}
	}
	if d := policylock.Compare(base(), base()); len(d) != 0 {
		t.Errorf("no drift, but: %v", d)
	}
	for _, c := range []struct {
		name   string
		change func(l *policylock.Lock)
		want   string
	}{
		{"force off", func(l *policylock.Lock) { l.Tables[0].Force = false }, "table s.t: FORCE row level security on → off"},
		{"rls off", func(l *policylock.Lock) { l.Tables[0].RLS = false }, "table s.t: row level security on → off"},
		{"owner", func(l *policylock.Lock) { l.Tables[0].Owner = "app" }, "table s.t: owner own → app"},
		{"new table", func(l *policylock.Lock) { l.Tables = append(l.Tables, policylock.Table{Name: "s.u", Kind: "table"}) }, "table s.u: new"},
		{"using", func(l *policylock.Lock) { l.Policies[0].Using = "true" }, "policy p on s.t: USING changed"},
		{"mode", func(l *policylock.Lock) { l.Policies[0].Permissive = "RESTRICTIVE" }, "policy p on s.t: mode changed"},
		{"roles", func(l *policylock.Lock) { l.Policies[0].Roles = []string{"app"} }, "policy p on s.t: roles changed"},
		{"policy dropped", func(l *policylock.Lock) { l.Policies = nil }, "policy p on s.t: removed"},
		{"policy added", func(l *policylock.Lock) {
			l.Policies = append(l.Policies, policylock.Policy{Table: "s.t", Name: "q", Command: "SELECT", Using: "true"})
		}, "policy q on s.t: new"},
		{"grant added", func(l *policylock.Lock) {
			l.Grants = append(l.Grants, policylock.Grant{Object: "table s.t", Grantee: "app", Privilege: "TRUNCATE"})
		}, "grant added: TRUNCATE on table s.t to app"},
		{"grant revoked", func(l *policylock.Lock) { l.Grants = nil }, "grant revoked: SELECT on table s.t to app"},
		{"definer executors", func(l *policylock.Lock) { l.Definers[0].Executors = []string{"PUBLIC"} }, "SECURITY DEFINER function s.f(): executable by app → PUBLIC"},
		{"definer search_path", func(l *policylock.Lock) { l.Definers[0].Config = nil }, "SECURITY DEFINER function s.f(): settings"},
		{"definer body", func(l *policylock.Lock) { l.Definers[0].BodyMD5 = "y" }, "SECURITY DEFINER function s.f(): body changed"},
		{"definer owner", func(l *policylock.Lock) { l.Definers[0].Owner = "postgres" }, "SECURITY DEFINER function s.f(): owner definer → postgres"},
		{"policy function body", func(l *policylock.Lock) { l.PolicyFunctions[0].BodyMD5 = "y" }, "function called by a policy s.current_tenant(): body changed"},
		{"policy function removed", func(l *policylock.Lock) { l.PolicyFunctions = nil }, "function called by a policy s.current_tenant(): removed"},
		{"policy function executors", func(l *policylock.Lock) { l.PolicyFunctions[0].Executors = []string{"PUBLIC"} }, "function called by a policy s.current_tenant(): executable by app → PUBLIC"},
		{"server", func(l *policylock.Lock) { l.ServerMajor = 16 }, "server: the lock was made on PostgreSQL 15, this is 16"},
		{"sees", func(l *policylock.Lock) { l.Matrix[0].Cells[0].Sees = nil }, "t / SELECT / bob [r1 admin]: m1: visible → hidden"},
		{"deletes", func(l *policylock.Lock) { l.Matrix[0].Cells[0].Deletes = []string{"m1"} }, "t / DELETE / bob [r1 admin]: m1: refused → allowed"},
		{"moves", func(l *policylock.Lock) { l.Matrix[0].Cells[0].Moves = []string{"m1: room_id=r2"} }, "t / UPDATE (move) / bob [r1 admin]: m1: room_id=r2: refused → allowed"},
		{"privilege", func(l *policylock.Lock) { l.Matrix[0].Cells[0].Refused = nil }, "t / DELETE / runtime role: no privilege → granted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cur := base()
			c.change(cur)
			d := policylock.Compare(base(), cur)
			if !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, c.want) }) {
				t.Errorf("want a line starting %q, got %q", c.want, d)
			}
		})
	}
}
