package vector

import (
	"context"

	"github.com/google/uuid"
)

// Store is a vector backend holding one collection per tenant and
// generation. Every method takes a Collection, which only a Router can mint
// from an authenticated scope; implementations name their storage after
// c.Tenant() and c.Generation() only, and call CheckAccess first. Each
// generation is a collection of its own: its dimension, points, stats,
// creation and drop never affect another generation. Implementations are
// safe for concurrent use.
//
// Handlers never hold a backend: they hold the Router, which is itself a
// Store that adds the scope, residency and hit checks, and dispatches to the
// backend of the tenant's region.
type Store interface {
	// CreateCollection creates c's collection with the given dimension. It
	// is idempotent: creating an existing collection with the same
	// dimension does nothing. It returns ErrDimension if the collection
	// exists with another dimension, bulkhead.ErrInvalid for a dimension
	// outside [1, MaxDimension], ErrUnavailable if the backend fails.
	CreateCollection(ctx context.Context, c Collection, dim int) error
	// DropCollection deletes c's collection and all its points. It returns
	// ErrNotFound if there is none (lifecycle code treats that as done).
	DropCollection(ctx context.Context, c Collection) error
	// Upsert inserts points, replacing those whose id exists, all or
	// nothing, durably before it returns. It never creates the collection:
	// a missing one is ErrNotFound. It returns ErrDimension or
	// bulkhead.ErrInvalid (see Point.Validate; also for an id repeated in
	// points) without storing anything. Writes (CreateCollection, Upsert,
	// Delete) return ErrNoSpace when the backend's storage is full and
	// nothing of the write was kept (the embedded backend; a Qdrant node
	// out of disk is ErrUnavailable), ErrUnavailable when it fails
	// otherwise.
	Upsert(ctx context.Context, c Collection, points []Point) error
	// Delete removes the points with the given ids, all or nothing: if any
	// id is absent it returns ErrNotFound and removes none.
	Delete(ctx context.Context, c Collection, ids []uuid.UUID) error
	// Search returns the k points most similar to query (cosine
	// similarity), best first, ties broken by ascending id; fewer if the
	// collection holds fewer. It returns ErrNotFound for a missing
	// collection, ErrDimension or bulkhead.ErrInvalid (see CheckQuery), and
	// ErrUnavailable rather than an empty result when the backend fails.
	Search(ctx context.Context, c Collection, query []float32, k int) ([]Hit, error)
	// Stats describes c's collection, or returns ErrNotFound.
	Stats(ctx context.Context, c Collection) (Stats, error)
	// Scroll returns up to limit points whose id is greater than after, in
	// ascending byte order of id (uuid.Nil starts from the beginning); an
	// empty page is the end. Router.Move uses it to copy and checksum a
	// collection.
	Scroll(ctx context.Context, c Collection, after uuid.UUID, limit int) ([]Point, error)
}
