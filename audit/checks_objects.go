package audit

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	notifyStmt = regexp.MustCompile(`(?i)(^|[;\s])notify\s+[a-z_"]`)
	pgNotify   = regexp.MustCompile(`(?i)pg_notify\s*\(`)
	notifyFunc = regexp.MustCompile(`(?i)^\s*("?[a-z_][\w$]*"?\s*\.\s*)?("?[a-z_][\w$]*"?)\s*\(`)
)

// leakyNotify reports whether body sends notifications on a channel the
// runtime role could name: every NOTIFY statement, and every pg_notify
// whose channel is not computed by a function the runtime role can't
// execute (an unguessable, keyed channel name).
func (s *snapshot) leakyNotify(body string) bool {
	clean := blankLiterals(body)
	if notifyStmt.MatchString(clean) {
		return true
	}
	for _, loc := range pgNotify.FindAllStringIndex(clean, -1) {
		m := notifyFunc.FindStringSubmatch(clean[loc[1]:])
		if m == nil {
			return true // a literal or a variable
		}
		name := strings.Trim(m[2], `"`)
		if m[1] != "" {
			name = strings.Trim(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[1]), ".")), `"`) + "." + name
		}
		fs := s.funcByName[name]
		if len(fs) == 0 {
			return true
		}
		for _, f := range fs {
			if f.runtimeExec || f.publicExec {
				return true
			}
		}
	}
	return false
}

func (s *snapshot) dependsOnTenant(view *rel, pred func(t *rel) bool) []string {
	var out []string
	for _, t := range s.viewDeps[view.oid] {
		if r := s.rels[t]; r != nil && r.tenant && pred(r) {
			out = append(out, r.qname())
		}
	}
	return out
}

var objectChecks = []Check{
	{
		ID: "BH601", Name: "definer-view", Title: "View over a tenant table that runs with an RLS-bypassing owner's rights", Severity: Error,
		Rationale: "A view without security_invoker reads its tables with the view owner's rights. When that owner skips row-level security on a tenant table it reads (superuser, BYPASSRLS, or the table's owner without FORCE), the view returns every tenant's rows to whoever may select from it.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcViews, srcRoles}, Splinter: "0010 security_definer_view", Pgrls: "VIEW",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, v := range s.rels {
				if v.kind != "v" || isTrue(relOption(v, "security_invoker")) {
					continue
				}
				if s.runtime != "" && !v.sel {
					continue
				}
				leaks := s.dependsOnTenant(v, func(t *rel) bool { return t.rls && s.bypassesRLS(v.owner, t) })
				if len(leaks) > 0 {
					out = append(out, Finding{Object: Object{Kind: "view", Schema: v.schema, Table: v.name}, Detail: fmt.Sprintf("runs as %s, which bypasses RLS on %s", s.roleName(v.owner), joinSorted(leaks)),
						Fix: fmt.Sprintf("ALTER VIEW %s SET (security_invoker = true);", qrel(v))})
				}
			}
			return out
		},
	},
	{
		ID: "BH602", Name: "matview-over-tenant", Title: "Materialized view over a tenant table readable by the runtime role", Severity: Error,
		Rationale: "A materialized view stores the rows its owner could see when it was refreshed and has no row-level security of its own: every reader sees every tenant's rows in it.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcViews}, Splinter: "0016 materialized_view_in_api", Pgrls: "VIEW",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, v := range s.rels {
				if v.kind != "m" || (s.runtime != "" && !v.sel) {
					continue
				}
				if deps := s.dependsOnTenant(v, func(*rel) bool { return true }); len(deps) > 0 {
					out = append(out, Finding{Object: Object{Kind: "view", Schema: v.schema, Table: v.name}, Detail: "materializes " + joinSorted(deps),
						Fix: fmt.Sprintf("REVOKE ALL ON %s FROM PUBLIC%s; -- or replace it with a security_invoker view", qrel(v), runtimeSuffix(s))})
				}
			}
			return out
		},
	},
	{
		ID: "BH603", Name: "rule-on-tenant-table", Title: "Rewrite rule on a tenant table", Severity: Error,
		Rationale: "A rule rewrites statements on the table into other statements that run with the table owner's rights: an ON INSERT/UPDATE/DELETE rule can copy every tenant's rows elsewhere or turn a write into something the policies never see. Policies and triggers are the reviewed mechanisms; rules on tenant tables should not exist.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcRules},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, ru := range s.rules {
				if ru.rel.tenant {
					out = append(out, Finding{Object: Object{Kind: "rule", Schema: ru.rel.schema, Table: ru.rel.name, Name: ru.name}, Detail: "rule " + ru.name + " on " + ru.rel.qname(),
						Fix: fmt.Sprintf("DROP RULE %s ON %s;", ident(ru.name), qrel(ru.rel))})
				}
			}
			return out
		},
	},
	{
		ID: "BH604", Name: "foreign-trigger-function", Title: "Trigger on an RLS table runs a function another role controls", Severity: Warn,
		Rationale: "A trigger sees every row written to the table, whatever the policies. When its function is owned by a role other than the table's owner, that role can CREATE OR REPLACE the function and capture every tenant's writes. The exemption is precise: the function's owner can't log in and the runtime role can't become it.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcTriggers, srcFuncs, srcRoles},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, tg := range s.triggers {
				f := s.funcs[tg.fn]
				if !tg.rel.tenant || !tg.rel.rls || f == nil || f.owner == tg.rel.owner {
					continue
				}
				o := s.roles[f.owner]
				if o != nil && !o.login && !o.runtimeMember {
					continue
				}
				out = append(out, Finding{Object: Object{Kind: "trigger", Schema: tg.rel.schema, Table: tg.rel.name, Name: tg.name},
					Detail: fmt.Sprintf("%s is owned by %s; the table by %s", f.qname(), s.roleName(f.owner), s.roleName(tg.rel.owner)),
					Fix:    fmt.Sprintf("ALTER FUNCTION %s OWNER TO %s; -- or to a NOLOGIN role", qfunc(f), ident(s.roleName(tg.rel.owner)))})
			}
			return out
		},
	},
	{
		ID: "BH605", Name: "notify-from-tenant-trigger", Title: "Trigger on a tenant table sends NOTIFY on a guessable channel", Severity: Warn,
		Rationale: "LISTEN needs no privilege: any session can listen on any channel name. A trigger that NOTIFYs with a fixed or derivable channel tells every listener, of every tenant, when rows are written and whatever the payload carries. Channels must be unguessable per tenant (keyed, computed by a function the runtime role can't call) and payloads carry ids only.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcTriggers, srcFuncs},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, tg := range s.triggers {
				f := s.funcs[tg.fn]
				if !tg.rel.tenant || f == nil || !s.leakyNotify(f.src) {
					continue
				}
				out = append(out, Finding{Object: Object{Kind: "trigger", Schema: tg.rel.schema, Table: tg.rel.name, Name: tg.name},
					Detail: f.qname() + " notifies on a channel any session can LISTEN to",
					Fix:    "-- compute the channel with a keyed function the runtime role can't EXECUTE (e.g. an HMAC of the tenant id), or drop the trigger:\nDROP TRIGGER " + ident(tg.name) + " ON " + qrel(tg.rel) + ";"})
			}
			return out
		},
	},
	{
		ID: "BH606", Name: "publication-of-tenant-table", Title: "Tenant table in a publication", Severity: Warn,
		Rationale: "Logical replication copies rows without row-level security: the subscriber (and anyone who can read its copy, or create a subscription with the publication's credentials) gets every tenant's rows. Replicate tenant data only to systems that enforce the same isolation, and say so in a reviewed exception.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcPubs},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, p := range s.pubs {
				r := s.rels[p.rel]
				if r == nil || !r.tenant {
					continue
				}
				out = append(out, Finding{Object: Object{Kind: "publication", Schema: r.schema, Table: r.name, Name: p.pub}, Detail: "published by " + p.pub,
					Fix: fmt.Sprintf("ALTER PUBLICATION %s DROP TABLE %s;", ident(p.pub), qrel(r))})
			}
			return out
		},
	},
	{
		ID: "BH607", Name: "foreign-table-readable", Title: "Foreign table readable by the runtime role", Severity: Info,
		Rationale: "Foreign tables can't have row-level security: rows come from the remote server with the user mapping's rights. A foreign table the runtime role can read is outside database-enforced isolation and must be tenant-free or filtered remotely.",
		Needs:     []string{srcRels}, Splinter: "0017 foreign_table_in_api",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.rels {
				if r.kind == "f" && (s.runtime == "" || r.sel) {
					out = append(out, Finding{Object: Object{Kind: "foreign table", Schema: r.schema, Table: r.name}, Detail: "no row-level security on foreign tables",
						Fix: fmt.Sprintf("REVOKE ALL ON %s FROM PUBLIC%s;", qrel(r), runtimeSuffix(s))})
				}
			}
			return out
		},
	},
}

func runtimeSuffix(s *snapshot) string {
	if s.runtime == "" {
		return ""
	}
	return ", " + ident(s.runtime)
}
