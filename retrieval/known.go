package retrieval

import (
	"sync"

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
