package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
)

// TestNoSpaceProblem: a write refused for lack of space is 507 with its own
// problem type, also when the error matches ErrUnavailable too (the vector
// store's ErrNoSpace does), without Retry-After and without the error's
// text (paths, "no space left on device") in the body.
func TestNoSpaceProblem(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("ingest: %w", bulkhead.ErrNoSpace),
		fmt.Errorf("upsert into collection x/g1: %w (write /data/vectors/x.g1.log: no space left on device)", vector.ErrNoSpace),
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/v1/documents", nil)
		writeError(w, r, slog.New(slog.DiscardHandler), err)
		body := w.Body.String()
		if w.Code != http.StatusInsufficientStorage || !strings.Contains(body, "https://bulkhead.dev/problems/insufficient-storage") {
			t.Errorf("%v: %d %s, want 507 insufficient-storage", err, w.Code, body)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Errorf("%v: Retry-After %q on a 507", err, w.Header().Get("Retry-After"))
		}
		if strings.Contains(body, "no space") || strings.Contains(body, "/data") || strings.Contains(body, "collection") {
			t.Errorf("the problem body carries internals: %s", body)
		}
	}
}
