package audit

import (
	"regexp"
	"strings"
)

// Function bodies are text (PostgreSQL keeps no parse tree for plpgsql or
// for SQL bodies given as strings), so the checks on bodies read tokens:
// comments and string literals are blanked first so that names inside them
// don't count.

// blankLiterals replaces comments and quoted literals ('...', $tag$...$tag$)
// by spaces, keeping offsets. Quoted identifiers are kept.
func blankLiterals(src string) string {
	b := []byte(src)
	n := len(b)
	blank := func(i, j int) {
		for k := i; k < j && k < n; k++ {
			if b[k] != '\n' {
				b[k] = ' '
			}
		}
	}
	for i := 0; i < n; {
		switch {
		case b[i] == '-' && i+1 < n && b[i+1] == '-':
			j := i
			for j < n && b[j] != '\n' {
				j++
			}
			blank(i, j)
			i = j
		case b[i] == '/' && i+1 < n && b[i+1] == '*':
			j := strings.Index(string(b[i+2:]), "*/")
			end := n
			if j >= 0 {
				end = i + 2 + j + 2
			}
			blank(i, end)
			i = end
		case b[i] == '\'':
			j := i + 1
			for j < n {
				if b[j] == '\'' {
					if j+1 < n && b[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			blank(i+1, j) // keep the quotes: '' stays a literal
			i = j + 1
		case b[i] == '$':
			m := dollarTag.FindString(string(b[i:min(n, i+64)]))
			if m == "" {
				i++
				continue
			}
			j := strings.Index(string(b[i+len(m):]), m)
			end := n
			if j >= 0 {
				end = i + len(m) + j + len(m)
			}
			blank(i, end)
			i = end
		default:
			i++
		}
	}
	return string(b)
}

var dollarTag = regexp.MustCompile(`^\$[A-Za-z_]*\$`)

// sessionSetting finds session-level context changes in a body:
// set_config(..., false), SET name = ..., SET SESSION ..., SET ROLE.
var (
	setConfigCall = regexp.MustCompile(`(?i)set_config\s*\(`)
	sessionSet    = regexp.MustCompile(`(?i)(^|[;\s])set\s+(session\s+)?("?[a-z_][\w$]*"?\s*\.\s*"?[a-z_][\w$]*"?)\s*(=|\bto\b)`)
	setRole       = regexp.MustCompile(`(?i)(^|[;\s])set\s+(session\s+)?(role|session\s+authorization)\b`)
)

// sessionLevelSets returns the session-level setting changes in body.
func sessionLevelSets(body string) []string {
	clean := blankLiterals(body)
	var out []string
	for _, loc := range setConfigCall.FindAllStringIndex(clean, -1) {
		args := callArgs(body, loc[1])
		if len(args) == 3 && strings.EqualFold(strings.TrimSpace(args[2]), "false") {
			out = append(out, "set_config("+strings.Join(args, ",")+")")
		}
	}
	for _, m := range sessionSet.FindAllStringSubmatch(clean, -1) {
		out = append(out, "SET "+strings.TrimSpace(m[3]))
	}
	for _, m := range setRole.FindAllStringSubmatch(clean, -1) {
		out = append(out, "SET "+strings.ToUpper(strings.Join(strings.Fields(m[3]), " ")))
	}
	return out
}

// callArgs splits the arguments of the call whose "(" ends just before
// body[start:], at top-level commas. Literals are kept.
func callArgs(body string, start int) []string {
	depth := 0
	var args []string
	cur := strings.Builder{}
	inStr := false
	for i := start; i < len(body); i++ {
		c := body[i]
		if inStr {
			cur.WriteByte(c)
			if c == '\'' {
				inStr = false
			}
			continue
		}
		switch c {
		case '\'':
			inStr = true
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return append(args, strings.TrimSpace(cur.String()))
			}
			depth--
		case ',':
			if depth == 0 {
				args = append(args, strings.TrimSpace(cur.String()))
				cur.Reset()
				continue
			}
		}
		cur.WriteByte(c)
	}
	return nil
}

var (
	identCall   = regexp.MustCompile(`(?i)([.\w$"]*)\s*\(`)
	relationRef = regexp.MustCompile(`(?i)\b(from|join|update|insert\s+into|delete\s+from)\s+(only\s+)?("[^"]+"|[a-z_][\w$]*)(\s*\.)?`)
	distinctRef = regexp.MustCompile(`(?i)distinct\s+$`)
)

// sqlWords are keywords and plpgsql words that look like a call or a
// relation but are neither.
var sqlWords = map[string]bool{
	"select": true, "case": true, "when": true, "exists": true, "in": true, "any": true, "all": true, "some": true, "array": true,
	"coalesce": true, "nullif": true, "greatest": true, "least": true, "values": true, "cast": true, "row": true, "not": true,
	"and": true, "or": true, "if": true, "elsif": true, "return": true, "returns": true, "perform": true, "then": true, "else": true,
	"over": true, "filter": true, "within": true, "extract": true, "substring": true, "position": true, "overlay": true, "trim": true,
	"where": true, "on": true, "using": true, "as": true, "is": true, "grouping": true, "lateral": true, "with": true, "raise": true,
	"into": true, "loop": true, "while": true, "for": true, "foreach": true, "execute": true, "query": true, "next": true, "end": true,
	"begin": true, "declare": true, "exception": true, "by": true, "limit": true, "offset": true, "union": true, "except": true,
	"intersect": true, "distinct": true, "set": true, "like": true, "ilike": true, "between": true, "operator": true, "format": false,
	"join": true, "from": true, "group": true, "order": true, "having": true, "window": true, "returning": true, "conflict": true,
	"do": true, "nothing": true, "default": true, "null": true, "true": true, "false": true, "interval": true, "timestamp": true,
	"numeric": true, "decimal": true, "varchar": true, "char": true, "character": true, "time": true, "bit": true, "float": true,
	"precision": true, "double": true, "table": true, "only": true, "unnest": false, "xmlelement": true, "collate": true,
}

// unqualifiedNames returns the names in body that are resolved through
// search_path at run time and are not built in: unqualified function calls
// and relations that pg_catalog doesn't provide. locals are names a
// plpgsql body declares (aliases and variables), which are not looked up.
func unqualifiedNames(body string, builtins map[string]bool) []string {
	clean := blankLiterals(body)
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, loc := range identCall.FindAllStringSubmatchIndex(clean, -1) {
		name := clean[loc[2]:loc[3]]
		if name == "" || strings.Contains(name, ".") || strings.HasPrefix(name, "$") {
			continue
		}
		if loc[2] > 0 && (clean[loc[2]-1] == '.' || clean[loc[2]-1] == ':') {
			continue
		}
		l := strings.ToLower(strings.Trim(name, `"`))
		if sqlWords[l] || builtins[l] {
			continue
		}
		add(l + "()")
	}
	for _, m := range relationRef.FindAllStringSubmatchIndex(clean, -1) {
		if m[8] >= 0 { // followed by "." : qualified
			continue
		}
		kw := strings.ToLower(clean[m[2]:m[3]])
		if kw == "from" && distinctRef.MatchString(clean[:m[2]]) {
			continue
		}
		name := strings.ToLower(strings.Trim(clean[m[6]:m[7]], `"`))
		rest := strings.TrimLeft(clean[m[7]:], " \t\n")
		if strings.HasPrefix(rest, "(") || sqlWords[name] || builtins[name] {
			continue // a function in FROM is checked as a call
		}
		add(name)
	}
	return out
}
