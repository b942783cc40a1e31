package policylock

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-dev/bulkhead/rls/model"
)

// Compare returns every difference between the locked state and the
// current one, one human-readable line (or short block) each, in a stable
// order: tables, policies, grants, definer functions, the functions
// policies call, then the matrix as
// "table / COMMAND / caller [relation]: row: before → after". No lines
// means no difference.
func Compare(locked, current *Lock) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if locked.ServerMajor != current.ServerMajor {
		add("server: the lock was made on PostgreSQL %d, this is %d (policy expressions may deparse differently: regenerate the lock on the version CI runs)", locked.ServerMajor, current.ServerMajor)
	}
	compareTables(locked.Tables, current.Tables, add)
	comparePolicies(locked.Policies, current.Policies, add)
	compareGrants(locked.Grants, current.Grants, add)
	compareFunctions("SECURITY DEFINER function", "(or no longer SECURITY DEFINER)", locked.Definers, current.Definers, add)
	compareFunctions("function called by a policy", "(or no policy calls it)", locked.PolicyFunctions, current.PolicyFunctions, add)
	switch {
	case len(locked.Matrix) > 0 && len(current.Matrix) == 0:
		add("matrix: the lock has a visibility matrix, this run observed none")
	case len(locked.Matrix) == 0 && len(current.Matrix) > 0:
		add("matrix: this run observed a visibility matrix, the lock has none")
	default:
		out = append(out, CompareMatrix(locked.Matrix, current.Matrix)...)
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func compareTables(locked, current []Table, add func(string, ...any)) {
	cur := map[string]Table{}
	for _, t := range current {
		cur[t.Name] = t
	}
	seen := map[string]bool{}
	for _, l := range locked {
		seen[l.Name] = true
		c, ok := cur[l.Name]
		if !ok {
			add("table %s: no longer has row-level security or policies (or is gone)", l.Name)
			continue
		}
		if l.RLS != c.RLS {
			add("table %s: row level security %s → %s", l.Name, onOff(l.RLS), onOff(c.RLS))
		}
		if l.Force != c.Force {
			add("table %s: FORCE row level security %s → %s", l.Name, onOff(l.Force), onOff(c.Force))
		}
		if l.Owner != c.Owner {
			add("table %s: owner %s → %s", l.Name, l.Owner, c.Owner)
		}
		if l.Kind != c.Kind {
			add("table %s: %s → %s", l.Name, l.Kind, c.Kind)
		}
	}
	for _, c := range current {
		if !seen[c.Name] {
			add("table %s: new (%s, owner %s, row level security %s, FORCE %s)", c.Name, c.Kind, c.Owner, onOff(c.RLS), onOff(c.Force))
		}
	}
}

func describePolicy(p Policy) string {
	s := fmt.Sprintf("%s %s to %s", p.Permissive, p.Command, strings.Join(p.Roles, ","))
	if p.Using != "" {
		s += "\n    USING " + p.Using
	}
	if p.Check != "" {
		s += "\n    WITH CHECK " + p.Check
	}
	return s
}

func comparePolicies(locked, current []Policy, add func(string, ...any)) {
	key := func(p Policy) string { return p.Table + " " + p.Name }
	cur := map[string]Policy{}
	for _, p := range current {
		cur[key(p)] = p
	}
	seen := map[string]bool{}
	for _, l := range locked {
		seen[key(l)] = true
		c, ok := cur[key(l)]
		if !ok {
			add("policy %s on %s: removed (was %s)", l.Name, l.Table, describePolicy(l))
			continue
		}
		field := func(what, a, b string) {
			if a != b {
				add("policy %s on %s: %s changed\n    locked:  %s\n    current: %s", l.Name, l.Table, what, a, b)
			}
		}
		field("mode", l.Permissive, c.Permissive)
		field("command", l.Command, c.Command)
		field("roles", strings.Join(l.Roles, ","), strings.Join(c.Roles, ","))
		field("USING", l.Using, c.Using)
		field("WITH CHECK", l.Check, c.Check)
	}
	for _, c := range current {
		if !seen[key(c)] {
			add("policy %s on %s: new: %s", c.Name, c.Table, describePolicy(c))
		}
	}
}

func compareGrants(locked, current []Grant, add func(string, ...any)) {
	key := func(g Grant) string {
		s := fmt.Sprintf("%s on %s to %s", g.Privilege, g.Object, g.Grantee)
		if g.Grantable {
			s += " WITH GRANT OPTION"
		}
		return s
	}
	l := map[string]bool{}
	for _, g := range locked {
		l[key(g)] = true
	}
	c := map[string]bool{}
	for _, g := range current {
		c[key(g)] = true
	}
	for _, g := range locked {
		if !c[key(g)] {
			add("grant revoked: %s", key(g))
		}
	}
	for _, g := range current {
		if !l[key(g)] {
			add("grant added: %s", key(g))
		}
	}
}

// compareFunctions reports the differences between two lists of
// functions; what names the kind in each line, gone says what a removal
// may also mean.
func compareFunctions(what, gone string, locked, current []Function, add func(string, ...any)) {
	cur := map[string]Function{}
	for _, f := range current {
		cur[f.Signature] = f
	}
	seen := map[string]bool{}
	for _, l := range locked {
		seen[l.Signature] = true
		c, ok := cur[l.Signature]
		if !ok {
			add("%s %s: removed %s", what, l.Signature, gone)
			continue
		}
		if l.Owner != c.Owner {
			add("%s %s: owner %s → %s", what, l.Signature, l.Owner, c.Owner)
		}
		if a, b := strings.Join(l.Config, " "), strings.Join(c.Config, " "); a != b {
			add("%s %s: settings %q → %q", what, l.Signature, a, b)
		}
		if l.BodyMD5 != c.BodyMD5 {
			add("%s %s: body changed", what, l.Signature)
		}
		if a, b := strings.Join(l.Executors, ","), strings.Join(c.Executors, ","); a != b {
			add("%s %s: executable by %s → %s", what, l.Signature, a, b)
		}
	}
	for _, c := range current {
		if !seen[c.Signature] {
			add("%s %s: new (owner %s, settings %q, executable by %s)", what, c.Signature, c.Owner, strings.Join(c.Config, " "), strings.Join(c.Executors, ","))
		}
	}
}

// CompareMatrix returns the differences between two matrices, one line per
// row and caller whose outcome changed: "memories / INSERT / dave [r2
// member, not in r1, owns s2]: room_id=r1 author_id=dave: refused →
// allowed".
func CompareMatrix(locked, current []model.TableMatrix) []string {
	var out []string
	cur := map[string]model.TableMatrix{}
	for _, t := range current {
		cur[t.Table] = t
	}
	seen := map[string]bool{}
	for _, lt := range locked {
		seen[lt.Table] = true
		ct, ok := cur[lt.Table]
		if !ok {
			out = append(out, fmt.Sprintf("%s: in the locked matrix, not in this one", lt.Table))
			continue
		}
		if len(lt.Cells) > 0 && len(ct.Cells) > 0 {
			lr, cr := lt.Cells[0].Refused, ct.Cells[0].Refused
			for _, cmd := range lr {
				if !slices.Contains(cr, cmd) {
					out = append(out, fmt.Sprintf("%s / %s / runtime role: no privilege → granted", lt.Table, cmd))
				}
			}
			for _, cmd := range cr {
				if !slices.Contains(lr, cmd) {
					out = append(out, fmt.Sprintf("%s / %s / runtime role: granted → no privilege", lt.Table, cmd))
				}
			}
		}
		cells := map[string]model.Cell{}
		for _, c := range ct.Cells {
			cells[c.Caller] = c
		}
		for _, lc := range lt.Cells {
			cc, ok := cells[lc.Caller]
			if !ok {
				out = append(out, fmt.Sprintf("%s / * / %s: caller not in this matrix", lt.Table, lc.Caller))
				continue
			}
			who := fmt.Sprintf("%s [%s]", lc.Caller, lc.Relation)
			list := func(cmd string, a, b []string, no, yes string) {
				for _, x := range a {
					if !slices.Contains(b, x) {
						out = append(out, fmt.Sprintf("%s / %s / %s: %s: %s → %s", lt.Table, cmd, who, x, yes, no))
					}
				}
				for _, x := range b {
					if !slices.Contains(a, x) {
						out = append(out, fmt.Sprintf("%s / %s / %s: %s: %s → %s", lt.Table, cmd, who, x, no, yes))
					}
				}
			}
			list("SELECT", lc.Sees, cc.Sees, "hidden", "visible")
			list("INSERT", lc.Inserts, cc.Inserts, "refused", "allowed")
			list("UPDATE", lc.Updates, cc.Updates, "refused", "allowed")
			list("UPDATE (move)", lc.Moves, cc.Moves, "refused", "allowed")
			list("DELETE", lc.Deletes, cc.Deletes, "refused", "allowed")
		}
	}
	for _, ct := range current {
		if !seen[ct.Table] {
			out = append(out, fmt.Sprintf("%s: new in the matrix, not in the lock", ct.Table))
		}
	}
	return out
}
