package audit

import (
	"fmt"
	"sort"
	"strings"
)

// Checks is every check, in report order.
var Checks = concat(rlsChecks, policyChecks, roleChecks, grantChecks, functionChecks, objectChecks, constraintChecks, contextChecks, cveChecks)

func concat(ls ...[]Check) []Check {
	var out []Check
	for _, l := range ls {
		out = append(out, l...)
	}
	return out
}

func tableFinding(r *rel, detail, fix string) Finding {
	return Finding{Object: r.obj(), Detail: detail, Fix: fix}
}

var rlsChecks = []Check{
	{
		ID: "BH101", Name: "rls-disabled", Title: "Tenant table without row-level security", Severity: Error,
		Rationale: "A table that carries the tenant column but has row-level security disabled and no policies returns every tenant's rows to any role that can read it: isolation then rests entirely on every query remembering its WHERE clause, which is exactly the failure RLS exists to make impossible.",
		Needs:     []string{srcRels, srcColumns, srcPolicies}, Splinter: "0013 rls_disabled_in_public", Pgrls: "SEC001",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.withTenantColumn() {
				if r.rls || len(r.policies) > 0 {
					continue
				}
				if p := s.rels[r.parent]; p != nil && p.rls {
					continue // BH106
				}
				out = append(out, tableFinding(r, "row-level security is disabled",
					fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\nCREATE POLICY tenant_isolation ON %s USING (%s = nullif(current_setting('app.tenant_id', true), '')::uuid);", qrel(r), qrel(r), ident(s.opts.TenantColumn))))
			}
			return out
		},
	},
	{
		ID: "BH102", Name: "rls-not-forced", Title: "Row-level security not forced", Severity: Warn,
		Rationale: "Without FORCE ROW LEVEL SECURITY the table's owner, and every member of the owner role, skips all policies. Migrations, maintenance jobs and any application path that connects as the owner then see and change every tenant's rows without error, so a misconfigured connection string silently becomes a cross-tenant leak.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcRoles}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if !r.rls || r.force {
					continue
				}
				if s.runtime != "" && s.roles[r.owner] != nil && s.roles[r.owner].runtimeMember {
					continue // BH103
				}
				out = append(out, tableFinding(r, "ENABLE without FORCE: the owner "+s.roleName(r.owner)+" bypasses the policies",
					fmt.Sprintf("ALTER TABLE %s FORCE ROW LEVEL SECURITY;", qrel(r))))
			}
			return out
		},
	},
	{
		ID: "BH103", Name: "rls-not-forced-runtime-owner", Title: "Row-level security not forced and the runtime role owns the table", Severity: Error,
		Rationale: "The application's own role owns the table (or can become its owner) and the table is not FORCE ROW LEVEL SECURITY, so PostgreSQL skips every policy for the application: RLS is installed but enforces nothing on the one connection it was meant for.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcRoles}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if r.rls && !r.force && s.roles[r.owner] != nil && s.roles[r.owner].runtimeMember {
					out = append(out, tableFinding(r, fmt.Sprintf("owned by %s, which %s is or is a member of; not FORCE", s.roleName(r.owner), s.runtime),
						fmt.Sprintf("ALTER TABLE %s FORCE ROW LEVEL SECURITY;\nALTER TABLE %s OWNER TO <migration_owner_role>;", qrel(r), qrel(r))))
				}
			}
			return out
		},
	},
	{
		ID: "BH104", Name: "rls-no-policy", Title: "Row-level security enabled without any policy", Severity: Info,
		Rationale: "Row-level security with no policy denies every row to every role subject to it. That fails closed, but it usually means a policy was dropped or never created, and the usual \"fix\" under pressure is to disable RLS: it deserves a deliberate decision.",
		Needs:     []string{srcRels, srcPolicies}, Splinter: "0008 rls_enabled_no_policy", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if r.rls && len(r.policies) == 0 {
					out = append(out, tableFinding(r, "no policy: every row is hidden from roles subject to RLS",
						fmt.Sprintf("CREATE POLICY tenant_isolation ON %s USING (%s = nullif(current_setting('app.tenant_id', true), '')::uuid);", qrel(r), ident(s.opts.TenantColumn))))
				}
			}
			return out
		},
	},
	{
		ID: "BH105", Name: "policy-rls-disabled", Title: "Policies exist but row-level security is disabled", Severity: Error,
		Rationale: "Policies on a table with row-level security disabled are not applied at all. The schema reads as protected in review while every row is visible: typically RLS was switched off to debug or migrate and never switched back on.",
		Needs:     []string{srcRels, srcPolicies}, Splinter: "0007 policy_exists_rls_disabled", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if !r.rls && len(r.policies) > 0 {
					out = append(out, tableFinding(r, fmt.Sprintf("%d policies, none applied", len(r.policies)),
						fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;", qrel(r))))
				}
			}
			return out
		},
	},
	{
		ID: "BH106", Name: "partition-without-rls", Title: "Partition or child table without row-level security", Severity: Error,
		Rationale: "Policies of a partitioned (or inheritance parent) table apply only to queries that name the parent. A query that names a partition directly uses the partition's own row-level security, so a partition without RLS returns every tenant's rows in it to anyone with a grant on it.",
		Needs:     []string{srcRels, srcColumns, srcPolicies},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if p := s.rels[r.parent]; p != nil && p.rls && !r.rls {
					out = append(out, tableFinding(r, "child of "+p.qname()+", which has RLS; this table has none",
						fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\n-- and create the parent's policies on it\nREVOKE ALL ON %s FROM PUBLIC;", qrel(r), qrel(r))))
				}
			}
			return out
		},
	},
	{
		ID: "BH107", Name: "command-not-covered", Title: "Runtime role has a privilege that no permissive policy covers", Severity: Info,
		Rationale: "When the runtime role holds SELECT, INSERT, UPDATE or DELETE on an RLS table but no permissive policy applies to that command for it, every such statement sees or changes zero rows (or fails WITH CHECK). That fails closed, but either the grant is unneeded (revoke it: least privilege) or a policy is missing.",
		Needs:     []string{srcRels, srcPolicies, srcRoles}, Runtime: true, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if !r.rls {
					continue
				}
				var missing []string
				for _, c := range []struct {
					cmd  string
					have bool
				}{{"r", r.sel}, {"a", r.ins}, {"w", r.upd}, {"d", r.del}} {
					if !c.have {
						continue
					}
					covered := false
					for _, p := range r.policies {
						if p.permissive && (p.cmd == c.cmd || p.cmd == "*") && p.appliesToRuntime(s) {
							covered = true
						}
					}
					if !covered {
						missing = append(missing, cmdName(c.cmd))
					}
				}
				if len(missing) > 0 {
					out = append(out, tableFinding(r, "no permissive policy for "+strings.Join(missing, ", "),
						fmt.Sprintf("REVOKE %s ON %s FROM %s; -- or add the missing policy", strings.Join(missing, ", "), qrel(r), ident(s.runtime))))
				}
			}
			return out
		},
	},
	{
		ID: "BH108", Name: "restrictive-only", Title: "Only restrictive policies", Severity: Info,
		Rationale: "Restrictive policies only narrow what permissive policies allow; with no permissive policy nothing is visible. Usually the tenant (layer-1) policy was dropped while the entity (layer-2) policies stayed.",
		Needs:     []string{srcRels, srcPolicies}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if len(r.policies) == 0 {
					continue
				}
				perm := false
				for _, p := range r.policies {
					perm = perm || p.permissive
				}
				if !perm {
					out = append(out, tableFinding(r, fmt.Sprintf("%d restrictive policies, no permissive one", len(r.policies)),
						fmt.Sprintf("CREATE POLICY tenant_isolation ON %s AS PERMISSIVE USING (%s = nullif(current_setting('app.tenant_id', true), '')::uuid);", qrel(r), ident(s.opts.TenantColumn))))
				}
			}
			return out
		},
	},
	{
		ID: "BH109", Name: "tenant-column-nullable", Title: "Tenant column allows NULL", Severity: Warn,
		Rationale: "A row whose tenant is NULL belongs to nobody: it is invisible to tenant policies but still counted by constraints, and any policy or query written as `tenant_id IS NOT DISTINCT FROM ...` or with COALESCE can hand it to whoever has no context. The tenant column should be NOT NULL with the current tenant as default.",
		Needs:     []string{srcRels, srcColumns, srcPolicies},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.withTenantColumn() {
				for _, c := range r.cols {
					if c.num == r.tenantAtt && !c.notNull {
						out = append(out, tableFinding(r, ident(c.name)+" is nullable",
							fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;", qrel(r), ident(c.name))))
					}
				}
			}
			return out
		},
	},
	{
		ID: "BH110", Name: "permissive-using-ignores-tenant", Title: "Permissive policy whose USING ignores the tenant column", Severity: Warn,
		Rationale: "Permissive policies are OR-ed: one permissive policy that does not constrain the tenant column makes every row it admits visible whatever the tenant policy says (an early elizaOS entity policy leaked other servers' rows this way). Entity-level rules belong in AS RESTRICTIVE policies on top of a tenant policy.",
		Needs:     []string{srcRels, srcColumns, srcPolicies}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.withTenantColumn() {
				for _, p := range r.policies {
					if p.permissive && p.cmd != "a" && p.usingTree != nil && !refsRowColumn(p.usingTree, r.tenantAtt) {
						out = append(out, Finding{Object: p.obj(), Detail: "USING (" + p.using + ") does not read " + s.opts.TenantColumn,
							Fix: fmt.Sprintf("ALTER POLICY %s ON %s USING (%s = <current tenant> AND (%s));\n-- or: DROP it and recreate AS RESTRICTIVE", ident(p.name), qrel(r), ident(s.opts.TenantColumn), p.using)})
					}
				}
			}
			return out
		},
	},
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
