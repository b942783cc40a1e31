package audit

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

func sortedFuncs(m map[uint32]*function) []*function {
	out := make([]*function, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].obj().String() < out[j].obj().String() })
	return out
}

func scriptLang(f *function) bool { return f.lang == "sql" || f.lang == "plpgsql" }

var principalArg = regexp.MustCompile(`(?i)^(p_|in_|_)?(user|entity|author|owner|principal|actor|member|account|tenant|agent|person|customer|org|organization|subject|uid)(_?id)?$`)

var functionChecks = []Check{
	{
		ID: "BH501", Name: "policy-function-create-shadowing", Title: "Runtime role can create objects in a policy function's search_path", Severity: Error,
		Rationale: "A policy helper resolves unqualified names through its search_path at run time: its own pinned path or, without one, the caller's. If the runtime role can CREATE in a schema on that path, it can create a table, function or operator that the helper will pick up instead of the intended one, and choose what the policy answers.",
		Needs:     []string{srcPolicies, srcFuncs, srcSchemas, srcDBRole, srcSettings}, Runtime: true,
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, f := range sortedFuncs(s.policyFuncClosure()) {
				if !scriptLang(f) {
					continue
				}
				path, _ := s.effectivePath(f)
				var bad []string
				for _, n := range path {
					if sc := s.schemaByName[n]; sc != nil && sc.runtimeCreate {
						bad = append(bad, n)
					}
				}
				if len(bad) > 0 {
					out = append(out, Finding{Object: f.obj(), Detail: fmt.Sprintf("%s can CREATE in %s, on the search_path %s", s.runtime, strings.Join(bad, ", "), strings.Join(path, ", ")),
						Fix: fmt.Sprintf("REVOKE CREATE ON SCHEMA %s FROM PUBLIC, %s;\nALTER FUNCTION %s SET search_path = pg_catalog, pg_temp; -- plpgsql; for SQL helpers schema-qualify every name", ident(bad[0]), ident(s.runtime), qfunc(f))})
				}
			}
			return out
		},
	},
	{
		ID: "BH502", Name: "policy-function-temp-shadowing", Title: "Runtime role can shadow a policy function's tables with temporary ones", Severity: Error,
		Rationale: "Unless pg_temp is listed last in a search_path, PostgreSQL searches the session's temporary schema first for tables and types. A role with TEMPORARY on the database can create a temp table named like one a policy helper reads unqualified (participants, memberships) and make the helper answer from it.",
		Needs:     []string{srcPolicies, srcFuncs, srcSchemas}, Runtime: true,
		run: func(s *snapshot) []Finding {
			if !s.runtimeTemp {
				return nil
			}
			var out []Finding
			for _, f := range sortedFuncs(s.policyFuncClosure()) {
				if !scriptLang(f) {
					continue
				}
				path, pinned := s.effectivePath(f)
				if pinned && len(path) > 0 && path[len(path)-1] == "pg_temp" {
					continue
				}
				if len(unqualifiedNames(f.src, s.builtins)) == 0 {
					continue // every relation is schema-qualified: nothing to shadow
				}
				out = append(out, Finding{Object: f.obj(), Detail: fmt.Sprintf("%s has TEMPORARY on the database and pg_temp is searched first (search_path %s)", s.runtime, strings.Join(path, ", ")),
					Fix: fmt.Sprintf("REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC, %s;\nALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;", ident(s.database), ident(s.runtime), qfunc(f))})
			}
			return out
		},
	},
	{
		ID: "BH503", Name: "definer-search-path-mutable", Title: "SECURITY DEFINER function without a pinned search_path", Severity: Error,
		Rationale: "A SECURITY DEFINER function runs with its owner's rights but resolves unqualified names with the caller's search_path, so a caller who can create objects anywhere on that path runs their own code with the owner's rights (and the owner typically bypasses RLS).",
		Needs:     []string{srcFuncs}, Splinter: "0011 function_search_path_mutable", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, f := range sortedFuncs(s.funcs) {
				if _, pinned := f.searchPath(); f.definer && !pinned && !f.ext && scriptLang(f) {
					out = append(out, Finding{Object: f.obj(), Detail: "SECURITY DEFINER without SET search_path",
						Fix: fmt.Sprintf("ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;", qfunc(f))})
				}
			}
			return out
		},
	},
	{
		ID: "BH504", Name: "policy-function-unqualified-names", Title: "Policy helper resolves names through a mutable search_path", Severity: Warn,
		Rationale: "A policy helper without a pinned search_path that uses unqualified table or function names means different things to callers with different search_paths, and anyone who can put an object earlier on the path decides what it means. Schema-qualify every name (SQL helpers stay inlinable) or pin search_path (plpgsql).",
		Needs:     []string{srcPolicies, srcFuncs}, Splinter: "0011 function_search_path_mutable", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, f := range sortedFuncs(s.policyFuncClosure()) {
				if _, pinned := f.searchPath(); pinned || !scriptLang(f) {
					continue
				}
				if names := unqualifiedNames(f.src, s.builtins); len(names) > 0 {
					out = append(out, Finding{Object: f.obj(), Detail: "unqualified: " + strings.Join(names, ", "),
						Fix: fmt.Sprintf("-- schema-qualify %s in the body, or:\nALTER FUNCTION %s SET search_path = pg_catalog, pg_temp;", strings.Join(names, ", "), qfunc(f))})
				}
			}
			return out
		},
	},
	{
		ID: "BH505", Name: "definer-executable-by-public", Title: "SECURITY DEFINER function executable by PUBLIC", Severity: Warn,
		Rationale: "Functions are executable by PUBLIC unless revoked. A SECURITY DEFINER function runs with its owner's rights, usually above RLS, so every role in the cluster can call it; each definer should be granted explicitly to the roles that need it, after an audit of what it reveals.",
		Needs:     []string{srcFuncs}, Splinter: "0028/0029 security_definer_function_executable", Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, f := range sortedFuncs(s.funcs) {
				if f.definer && f.publicExec && !f.ext {
					out = append(out, Finding{Object: f.obj(), Detail: "PUBLIC can EXECUTE", Fix: fmt.Sprintf("REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC;", qfunc(f))})
				}
			}
			return out
		},
	},
	{
		ID: "BH506", Name: "definer-takes-principal-id", Title: "SECURITY DEFINER function takes another principal's id", Severity: Error,
		Rationale: "A definer function reachable by the runtime role that takes a user, entity, tenant or owner id as an argument, and never compares it with the verified context, answers for whichever principal the caller names: an injected statement reads or acts for another user or tenant with the definer's rights. Derive the principal from the context inside the function.",
		Needs:     []string{srcFuncs}, Runtime: true,
		run: func(s *snapshot) []Finding {
			ctxFuncs := s.contextFuncs()
			var out []Finding
			for _, f := range sortedFuncs(s.funcs) {
				if !f.definer || !f.runtimeExec || f.ext {
					continue
				}
				var args []string
				for _, a := range f.argNames {
					if principalArg.MatchString(a) {
						args = append(args, a)
					}
				}
				if len(args) == 0 {
					continue
				}
				if !s.readsContext(f, ctxFuncs) {
					out = append(out, Finding{Object: f.obj(), Detail: fmt.Sprintf("argument %s is never compared with the context; %s can EXECUTE", strings.Join(args, ", "), s.runtime),
						Fix: fmt.Sprintf("-- derive the principal from the verified context inside the function, or:\nREVOKE EXECUTE ON FUNCTION %s FROM PUBLIC, %s;", qfunc(f), ident(s.runtime))})
				}
			}
			return out
		},
	},
	{
		ID: "BH507", Name: "leakproof-user-function", Title: "User function marked LEAKPROOF", Severity: Warn,
		Rationale: "LEAKPROOF functions may run before RLS quals, on rows the policy will hide: if one can raise an error or a notice that depends on its argument, it reveals hidden rows. Only a superuser can set it, so a user function marked LEAKPROOF is a deliberate promise the audit can't verify: review it.",
		Needs:     []string{srcFuncs}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, f := range sortedFuncs(s.funcs) {
				if f.leakproof && !f.ext {
					out = append(out, Finding{Object: f.obj(), Detail: "LEAKPROOF", Fix: fmt.Sprintf("ALTER FUNCTION %s NOT LEAKPROOF;", qfunc(f))})
				}
			}
			return out
		},
	},
	{
		ID: "BH508", Name: "session-level-set-config", Title: "Function sets context for the session", Severity: Error,
		Rationale: "set_config(name, value, false), SET name = ... and SET ROLE last until the session ends: behind PgBouncer in transaction mode or a pgx pool, the next client on that connection inherits the tenant or role. Context must be transaction-local: set_config(name, value, true) or SET LOCAL.",
		Needs:     []string{srcFuncs},
		run: func(s *snapshot) []Finding {
			var out []Finding
			for _, f := range sortedFuncs(s.funcs) {
				if f.ext || !scriptLang(f) {
					continue
				}
				if sets := sessionLevelSets(f.src); len(sets) > 0 {
					out = append(out, Finding{Object: f.obj(), Detail: "session-level: " + strings.Join(sets, "; "),
						Fix: "-- use set_config(name, value, true) / SET LOCAL in " + qfunc(f)})
				}
			}
			return out
		},
	},
	{
		ID: "BH509", Name: "definer-owned-by-rls-bypasser", Title: "SECURITY DEFINER function owned by a superuser or BYPASSRLS role", Severity: Error,
		Rationale: "A definer function runs as its owner; owned by a superuser or a BYPASSRLS role it reads every tenant's rows whatever the policies say, and any bug in its WHERE clause is a cross-tenant leak. Definers should be owned by a dedicated NOBYPASSRLS role whose reads RLS still governs. Exempt, precisely: the owner is a NOLOGIN role that no non-superuser login role can become, and the function either can't be executed by the runtime role (or PUBLIC) or reads the tenant context itself (an allow-listed, context-bound hole such as bulkhead's membership helpers).",
		Needs:     []string{srcFuncs, srcRoles}, Pgrls: "SEC",
		run: func(s *snapshot) []Finding {
			ctxFuncs := s.contextFuncs()
			var out []Finding
			for _, f := range sortedFuncs(s.funcs) {
				o := s.roles[f.owner]
				if f.definer && !f.ext && o != nil && (o.super || o.bypass) {
					if !o.login && !o.loginMembers && !o.runtimeMember && (!(f.runtimeExec || f.publicExec) || s.readsContext(f, ctxFuncs)) {
						continue
					}
					out = append(out, Finding{Object: f.obj(), Detail: "SECURITY DEFINER owned by " + o.name,
						Fix: fmt.Sprintf("ALTER FUNCTION %s OWNER TO <nobypassrls_definer_role>;", qfunc(f))})
				}
			}
			return out
		},
	},
}

// readsContext reports whether f's body reads the session's context: a
// setting, the current role, or a function that does.
func (s *snapshot) readsContext(f *function, ctxFuncs map[uint32]bool) bool {
	body := strings.ToLower(blankLiterals(f.src))
	if strings.Contains(body, "current_setting") || strings.Contains(body, "current_user") || strings.Contains(body, "session_user") {
		return true
	}
	for _, g := range s.calledBy(f) {
		if ctxFuncs[g.oid] {
			return true
		}
	}
	return false
}
