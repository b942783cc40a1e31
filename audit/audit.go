package audit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Severity orders findings: Info < Warn < Error.
type Severity int

// Severities.
const (
	Info Severity = iota
	Warn
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warn:
		return "warn"
	}
	return "info"
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ParseSeverity reads info, warn (or warning) or error.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(s) {
	case "info", "note":
		return Info, nil
	case "warn", "warning":
		return Warn, nil
	case "error":
		return Error, nil
	}
	return Info, fmt.Errorf("severity %q: want info, warn or error", s)
}

// Options configure an audit.
type Options struct {
	// RuntimeRole is the role the application connects as. Checks about
	// what that role can do are skipped (and listed as such) without it.
	RuntimeRole string
	// TenantColumn names the tenant column (default tenant_id). Tables
	// with that column, and tables with row-level security or policies,
	// are the tenant tables.
	TenantColumn string
	// Migrations, when set, is a directory of *.sql migrations in which
	// findings are located (the file and line that created the object).
	Migrations string
	// Exclude lists check ids not to run (reported as not run, not as an
	// incomplete audit): an accepted risk, such as a context the
	// application knowingly leaves forgeable (BH802).
	Exclude []string

	// serverVersion overrides the server's version number in tests of the
	// CVE checks (the test server is patched).
	serverVersion int
}

// Object names what a finding is about. Schema, Table and Name are the
// logical location (schema.table.policy, schema.function, ...).
type Object struct {
	Kind   string `json:"kind"` // table, policy, function, role, schema, index, constraint, trigger, rule, view, publication, setting, server
	Schema string `json:"schema,omitempty"`
	Table  string `json:"table,omitempty"`
	Name   string `json:"name,omitempty"`
}

// String is the dotted logical name: schema.table.name without empty parts.
func (o Object) String() string {
	var parts []string
	for _, p := range []string{o.Schema, o.Table, o.Name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ".")
}

// Finding is one object a check found.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Object   Object   `json:"object"`
	Detail   string   `json:"detail"`
	Fix      string   `json:"fix"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
}

// Skipped is a check that could not run, and why.
type Skipped struct {
	Check  string `json:"check"`
	Reason string `json:"reason"`
	// Privilege is true when the reason is missing privilege or a failed
	// catalog query (the audit is incomplete), false when the check does
	// not apply (e.g. no --runtime-role).
	Privilege bool `json:"privilege"`
}

// Report is the result of an audit.
type Report struct {
	Server       string    `json:"server"`
	ServerNum    int       `json:"server_version_num"`
	Database     string    `json:"database"`
	User         string    `json:"user"`
	RuntimeRole  string    `json:"runtime_role,omitempty"`
	TenantColumn string    `json:"tenant_column"`
	TenantTables []string  `json:"tenant_tables"`
	Checks       int       `json:"checks"`
	Findings     []Finding `json:"findings"`
	Skipped      []Skipped `json:"skipped"`
	Notes        []string  `json:"notes,omitempty"`
	Duration     string    `json:"duration"`
}

// Incomplete reports whether a check could not run for lack of privilege
// or because a catalog query failed.
func (r *Report) Incomplete() bool {
	for _, s := range r.Skipped {
		if s.Privilege {
			return true
		}
	}
	return false
}

// Worst returns the highest severity among the findings and whether there
// is any.
func (r *Report) Worst() (Severity, bool) {
	if len(r.Findings) == 0 {
		return Info, false
	}
	w := Info
	for _, f := range r.Findings {
		if f.Severity > w {
			w = f.Severity
		}
	}
	return w, true
}

// ErrNoCatalog is returned when the role can't read the catalogs the audit
// needs at all (nothing could be checked).
var ErrNoCatalog = errors.New("audit: cannot read the system catalogs")

// Run audits the database conn is connected to, in one READ ONLY
// transaction that it always rolls back: it never writes. Every catalog
// query is set-based (a fixed number of queries whatever the number of
// tables). A catalog the role can't read makes the checks that need it
// Skipped with Privilege set; Run returns an error only when it can't
// audit at all (no transaction, unknown runtime role, nothing readable).
// conn must not be used concurrently.
func Run(ctx context.Context, conn *pgx.Conn, opts Options) (*Report, error) {
	start := time.Now()
	excluded := map[string]bool{}
	for _, id := range opts.Exclude {
		if _, ok := CheckByID(id); !ok {
			return nil, fmt.Errorf("audit: --exclude %s: no such check (docs/AUDIT.md lists them)", id)
		}
		excluded[id] = true
	}
	if opts.TenantColumn == "" {
		opts.TenantColumn = "tenant_id"
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit: begin read-only transaction: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '60s'"); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	snap, err := load(ctx, tx, opts)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Server: snap.version, ServerNum: snap.versionNum, Database: snap.database, User: snap.currentUser,
		RuntimeRole: opts.RuntimeRole, TenantColumn: opts.TenantColumn, Checks: len(Checks),
		Findings: []Finding{}, Skipped: []Skipped{}, Notes: snap.notes,
	}
	for _, t := range snap.tenant {
		rep.TenantTables = append(rep.TenantTables, t.qname())
	}
	for _, c := range Checks {
		if excluded[c.ID] {
			rep.Skipped = append(rep.Skipped, Skipped{Check: c.ID, Reason: "excluded by --exclude"})
			continue
		}
		if reason, priv, ok := snap.canRun(c); !ok {
			rep.Skipped = append(rep.Skipped, Skipped{Check: c.ID, Reason: reason, Privilege: priv})
			continue
		}
		fs, err := runCheck(c, snap)
		if err != nil {
			rep.Skipped = append(rep.Skipped, Skipped{Check: c.ID, Reason: err.Error(), Privilege: true})
			continue
		}
		for _, f := range fs {
			f.Check = c.ID
			f.Severity = c.Severity
			rep.Findings = append(rep.Findings, f)
		}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.Check != b.Check {
			return a.Check < b.Check
		}
		return a.Object.String() < b.Object.String()
	})
	if opts.Migrations != "" {
		if err := locate(opts.Migrations, rep.Findings); err != nil {
			rep.Notes = append(rep.Notes, "migrations: "+err.Error())
		}
	}
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

// sqlState returns the SQLSTATE of err, or "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// runCheck runs one check; a panic (a bug in the check, or a catalog shape
// it did not expect) becomes an error that marks the audit incomplete
// instead of ending it.
func runCheck(c Check, s *snapshot) (fs []Finding, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in %s: %v", c.ID, r)
		}
	}()
	return c.run(s), nil
}
