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

// TestDecodeRefusesNULAndInvalidUTF8 checks the decoder names the
// top-level field holding a string PostgreSQL can't store, at any depth.
func TestDecodeRefusesNULAndInvalidUTF8(t *testing.T) {
	cases := []struct {
		body, field string // field "" means accepted
	}{
		{`{"content":"hi"}`, ""},
		{`{"content":"a\u0000b"}`, "content"},
		{"{\"content\":\"a\xffb\"}", "content"},
		{`{"kind":"x","content":"\u0000"}`, "content"},
		{`{"settings":{"a":["ok",{"b":"\u0000"}]},"name":"n"}`, "settings"},
		{`{"settings":{"a\u0000":1},"name":"n"}`, "settings"},
		{`{"secrets":{"k":"v\u0000"}}`, "secrets"},
		{`{"na\u0000me":"x"}`, "body"},
		{`{"settings":{"a":"\u00e9\ud83d\ude00"},"name":"ok"}`, ""},
		{`"\u0000"`, "body"},
		{`{"content":"a\ud800b"}`, "content"},
		{`{"content":"a\udc00"}`, "content"},
		{`{"settings":{"k":"\ud83d\u0041"},"name":"n"}`, "settings"},
		{`{"content":"\\ud800 is text, \ud83d\ude00 a pair, \ufffd a replacement"}`, ""},
	}
	for _, c := range cases {
		err := checkStrings([]byte(c.body))
		var ve *bulkhead.ValidationError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: refused: %v", c.body, err)
		case c.field != "" && (!errors.As(err, &ve) || ve.Problems[0].Field != c.field):
			t.Errorf("%s: %v, want a problem naming %q", c.body, err, c.field)
		}
	}
}
