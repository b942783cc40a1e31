package postgres_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestInsufficientResources: SQLSTATE class 53 is never an untranslated
// error (500). 53100 disk_full is bulkhead.ErrNoSpace (507: the write was
// refused for lack of space; the real one is provoked in cmd/bulkhead's
// TestDiskFullPostgres); the rest of the class (out of memory, too many
// connections, a configuration limit) is the server short of something
// for now, bulkhead.ErrUnavailable (503 + Retry-After).
func TestInsufficientResources(t *testing.T) {
	for code, want := range map[string]error{
		"53100": bulkhead.ErrNoSpace,
		"53200": bulkhead.ErrUnavailable,
		"53300": bulkhead.ErrUnavailable,
		"53400": bulkhead.ErrUnavailable,
	} {
		pe := &pgconn.PgError{Severity: "ERROR", Code: code, Message: "insufficient resources"}
		err := postgres.Translate(fmt.Errorf("create document: %w", pe))
		if !errors.Is(err, want) {
			t.Errorf("SQLSTATE %s: %v, want %v", code, err, want)
		}
		if code != "53100" && errors.Is(err, bulkhead.ErrNoSpace) {
			t.Errorf("SQLSTATE %s is not a full disk: %v", code, err)
		}
		var back *pgconn.PgError
		if !errors.As(err, &back) || back.Code != code {
			t.Errorf("SQLSTATE %s: the driver error is not kept for the log: %v", code, err)
		}
	}
}
