package testdb

import (
	"context"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
)

// Knowledge is a knowledge layer over a database for tests: the real
// embedded vector backend in a temporary directory (region "default") and
// the local embedder; see KnowledgeOptions.
type Knowledge struct {
	Service *retrieval.Service
	Store   *embedded.Store
	Router  *vector.Router
}

// KnowledgeOptions adds to a test knowledge layer.
type KnowledgeOptions struct {
	Chat llm.Chat // answers with this chat model
	// Wrap, if not nil, wraps the backend (to break the vector layer on
	// purpose).
	Wrap func(vector.Store) vector.Store
	// Embedders are served after the local one (for Reembed).
	Embedders []llm.Embedder
}

// NewKnowledge builds a Knowledge over db. Every tenant in tenants is
// provisioned and reconciled (its documents indexed).
func NewKnowledge(t testing.TB, db *postgres.DB, o KnowledgeOptions, tenants ...uuid.UUID) *Knowledge {
	t.Helper()
	store, err := embedded.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var backend vector.Store = store
	if o.Wrap != nil {
		backend = o.Wrap(store)
	}
	router := vector.NewRouter(retrieval.NewRegionCache(db, 0), map[string]vector.Store{"default": backend})
	svc, err := retrieval.New(retrieval.Config{DB: db, Vectors: router, Embedders: append([]llm.Embedder{llm.NewLocal()}, o.Embedders...), Chat: o.Chat, MinSimilarity: retrieval.DefaultMinSimilarity, Drain: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := bulkhead.AsMaintenance(context.Background(), "test: provision")
	for _, id := range tenants {
		if err := svc.Provision(ctx, id); err != nil {
			t.Fatalf("provision %s: %v", id, err)
		}
		if _, err := svc.Reconcile(ctx, id); err != nil {
			t.Fatalf("reconcile %s: %v", id, err)
		}
	}
	return &Knowledge{Service: svc, Store: store, Router: router}
}
