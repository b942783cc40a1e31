package policylock_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/postgres/policylock"
	"github.com/bulkhead-dev/bulkhead/rls/model"
)

// bulkheadLock is the lock of bulkhead's own migrations, made once: each
// FromMigrations starts a PostgreSQL cluster of its own.
var bulkheadLock = sync.OnceValues(func() (*policylock.Lock, error) {
	return policylock.FromMigrations(context.Background(), "../migrations", policylock.Options{Matrix: true})
})

func mustBulkheadLock(t *testing.T) *policylock.Lock {
	t.Helper()
	l, err := bulkheadLock()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The observed matrix of bulkhead's migrations is the reference model's:
// what the lock records is what the rules say, checked on real PostgreSQL.
func TestObservedMatrixIsTheModels(t *testing.T) {
	l := mustBulkheadLock(t)
	want := model.Matrix(postgres.Tables, model.NewFixture(time.Now()))
	for _, d := range policylock.CompareMatrix(want, l.Matrix) {
		t.Errorf("model → PostgreSQL: %s", d)
	}
	if len(l.Matrix) != len(postgres.Tables) {
		t.Errorf("matrix has %d tables, want %d", len(l.Matrix), len(postgres.Tables))
	}
	if len(l.Policies) < len(postgres.Tables) || len(l.Definers) == 0 || len(l.Grants) == 0 {
		t.Errorf("lock lost its catalog: %d policies, %d definer functions, %d grants", len(l.Policies), len(l.Definers), len(l.Grants))
	}
}

// The committed policies.lock is the lock of the committed migrations
// (CI runs bulkhead policy check too; this catches it in go test).
func TestCommittedLockIsCurrent(t *testing.T) {
	locked, err := policylock.Load("../../policies.lock")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range policylock.Compare(locked, mustBulkheadLock(t)) {
		t.Errorf("policies.lock is stale (make policy-lock): %s", d)
	}
}

// A migration that weakens a policy makes check fail with the matrix line
// a reviewer needs, and the policy line that caused it.
func TestCheckFindsAWeakenedPolicy(t *testing.T) {
	locked := mustBulkheadLock(t)
	diff := diffWithMigration(t, locked, "99999_weaken_memories.sql")
	for _, want := range []string{
		"memories / INSERT / dave [r2 member, not in r1, owns s2]: author_id=dave room_id=r1: refused → allowed",
		"policy bulkhead_insert on bulkhead.memories: WITH CHECK changed",
	} {
		if !slices.ContainsFunc(diff, func(d string) bool { return strings.HasPrefix(d, want) }) {
			t.Errorf("no %q in the diff:\n%s", want, strings.Join(diff, "\n"))
		}
	}
	for _, d := range diff {
		if !strings.HasPrefix(d, "memories / INSERT / ") && !strings.HasPrefix(d, "policy bulkhead_insert on bulkhead.memories") {
			t.Errorf("a change to one policy shows elsewhere: %s", d)
		}
	}
}

// A migration that makes current_tenant() honour a setting any role can
// SET, while it still answers bulkhead's own: no policy's text and no cell
// of the matrix changes, and check fails on the function.
func TestCheckFindsAForgeableContext(t *testing.T) {
	diff := diffWithMigration(t, mustBulkheadLock(t), "99999_forgeable_tenant.sql")
	want := "function called by a policy bulkhead.current_tenant(): body changed"
	if len(diff) != 1 || diff[0] != want {
		t.Errorf("check found %q, want exactly %q", diff, want)
	}
}

// diffWithMigration returns the differences between locked and the lock
// of bulkhead's migrations followed by testdata/name.
func diffWithMigration(t *testing.T, locked *policylock.Lock, name string) []string {
	t.Helper()
	dir := t.TempDir()
	srcs, err := filepath.Glob("../migrations/*.sql")
	if err != nil || len(srcs) == 0 {
		t.Fatalf("migrations: %v", err)
	}
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(s)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	broken, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), broken, 0o644); err != nil {
		t.Fatal(err)
	}
	cur, err := policylock.FromMigrations(context.Background(), dir, policylock.Options{Matrix: true})
	if err != nil {
		t.Fatal(err)
	}
	return policylock.Compare(locked, cur)
}
