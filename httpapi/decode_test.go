package httpapi

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
)

// FuzzDecode feeds arbitrary bodies to the request decoder: it never
// panics, and every failure is one of the client errors (400/413/415).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"content":"hi","kind":"message"}`, `{"content":1}`, `{`, `[]`, `null`, `{"content":"a"}{"x":1}`, `{"unknown":true}`, "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var in messageInput
		err := decode(httptest.NewRecorder(), r, 1<<10, &in)
		if err == nil {
			return
		}
		if !errors.Is(err, bulkhead.ErrInvalid) && !errors.Is(err, errTooLarge) && !errors.Is(err, errUnsupportedType) {
			t.Fatalf("body %q: unclassified error %v", body, err)
		}
		if p := problemFor(err); p.Status >= 500 || p.Status < 400 {
			t.Fatalf("body %q: status %d", body, p.Status)
		}
	})
}
