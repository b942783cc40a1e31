package audit

import (
	"fmt"
	"slices"
	"strings"
)

func hasKey(keys []int16, att int16) bool { return slices.Contains(keys, att) }

var constraintChecks = []Check{
	{
		ID: "BH701", Name: "unique-without-tenant", Title: "Unique key without the tenant column", Severity: Warn,
		Rationale: "Uniqueness is checked against every row, including rows RLS hides: inserting a value that another tenant already uses fails with a unique violation, which tells the caller that value exists elsewhere (an email, a slug, an external id). Every primary key and unique index of a tenant table should include the tenant column.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcIndexes}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, ix := range s.indexes {
				r := ix.rel
				if !r.tenant || r.tenantAtt == 0 || !ix.unique || hasKey(ix.keys, r.tenantAtt) {
					continue
				}
				out = append(out, Finding{Object: Object{Kind: "index", Schema: r.schema, Table: r.name, Name: ix.name}, Detail: ix.def,
					Fix: fmt.Sprintf("-- recreate with the tenant column first:\nDROP INDEX %s; -- (or the constraint)\nCREATE UNIQUE INDEX ON %s (%s, ...);", pgxIdent(r.schema, ix.name), qrel(r), ident(s.opts.TenantColumn))})
			}
			return out
		},
	},
	{
		ID: "BH702", Name: "foreign-key-without-tenant", Title: "Foreign key between tenant tables without the tenant column", Severity: Warn,
		Rationale: "Foreign key checks ignore row-level security: a foreign key that doesn't carry the tenant column lets a row point at another tenant's row, and inserting candidate ids reveals which exist in other tenants. Composite keys (tenant_id, id) make cross-tenant references impossible.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcConstraints}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, c := range s.constraints {
				r := c.rel
				if c.typ != "f" || !r.tenant || r.tenantAtt == 0 || hasKey(c.keys, r.tenantAtt) {
					continue
				}
				if fr := s.rels[c.frel]; fr == nil || !fr.tenant {
					continue
				}
				out = append(out, Finding{Object: Object{Kind: "constraint", Schema: r.schema, Table: r.name, Name: c.name}, Detail: "references " + s.rels[c.frel].qname() + " without " + s.opts.TenantColumn,
					Fix: fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD FOREIGN KEY (%s, ...) REFERENCES %s (%s, ...);", qrel(r), ident(c.name), ident(s.opts.TenantColumn), qrel(s.rels[c.frel]), ident(s.opts.TenantColumn))})
			}
			return out
		},
	},
	{
		ID: "BH703", Name: "tenant-column-not-indexed", Title: "No index leads with the tenant column", Severity: Info,
		Rationale: "Every statement on a tenant table carries the policy's tenant predicate; without an index that starts with the tenant column, each one scans the whole table, all tenants included, and one tenant's size becomes everyone's latency.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcIndexes}, Splinter: "0001 unindexed_foreign_keys (analogue)", Pgrls: "PERF",
		run: func(s *snapshot) []Finding {
			led := map[uint32]bool{}
			for _, ix := range s.indexes {
				if len(ix.keys) > 0 && ix.keys[0] == ix.rel.tenantAtt && ix.rel.tenantAtt != 0 {
					led[ix.rel.oid] = true
				}
			}
			var out []Finding
			for _, r := range s.withTenantColumn() {
				if !r.partition && !led[r.oid] {
					out = append(out, tableFinding(r, "no index starts with "+s.opts.TenantColumn, fmt.Sprintf("CREATE INDEX ON %s (%s);", qrel(r), ident(s.opts.TenantColumn))))
				}
			}
			return out
		},
	},
	{
		ID: "BH704", Name: "index-unusable-under-rls", Title: "GIN or vector index on an RLS table", Severity: Warn,
		Rationale: "Under row-level security, quals that are not LEAKPROOF (full-text @@, jsonb @>, ILIKE, vector distance) may not be evaluated before the policy, so PostgreSQL often can't use their GIN/HNSW/IVFFlat index (5–130× slower for a big tenant), and approximate vector indexes post-filter per tenant, returning too few results and revealing other tenants' density. Search per tenant (partitions, per-tenant collections) instead.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcIndexes},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, ix := range s.indexes {
				if !ix.rel.tenant || !ix.rel.rls {
					continue
				}
				switch ix.am {
				case "gin", "hnsw", "ivfflat":
					out = append(out, Finding{Object: Object{Kind: "index", Schema: ix.rel.schema, Table: ix.rel.name, Name: ix.name}, Detail: ix.am + " index under RLS: " + ix.def,
						Fix: "-- partition by tenant, or search per tenant outside the shared index; then DROP INDEX " + pgxIdent(ix.rel.schema, ix.name) + ";"})
				}
			}
			return out
		},
	},
	{
		ID: "BH705", Name: "no-primary-key", Title: "Tenant table without a primary key", Severity: Info,
		Rationale: "Without a primary key rows can't be addressed one by one: updates and deletes by value can hit several rows, logical replication can't identify rows, and per-row encryption or audit keyed by row id has nothing to bind to.",
		Needs:     []string{srcRels, srcColumns, srcPolicies, srcIndexes}, Splinter: "0004 no_primary_key", Pgrls: "HYG",
		run: func(s *snapshot) []Finding {
			pk := map[uint32]bool{}
			for _, ix := range s.indexes {
				if ix.primary {
					pk[ix.rel.oid] = true
				}
			}
			var out []Finding
			for _, r := range s.tenant {
				if !r.partition && !pk[r.oid] {
					out = append(out, tableFinding(r, "no primary key", fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (%s, id);", qrel(r), ident(s.opts.TenantColumn))))
				}
			}
			return out
		},
	},
}

func pgxIdent(parts ...string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = ident(p)
	}
	return strings.Join(q, ".")
}

var contextChecks = []Check{
	{
		ID: "BH801", Name: "tenant-setting-default", Title: "Tenant context given a default on a role or database", Severity: Error,
		Rationale: "ALTER ROLE ... SET or ALTER DATABASE ... SET on a setting the policies read gives every new session a tenant before the application chose one: a request that forgets to set context silently acts as that tenant instead of seeing nothing.",
		Needs:     []string{srcPolicies, srcFuncs, srcDBRole},
		run: func(s *snapshot) []Finding {
			ctx := map[string]bool{}
			for _, n := range s.contextSettings() {
				ctx[n] = true
			}
			var out []Finding
			for _, d := range s.dbRole {
				if !ctx[d.name] {
					continue
				}
				target, fix := "", ""
				switch {
				case d.role != "" && d.database != "":
					target, fix = "role="+d.role+",database="+d.database, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s RESET %s;", ident(d.role), ident(d.database), d.name)
				case d.role != "":
					target, fix = "role="+d.role, fmt.Sprintf("ALTER ROLE %s RESET %s;", ident(d.role), d.name)
				default:
					target, fix = "database="+d.database, fmt.Sprintf("ALTER DATABASE %s RESET %s;", ident(d.database), d.name)
				}
				out = append(out, Finding{Object: Object{Kind: "setting", Name: d.name + "@" + target}, Detail: fmt.Sprintf("%s = %s for %s", d.name, d.value, target), Fix: fix})
			}
			return out
		},
	},
	{
		ID: "BH802", Name: "forgeable-context", Title: "Tenant context can be set by any role", Severity: Error,
		Rationale: "A setting that any role can SET (a plain custom setting such as app.tenant_id) is chosen by whoever holds the connection: one injected `SELECT set_config('app.tenant_id', '<other tenant>', true)` reads another tenant with every policy intact. The context must be verified inside PostgreSQL (a superuser-only setting set by a function that checks a signature, or a signed token verified per statement) before policies trust it.",
		Needs:     []string{srcPolicies, srcFuncs, srcSettings},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, n := range s.contextSettings() {
				st, ok := s.settings[n]
				if ok && st.context != "user" {
					continue
				}
				why := "a placeholder setting: any role can SET it"
				if ok {
					why = "context 'user': any role can SET it"
				}
				out = append(out, Finding{Object: Object{Kind: "setting", Name: n}, Detail: why,
					Fix: "-- verify the context in the database: make the setting superuser-only (a preloaded module that defines it PGC_SUSET) and set it through a SECURITY DEFINER function that checks a signed token"})
			}
			return out
		},
	},
	{
		ID: "BH803", Name: "server-wide-tenant-setting", Title: "Tenant context set in the server configuration", Severity: Error,
		Rationale: "A value for a context setting in postgresql.conf, ALTER SYSTEM or the command line applies to every session of every database: connections without context act as that tenant.",
		Needs:     []string{srcPolicies, srcFuncs, srcSettings},
		run: func(s *snapshot) []Finding {
			var out []Finding
			fix := func(n string) string {
				return fmt.Sprintf("ALTER SYSTEM RESET %s; -- and remove it from postgresql.conf and its includes, then SELECT pg_reload_conf();", n)
			}
			for _, n := range s.contextSettings() {
				if v, ok := s.fileSettings[n]; ok {
					out = append(out, Finding{Object: Object{Kind: "setting", Name: n}, Detail: n + " = " + v, Fix: fix(n)})
					continue
				}
				if st, ok := s.settings[n]; ok {
					switch st.source {
					case "configuration file", "command line", "environment variable":
						out = append(out, Finding{Object: Object{Kind: "setting", Name: n}, Detail: fmt.Sprintf("%s = %s from the %s", n, st.reset, st.source), Fix: fix(n)})
						continue
					}
				}
				if s.fileSettingsRead || s.sessionValues[n] == "" {
					continue
				}
				explained := false
				for _, d := range s.dbRole {
					explained = explained || (d.name == n && (d.role == "" || d.role == s.currentUser))
				}
				if !explained {
					out = append(out, Finding{Object: Object{Kind: "setting", Name: n}, Detail: fmt.Sprintf("a fresh session has %s = %s, set by no role or database default: the server configuration (or the connection options)", n, s.sessionValues[n]), Fix: fix(n)})
				}
			}
			return out
		},
	},
}

type cve struct {
	id, name, title, rationale string
	sev                        Severity
	intro                      int         // first affected major
	fixed                      map[int]int // major -> first fixed minor
	// unfixed, when set, finds the vulnerability on fixed binaries (a fix
	// that needs a step the upgrade doesn't do).
	unfixed func(s *snapshot) string
}

var cves = []cve{
	{"CVE-2019-10130", "cve-2019-10130", "Selectivity estimators bypass row security", "Before 11.3/10.8/9.6.13/9.5.17, a user could craft a leaky operator that the planner's selectivity estimation ran on most-common-values statistics of columns RLS hides from them, reading sampled values of other tenants' rows.", Warn, 9, map[int]int{9: 17, 10: 8, 11: 3}, nil},
	{"CVE-2023-2455", "cve-2023-2455", "Row security policies disregard user ID changes after inlining", "Before 15.3/14.8/13.11/12.15/11.20, a query planned under one role and reused after SET ROLE or a SECURITY DEFINER switch could apply the wrong role's policies: a role-based policy could admit rows it should hide.", Error, 11, map[int]int{11: 20, 12: 15, 13: 11, 14: 8, 15: 3}, nil},
	{"CVE-2023-39418", "cve-2023-39418", "MERGE fails to enforce UPDATE or SELECT row security policies", "PostgreSQL 15.0–15.3 MERGE applied INSERT policies but not the UPDATE and SELECT ones, so a MERGE could modify rows a tenant could not otherwise update. Fixed in 15.4.", Error, 15, map[int]int{15: 4}, nil},
	{"CVE-2024-4317", "cve-2024-4317", "pg_stats_ext and pg_stats_ext_exprs visible to non-owners", "Before 16.3/15.7/14.12, extended statistics views showed most-common values of tables to roles that could not read the rows; a cluster initialised before the fix stays affected after the upgrade until fix-CVE-2024-4317.sql from the release notes is run in each database, which the audit also checks (the views' definition).", Warn, 14, map[int]int{14: 12, 15: 7, 16: 3},
		func(s *snapshot) string {
			if s.statsExtFixed {
				return ""
			}
			return "the binaries are fixed but pg_stats_ext/pg_stats_ext_exprs in this database still show other owners' statistics: run share/fix-CVE-2024-4317.sql"
		}},
	{"CVE-2024-10976", "cve-2024-10976", "Row security below subqueries disregards user ID changes", "Before 17.1/16.5/15.9/14.14/13.17/12.21, policies under sub-queries, WITH queries, security invoker views or SQL-language functions could be applied for the wrong role after a user ID change (SET ROLE, SECURITY DEFINER).", Error, 12, map[int]int{12: 21, 13: 17, 14: 14, 15: 9, 16: 5, 17: 1}, nil},
	{"CVE-2024-10978", "cve-2024-10978", "SET ROLE and SET SESSION AUTHORIZATION reset to the wrong user ID", "Before 17.1/16.5/15.9/14.14/13.17/12.21, a parallel query or a reset could run with the wrong role after SET ROLE: a context mechanism built on roles could act as another principal.", Warn, 12, map[int]int{12: 21, 13: 17, 14: 14, 15: 9, 16: 5, 17: 1}, nil},
	{"CVE-2025-8713", "cve-2025-8713", "Optimizer statistics expose sampled data of partitions and child tables", "Before 17.6/16.10/15.14/14.19/13.22, a leaky operator could read histograms and most-common values that row security hides, through partitions or inheritance children (a gap left by CVE-2017-7484 and CVE-2019-10130).", Warn, 13, map[int]int{13: 22, 14: 19, 15: 14, 16: 10, 17: 6}, nil},
}

// vulnerable reports whether a server with version number num (e.g.
// 150003) is affected by c.
func (c cve) vulnerable(num int) bool {
	major, minor := num/10000, num%100
	if num < 100000 { // 9.x: 90617
		major, minor = num/10000, num%100
		if num/100%100 < 5 || major < 9 {
			return false // before 9.5 there is no RLS
		}
	}
	if major < c.intro {
		return false
	}
	if f, ok := c.fixed[major]; ok {
		return minor < f
	}
	maxMajor := 0
	for m := range c.fixed {
		maxMajor = max(maxMajor, m)
	}
	return major < maxMajor // an end-of-life branch that never got the fix
}

var cveChecks = func() []Check {
	var out []Check
	for i, c := range cves {
		c := c
		out = append(out, Check{
			ID: fmt.Sprintf("BH9%02d", i+1), Name: c.name, Title: c.id + ": " + c.title, Severity: c.sev,
			Rationale: c.rationale + " The audit compares the server's minor version with the fixed releases: upgrade the minor version (no dump/restore needed).",
			run: func(s *snapshot) []Finding {
				if !c.vulnerable(s.versionNum) {
					if c.unfixed != nil {
						if d := c.unfixed(s); d != "" {
							return []Finding{{Object: Object{Kind: "server", Name: "PostgreSQL " + s.version}, Detail: d,
								Fix: "-- run the fix script shipped with the release (see the release notes of " + c.id + ") in every database"}}
						}
					}
					return nil
				}
				return []Finding{{Object: Object{Kind: "server", Name: "PostgreSQL " + s.version}, Detail: fmt.Sprintf("server_version_num %d is affected by %s", s.versionNum, c.id),
					Fix: "-- upgrade to the latest minor release of PostgreSQL " + fmt.Sprint(s.versionNum/10000)}}
			},
		})
	}
	return out
}()
