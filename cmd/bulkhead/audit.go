package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead/audit"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

func newAuditCmd(cfg *config) *cobra.Command {
	var opts audit.Options
	var format, failOn string
	cmd := &cobra.Command{
		Use:   "audit --database-url URL [--runtime-role R] [--tenant-column C] [--format text|json|sarif] [--fail-on info|warn|error] [--migrations DIR] [--exclude ID,...]",
		Short: "Check any PostgreSQL database's tenant isolation from its catalogs (read-only)",
		Long: `audit reads the system catalogs of the database at --database-url, in one
READ ONLY transaction that it rolls back, and runs every isolation check
(docs/AUDIT.md lists them with their rationale): row-level security coverage,
policy expressions (from PostgreSQL's parse trees), roles, grants, functions,
views, rules, triggers, publications, constraints, context settings and the
server's minor version against published RLS CVEs.

Tenant tables are those with --tenant-column, or with row-level security or
policies. Give --runtime-role, the role the application connects as, for the
checks about what it can do. It connects as whatever role the URL names; a
check that needs a catalog that role can't read is reported as not run.

Exit status: 0 when no finding reaches --fail-on, 1 when one does, 2 when
the audit could not run or some check could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error {
				fmt.Fprintln(cmd.ErrOrStderr(), "bulkhead audit:", err)
				return exitError{2}
			}
			threshold, err := audit.ParseSeverity(failOn)
			if err != nil {
				return fail(fmt.Errorf("--fail-on: %w", err))
			}
			switch format {
			case "text", "json", "sarif":
			default:
				return fail(fmt.Errorf("--format %q: want text, json or sarif", format))
			}
			if cfg.databaseURL == "" {
				return fail(errors.New("--database-url (or DATABASE_URL) is required: the database to audit, as any role that can read its catalogs"))
			}
			pc, err := pgx.ParseConfig(cfg.databaseURL)
			if err != nil {
				return fail(fmt.Errorf("--database-url: %v", redactErr(err, cfg.databaseURL)))
			}
			if pc.ConnectTimeout == 0 {
				pc.ConnectTimeout = 10 * time.Second
			}
			ctx := cmd.Context()
			conn, err := pgx.ConnectConfig(ctx, pc)
			if err != nil {
				return fail(fmt.Errorf("connect to %s: %v", redactURL(cfg.databaseURL), err))
			}
			defer conn.Close(context.Background())
			rep, err := audit.Run(ctx, conn, opts)
			if err != nil {
				return fail(err)
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				err = audit.WriteJSON(out, rep)
			case "sarif":
				err = audit.WriteSARIF(out, rep, version)
			default:
				err = audit.WriteText(out, rep)
			}
			if err != nil {
				return fail(err)
			}
			if rep.Incomplete() {
				fmt.Fprintln(cmd.ErrOrStderr(), "bulkhead audit: some checks could not run (see \"not run\"): the audit is incomplete")
				return exitError{2}
			}
			if worst, any := rep.Worst(); any && worst >= threshold {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.RuntimeRole, "runtime-role", "", "the role the application connects as (checks about what it can do are skipped without it)")
	f.StringVar(&opts.TenantColumn, "tenant-column", "tenant_id", "the tenant column that marks tenant tables")
	f.StringVar(&format, "format", "text", "text, json or sarif (SARIF 2.1.0 for code scanning)")
	f.StringVar(&failOn, "fail-on", "warn", "exit 1 when a finding is at least this severe: info, warn or error")
	f.StringVar(&opts.Migrations, "migrations", "", "directory of *.sql migrations: findings point at the statement that created the object")
	f.StringSliceVar(&opts.Exclude, "exclude", nil, "check ids not to run, comma-separated (an accepted risk, e.g. BH802 for a context the application knowingly leaves forgeable); listed as not run")
	return cmd
}

// redactURL drops the password from a database URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil {
			return "the database"
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func redactErr(err error, dsn string) string {
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			return strings.ReplaceAll(err.Error(), pw, "xxxxx")
		}
	}
	return err.Error()
}
