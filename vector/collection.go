package vector

import (
	"context"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// Collection is a reference to one tenant's collection in one region. Its
// fields are unexported: the only way to get a usable one is
// Router.Collection, which takes the tenant from the authenticated scope in
// the context, never from a name in request input. The zero Collection
// refers to nothing and every Store refuses it.
//
// A Collection is a small comparable value, safe to copy and to share
// between goroutines. It is not a capability on its own: the Router and the
// backends check it against the context's scope on every call.
type Collection struct {
	tenant uuid.UUID
	region string
	router *Router
}

// Tenant returns the tenant whose collection c refers to (uuid.Nil for the
// zero Collection). Backends name their storage after it.
func (c Collection) Tenant() uuid.UUID { return c.tenant }

// Region returns the region c was minted for.
func (c Collection) Region() string { return c.region }

// String returns "tenant@region", for logs.
func (c Collection) String() string {
	if c.tenant == uuid.Nil {
		return "<no collection>"
	}
	return c.tenant.String() + "@" + c.region
}

// CheckAccess reports whether ctx may use c. Every backend calls it first,
// as a second line behind the Router: c must have been minted by a router,
// and ctx must carry either the scope of c's tenant or a maintenance mark
// (bulkhead.AsMaintenance, used by Router.Move). It returns ErrForbidden, or
// bulkhead.ErrUnauthenticated when ctx has neither a scope nor a
// maintenance mark.
func CheckAccess(ctx context.Context, c Collection) error {
	if c.tenant == uuid.Nil || c.router == nil {
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
