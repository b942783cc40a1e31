package audit

import (
	"fmt"
	"sort"
	"strings"
)

// policyTrees calls fn for each of p's expressions (USING, WITH CHECK).
func policyTrees(p *policy, fn func(which string, tree any)) {
	if p.usingTree != nil {
		fn("USING", p.usingTree)
	}
	if p.chkTree != nil {
		fn("WITH CHECK", p.chkTree)
	}
}

// eachPolicyNode runs pred over every node of every policy expression and
// reports each policy once, with the first match's detail.
func eachPolicyNode(s *snapshot, fix func(p *policy) string, pred func(s *snapshot, p *policy, n *node, depth int, parents []*node) string) []Finding {
	var out []Finding
	for _, p := range s.policies {
		if !p.rel.tenant {
			continue
		}
		detail := ""
		policyTrees(p, func(which string, tree any) {
			walk(tree, 0, nil, func(n *node, depth int, parents []*node) {
				if detail != "" {
					return
				}
				if d := pred(s, p, n, depth, parents); d != "" {
					detail = which + ": " + d
				}
			})
		})
		if detail != "" {
			out = append(out, Finding{Object: p.obj(), Detail: detail, Fix: fix(p)})
		}
	}
	return out
}

func underSubLink(parents []*node) bool {
	for _, n := range parents {
		if n.typ == "SUBLINK" {
			return true
		}
	}
	return false
}

func (s *snapshot) funcLabel(id string) string {
	var oid uint32
	fmt.Sscan(id, &oid)
	if f := s.treeFuncs[oid]; f != nil {
		return f.schema + "." + f.name + "(" + f.args + ")"
	}
	return "function " + id
}

func alterPolicyFix(p *policy, hint string) string {
	return fmt.Sprintf("-- %s\nALTER POLICY %s ON %s USING (...) WITH CHECK (...);", hint, ident(p.name), qrel(p.rel))
}

var policyChecks = []Check{
	{
		ID: "BH201", Name: "policy-always-true", Title: "Permissive policy that is always true", Severity: Error,
		Rationale: "A permissive policy with USING (true) or WITH CHECK (true) admits every row for the commands and roles it covers, and because permissive policies are OR-ed it overrides every tenant policy next to it. WITH CHECK (true) lets a tenant write rows that belong to another tenant.",
		Needs:     []string{srcRels, srcPolicies}, Splinter: "0024 permissive_rls_policy", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, p := range s.policies {
				if !p.permissive || !p.rel.tenant {
					continue
				}
				var parts []string
				if strings.TrimSpace(p.using) == "true" {
					parts = append(parts, "USING (true)")
				}
				if strings.TrimSpace(p.check) == "true" {
					parts = append(parts, "WITH CHECK (true)")
				}
				if len(parts) > 0 {
					out = append(out, Finding{Object: p.obj(), Detail: strings.Join(parts, " and "),
						Fix: fmt.Sprintf("DROP POLICY %s ON %s;\n-- replace with a policy on the tenant column", ident(p.name), qrel(p.rel))})
				}
			}
			return out
		},
	},
	{
		ID: "BH202", Name: "permissive-check-ignores-tenant", Title: "Permissive write policy whose check ignores the tenant column", Severity: Warn,
		Rationale: "For INSERT and UPDATE the new row must pass WITH CHECK (or USING when there is no WITH CHECK). A permissive write policy that does not constrain the tenant column lets a tenant insert rows into, or move rows to, another tenant: data injection across tenants that no read policy notices.",
		Needs:     []string{srcRels, srcColumns, srcPolicies}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.withTenantColumn() {
				for _, p := range r.policies {
					if !p.permissive || (p.cmd != "a" && p.cmd != "w" && p.cmd != "*") {
						continue
					}
					tree, text := p.chkTree, p.check
					if tree == nil && p.cmd != "a" {
						tree, text = p.usingTree, p.using
					}
					if tree == nil || !refsRowColumn(tree, r.tenantAtt) {
						if text == "" {
							text = "none"
						}
						out = append(out, Finding{Object: p.obj(), Detail: "new rows are checked by (" + text + "), which does not read " + s.opts.TenantColumn,
							Fix: fmt.Sprintf("ALTER POLICY %s ON %s WITH CHECK (%s = <current tenant>);", ident(p.name), qrel(r), ident(s.opts.TenantColumn))})
					}
				}
			}
			return out
		},
	},
	{
		ID: "BH203", Name: "multiple-permissive", Title: "Several permissive policies for one role and command", Severity: Warn,
		Rationale: "Permissive policies for the same role and command are OR-ed: each one widens what the others allow, a reviewer must read all of them together to know who sees a row, and the planner evaluates every one per row (a second permissive policy measured ~37× slower here). Keep one permissive tenant policy and express the rest AS RESTRICTIVE.",
		Needs:     []string{srcRels, srcPolicies, srcRoles}, Splinter: "0006 multiple_permissive_policies", Pgrls: "PERF",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				var found []string
				for _, cmd := range []string{"r", "a", "w", "d"} {
					roles := map[uint32]bool{0: true}
					for _, p := range r.policies {
						for _, ro := range p.roles {
							roles[ro] = true
						}
					}
					for ro := range roles {
						var names []string
						for _, p := range r.policies {
							if !p.permissive || (p.cmd != cmd && p.cmd != "*") {
								continue
							}
							for _, pr := range p.roles {
								if pr == 0 || pr == ro {
									names = append(names, p.name)
									break
								}
							}
						}
						if len(names) > 1 {
							sort.Strings(names)
							found = append(found, fmt.Sprintf("%s for %s: %s", cmdName(cmd), s.roleName(ro), strings.Join(names, ", ")))
						}
					}
				}
				if len(found) > 0 {
					sort.Strings(found)
					out = append(out, tableFinding(r, strings.Join(dedupe(found), "; "), "-- merge them into one permissive policy, or ALTER them into AS RESTRICTIVE policies (DROP + CREATE ... AS RESTRICTIVE)"))
				}
			}
			return out
		},
	},
	{
		ID: "BH204", Name: "context-not-initplan", Title: "Context function evaluated per row", Severity: Warn,
		Rationale: "A policy that calls current_setting() or a STABLE context helper directly (not as a scalar sub-query `(SELECT fn())`) makes PostgreSQL evaluate it once per row instead of once per statement as an InitPlan; helpers in plpgsql are also not inlined. On large tables this is the difference between an index scan and seconds of CPU.",
		Needs:     []string{srcRels, srcPolicies}, Splinter: "0003 auth_rls_initplan", Pgrls: "PERF",
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string { return alterPolicyFix(p, "wrap the call: (SELECT fn()) instead of fn()") },
				func(s *snapshot, p *policy, n *node, depth int, parents []*node) string {
					if n.typ != "FUNCEXPR" || depth != 0 || underSubLink(parents) {
						return ""
					}
					for _, pa := range parents {
						if pa.typ == "FUNCEXPR" && (isCurrentSetting(pa) || !contains(pa.f["args"], func(x *node) bool { return x.typ == "VAR" })) {
							return "" // reported at the outer call
						}
					}
					if isCurrentSetting(n) {
						return "current_setting(...) is called per row"
					}
					var oid uint32
					fmt.Sscan(n.str("funcid"), &oid)
					f := s.treeFuncs[oid]
					if f == nil || f.volatile == "i" || f.schema == "pg_catalog" {
						return ""
					}
					if contains(n.f["args"], func(x *node) bool { return x.typ == "VAR" }) {
						return ""
					}
					return s.funcLabel(n.str("funcid")) + " is called per row"
				})
		},
	},
	{
		ID: "BH205", Name: "volatile-in-policy", Title: "VOLATILE function in a policy", Severity: Warn,
		Rationale: "A VOLATILE function in a policy is called for every row, can't be inlined or hoisted, blocks index use on the tenant column and may give different answers within one statement (a VOLATILE plpgsql helper measured ~300× slower than an inlinable SQL one). Policy helpers should be STABLE (or IMMUTABLE) LANGUAGE sql.",
		Needs:     []string{srcRels, srcPolicies}, Pgrls: "PERF",
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string { return "ALTER FUNCTION <fn> STABLE; -- if it only reads" },
				func(s *snapshot, p *policy, n *node, _ int, _ []*node) string {
					if n.typ != "FUNCEXPR" {
						return ""
					}
					var oid uint32
					fmt.Sscan(n.str("funcid"), &oid)
					if f := s.treeFuncs[oid]; f != nil && f.volatile == "v" {
						return s.funcLabel(n.str("funcid")) + " is VOLATILE"
					}
					return ""
				})
		},
	},
	{
		ID: "BH206", Name: "setting-not-missing-ok", Title: "current_setting() without missing_ok in a policy", Severity: Info,
		Rationale: "current_setting('x') with one argument raises an error when the setting was never set in the session, so a request without context fails with an internal error instead of seeing zero rows; code then tends to paper over it with a default. Use current_setting('x', true) and treat NULL and '' as no context.",
		Needs:     []string{srcRels, srcPolicies},
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string {
				return alterPolicyFix(p, "use nullif(current_setting('<name>', true), '')::<type>")
			}, func(s *snapshot, p *policy, n *node, _ int, _ []*node) string {
				if n.typ == "FUNCEXPR" && n.str("funcid") == oidCurrentSetting1 {
					return "current_setting(name) errors when the setting is missing"
				}
				return ""
			})
		},
	},
	{
		ID: "BH207", Name: "setting-cast-without-nullif", Title: "Setting cast without nullif", Severity: Warn,
		Rationale: "After a transaction that used SET LOCAL has ended, current_setting(name, true) returns '' (not NULL) on that pooled connection, and ''::uuid raises an error. A policy that casts the setting directly therefore fails on the next request without context instead of returning zero rows; nullif(current_setting(name, true), '')::uuid makes \"no context\" mean nothing visible.",
		Needs:     []string{srcRels, srcPolicies},
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string {
				return alterPolicyFix(p, "cast nullif(current_setting('<name>', true), '') instead")
			}, func(s *snapshot, p *policy, n *node, _ int, _ []*node) string {
				if n.typ != "COERCEVIAIO" && n.typ != "FUNCEXPR" {
					return ""
				}
				if n.typ == "FUNCEXPR" && n.str("funcformat") != "1" && n.str("funcformat") != "2" {
					return ""
				}
				args := n.list("args")
				arg := n.f["arg"]
				if n.typ == "FUNCEXPR" && len(args) > 0 {
					arg = args[0]
				}
				if a, ok := stripRelabel(arg).(*node); ok && isCurrentSetting(a) {
					return "current_setting(...) is cast directly: '' raises an error"
				}
				return ""
			})
		},
	},
	{
		ID: "BH208", Name: "policy-self-comparison", Title: "Policy compares a column with itself (unqualified column captured by a sub-query)", Severity: Error,
		Rationale: "In `EXISTS (SELECT 1 FROM participants p WHERE p.room_id = room_id)` the unqualified room_id binds to the sub-query's own table, not to the row under the policy, so the condition is `p.room_id = p.room_id`: always true, and the membership check admits every room of every participant. PostgreSQL stores the resolved parse tree, so the audit compares the actual column references instead of the text.",
		Needs:     []string{srcRels, srcPolicies},
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string {
				return alterPolicyFix(p, "qualify the outer column with the table's name: p.room_id = "+p.rel.name+".room_id")
			}, func(s *snapshot, p *policy, n *node, depth int, parents []*node) string {
				if n.typ != "OPEXPR" {
					return ""
				}
				args := n.list("args")
				if len(args) != 2 || !sameVar(args[0], args[1]) {
					return ""
				}
				v := stripRelabel(args[0]).(*node)
				col := varName(p, v, depth, parents)
				where := "in the policy"
				if depth > 0 {
					where = fmt.Sprintf("in a sub-query (depth %d)", depth)
				}
				return fmt.Sprintf("%s compares %s with itself (%s = %s)", where, col, col, col)
			})
		},
	},
	{
		ID: "BH209", Name: "uncorrelated-exists", Title: "EXISTS sub-query in a policy that ignores the row", Severity: Warn,
		Rationale: "An EXISTS sub-query that never references the row under the policy has the same value for every row: if it is true for the caller (e.g. they are a participant of some room), the policy admits all rows. It is the usual shape of a membership check whose correlation was lost to an unqualified column.",
		Needs:     []string{srcRels, srcPolicies},
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string {
				return alterPolicyFix(p, "correlate the sub-query with the row: ... WHERE p.room_id = "+p.rel.name+".room_id")
			}, func(s *snapshot, p *policy, n *node, depth int, _ []*node) string {
				if n.typ != "SUBLINK" || n.str("subLinkType") != "0" {
					return ""
				}
				correlated := false
				walk(n.f["subselect"], depth, nil, func(x *node, k int, _ []*node) {
					if x.typ == "VAR" && int64(k)-x.num("varlevelsup") <= int64(depth) {
						correlated = true
					}
				})
				if correlated {
					return ""
				}
				return "EXISTS (...) does not reference the row"
			})
		},
	},
	{
		ID: "BH210", Name: "in-subquery-membership", Title: "IN (SELECT ...) membership test in a policy", Severity: Info,
		Rationale: "`col IN (SELECT ...)` (or `= ANY (SELECT ...)`) in a policy is planned as a hashed or per-row sub-plan; `col = ANY (ARRAY(SELECT ...))` is computed once per statement as an InitPlan. Measured here on 2M rows: 158 ms against 0.19 ms. The array form suits a small set (the caller's rooms); when the set can be large (every visible parent row), prefer a correlated `EXISTS (SELECT 1 FROM parent p WHERE p.id = row.parent_id ...)`, a primary-key probe per row read: building a 6,000-id array per statement made a 50-row read by id scan 27,000 rows (91 ms against 1 ms as a probe).",
		Needs:     []string{srcRels, srcPolicies}, Pgrls: "PERF",
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string {
				return alterPolicyFix(p, "write col = ANY (ARRAY(SELECT ...)) for a small set, or a correlated EXISTS on the referenced key for a large one, instead of col IN (SELECT ...)")
			}, func(s *snapshot, p *policy, n *node, _ int, _ []*node) string {
				if n.typ == "SUBLINK" && (n.str("subLinkType") == "2" || n.str("subLinkType") == "1") {
					return "IN/ANY/ALL (SELECT ...)"
				}
				return ""
			})
		},
	},
	{
		ID: "BH211", Name: "fail-open-missing-context", Title: "Policy that admits rows when the context is missing", Severity: Error,
		Rationale: "`... OR current_setting('app.tenant_id', true) IS NULL` (or the same test on a context helper) turns \"no tenant in context\" into \"every tenant\": a connection that forgot to set context, a background job or an injected statement sees everything. Missing context must mean zero rows.",
		Needs:     []string{srcRels, srcPolicies},
		run: func(s *snapshot) []Finding {
			return eachPolicyNode(s, func(p *policy) string {
				return alterPolicyFix(p, "remove the IS NULL branch: no context must match nothing")
			},
				func(s *snapshot, p *policy, n *node, _ int, _ []*node) string {
					if n.typ != "BOOLEXPR" || n.str("boolop") != "or" {
						return ""
					}
					for _, a := range n.list("args") {
						t, ok := stripRelabel(a).(*node)
						if !ok || t.typ != "NULLTEST" || t.str("nulltesttype") != "0" {
							continue
						}
						hasVar := contains(t.f["arg"], func(x *node) bool { return x.typ == "VAR" })
						hasCall := contains(t.f["arg"], func(x *node) bool { return x.typ == "FUNCEXPR" })
						if hasCall && !hasVar {
							return "an OR branch is true when the context is NULL"
						}
					}
					return ""
				})
		},
	},
}

func dedupe(l []string) []string {
	var out []string
	for i, s := range l {
		if i == 0 || s != l[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// varName names the column a Var reads: table.column for the policy's own
// row, alias.column for a sub-query's relation (from the query's range
// table), or its numbers when the tree has no names.
func varName(p *policy, v *node, depth int, parents []*node) string {
	level := int64(depth) - v.num("varlevelsup")
	if level <= 0 {
		return p.rel.name + "." + p.rel.col(int16(v.num("varattno")))
	}
	var q *node
	k := int64(0)
	for _, pa := range parents {
		if pa.typ == "QUERY" {
			k++
			if k == level {
				q = pa
			}
		}
	}
	fallback := fmt.Sprintf("var %s.%s", v.str("varno"), v.str("varattno"))
	if q == nil {
		return fallback
	}
	rt := q.list("rtable")
	no, att := v.num("varno"), v.num("varattno")
	if no < 1 || int(no) > len(rt) {
		return fallback
	}
	rte, ok := rt[no-1].(*node)
	if !ok {
		return fallback
	}
	eref, ok := rte.f["eref"].(*node)
	if !ok {
		return fallback
	}
	cols := eref.list("colnames")
	if att < 1 || int(att) > len(cols) {
		return fallback
	}
	c, _ := cols[att-1].(string)
	return strings.Trim(eref.str("aliasname"), `"`) + "." + strings.Trim(c, `"`)
}
