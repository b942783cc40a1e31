package embedded

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkNew measures the store's start-up (New) with n collections on
// disk, each a snapshot and a log as the store writes them (2n + 1 files
// with LOCK): the figure `bulkhead bench tenants` reports as "store
// start-up", without the PostgreSQL set-up that command needs. ns/op is
// New alone; sweep-ns/op is the background sweep of temporary files New
// starts, from New's return to its end (New does not wait for it; here
// each sweep ends before the next New). New makes the same 14 system
// calls whatever n is (strace); what remains of a difference between the
// two sizes is the previous sweep's read of the whole directory, which
// slows the next New here as much when a plain getdents loop stands in
// for it.
//
//	go test ./vector/embedded -run '^$' -bench BenchmarkNew -benchtime 200x -count 5
func BenchmarkNew(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("collections=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			for range n {
				k := key{tenant: uuid.New(), gen: 1}
				var snap bytes.Buffer
				if err := encode(&snap, k, newData(16, 0)); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, fileName(k)), snap.Bytes(), 0o600); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, logName(k)), encodeLogHeader(k), 0o600); err != nil {
					b.Fatal(err)
				}
			}
			var sweep time.Duration
			b.ResetTimer()
			for range b.N {
				s, err := New(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				t := time.Now()
				s.sweeping.Wait()
				sweep += time.Since(t)
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(sweep.Nanoseconds())/float64(b.N), "sweep-ns/op")
		})
	}
}
