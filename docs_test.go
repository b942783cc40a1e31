package bulkhead_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestDocsNameTestsThatExist: every test, benchmark and fuzz target the
// docs cite as evidence (`TestX`, `BenchmarkX`, `FuzzX` in backquotes; a
// trailing * cites every name with that prefix) is a function of some
// _test.go file. A claim in docs/SECURITY.md that
// names a test someone renamed or deleted would otherwise promise what
// nothing checks.
func TestDocsNameTestsThatExist(t *testing.T) {
	defined := map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)\w+)\(`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range funcRE.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !defined["TestDocsNameTestsThatExist"] {
		t.Fatal("the walk found no test functions: it is looking in the wrong place")
	}
	citedRE := regexp.MustCompile("`((?:Test|Benchmark|Fuzz)[A-Z]\\w*)(\\*?)")
	exists := func(name string, prefix bool) bool {
		if !prefix {
			return defined[name]
		}
		for d := range defined {
			if strings.HasPrefix(d, name) {
				return true
			}
		}
		return false
	}
	docs, err := filepath.Glob("docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	docs = append(docs, "README.md")
	var missing []string
	cited := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range citedRE.FindAllStringSubmatch(string(b), -1) {
			cited++
			if !exists(m[1], m[2] == "*") {
				missing = append(missing, doc+": "+m[1])
			}
		}
	}
	if cited == 0 {
		t.Fatal("the docs cite no tests: the pattern is wrong")
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("%d citations of tests that don't exist (of %d):\n%s", len(missing), cited, strings.Join(missing, "\n"))
	}
}
