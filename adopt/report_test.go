package adopt

import (
	"bytes"
	"strings"
	"testing"
)

// TestReportTextIsInert: what the application controls in a report (its
// tenant setting, text keys, table notes) reaches the operator's terminal
// quoted when it holds control characters or invalid UTF-8: no escape
// sequence survives, and a plain value is printed as is.
func TestReportTextIsInert(t *testing.T) {
	esc := "\x1b]0;owned\x07\x1b[2J"
	r := &Report{
		Tables:     []TableStatus{{Table: "public.memories", Phase: "shadow", Note: "note " + esc}},
		Violations: []Violation{{Table: "query", Op: "SELECT", Tenant: esc + "tenant", Fingerprint: "f", Count: 2, Keys: []string{"plain-key", "k" + esc, "\xff\xfe"}}},
		Total:      2,
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, bad := range []string{"\x1b", "\x07", "\xff"} {
		if strings.Contains(text, bad) {
			t.Fatalf("report text holds %q:\n%q", bad, text)
		}
	}
	for _, want := range []string{"plain-key", `"\x1b]0;owned\a\x1b[2Jtenant"`, "public.memories"} {
		if !strings.Contains(text, want) {
			t.Fatalf("report text lacks %s:\n%s", want, text)
		}
	}
}
