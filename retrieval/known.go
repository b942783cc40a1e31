package retrieval

import (
	"context"
	"errors"
	"sync"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// known remembers each tenant's knowledge settings as Ingest or Query last
// read them, so that a document or a query costs no round trip for them.
// It is never trusted on its own: Ingest writes the rows on the condition
// that the tenant's row still holds them (postgres.NewDocument.Expect,
// checked in the rows' transaction), Query reads its passages back with
// the same check (postgres.DB.Passages with expect), and both drop the
// entry when they moved. Every other path reads the tenant's row.
type known struct {
	mu sync.Mutex
	m  map[uuid.UUID]postgres.Knowledge
}

// maxKnownEntries bounds known; it is cleared when full.
const maxKnownEntries = 100_000

func (c *known) get(tenant uuid.UUID) (postgres.Knowledge, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[tenant]
	return k, ok
}

func (c *known) put(tenant uuid.UUID, k postgres.Knowledge) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxKnownEntries {
		c.m = make(map[uuid.UUID]postgres.Knowledge)
	}
	c.m[tenant] = k
}

// drop forgets tenant's settings if they are still k.
func (c *known) drop(tenant uuid.UUID, k postgres.Knowledge) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[tenant] == k {
		delete(c.m, tenant)
	}
}

// withKnowledge runs fn with the caller's tenant's settings: the
// remembered ones first (remembered true: fn must check them where it
// uses them), and, when fn finds they moved (postgres.ErrKnowledgeChanged)
// or their collection gone (ErrNotProvisioned), once more with the
// settings read afresh and remembered (remembered false). Errors of its
// own (no scope, the settings' read, a tenant without a model) are
// returned as they are, for the caller to wrap.
func withKnowledge[T any](ctx context.Context, s *Service, fn func(k postgres.Knowledge, remembered bool) (T, error)) (T, error) {
	var zero T
	sc, ok := bulkhead.ScopeFrom(ctx)
	if !ok {
		return zero, bulkhead.ErrUnauthenticated
	}
	if k, ok := s.known.get(sc.Tenant); ok {
		out, err := fn(k, true)
		if !errors.Is(err, postgres.ErrKnowledgeChanged) && !errors.Is(err, ErrNotProvisioned) {
			return out, err
		}
		s.known.drop(sc.Tenant, k)
	}
	k, err := s.knowledge(ctx)
	if err != nil {
		return zero, err
	}
	s.known.put(sc.Tenant, k)
	return fn(k, false)
}
