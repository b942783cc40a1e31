package qdrant_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/qdrant"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
)

// TestContract runs the vector.Store contract against a real Qdrant. It
// needs BULKHEAD_TEST_QDRANT_URL (host:port of the gRPC endpoint) and, if
// the server requires one, BULKHEAD_TEST_QDRANT_API_KEY. Each case uses
// fresh random tenants, so their collections never collide; the ones a
// case leaves behind are dropped at its end.
func TestContract(t *testing.T) {
	addr := os.Getenv("BULKHEAD_TEST_QDRANT_URL")
	if addr == "" {
		t.Skip("not run: set BULKHEAD_TEST_QDRANT_URL=host:6334 to run the Qdrant contract test against a real Qdrant")
	}
	vectortest.Run(t, func(t *testing.T) vector.Store {
		s, err := qdrant.New(qdrant.Config{
			Addr:    addr,
			APIKey:  os.Getenv("BULKHEAD_TEST_QDRANT_API_KEY"),
			Timeout: 30 * time.Second,
		})
		if err != nil {
			t.Fatalf("qdrant.New(%s): %v", addr, err)
		}
		cl := &cleanup{Store: s, created: make(map[vector.Collection]bool)}
		t.Cleanup(func() {
			cl.dropAll(t)
			s.Close()
		})
		return cl
	})
}

// cleanup drops, at the end of the test, every collection created through
// it (the contract's tenants are random, so nothing else is touched).
type cleanup struct {
	*qdrant.Store
	mu      sync.Mutex
	created map[vector.Collection]bool
}

func (c *cleanup) CreateCollection(ctx context.Context, coll vector.Collection, dim int) error {
	c.mu.Lock()
	c.created[coll] = true
	c.mu.Unlock()
	return c.Store.CreateCollection(ctx, coll, dim)
}

func (c *cleanup) dropAll(t *testing.T) {
	ctx := bulkhead.AsMaintenance(context.Background(), "qdrant contract test cleanup")
	c.mu.Lock()
	defer c.mu.Unlock()
	for coll := range c.created {
		if err := c.Store.DropCollection(ctx, coll); err != nil && !errors.Is(err, vector.ErrNotFound) {
			t.Errorf("cleanup: drop %s: %v", qdrant.CollectionName(coll), err)
		}
	}
}
