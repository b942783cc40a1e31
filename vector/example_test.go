package vector_test

import (
	"context"
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
	// before provisioning: collection of tenant 0b9a3f5e-2f4c-4f7e-9d55-3c2b1a0e9f10: vector: not found
	// east 0.994
}
