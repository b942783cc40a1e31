package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricLabelsAreBounded: invented methods and paths, sent without
// credentials, add no series of their own to /metrics (issue 12, finding 7).
func TestMetricLabelsAreBounded(t *testing.T) {
	a := newAPI(t)
	series := func() (n int, body string) {
		resp, err := http.Get(a.srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "bulkhead_http_") {
				n++
			}
		}
		return n, string(b)
	}
	send := func(method, path string) {
		req, _ := http.NewRequest(method, a.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// One invented request and one scrape first, so their (bounded)
	// series exist.
	send("INVENTED", "/nowhere")
	series()
	before, _ := series()
	for i := range 20 {
		send(fmt.Sprintf("XMETHOD%d", i), fmt.Sprintf("/nowhere/%d", i))
		send(fmt.Sprintf("YMETHOD%d", i), "/v1/rooms")
	}
	after, body := series()
	if strings.Contains(body, "XMETHOD") || strings.Contains(body, "YMETHOD") || strings.Contains(body, "/nowhere/") {
		t.Error("/metrics names an invented method or path")
	}
	// YMETHOD on a served path answers 405 under the unmatched route: one
	// new status code's series.
	if after-before > 1 {
		t.Errorf("40 invented requests added %d series:\n%s", after-before, body)
	}
	if !strings.Contains(body, `method="other"`) {
		t.Error(`/metrics lacks method="other" for the invented methods`)
	}
}
