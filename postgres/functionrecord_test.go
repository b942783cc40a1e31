package postgres_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/go-cmp/cmp"
)

// TestExpectedFunctionsAreTheMigrations checks the self-check's record of
// functions: functions_expected.json must be exactly the functions a
// freshly migrated database has in bulkhead's schema, so the self-check
// compares live databases with the migrations and not with a stale copy.
func TestExpectedFunctionsAreTheMigrations(t *testing.T) {
	t.Parallel()
	d := mustDB(t)
	ctx := context.Background()
	live, err := postgres.ReadFunctions(ctx, mustConnect(t, d.AdminDSN()))
	if err != nil {
		t.Fatal(err)
	}
	got := postgres.ExpectedFunctions{Functions: live}
	// Compared before anything is rewritten: -update never makes a
	// difference pass unseen.
	want, err := postgres.LoadExpectedFunctions()
	if err != nil && !*update {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		if *update {
			b, _ := json.MarshalIndent(got, "", "  ")
			if err := os.WriteFile("functions_expected.json", append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Errorf("rewrote functions_expected.json; review this difference (-old +new) and run again without -update:\n%s", diff)
			return
		}
		t.Errorf("functions_expected.json is not what the migrations made (-file +database); review it, then run go test ./postgres -run TestExpectedFunctionsAreTheMigrations -update:\n%s", diff)
	}
}
