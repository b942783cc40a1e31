package postgres_test

import "strings"

// clauseDrops returns every expression obtained from expr by dropping one
// operand of one AND or OR: dropping a conjunct widens a rule (the class of
// "the UPDATE check forgot revoked_at IS NOT NULL"), dropping a disjunct
// narrows it. Parenthesised groups are entered, sub-queries are not: a
// sub-query is one operand.
func clauseDrops(expr string) []string {
	if parts := splitTop(expr, " OR "); len(parts) > 1 {
		return dropEach(parts, " OR ")
	}
	if parts := splitTop(expr, " AND "); len(parts) > 1 {
		return dropEach(parts, " AND ")
	}
	inner, ok := unwrap(expr)
	if !ok {
		return nil
	}
	var out []string
	for _, v := range clauseDrops(inner) {
		out = append(out, "("+v+")")
	}
	return out
}

// dropEach drops each part in turn, and recurses into each part.
func dropEach(parts []string, op string) []string {
	var out []string
	for i := range parts {
		rest := append(append([]string{}, parts[:i]...), parts[i+1:]...)
		out = append(out, strings.Join(rest, op))
		for _, v := range clauseDrops(parts[i]) {
			with := append([]string{}, parts...)
			with[i] = v
			out = append(out, strings.Join(with, op))
		}
	}
	return out
}

// splitTop splits s at op where op is outside parentheses and quotes.
func splitTop(s, op string) []string {
	var parts []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], op):
			parts = append(parts, s[start:i])
			start = i + len(op)
			i += len(op) - 1
		}
	}
	return append(parts, s[start:])
}

// unwrap returns the inside of s when s is one parenthesised group that is
// not a sub-query.
func unwrap(s string) (string, bool) {
	if !strings.HasPrefix(s, "(") || !strings.HasSuffix(s, ")") || strings.HasPrefix(s, "(SELECT ") {
		return "", false
	}
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 && i != len(s)-1 {
				return "", false
			}
		}
	}
	return s[1 : len(s)-1], true
}
