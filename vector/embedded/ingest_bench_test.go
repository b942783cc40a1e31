package embedded

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// BenchmarkIngest measures what ingestion asks of the store: batches of 5
// points of dimension 384 (one document's chunks) upserted by 4 writers
// into 2 collections until each holds 10,000 points; one op is one batch,
// its durable append (and, amortised, the compactions it causes; the
// log-only variant never compacts, to show what compaction costs).
//
//	go test ./vector/embedded -run '^$' -bench BenchmarkIngest -benchtime 1x
func BenchmarkIngest(b *testing.B) {
	for _, v := range []struct {
		name       string
		compactMin int64
	}{{"compaction", DefaultCompactMin}, {"log-only", -1}} {
		b.Run(v.name, func(b *testing.B) { benchIngest(b, v.compactMin) })
	}
}

func benchIngest(b *testing.B, compactMin int64) {
	const tenants, writers, perTenant, batch, dim = 2, 4, 10_000, 5, 384
	for b.Loop() {
		s, err := New(b.TempDir(), WithCompactMin(compactMin))
		if err != nil {
			b.Fatal(err)
		}
		regions := map[uuid.UUID]string{}
		ids := make([]uuid.UUID, tenants)
		for i := range ids {
			ids[i] = uuid.New()
			regions[ids[i]] = "r"
		}
		r := vector.NewRouter(vector.NewStaticRegions(regions), map[string]vector.Store{"r": s})
		ctxs := make([]context.Context, tenants)
		colls := make([]vector.Collection, tenants)
		for i, id := range ids {
			ctxs[i], _ = bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: id})
			if colls[i], err = r.Collection(ctxs[i]); err != nil {
				b.Fatal(err)
			}
			if err := r.CreateCollection(ctxs[i], colls[i], dim); err != nil {
				b.Fatal(err)
			}
		}
		pts := randomPoints(1, 64, dim)
		start := time.Now()
		var wg sync.WaitGroup
		per := tenants * perTenant / batch / writers
		for w := range writers {
			wg.Go(func() {
				for j := range per {
					t := (w + j) % tenants
					bp := make([]vector.Point, batch)
					for k := range bp {
						bp[k] = pts[(j+k)%len(pts)]
						bp[k].ID = uuid.New()
					}
					if err := r.Upsert(ctxs[t], colls[t], bp); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		s.Close()
		b.ReportMetric(float64(el.Microseconds())/float64(per*writers), "µs/batch")
		n, _ := s.CompactionFailures()
		fmt.Printf("%d batches in %s, compaction failures %d\n", per*writers, el, n)
	}
}
