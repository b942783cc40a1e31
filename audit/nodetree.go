package audit

import (
	"fmt"
	"strconv"
	"strings"
)

// node is one node of a PostgreSQL parse tree as nodeToString writes it
// (pg_policy.polqual::text): {NAME :field value ...}. Values are string,
// *node or []any.
type node struct {
	typ string
	f   map[string]any
}

func (n *node) str(field string) string {
	s, _ := n.f[field].(string)
	return s
}

func (n *node) num(field string) int64 {
	v, _ := strconv.ParseInt(n.str(field), 10, 64)
	return v
}

func (n *node) list(field string) []any {
	l, _ := n.f[field].([]any)
	return l
}

// parseNodeTree parses the text form of a pg_node_tree. It never panics:
// malformed input is an error.
func parseNodeTree(s string) (any, error) {
	p := &treeParser{toks: tokenizeTree(s)}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	return v, nil
}

func tokenizeTree(s string) []string {
	var toks []string
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '{' || c == '}':
			toks = append(toks, string(c))
			i++
		default:
			j, esc := i, false
			for j < len(s) {
				c = s[j]
				if c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '(' || c == ')' || c == '{' || c == '}' {
					break
				}
				if c == '\\' && j+1 < len(s) {
					esc = true
					j += 2
					continue
				}
				j++
			}
			tok := s[i:j]
			if esc {
				var b strings.Builder
				for k := 0; k < len(tok); k++ {
					if tok[k] == '\\' && k+1 < len(tok) {
						k++
					}
					b.WriteByte(tok[k])
				}
				tok = b.String()
			}
			toks = append(toks, tok)
			i = j
		}
	}
	return toks
}

type treeParser struct {
	toks []string
	pos  int
}

func (p *treeParser) next() (string, bool) {
	if p.pos >= len(p.toks) {
		return "", false
	}
	t := p.toks[p.pos]
	p.pos++
	return t, true
}

func (p *treeParser) peek() string {
	if p.pos >= len(p.toks) {
		return ""
	}
	return p.toks[p.pos]
}

func (p *treeParser) value() (any, error) {
	t, ok := p.next()
	if !ok {
		return nil, fmt.Errorf("node tree: unexpected end")
	}
	switch t {
	case "{":
		name, ok := p.next()
		if !ok {
			return nil, fmt.Errorf("node tree: unexpected end after {")
		}
		n := &node{typ: name, f: map[string]any{}}
		for {
			k := p.peek()
			if k == "" {
				return nil, fmt.Errorf("node tree: unterminated %s", name)
			}
			if k == "}" {
				p.pos++
				return n, nil
			}
			p.pos++
			if !strings.HasPrefix(k, ":") {
				continue // tolerate unknown layout
			}
			if nk := p.peek(); nk == "}" || strings.HasPrefix(nk, ":") {
				n.f[k[1:]] = ""
				continue
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.f[k[1:]] = v
		}
	case "(":
		var l []any
		for {
			k := p.peek()
			if k == "" {
				return nil, fmt.Errorf("node tree: unterminated list")
			}
			if k == ")" {
				p.pos++
				return l, nil
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
	case ")", "}":
		return nil, fmt.Errorf("node tree: unexpected %q", t)
	}
	// A Datum: "4 [ 1 0 0 0 0 0 0 0 ]".
	if p.peek() == "[" {
		var b strings.Builder
		b.WriteString(t)
		for {
			x, ok := p.next()
			if !ok {
				return nil, fmt.Errorf("node tree: unterminated datum")
			}
			b.WriteByte(' ')
			b.WriteString(x)
			if x == "]" {
				break
			}
		}
		return b.String(), nil
	}
	return t, nil
}

// walk visits every node of v with its query depth: 0 in the policy
// expression itself, +1 inside each sub-query. parents holds the nodes above.
func walk(v any, depth int, parents []*node, visit func(n *node, depth int, parents []*node)) {
	switch x := v.(type) {
	case *node:
		d := depth
		if x.typ == "QUERY" {
			d++
		}
		visit(x, d, parents)
		ps := append(parents[:len(parents):len(parents)], x)
		for _, fv := range x.f {
			walk(fv, d, ps, visit)
		}
	case []any:
		for _, e := range x {
			walk(e, depth, parents, visit)
		}
	}
}

// stripRelabel removes binary-compatible casts around an expression.
func stripRelabel(v any) any {
	for {
		n, ok := v.(*node)
		if !ok || n.typ != "RELABELTYPE" {
			return v
		}
		v = n.f["arg"]
	}
}

// contains reports whether any node under v satisfies pred.
func contains(v any, pred func(*node) bool) bool {
	found := false
	walk(v, 0, nil, func(n *node, _ int, _ []*node) {
		if !found && pred(n) {
			found = true
		}
	})
	return found
}

// Function OIDs of current_setting(text) and current_setting(text, bool):
// fixed in pg_proc.dat since PostgreSQL 9.6.
const (
	oidCurrentSetting1 = "2077"
	oidCurrentSetting2 = "3294"
)

func isCurrentSetting(n *node) bool {
	if n.typ != "FUNCEXPR" {
		return false
	}
	id := n.str("funcid")
	return id == oidCurrentSetting1 || id == oidCurrentSetting2
}

// sameVar reports whether a and b are the same column of the same range
// table entry at the same level (the tautology a = a).
func sameVar(a, b any) bool {
	x, ok1 := stripRelabel(a).(*node)
	y, ok2 := stripRelabel(b).(*node)
	if !ok1 || !ok2 || x.typ != "VAR" || y.typ != "VAR" {
		return false
	}
	return x.str("varno") == y.str("varno") && x.str("varattno") == y.str("varattno") && x.str("varlevelsup") == y.str("varlevelsup")
}
