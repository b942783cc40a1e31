package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// TestExtensionUpgradeIsTheFreshInstall: bulkhead_context installed at its
// first version and updated through every upgrade script (what a running
// deployment goes through, one migration at a time) ends with exactly the
// members, attributes, grants and version of a fresh install, which is all
// the rest of the suite runs on. Every version pgext/ ships is reachable.
func TestExtensionUpgradeIsTheFreshInstall(t *testing.T) {
	ctx := context.Background()
	admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
	versions := shippedVersions(t)
	members := func(first string) []string {
		t.Helper()
		name := fmt.Sprintf("ext_%d_%s", os.Getpid(), regexp.MustCompile(`\W`).ReplaceAllString(first, "_"))
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
		c := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(name))
		create := "CREATE EXTENSION " + postgres.ContextExtension + " SCHEMA " + postgres.Schema
		if first != "" {
			create += " VERSION '" + first + "'"
		}
		for _, sql := range []string{"CREATE SCHEMA " + postgres.Schema, create, "ALTER EXTENSION " + postgres.ContextExtension + " UPDATE"} {
			if _, err := c.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		rows, err := c.Query(ctx, `
SELECT e.extversion || ' ' || p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid) || ' ' || l.lanname
  || ' volatile=' || p.provolatile::text || ' parallel=' || p.proparallel::text || ' strict=' || p.proisstrict::text || ' definer=' || p.prosecdef::text
  || ' leakproof=' || p.proleakproof::text || ' src=' || p.prosrc || ' bin=' || coalesce(p.probin, '') || ' acl=' || coalesce(p.proacl::text, 'default')
FROM pg_extension e JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid JOIN pg_language l ON l.oid = p.prolang
WHERE e.extname = $1 ORDER BY 1`, postgres.ContextExtension)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	fresh := members("")
	if len(fresh) == 0 {
		t.Fatal("a fresh install has no member functions")
	}
	latest := versions[len(versions)-1]
	for _, m := range fresh {
		if m[:len(latest)+1] != latest+" " {
			t.Fatalf("a fresh install is not the latest shipped version %s: %s", latest, m)
		}
	}
	for _, v := range versions[:len(versions)-1] {
		if got := members(v); !slices.Equal(got, fresh) {
			t.Errorf("installed at %s and updated, the extension is not the fresh install:\n got %q\nwant %q", v, got, fresh)
		}
	}
}

// shippedVersions returns the versions of pgext/'s install scripts, in
// order.
func shippedVersions(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../pgext/" + postgres.ContextExtension + "--*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	re := regexp.MustCompile(`^` + postgres.ContextExtension + `--(\d+)\.(\d+)\.sql$`)
	for _, f := range files {
		if m := re.FindStringSubmatch(filepath.Base(f)); m != nil {
			out = append(out, m[1]+"."+m[2])
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		var a1, a2, b1, b2 int
		fmt.Sscanf(a, "%d.%d", &a1, &a2)
		fmt.Sscanf(b, "%d.%d", &b1, &b2)
		if a1 != b1 {
			return a1 - b1
		}
		return a2 - b2
	})
	if len(out) < 2 {
		t.Fatalf("pgext/ ships %v: want at least two versions", out)
	}
	return out
}
