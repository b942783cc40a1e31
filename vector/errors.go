package vector

import (
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
)

// The vector layer's errors. Each wraps the matching bulkhead root error
// where there is one, so errors.Is(err, vector.ErrNotFound) and
// errors.Is(err, bulkhead.ErrNotFound) are both true for a missing
// collection, and the HTTP layer's single error table needs no vector
// entries except for ErrUnavailable (503) and, optionally, ErrWrongRegion.
var (
	// ErrNotFound: the tenant's collection, or a point in it, does not
	// exist. A collection that exists for another tenant is, for the
	// caller, the same thing: it is never a fallback.
	ErrNotFound = fmt.Errorf("vector: %w", bulkhead.ErrNotFound)
	// ErrForbidden: the Collection reference does not belong to the
	// caller's scope (minted for another tenant, by another router, or not
	// minted by a router at all).
	ErrForbidden = fmt.Errorf("vector: %w", bulkhead.ErrForbidden)
	// ErrWrongRegion: the tenant's data lives in a region this router does
	// not serve, or the reference was minted for a region the tenant has
	// since left. It matches ErrForbidden (and bulkhead.ErrForbidden) so a
	// generic error mapper fails closed.
	ErrWrongRegion = fmt.Errorf("vector: tenant data lives in another region: %w", ErrForbidden)
	// ErrDimension: a vector's length differs from its collection's
	// dimension, or a collection is re-created with another dimension. It
	// matches bulkhead.ErrInvalid.
	ErrDimension = fmt.Errorf("vector: dimension mismatch: %w", bulkhead.ErrInvalid)
	// ErrUnavailable: the backend cannot answer (down, I/O error, corrupt
	// collection file). Callers must report it (503) and never treat it as
	// an empty result.
	ErrUnavailable = fmt.Errorf("vector: backend: %w", bulkhead.ErrUnavailable)
	// ErrNoSpace: a write failed because the backend's storage is full
	// (ENOSPC, EDQUOT). The write was not kept; reads still work, and the
	// write succeeds once space is freed. It matches bulkhead.ErrNoSpace
	// (507) and also ErrUnavailable, so code that handles a failed backend
	// handles it too.
	ErrNoSpace = fmt.Errorf("vector: storage full: %w (%w)", bulkhead.ErrNoSpace, ErrUnavailable)
)
