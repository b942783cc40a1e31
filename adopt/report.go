package adopt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Violation is one group of recorded violations: what strict mode would
// have hidden (reads) or refused or not reached (writes).
type Violation struct {
	Table  string `json:"table"` // schema.table, or "query" for a replayed read
	Op     string `json:"op"`    // SELECT, INSERT, UPDATE, DELETE
	Tenant string `json:"tenant"`
	// Entity is the entity in context (owned and private tables), when set.
	Entity      string `json:"entity,omitempty"`
	Fingerprint string `json:"fingerprint"`
	Count       int64  `json:"count"`
	// Approximate: a storm was sampled (see keys_per_transaction,
	// storm_sample); Count is then under by less than storm_sample per
	// transaction.
	Approximate bool      `json:"approximate,omitempty"`
	Keys        []string  `json:"keys"` // row keys (at most the cap), never contents
	FirstAt     time.Time `json:"first_at"`
	LastAt      time.Time `json:"last_at"`
}

// Report is what shadow recorded, with every table's phase.
type Report struct {
	Since time.Time `json:"since"`
	// Context is ContextLegacy or ContextSigned (adopt status only).
	Context    string        `json:"context,omitempty"`
	Tables     []TableStatus `json:"tables"`
	Violations []Violation   `json:"violations"`
	Total      int64         `json:"total"`
}

// Read returns the violations recorded since (zero: all), grouped by
// table, operation, tenant and fingerprint. It only reads.
func Read(ctx context.Context, conn *pgx.Conn, p *Plan, since time.Time) (*Report, error) {
	st, err := Status(ctx, conn, p)
	if err != nil {
		return nil, err
	}
	rep := &Report{Since: since, Tables: st, Violations: []Violation{}}
	if ok, err := stateTableExists(ctx, conn, "violation"); err != nil || !ok {
		return rep, err
	}
	rows, err := conn.Query(ctx, `SELECT c.rel, c.op, c.tenant, c.entity, c.fingerprint, c.n, c.approximate, c.first_at, c.last_at,
    coalesce((SELECT array_agg(v.row_key ORDER BY v.at) FROM (SELECT * FROM `+StateSchema+`.violation v
      WHERE v.rel = c.rel AND v.op = c.op AND v.tenant = c.tenant AND v.entity = c.entity AND v.fingerprint = c.fingerprint AND v.row_key IS NOT NULL ORDER BY v.at LIMIT 20) v), '{}')
  FROM `+StateSchema+`.violation_count c WHERE c.last_at >= $1 ORDER BY c.rel, c.op, c.n DESC, c.tenant`, since)
	if err != nil {
		return nil, fmt.Errorf("read violations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v Violation
		var keys []*string
		if err := rows.Scan(&v.Table, &v.Op, &v.Tenant, &v.Entity, &v.Fingerprint, &v.Count, &v.Approximate, &v.FirstAt, &v.LastAt, &keys); err != nil {
			return nil, fmt.Errorf("read violations: %w", err)
		}
		for _, k := range keys {
			if k != nil {
				v.Keys = append(v.Keys, *k)
			}
		}
		rep.Total += v.Count
		rep.Violations = append(rep.Violations, v)
	}
	return rep, rows.Err()
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText writes the report for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%-32s %-11s %s\n", "TABLE", "PHASE", "NOTE")
	for _, t := range r.Tables {
		fmt.Fprintf(w, "%-32s %-11s %s\n", printable(t.Table), t.Phase, printable(t.Note))
	}
	if len(r.Violations) == 0 {
		_, err := fmt.Fprintln(w, "\nno violations recorded: strict mode would have hidden or refused nothing that ran")
		return err
	}
	fmt.Fprintf(w, "\n%d violations (strict mode would hide or refuse these):\n", r.Total)
	fmt.Fprintf(w, "%-28s %-7s %-38s %-16s %8s  %s\n", "TABLE", "OP", "TENANT (caller)", "FINGERPRINT", "COUNT", "KEYS")
	for _, v := range r.Violations {
		shown := make([]string, len(v.Keys))
		for i, k := range v.Keys {
			shown[i] = printable(k)
		}
		keys := fmt.Sprint(shown)
		if runes := []rune(keys); len(runes) > 60 {
			keys = string(runes[:57]) + "..."
		}
		tenant := printable(v.Tenant)
		if tenant == "" {
			tenant = "(no context)"
		}
		if v.Entity != "" {
			tenant += " entity " + printable(v.Entity)
		}
		n := fmt.Sprint(v.Count)
		if v.Approximate {
			n = "~" + n
		}
		fmt.Fprintf(w, "%-28s %-7s %-38s %-16s %8s  %s\n", printable(v.Table), v.Op, tenant, v.Fingerprint, n, keys)
	}
	return nil
}

// printable is s for a terminal: quoted when it holds anything but
// printable characters. The tenant comes from the application's own
// setting and keys may be text: either could carry escape sequences
// that would rewrite the operator's terminal.
func printable(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// WriteStatus writes every table's phase.
func WriteStatus(w io.Writer, st []TableStatus) error {
	fmt.Fprintf(w, "%-32s %-11s %-14s %s\n", "TABLE", "PHASE", "COLUMN", "NOTE")
	for _, t := range st {
		col := t.TenantColumn
		if t.AddedColumn {
			col += " (added)"
		}
		note := t.Note
		if n := len(t.Keys); n > 0 {
			unvalidated := 0
			for _, k := range t.Keys {
				if !k.Validated {
					unvalidated++
				}
			}
			if note != "" {
				note += "; "
			}
			note += fmt.Sprintf("%d foreign keys carry the tenant", n)
			if unvalidated > 0 {
				note += fmt.Sprintf(" (%d not validated yet: run adopt keys again)", unvalidated)
			}
		}
		if _, err := fmt.Fprintf(w, "%-32s %-11s %-14s %s\n", t.Table, t.Phase, col, note); err != nil {
			return err
		}
	}
	return nil
}
