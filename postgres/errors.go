package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// translate maps a driver error to bulkhead's error set, keeping the
// original for logs (errors.Is sees both). It is the only place that looks
// at SQLSTATEs. A database that can't be reached, or a connection that
// broke, is bulkhead.ErrUnavailable.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (%w)", bulkhead.ErrNotFound, err)
	}
	if unreachable(err) {
		return fmt.Errorf("%w (%w)", bulkhead.ErrUnavailable, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	var kind error
	switch pe.Code {
	case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
		kind = bulkhead.ErrUnavailable
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
		// Class 53, insufficient resources: 53100 disk_full (a relation,
		// index or temporary file could not be extended) refuses the write
		// for lack of space; the others (53200 out_of_memory, 53300
		// too_many_connections, 53400 configuration_limit_exceeded) are
		// the server being short of something for now: retry later.
		if pe.Code == "53100" {
			kind = bulkhead.ErrNoSpace
			break
		}
		if strings.HasPrefix(pe.Code, "53") {
			kind = bulkhead.ErrUnavailable
			break
		}
		// Class 08, connection exception: what PostgreSQL or PgBouncer
		// says when the server side of the connection is gone or refuses.
		if strings.HasPrefix(pe.Code, "08") {
			kind = bulkhead.ErrUnavailable
			break
		}
		return err
	}
	return fmt.Errorf("%w (%w)", kind, err)
}

// unreachable reports whether err says that PostgreSQL, or a pooler in
// front of it, could not be reached or that the connection broke: retry
// later (503), neither the caller's fault nor a bug. The caller's own
// deadline or cancellation is not one.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
