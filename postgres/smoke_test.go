package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func TestSelfCheckCleanDatabase(t *testing.T) {
	d := testdb.New(t)
	findings, err := postgres.SelfCheck(context.Background(), d.DB.Pool())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("finding: %s", f)
	}
}
