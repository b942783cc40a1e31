package audit

import (
	"fmt"
	"io"
	"strings"
)

// WriteCatalog writes the checks as markdown: a summary table, then each
// check's rationale (the body of docs/AUDIT.md's catalogue).
func WriteCatalog(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| id | name | severity | needs --runtime-role | title |\n|---|---|---|---|---|\n")
	for _, c := range Checks {
		rt := ""
		if c.Runtime {
			rt = "yes"
		}
		fmt.Fprintf(&b, "| [%s](#%s) | %s | %s | %s | %s |\n", c.ID, strings.ToLower(c.ID), c.Name, c.Severity, rt, c.Title)
	}
	for _, c := range Checks {
		fmt.Fprintf(&b, "\n### %s\n\n**%s** (`%s`, %s, security-severity %s)\n\n%s\n", c.ID, c.Title, c.Name, c.Severity, c.SecuritySeverity(), c.Rationale)
		var also []string
		if c.Splinter != "" {
			also = append(also, "splinter "+c.Splinter)
		}
		if c.Pgrls != "" {
			also = append(also, "pgrls "+c.Pgrls)
		}
		if len(also) > 0 {
			fmt.Fprintf(&b, "\nCovers: %s.\n", strings.Join(also, "; "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
