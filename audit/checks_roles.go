package audit

import (
	"fmt"
	"sort"
	"strings"
)

func roleFinding(name, detail, fix string) Finding {
	return Finding{Object: Object{Kind: "role", Name: name}, Detail: detail, Fix: fix}
}

var roleChecks = []Check{
	{
		ID: "BH301", Name: "runtime-superuser", Title: "Runtime role is a superuser", Severity: Error,
		Rationale: "Superusers skip row-level security even on FORCE tables, can set any setting (including a \"superuser-only\" tenant context) and can turn RLS off. An application connecting as a superuser has no tenant isolation at all.",
		Needs:     []string{srcRoles}, Runtime: true, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			if r := s.runtimeRole(); r != nil && r.super {
				return []Finding{roleFinding(r.name, "SUPERUSER", fmt.Sprintf("ALTER ROLE %s NOSUPERUSER;", ident(r.name)))}
			}
			return nil
		},
	},
	{
		ID: "BH302", Name: "runtime-bypassrls", Title: "Runtime role has BYPASSRLS", Severity: Error,
		Rationale: "BYPASSRLS skips every policy, FORCE or not. The application role must be subject to RLS; work that legitimately spans tenants belongs to a separate, explicitly named role.",
		Needs:     []string{srcRoles}, Runtime: true, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			if r := s.runtimeRole(); r != nil && r.bypass {
				return []Finding{roleFinding(r.name, "BYPASSRLS", fmt.Sprintf("ALTER ROLE %s NOBYPASSRLS;", ident(r.name)))}
			}
			return nil
		},
	},
	{
		ID: "BH303", Name: "runtime-owns-tenant-table", Title: "Runtime role owns a tenant table", Severity: Error,
		Rationale: "Even with FORCE ROW LEVEL SECURITY, the owner of a table can ALTER TABLE ... NO FORCE / DISABLE ROW LEVEL SECURITY, drop or replace its policies, and add triggers: one injected statement on the application's connection removes isolation for good. The runtime role should own nothing.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcRoles}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if s.roleName(r.owner) == s.runtime {
					out = append(out, tableFinding(r, "owned by "+s.runtime, fmt.Sprintf("ALTER TABLE %s OWNER TO <migration_owner_role>;", qrel(r))))
				}
			}
			return out
		},
	},
	{
		ID: "BH304", Name: "runtime-member-of-owner", Title: "Runtime role is a member of a tenant table's owner", Severity: Error,
		Rationale: "A member of the owner role has the owner's rights: with INHERIT it skips non-forced policies directly, and with or without it SET ROLE gives ALTER TABLE, DROP POLICY and DISABLE ROW LEVEL SECURITY. The runtime role must not be a member of the role that owns tenant tables.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcRoles}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				o := s.roles[r.owner]
				if o != nil && o.name != s.runtime && o.runtimeMember {
					out = append(out, tableFinding(r, fmt.Sprintf("owner %s has %s as a member", o.name, s.runtime),
						fmt.Sprintf("REVOKE %s FROM %s;", ident(o.name), ident(s.runtime))))
				}
			}
			return out
		},
	},
	{
		ID: "BH305", Name: "runtime-member-of-privileged", Title: "Runtime role can become a superuser or BYPASSRLS role", Severity: Error,
		Rationale: "Membership in a role that is SUPERUSER or BYPASSRLS lets the runtime role SET ROLE to it and skip every policy. A NOSUPERUSER NOBYPASSRLS runtime role is only as strong as the roles it can become.",
		Needs:     []string{srcRoles}, Runtime: true, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.roles {
				if r.name != s.runtime && r.runtimeMember && (r.super || r.bypass) {
					what := "BYPASSRLS"
					if r.super {
						what = "SUPERUSER"
					}
					out = append(out, roleFinding(r.name, fmt.Sprintf("%s can SET ROLE %s (%s)", s.runtime, r.name, what),
						fmt.Sprintf("REVOKE %s FROM %s;", ident(r.name), ident(s.runtime))))
				}
			}
			return out
		},
	},
	{
		ID: "BH306", Name: "runtime-createrole", Title: "Runtime role has CREATEROLE", Severity: Warn,
		Rationale: "CREATEROLE lets the application role create roles and (before PostgreSQL 16) grant itself membership in any non-superuser role, including the table owner or a BYPASSRLS maintenance role. The runtime role needs no role management.",
		Needs:     []string{srcRoles}, Runtime: true,
		run: func(s *snapshot) []Finding {
			if r := s.runtimeRole(); r != nil && r.createrole {
				return []Finding{roleFinding(r.name, "CREATEROLE", fmt.Sprintf("ALTER ROLE %s NOCREATEROLE;", ident(r.name)))}
			}
			return nil
		},
	},
	{
		ID: "BH307", Name: "runtime-owns-objects", Title: "Runtime role owns schemas, functions or relations", Severity: Warn,
		Rationale: "An owner can redefine what it owns: a function the policies call, a view, a schema in which it can then create shadowing objects. Whatever the runtime role owns is code an injected statement can replace. It should own nothing.",
		Needs:     []string{srcRels, srcFuncs, srcSchemas, srcRoles}, Runtime: true,
		run: func(s *snapshot) []Finding {
			rt := s.runtimeRole()
			if rt == nil {
				return nil
			}
			var out []Finding
			for _, r := range s.rels {
				if r.owner == rt.oid && !r.tenant {
					out = append(out, Finding{Object: Object{Kind: "relation", Schema: r.schema, Table: r.name}, Detail: "owned by " + rt.name,
						Fix: fmt.Sprintf("ALTER TABLE %s OWNER TO <migration_owner_role>; -- ALTER VIEW/SEQUENCE for those", qrel(r))})
				}
			}
			for _, f := range s.funcs {
				if f.owner == rt.oid {
					out = append(out, Finding{Object: f.obj(), Detail: "owned by " + rt.name, Fix: fmt.Sprintf("ALTER FUNCTION %s OWNER TO <migration_owner_role>;", qfunc(f))})
				}
			}
			for _, sc := range s.schemas {
				if sc.owner == rt.oid {
					out = append(out, Finding{Object: Object{Kind: "schema", Schema: sc.name}, Detail: "owned by " + rt.name, Fix: fmt.Sprintf("ALTER SCHEMA %s OWNER TO <migration_owner_role>;", ident(sc.name))})
				}
			}
			return out
		},
	},
	{
		ID: "BH308", Name: "tenant-table-owned-by-superuser", Title: "Tenant table owned by a superuser", Severity: Warn,
		Rationale: "A superuser-owned table means migrations run as a superuser, and the owner skips RLS whatever FORCE says. Anything that runs as the owner (SECURITY DEFINER functions, views without security_invoker, maintenance) then sees every tenant. Tenant tables should belong to a dedicated NOSUPERUSER owner role.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcRoles}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if o := s.roles[r.owner]; o != nil && o.super {
					out = append(out, tableFinding(r, "owned by superuser "+o.name, fmt.Sprintf("ALTER TABLE %s OWNER TO <nosuperuser_owner_role>;", qrel(r))))
				}
			}
			return out
		},
	},
}

func runtimeGrantCheck(id, name, title string, sev Severity, rationale, priv string, has func(*rel) bool) Check {
	return Check{
		ID: id, Name: name, Title: title, Severity: sev, Rationale: rationale,
		Needs: []string{srcRels, srcColumns, srcPolicies}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if has(r) {
					out = append(out, tableFinding(r, fmt.Sprintf("%s holds %s", s.runtime, priv),
						fmt.Sprintf("REVOKE %s ON %s FROM %s, PUBLIC;", priv, qrel(r), ident(s.runtime))))
				}
			}
			return out
		},
	}
}

var grantChecks = []Check{
	runtimeGrantCheck("BH401", "truncate-grant", "Runtime role can TRUNCATE a tenant table", Error,
		"TRUNCATE ignores row-level security: one statement by the application role empties the table for every tenant. The runtime role needs DELETE (which policies govern), never TRUNCATE.",
		"TRUNCATE", func(r *rel) bool { return r.truncate }),
	runtimeGrantCheck("BH402", "trigger-grant", "Runtime role can create triggers on a tenant table", Error,
		"The TRIGGER privilege lets the role attach a trigger to the table; a trigger sees every row written by every tenant (NEW/OLD are not filtered by RLS) and can copy them somewhere the attacker reads.",
		"TRIGGER", func(r *rel) bool { return r.trig }),
	runtimeGrantCheck("BH403", "references-grant", "Runtime role holds REFERENCES on a tenant table", Warn,
		"REFERENCES lets the role create a foreign key to the table from a table it controls; foreign key checks ignore RLS, so inserting candidate keys reveals which of them exist in other tenants (an existence oracle).",
		"REFERENCES", func(r *rel) bool { return r.refs }),
	{
		ID: "BH404", Name: "public-grant", Title: "PUBLIC holds privileges on a tenant table", Severity: Warn,
		Rationale: "A grant to PUBLIC reaches every role in the cluster, including roles created later for other applications, reporting tools or extensions; together with a policy TO PUBLIC it makes isolation depend on every one of them setting context correctly. Grant tenant tables to named roles only.",
		Needs:     []string{srcRels, srcColumns, srcPolicies}, Splinter: "0026/0027 pg_graphql_*_table_exposed", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if r.publicPrivs != "" {
					out = append(out, tableFinding(r, "PUBLIC holds "+r.publicPrivs, fmt.Sprintf("REVOKE ALL ON %s FROM PUBLIC;", qrel(r))))
				}
			}
			return out
		},
	},
	{
		ID: "BH405", Name: "runtime-create-on-schema", Title: "Runtime role can CREATE in a schema", Severity: Warn,
		Rationale: "CREATE on a schema lets the runtime role add tables, functions and operators that shadow the ones unqualified SQL resolves through search_path, and create objects that persist across sessions. The application role needs DML, not DDL.",
		Needs:     []string{srcSchemas}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, sc := range s.schemas {
				if sc.runtimeCreate {
					out = append(out, Finding{Object: Object{Kind: "schema", Schema: sc.name}, Detail: s.runtime + " can CREATE here",
						Fix: fmt.Sprintf("REVOKE CREATE ON SCHEMA %s FROM PUBLIC, %s;", ident(sc.name), ident(s.runtime))})
				}
			}
			return out
		},
	},
	{
		ID: "BH406", Name: "grant-option", Title: "Runtime role can re-grant privileges on a tenant table", Severity: Warn,
		Rationale: "A privilege held WITH GRANT OPTION can be handed to any other role, including roles that are not subject to the same policies, or to PUBLIC. The runtime role should not be able to widen access.",
		Needs:     []string{srcRels, srcColumns, srcPolicies}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, r := range s.tenant {
				if r.grantOption != "" {
					out = append(out, tableFinding(r, "WITH GRANT OPTION: "+r.grantOption,
						fmt.Sprintf("REVOKE GRANT OPTION FOR %s ON %s FROM %s;", r.grantOption, qrel(r), ident(s.runtime))))
				}
			}
			return out
		},
	},
	{
		ID: "BH407", Name: "shared-sequence", Title: "Tenant table numbered by a shared sequence", Severity: Info,
		Rationale: "A serial or identity column draws from one sequence for all tenants: each tenant sees the gaps other tenants' inserts leave, which reveals their activity and volume, and sequential ids are guessable. Prefer random UUIDs (or per-tenant numbering) for tenant rows.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcSeqs},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, su := range s.seqs {
				r := s.rels[su.table]
				if r == nil || !r.tenant || r.partition {
					continue
				}
				out = append(out, tableFinding(r, "numbered by "+su.seq, fmt.Sprintf("-- use uuid keys: ALTER TABLE %s ALTER COLUMN <id> SET DEFAULT gen_random_uuid() (after changing its type)", qrel(r))))
			}
			return out
		},
	},
}

func joinSorted(l []string) string {
	sort.Strings(l)
	return strings.Join(l, ", ")
}
