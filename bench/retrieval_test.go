package bench

import (
	"bytes"
	"context"
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
