package postgres_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite policies_expected.json and functions_expected.json from a freshly migrated database")

// TestExpectedPoliciesAreTheGenerators checks the self-check's expectations:
// policies_expected.json must be exactly what PostgreSQL made of the
// generated migration, so the self-check compares live databases with the
// generator and not with a stale copy.
func TestExpectedPoliciesAreTheGenerators(t *testing.T) {
	t.Parallel()
	d := mustDB(t)
	ctx := context.Background()
	admin := mustConnect(t, d.AdminDSN())
	live, err := postgres.ReadPolicies(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	var major int
	if err := admin.QueryRow(ctx, `SELECT current_setting('server_version_num')::int / 10000`).Scan(&major); err != nil {
		t.Fatal(err)
	}
	got := postgres.ExpectedPolicies{ServerMajor: major, Policies: live}
	// Compared before anything is rewritten: -update never makes a
	// difference pass unseen.
	want, err := postgres.LoadExpectedPolicies()
	if err != nil && !*update {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		if *update {
			b, _ := json.MarshalIndent(got, "", "  ")
			if err := os.WriteFile("policies_expected.json", append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Errorf("rewrote policies_expected.json; review this difference (-old +new) and run again without -update:\n%s", diff)
			return
		}
		t.Errorf("policies_expected.json is not what PostgreSQL made of the generated migration (-file +database); review it, then run go test ./postgres -run TestExpectedPoliciesAreTheGenerators -update:\n%s", diff)
	}
}
