package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// translate maps a driver error to bulkhead's error set, keeping the
// original for logs (errors.Is sees both). It is the only place that looks
// at SQLSTATEs.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (%w)", bulkhead.ErrNotFound, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	var kind error
	switch pe.Code {
	case "23505": // unique_violation
		kind = bulkhead.ErrConflict
	case "23503": // foreign_key_violation: the referenced row is missing or hidden
		kind = bulkhead.ErrNotFound
	case "42501": // insufficient_privilege, including an RLS WITH CHECK refusal
		kind = bulkhead.ErrForbidden
	case "23514", "23502": // check, not null
		kind = bulkhead.ErrInvalid
	case "28000": // invalid_authorization_specification: bulkhead.access_check refused the credential
		kind = bulkhead.ErrUnauthenticated
	default:
		// Class 22, data exception: a value PostgreSQL can't take (22021 a
		// character not in the encoding, 22P05 \u0000 in jsonb, 22P02 bad
		// text, 22001 too long, datetime and numeric ranges...). The input was
		// wrong, never the server, so none of them may surface as a 500.
		if strings.HasPrefix(pe.Code, "22") {
			kind = bulkhead.ErrInvalid
			break
		}
		return err
	}
	return fmt.Errorf("%w (%w)", kind, err)
}
