package audit

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func qrel(r *rel) string { return pgx.Identifier{r.schema, r.name}.Sanitize() }

func qfunc(f *function) string {
	return pgx.Identifier{f.schema, f.name}.Sanitize() + "(" + f.args + ")"
}

// rlsTenant returns the tenant tables with the tenant column.
func (s *snapshot) withTenantColumn() []*rel {
	var out []*rel
	for _, r := range s.tenant {
		if r.tenantAtt != 0 {
			out = append(out, r)
		}
	}
	return out
}

func (s *snapshot) runtimeRole() *role {
	for _, r := range s.roles {
		if r.name == s.runtime {
			return r
		}
	}
	return nil
}

// refsRowColumn reports whether tree reads column att of the policy's own
// row (at any sub-query depth).
func refsRowColumn(tree any, att int16) bool {
	found := false
	want := fmt.Sprint(att)
	walk(tree, 0, nil, func(n *node, depth int, _ []*node) {
		if n.typ == "VAR" && int64(depth) == n.num("varlevelsup") && n.str("varattno") == want {
			found = true
		}
	})
	return found
}

// policyFuncClosure returns the user functions the policies call, and the
// functions those call by name, to a fixed point.
func (s *snapshot) policyFuncClosure() map[uint32]*function {
	out := map[uint32]*function{}
	var queue []*function
	for _, p := range s.policies {
		for _, id := range p.funcs {
			if f := s.funcs[id]; f != nil && out[id] == nil {
				out[id] = f
				queue = append(queue, f)
			}
		}
	}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		for _, g := range s.calledBy(f) {
			if out[g.oid] == nil {
				out[g.oid] = g
				queue = append(queue, g)
			}
		}
	}
	return out
}

var callName = regexp.MustCompile(`(?i)("?[a-z_][\w$]*"?\s*\.\s*)?("?[a-z_][\w$]*"?)\s*\(`)

// calledBy returns the user functions whose name f's body calls.
func (s *snapshot) calledBy(f *function) []*function {
	var out []*function
	clean := blankLiterals(f.src)
	for _, m := range callName.FindAllStringSubmatch(clean, -1) {
		name := strings.Trim(m[2], `"`)
		key := name
		if m[1] != "" {
			key = strings.Trim(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[1]), ".")), `"`) + "." + name
		}
		out = append(out, s.funcByName[key]...)
	}
	return out
}

// contextFuncs returns the user functions that read a setting, directly or
// through another function.
func (s *snapshot) contextFuncs() map[uint32]bool {
	out := map[uint32]bool{}
	for id, f := range s.funcs {
		if strings.Contains(strings.ToLower(blankLiterals(f.src)), "current_setting") || nativeSetting(f) != "" {
			out[id] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for id, f := range s.funcs {
			if out[id] {
				continue
			}
			for _, g := range s.calledBy(f) {
				if out[g.oid] {
					out[id] = true
					changed = true
					break
				}
			}
		}
	}
	return out
}

// nativeSettings are the C functions of bulkhead's own extension,
// bulkhead_context, that return a context setting (by C symbol, as
// pg_proc.prosrc holds it): their body is a symbol, not SQL that names the
// setting, so the audit knows them by name. bulkhead's context functions
// are SQL calls to them since migration 00021.
var nativeSettings = map[string]string{
	"bulkhead_current_tenant_native":     "bulkhead.tenant_id",
	"bulkhead_current_entity_native":     "bulkhead.entity_id",
	"bulkhead_current_acting_for_native": "bulkhead.acting_for",
}

// nativeSetting returns the setting f returns when f is one of
// nativeSettings in bulkhead_context's library, else "".
func nativeSetting(f *function) string {
	if f.lang != "c" || path.Base(f.lib) != "bulkhead_context" && path.Base(f.lib) != "bulkhead_context.so" {
		return ""
	}
	return nativeSettings[f.src]
}

var settingName = regexp.MustCompile(`(?i)current_setting\s*\(\s*'([^']+)'`)

// contextSettings returns the names of the settings the policies read,
// directly or through their functions: the tenant context.
func (s *snapshot) contextSettings() []string {
	set := map[string]bool{}
	for _, p := range s.policies {
		for _, e := range []string{p.using, p.check} {
			for _, m := range settingName.FindAllStringSubmatch(e, -1) {
				set[m[1]] = true
			}
		}
	}
	for _, f := range s.policyFuncClosure() {
		for _, m := range settingName.FindAllStringSubmatch(f.src, -1) {
			set[m[1]] = true
		}
		if n := nativeSetting(f); n != "" {
			set[n] = true
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// effectivePath is the search_path f runs with: its own, else the runtime
// role's (role and database defaults, else the server's).
func (s *snapshot) effectivePath(f *function) (path []string, pinned bool) {
	p, pinned := f.searchPath()
	if !pinned {
		p = s.runtimePath()
	}
	for _, e := range strings.Split(p, ",") {
		e = strings.Trim(strings.TrimSpace(e), `"`)
		if e == "$user" {
			e = s.runtime
		}
		if e != "" {
			path = append(path, e)
		}
	}
	return path, pinned
}

func (s *snapshot) runtimePath() string {
	var roleDB, roleOnly, dbOnly string
	for _, d := range s.dbRole {
		if d.name != "search_path" {
			continue
		}
		switch {
		case d.role == s.runtime && d.database != "":
			roleDB = d.value
		case d.role == s.runtime:
			roleOnly = d.value
		case d.role == "" && d.database != "":
			dbOnly = d.value
		}
	}
	for _, v := range []string{roleDB, roleOnly, dbOnly} {
		if v != "" {
			return v
		}
	}
	if st, ok := s.settings["search_path"]; ok {
		switch st.source {
		case "configuration file", "command line", "environment variable":
			return st.reset
		}
	}
	return `"$user", public`
}

func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "true", "on", "1", "yes":
		return true
	}
	return false
}

func relOption(r *rel, name string) string {
	for _, o := range strings.Split(r.options, ",") {
		if v, ok := strings.CutPrefix(o, name+"="); ok {
			return v
		}
	}
	return ""
}

// bypassesRLS reports whether role owner would skip r's policies.
func (s *snapshot) bypassesRLS(owner uint32, r *rel) bool {
	ro := s.roles[owner]
	if ro != nil && (ro.super || ro.bypass) {
		return true
	}
	return owner == r.owner && !r.force
}

func cmdName(c string) string {
	switch c {
	case "r":
		return "SELECT"
	case "a":
		return "INSERT"
	case "w":
		return "UPDATE"
	case "d":
		return "DELETE"
	}
	return "ALL"
}
