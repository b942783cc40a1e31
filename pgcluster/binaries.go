package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Binaries is an installed PostgreSQL server: its bin directory and major version.
type Binaries struct {
	Dir   string
	Major int
}

// Path returns the path of the named program in b.
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// ErrNoBinaries means no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New(`no PostgreSQL server binaries found (looked on PATH, in "pg_config --bindir" and /usr/lib/postgresql/*/bin); install them with: apt-get update && apt-get install -y postgresql (as root), or run "make run", which does it`)

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// FindBinaries locates the newest installed PostgreSQL server. dir, when
// not empty, is the only place looked at.
// It returns ErrNoBinaries when nothing usable is found.
func FindBinaries(dir string) (Binaries, error) {
	var candidates []string
	if dir != "" {
		candidates = []string{dir}
	} else {
		if p, err := exec.LookPath("postgres"); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				candidates = append(candidates, filepath.Dir(r))
			}
		}
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
		globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		candidates = append(candidates, globbed...)
	}
	var found []Binaries
	seen := map[string]bool{}
	for _, d := range candidates {
		if seen[d] {
			continue
		}
		seen[d] = true
		b, err := probe(d)
		if err == nil {
			found = append(found, b)
		}
	}
	if len(found) == 0 {
		return Binaries{}, ErrNoBinaries
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Major > found[j].Major })
	return found[0], nil
}

func probe(dir string) (Binaries, error) {
	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return Binaries{}, fmt.Errorf("%s: no %s", dir, name)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("%s/postgres --version: %w", dir, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return Binaries{}, fmt.Errorf("%s/postgres --version: unexpected output %q", dir, out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	return Binaries{Dir: dir, Major: major}, nil
}
