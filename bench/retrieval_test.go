package bench

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRunRetrievalSmall runs the retrieval benchmark on 3 tenants of 10
// documents: the harness completes, every document is written on both
// sides with the same chunks, every HTTP request succeeds and queries find
// passages. It never checks a timing.
func TestRunRetrievalSmall(t *testing.T) {
	res, err := RunRetrieval(context.Background(), RetrievalConfig{Tenants: 3, Docs: 10, Writers: 2, Clients: 2, Duration: 800 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []IngestSide{res.Ingest, res.Rows, res.Embed} {
		if s.Docs != 30 || s.Chunks != res.Ingest.Chunks || s.Elapsed <= 0 {
			t.Errorf("%s: %+v (service wrote %d chunks)", s.Name, s, res.Ingest.Chunks)
		}
	}
	// CPU per document: read on Linux, and this process's share is part of
	// the machine's (jiffies are 10 ms, so the machine's may round below).
	if _, self, ok := res.Ingest.CPUPerDoc(); runtime.GOOS == "linux" && (!ok || self <= 0) {
		t.Errorf("ingest CPU per document not measured: %v %v", self, ok)
	}
	if per := float64(res.Ingest.Chunks) / 30; per < 4 || per > 6 {
		t.Errorf("%.1f chunks per document, want about 5", per)
	}
	if len(res.Cases) != 3 {
		t.Fatalf("%d HTTP cases, want 3", len(res.Cases))
	}
	for _, c := range res.Cases {
		if c.Errors != 0 || c.P50 <= 0 || c.RPS <= 0 {
			t.Errorf("%s: %+v", c.Name, c)
		}
		if _, self, ok := c.CPUPerRequest(); runtime.GOOS == "linux" && (!ok || self <= 0) {
			t.Errorf("%s: CPU per request not measured: %v %v", c.Name, self, ok)
		}
	}
	if res.Hits < 0.5 {
		t.Errorf("only %.0f %% of queries returned a passage", 100*res.Hits)
	}
	var b bytes.Buffer
	res.Markdown(&b, "test")
	if !strings.HasPrefix(b.String(), "## Retrieval (`test`)") || !strings.Contains(b.String(), "| POST /v1/query (k=5) |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}

// TestRunTenantsSmall runs the many-tenants benchmark on 40 tenants: the
// harness completes, every query (cold, warm, under the Zipf load) returns
// its tenant's marker document, the budget forces evictions and the store
// stays within it. It never checks a timing.
func TestRunTenantsSmall(t *testing.T) {
	res, err := RunTenants(context.Background(), TenantsConfig{Tenants: 40, Docs: 1, Writers: 2, Clients: 2, Duration: 800 * time.Millisecond, Cold: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || res.Queries < 20 {
		t.Errorf("%d of %d queries failed", res.Failed, res.Queries)
	}
	if res.Loads <= int64(res.Distinct) || res.Resident > res.Budget || res.Budget <= 0 {
		t.Errorf("loads %d for %d tenants, resident %d of budget %d: the budget did not bind", res.Loads, res.Distinct, res.Resident, res.Budget)
	}
	if len(res.Startup) != 2 || res.Startup[1].Collections != 40 {
		t.Errorf("start-up samples %+v, want the 40 collections counted", res.Startup)
	}
	var b bytes.Buffer
	res.Markdown(&b, "test")
	if !strings.Contains(b.String(), "## Many tenants on one node") {
		t.Error("markdown section missing its heading")
	}
}
