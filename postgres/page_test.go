package postgres

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzDecodeCursor feeds untrusted cursors to the decoder: it never panics,
// accepts only what encode produces, and round-trips those.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(cursor{at: time.UnixMicro(1700000000000000).UTC(), id: uuid.New()}.encode())
	f.Add("")
	f.Add("AAAA")
	f.Add("not-base64!")
	f.Fuzz(func(t *testing.T, s string) {
		c, ok, err := decodeCursor(s)
		if err != nil {
			return
		}
		if s == "" {
			if ok {
				t.Fatal("empty cursor reported as present")
			}
			return
		}
		if got := c.encode(); got != s {
			t.Fatalf("cursor %q decodes but re-encodes as %q", s, got)
		}
	})
}
