package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// locate sets File and Line of each finding to the first statement, in the
// migrations of dir (sorted by file name, as goose applies them), that
// created the finding's object: CREATE POLICY for a policy, CREATE
// FUNCTION for a function, and so on; the table's CREATE TABLE otherwise.
func locate(dir string, fs []Finding) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no *.sql files in %s", dir)
	}
	sort.Strings(files)
	type src struct {
		name  string
		lines []string
	}
	var srcs []src
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		srcs = append(srcs, src{name: filepath.ToSlash(f), lines: strings.Split(string(b), "\n")})
	}
	find := func(re *regexp.Regexp) (string, int) {
		for _, s := range srcs {
			for i, l := range s.lines {
				if re.MatchString(l) {
					return s.name, i + 1
				}
			}
		}
		return "", 0
	}
	for i := range fs {
		o := fs[i].Object
		var res []*regexp.Regexp
		switch o.Kind {
		case "policy":
			res = append(res, re(`create\s+policy\s+%s\s+on\s+(%s\s*\.\s*)?%s\b`, o.Name, o.Schema, o.Table))
		case "function":
			name, _, _ := strings.Cut(o.Name, "(")
			res = append(res, re(`create\s+(or\s+replace\s+)?(function|procedure)\s+(%s\s*\.\s*)?%s\s*\(`, o.Schema, name))
		case "index":
			res = append(res, re(`create\s+(unique\s+)?index\s+(concurrently\s+)?(if\s+not\s+exists\s+)?%s\b`, o.Name))
		case "trigger":
			res = append(res, re(`create\s+(or\s+replace\s+)?(constraint\s+)?trigger\s+%s\b`, o.Name))
		case "rule":
			res = append(res, re(`create\s+(or\s+replace\s+)?rule\s+%s\b`, o.Name))
		case "view":
			res = append(res, re(`create\s+(or\s+replace\s+)?(materialized\s+)?view\s+(if\s+not\s+exists\s+)?(%s\s*\.\s*)?%s\b`, o.Schema, o.Table))
		case "publication":
			res = append(res, re(`create\s+publication\s+%s\b`, o.Name))
		case "role":
			res = append(res, re(`create\s+(role|user)\s+%s\b`, o.Name))
		case "schema":
			res = append(res, re(`create\s+schema\s+(if\s+not\s+exists\s+)?%s\b`, o.Schema))
		}
		if o.Table != "" {
			res = append(res, re(`create\s+(unlogged\s+)?table\s+(if\s+not\s+exists\s+)?(%s\s*\.\s*)?%s\b`, o.Schema, o.Table))
		}
		for _, r := range res {
			if r == nil {
				continue
			}
			if f, l := find(r); f != "" {
				fs[i].File, fs[i].Line = f, l
				break
			}
		}
	}
	return nil
}

// re builds a case-insensitive pattern whose %s are identifiers, matched
// bare or double-quoted (a quoted identifier keeps its case).
func re(format string, names ...string) *regexp.Regexp {
	args := make([]any, len(names))
	for i, n := range names {
		q := regexp.QuoteMeta(n)
		args[i] = `(?:"` + strings.ReplaceAll(regexp.QuoteMeta(n), `"`, `""`) + `"|(?i:` + q + `))`
	}
	r, err := regexp.Compile(`(?i)` + fmt.Sprintf(format, args...))
	if err != nil {
		return nil
	}
	return r
}
