package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
)

// TestInternalErrorSaysNothing provokes a real 500 (a column the server
// reads is renamed under it, as a botched migration would) and checks that
// the body is the generic problem while the log carries the cause.
func TestInternalErrorSaysNothing(t *testing.T) {
	a := newAPI(t)
	path := "/v1/worlds/" + a.demo.T1.World1.String()
	if code, _, body := a.do("T1-alice", "GET", path, nil); code != 200 {
		t.Fatalf("before the breakage: %d %s", code, body)
	}
	admin := testdb.MustConnect(t, a.db.AdminDSN())
	if _, err := admin.Exec(context.Background(), `ALTER TABLE bulkhead.worlds RENAME COLUMN name TO name_xyzzy_internal`); err != nil {
		t.Fatal(err)
	}
	code, m, body := a.do("T1-alice", "GET", path, nil)
	if code != 500 {
		t.Fatalf("after the breakage: %d %s, want 500", code, body)
	}
	if m["title"] != "Internal Server Error" || m["detail"] != nil {
		t.Errorf("500 body %s: want the generic title and no detail", body)
	}
	for _, leak := range []string{"xyzzy", "column", "42703", "bulkhead.", "SQLSTATE", "world"} {
		if strings.Contains(strings.ToLower(body), strings.ToLower(leak)) {
			t.Errorf("500 body names %q: %s", leak, body)
		}
	}
	if !strings.Contains(a.logs.String(), "42703") {
		t.Errorf("the log does not carry the cause (SQLSTATE 42703):\n%s", a.logs.String())
	}
}
