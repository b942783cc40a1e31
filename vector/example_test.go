package vector_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/google/uuid"
)

func ExampleRouter() {
	dir, _ := os.MkdirTemp("", "vectors")
	defer os.RemoveAll(dir)
	store, _ := embedded.New(dir)
	defer store.Close()

	tenant := uuid.MustParse("0b9a3f5e-2f4c-4f7e-9d55-3c2b1a0e9f10")
	regions := vector.NewStaticRegions(map[uuid.UUID]string{tenant: "eu"})
	router := vector.NewRouter(regions, map[string]vector.Store{"eu": store})

	// Authentication middleware puts the scope in the context; the
	// collection comes from it, not from the request.
	ctx, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant})
	c, err := router.Collection(ctx)
	if err != nil {
		panic(err)
	}
	if err := router.Upsert(ctx, c, []vector.Point{{ID: uuid.New(), Vector: []float32{1, 0}}}); err != nil {
		fmt.Println("before provisioning:", err)
	}
	_ = router.CreateCollection(ctx, c, 2)
	_ = router.Upsert(ctx, c, []vector.Point{
		{ID: uuid.MustParse("00000000-0000-0000-0000-000000000001"), Vector: []float32{1, 0}, Payload: map[string]string{"text": "east"}},
		{ID: uuid.MustParse("00000000-0000-0000-0000-000000000002"), Vector: []float32{0, 1}, Payload: map[string]string{"text": "north"}},
	})
	hits, _ := router.Search(ctx, c, []float32{0.9, 0.1}, 1)
	fmt.Printf("%s %.3f\n", hits[0].Payload["text"], hits[0].Score)
	// Output:
	// before provisioning: collection 0b9a3f5e-2f4c-4f7e-9d55-3c2b1a0e9f10/g1: vector: not found
	// east 0.994
}

// Re-embedding a tenant with a new model, without downtime: build the next
// generation beside the one being served, switch readers, drop the old one.
func ExampleCollection_AtGeneration() {
	dir, _ := os.MkdirTemp("", "vectors")
	defer os.RemoveAll(dir)
	store, _ := embedded.New(dir)
	defer store.Close()
	tenant := uuid.MustParse("0b9a3f5e-2f4c-4f7e-9d55-3c2b1a0e9f10")
	router := vector.NewRouter(vector.NewStaticRegions(map[uuid.UUID]string{tenant: "eu"}), map[string]vector.Store{"eu": store})
	ctx, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant})

	old, _ := router.Collection(ctx) // generation 1, a 2-d model
	_ = router.CreateCollection(ctx, old, 2)
	_ = router.Upsert(ctx, old, []vector.Point{{ID: uuid.MustParse("00000000-0000-0000-0000-000000000001"), Vector: []float32{1, 0}}})

	next, _ := old.AtGeneration(2) // a 3-d model, built while generation 1 serves
	_ = router.CreateCollection(ctx, next, 3)
	_ = router.Upsert(ctx, next, []vector.Point{{ID: uuid.MustParse("00000000-0000-0000-0000-000000000001"), Vector: []float32{0, 0, 1}}})
	for _, c := range []vector.Collection{old, next} {
		st, _ := router.Stats(ctx, c)
		fmt.Println(c.Generation(), st.Dimension, st.Points)
	}

	// Readers now use next; then the old generation goes.
	_ = router.DropCollection(ctx, old)
	_, err := router.Stats(ctx, old)
	fmt.Println(errors.Is(err, vector.ErrNotFound))
	hits, _ := router.Search(ctx, next, []float32{0, 0, 1}, 1)
	fmt.Println(next, hits[0].ID)
	// Output:
	// 1 2 1
	// 2 3 1
	// true
	// 0b9a3f5e-2f4c-4f7e-9d55-3c2b1a0e9f10@eu/g2 00000000-0000-0000-0000-000000000001
}
