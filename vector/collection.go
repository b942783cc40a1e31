package vector

import (
	"context"
	"fmt"
	"strconv"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// Collection is a reference to one generation of one tenant's collection
// in one region. Its fields are unexported: the only way to get a usable
// one is Router.Collection, which takes the tenant from the authenticated
// scope in the context, never from a name in request input, and returns
// generation 1; AtGeneration derives the reference to another generation
// of the same tenant. The zero Collection refers to nothing and every
// Store refuses it.
//
// Generations let a tenant hold several collections, one per embedding
// model: re-embedding builds generation N+1 next to N, switches readers to
// it and drops N, with no downtime. Each generation is a separate
// collection in every backend (its own dimension, points, stats, creation
// and drop). A generation is not a security boundary: every generation of
// a tenant is that tenant's, and access is checked on the tenant exactly
// as without generations.
//
// A Collection is a small comparable value, safe to copy and to share
// between goroutines. It is not a capability on its own: the Router and the
// backends check it against the context's scope on every call.
type Collection struct {
	tenant uuid.UUID
	region string
	gen    uint32
	router *Router
}

// Tenant returns the tenant whose collection c refers to (uuid.Nil for the
// zero Collection). Backends name their storage after it and Generation.
func (c Collection) Tenant() uuid.UUID { return c.tenant }

// Region returns the region c was minted for.
func (c Collection) Region() string { return c.region }

// Generation returns c's generation: 1 for a reference from
// Router.Collection, 0 only for the zero Collection.
func (c Collection) Generation() uint32 { return c.gen }

// AtGeneration returns a copy of c (same tenant, region and router) for
// generation g. It creates nothing: the collection of that generation
// exists only once CreateCollection made it. It returns a bulkhead.ErrInvalid
// error if g is 0, and ErrForbidden if c was not minted by a router (the
// zero Collection gives no usable reference at any generation).
func (c Collection) AtGeneration(g uint32) (Collection, error) {
	if g < 1 {
		return Collection{}, fmt.Errorf("collection %s at generation %d: %w", c, g, bulkhead.Invalid("generation", "must be at least 1"))
	}
	if !c.minted() {
		return Collection{}, fmt.Errorf("collection reference not issued by a router: %w", ErrForbidden)
	}
	c.gen = g
	return c, nil
}

// String returns "tenant@region/g<generation>", for logs.
func (c Collection) String() string {
	if c.tenant == uuid.Nil {
		return "<no collection>"
	}
	return c.tenant.String() + "@" + c.region + "/g" + strconv.FormatUint(uint64(c.gen), 10)
}

// minted reports whether c has the shape only a Router gives: a tenant, a
// router and a generation. The zero Collection has none of them.
func (c Collection) minted() bool {
	return c.tenant != uuid.Nil && c.router != nil && c.gen >= 1
}

// CheckAccess reports whether ctx may use c. Every backend calls it first,
// as a second line behind the Router: c must have been minted by a router,
// and ctx must carry either the scope of c's tenant or a maintenance mark
// (bulkhead.AsMaintenance, used by Router.Move). The generation plays no
// part beyond being set: every generation of a tenant is the tenant's. It
// returns ErrForbidden, or bulkhead.ErrUnauthenticated when ctx has neither
// a scope nor a maintenance mark.
func CheckAccess(ctx context.Context, c Collection) error {
	if !c.minted() {
		return fmt.Errorf("collection reference not issued by a router: %w", ErrForbidden)
	}
	if s, ok := bulkhead.ScopeFrom(ctx); ok {
		if s.Tenant != c.tenant {
			return fmt.Errorf("collection %s used in another tenant's scope: %w", c, ErrForbidden)
		}
		return nil
	}
	if _, ok := bulkhead.MaintenanceFrom(ctx); ok {
		return nil
	}
	return fmt.Errorf("vector collection %s: no scope: %w", c, bulkhead.ErrUnauthenticated)
}
