package testdb

import (
	"context"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
)

// Knowledge is a knowledge layer over db for tests: the real embedded
// vector backend in a temporary directory (region "default"), the local
// embedder, and chat if not nil. Wrap, if not nil, wraps the backend (to
// break the vector layer on purpose). Every tenant in tenants is
// provisioned and reconciled (their documents indexed).
type Knowledge struct {
	Service *retrieval.Service
	Store   *embedded.Store
	Router  *vector.Router
}

// NewKnowledge builds a Knowledge; see the type.
func NewKnowledge(t testing.TB, db *postgres.DB, chat llm.Chat, wrap func(vector.Store) vector.Store, tenants ...uuid.UUID) *Knowledge {
	t.Helper()
	store, err := embedded.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var backend vector.Store = store
	if wrap != nil {
		backend = wrap(store)
	}
	router := vector.NewRouter(retrieval.NewRegionCache(db, 0), map[string]vector.Store{"default": backend})
	svc, err := retrieval.New(retrieval.Config{DB: db, Vectors: router, Embedders: []llm.Embedder{llm.NewLocal()}, Chat: chat, MinSimilarity: 0.2, Drain: 1})
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
