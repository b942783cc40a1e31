package bulkhead

import (
	"errors"
	"fmt"
	"strings"
)

// The fixed set of errors every bulkhead package returns (wrapped with %w).
// Callers test them with errors.Is; the HTTP layer maps each to one status.
var (
	// ErrNotFound: the row does not exist or is hidden from the caller by
	// isolation. The two are deliberately indistinguishable.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write collides with an existing row of the caller's tenant.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is malformed.
	ErrInvalid = errors.New("invalid input")
	// ErrUnauthenticated: no (valid) scope or credential.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the caller is known but the database refused the write
	// (a row-level security check failed).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: a backend the answer depends on (vector store,
	// embedding or chat model) cannot answer now, or the tenant's
	// knowledge collection is not provisioned. Never reported as an empty
	// result; the HTTP layer answers 503.
	ErrUnavailable = errors.New("unavailable")
	// ErrNoSpace: a write failed because the storage it needs is full (the
	// vector directory's file system, or PostgreSQL's: ENOSPC, EDQUOT,
	// SQLSTATE 53100 disk_full). Nothing of the write was kept, reads still
	// work, and the same write succeeds once space is freed, without a
	// restart. The HTTP layer answers 507 Insufficient Storage. A backend
	// error may match both ErrNoSpace and ErrUnavailable; ErrNoSpace is the
	// more precise and wins.
	ErrNoSpace = errors.New("insufficient storage")
	// ErrDamaged: a stored value failed its integrity check: a sealed value
	// that does not open (tampered, or copied from another row, column or
	// tenant) or plaintext where a sealed value belongs. The data is
	// damaged, not the request; nothing of it is returned. The HTTP layer
	// answers 409 with its own problem type.
	ErrDamaged = errors.New("stored data is damaged")
)

// FieldProblem is one field's problem in a ValidationError.
type FieldProblem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError lists what is wrong with an input. It matches ErrInvalid
// under errors.Is.
type ValidationError struct {
	Problems []FieldProblem
}

// Invalid returns a *ValidationError for one field.
func Invalid(field, detail string) *ValidationError {
	return &ValidationError{Problems: []FieldProblem{{Field: field, Detail: detail}}}
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		parts = append(parts, fmt.Sprintf("%s: %s", p.Field, p.Detail))
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for a *ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }
