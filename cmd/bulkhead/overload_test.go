package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/bench"
)

// TestOverloadOnTheServeBinary (issue 17, scenario 7, short version of
// bulkhead bench overload): the real serve binary with its embedded
// cluster and default admission settings, the sustainable rate found in
// closed loop, then 10× it open loop, then 0.8× it again. Every answer is
// 2xx or 503/429 with Retry-After (no timeout past the 10 s client
// deadline, nothing else), the overload is refused rather than queued,
// serve's queue and slots stay within their limits, its heap stays bounded
// and it answers 2xx again afterwards with nothing left queued. Durations
// bound the phases; nothing is timed.
func TestOverloadOnTheServeBinary(t *testing.T) {
	res, err := bench.RunOverload(context.Background(), bench.OverloadConfig{Binary: bin, Tenants: 2,
		Step: time.Second, Measure: 2 * time.Second, Duration: 5 * time.Second, Conns: 256})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	res.Table(&b)
	t.Log("\n" + b.String())
	for _, p := range res.Phases {
		if p.Timeouts != 0 || p.Other != 0 {
			t.Errorf("%s: %d timeouts and %d answers other than 2xx and 503/429 with Retry-After: %v", p.Name, p.Timeouts, p.Other, p.OtherSeen)
		}
		if p.PeakQueued > res.MaxQueue || p.PeakInFlight > res.MaxInFlight {
			t.Errorf("%s: queued %g (limit %g), in flight %g (limit %g)", p.Name, p.PeakQueued, res.MaxQueue, p.PeakInFlight, res.MaxInFlight)
		}
		// Generous: the runs measured ~25 MiB; an unbounded queue of
		// requests or connections grew it past 600 MiB.
		if p.PeakHeap > 256<<20 {
			t.Errorf("%s: serve's heap reached %.0f MiB", p.Name, p.PeakHeap/(1<<20))
		}
	}
	during, after := res.Phases[1], res.Phases[2]
	if during.Refused == 0 {
		t.Errorf("nothing refused at 10× the sustainable rate: %+v", during)
	}
	if after.OK == 0 || !res.Drained {
		t.Errorf("after the overload: %d 2xx, drained %v; want 2xx again and nothing left queued", after.OK, res.Drained)
	}
}
