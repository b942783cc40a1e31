package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/probe"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

func newProbeCmd(cfg *config) *cobra.Command {
	var (
		pc          probe.Config
		bulkheadCtx bool
		perTable    map[string]string
		maxDuration time.Duration
		format      string
		quiet       bool
	)
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Try to leak across tenants on a live database, in transactions that always roll back",
		Long: `probe proves on a live PostgreSQL database what an audit can only suspect. For
every tenant table (row-level security, or the tenant column) it writes canary
rows for two tenants A and B, then acts as the runtime role (--role) as tenant
B, with no context, with a malformed and with a forged context, and as A
moving its row away. It tries reads by scan and by id, blind UPDATE and
DELETE, writing into A, moving rows across tenants and parents, unique and
foreign-key existence oracles, ON CONFLICT, COPY in and out, and counts
through EXPLAIN ANALYZE. Each leak is printed with a one-line reproduction.

Every transaction is rolled back: nothing is ever committed. --read-only
writes nothing at all (READ ONLY transactions, no canaries): for production.

The context convention: --tenant-setting NAME (policies read
current_setting(NAME); the probe enters it with set_config(NAME, value,
true)), or --bulkhead-context (bulkhead's signed context, with
--context-key-file). --bulkhead sets everything for bulkhead's own schema.

Canaries are written past row-level security when the connecting role is a
superuser or BYPASSRLS (give the runtime role with --role), otherwise through
tenant A's own context (--tenant-setting only).

Exit status: 0 nothing found, 1 leaks found, 2 a table could not be probed, an
attempt hit lock_timeout or statement_timeout, or the probe stopped at
--max-duration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bulkheadCtx || cmd.Flags().Changed("bulkhead") {
				pc.Context.Bulkhead = true
			}
			if b, _ := cmd.Flags().GetBool("bulkhead"); b {
				if pc.Role == "" {
					pc.Role = postgres.Runtime
				}
				if len(pc.Schemas) == 0 {
					pc.Schemas = []string{postgres.Schema}
				}
				if perTable == nil {
					perTable = map[string]string{}
				}
				for _, t := range postgres.Tables {
					if t.TenantColumn != "" {
						perTable[postgres.Schema+"."+t.Name] = t.TenantColumn
					}
				}
			}
			pc.TenantColumns = perTable
			if pc.Context.Bulkhead && pc.Context.TenantSetting != "" {
				return errors.New("give --tenant-setting or --bulkhead-context, not both")
			}
			url := cfg.databaseURL
			ctx := cmd.Context()
			if url == "" {
				if !pc.Context.Bulkhead {
					return errors.New("give --database-url (the database to probe)")
				}
				// bulkhead's own embedded cluster, if it runs.
				log, err := cfg.logger()
				if err != nil {
					return err
				}
				env, err := cfg.openEnv(ctx, log, attachOnly)
				if err != nil {
					return err
				}
				defer env.close()
				url = env.cluster.SuperuserDSN(env.database)
				if cfg.contextKey == "" {
					raw, err := env.cluster.ContextKey()
					if err != nil {
						return err
					}
					if pc.Context.Key, err = postgres.NewContextKey(raw); err != nil {
						return err
					}
				}
			}
			if pc.Context.Bulkhead && pc.Context.Key.IsZero() {
				if cfg.contextKey == "" {
					return errors.New("--bulkhead-context needs --context-key-file (the key file of the server's bulkhead_context extension)")
				}
				var err error
				if pc.Context.Key, err = postgres.LoadContextKey(cfg.contextKey); err != nil {
					return err
				}
			}
			pcfg, err := pgx.ParseConfig(url)
			if err != nil {
				return fmt.Errorf("--database-url: %w", err)
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			conn, err := pgx.ConnectConfig(cctx, pcfg)
			cancel()
			if err != nil {
				return fmt.Errorf("connect to %s:%d as %s: %w", pcfg.Host, pcfg.Port, pcfg.User, err)
			}
			defer conn.Close(context.WithoutCancel(ctx))
			pctx := ctx
			if maxDuration > 0 {
				var cancel context.CancelFunc
				pctx, cancel = context.WithTimeoutCause(ctx, maxDuration, fmt.Errorf("--max-duration %s reached", maxDuration))
				defer cancel()
			}
			if !quiet {
				bar := newProgress(cmd.ErrOrStderr(), "probing")
				pc.Progress = func(done, total int, _ string) { bar.update(int64(done), int64(total)) }
				defer bar.done()
			}
			start := time.Now()
			rep, err := probe.Run(pctx, conn, pc)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if format == "json" {
				e := json.NewEncoder(w)
				e.SetIndent("", "  ")
				if err := e.Encode(rep); err != nil {
					return err
				}
			} else if err := writeProbeText(w, rep, time.Since(start)); err != nil {
				return err
			}
			switch {
			case len(rep.Findings) > 0:
				return exitError{1}
			case rep.Incomplete != "" || len(rep.Skipped()) > 0 || len(rep.Inconclusive()) > 0:
				return exitError{2}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&pc.Role, "role", "", "act as this role (SET LOCAL ROLE): the application's runtime role")
	f.StringVar(&pc.Context.TenantSetting, "tenant-setting", "", "the setting the policies read the tenant from (e.g. app.tenant_id)")
	f.BoolVar(&bulkheadCtx, "bulkhead-context", false, "enter bulkhead's signed context (bulkhead.enter(token)) with --context-key-file")
	f.Bool("bulkhead", false, "probe bulkhead's own schema: --bulkhead-context --role "+postgres.Runtime+" --schema "+postgres.Schema+" and bulkhead's tenant columns (without --database-url: the running embedded cluster)")
	f.StringSliceVar(&pc.Schemas, "schema", nil, "probe only these schemas (default: every non-system schema)")
	f.StringVar(&pc.TenantColumn, "tenant-column", "tenant_id", "the tenant column")
	f.StringToStringVar(&perTable, "tenant-column-for", nil, "the tenant column of one table: schema.table=column (repeatable)")
	f.StringVar(&pc.TenantA, "tenant-a", "", "canary tenant A (default: random); give A and B when tables are partitioned by tenant")
	f.StringVar(&pc.TenantB, "tenant-b", "", "canary tenant B (default: random)")
	f.BoolVar(&pc.ReadOnly, "read-only", false, "write nothing: READ ONLY transactions and no canaries (for production)")
	f.BoolVar(&pc.AllowForgeableContext, "allow-forgeable-context", false, "don't report that the runtime role can set --tenant-setting itself")
	f.DurationVar(&maxDuration, "max-duration", 0, "stop after this long (exit 2 if nothing was found), e.g. 5m")
	f.StringVar(&format, "format", "text", "text or json")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}

func writeProbeText(w io.Writer, rep *probe.Report, took time.Duration) error {
	mode := "canaries written and rolled back"
	if rep.ReadOnly {
		mode = "read-only: nothing written"
	}
	probed := 0
	for _, t := range rep.Tables {
		if t.Skipped == "" && t.Note == "" {
			probed++
		}
	}
	fmt.Fprintf(w, "bulkhead probe: %d tables probed in %s (%s)\n", probed, took.Round(time.Millisecond), mode)
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "LEAK %s [%s] as %s: %s\n  repro: %s\n", f.Table, f.Class, f.Attacker, f.Detail, f.Repro)
	}
	for _, t := range rep.Tables {
		switch {
		case t.Skipped != "":
			fmt.Fprintf(w, "NOT PROBED %s: %s\n", t.Table, t.Skipped)
		case t.Note != "":
			fmt.Fprintf(w, "ignored %s: %s\n", t.Table, t.Note)
		}
		for _, i := range t.Inconclusive {
			fmt.Fprintf(w, "INCONCLUSIVE %s (a timeout: this attempt proves nothing): %s\n", t.Table, i)
		}
	}
	if rep.Incomplete != "" {
		fmt.Fprintf(w, "INCOMPLETE: %s\n", rep.Incomplete)
	}
	switch {
	case len(rep.Findings) == 0 && (rep.Incomplete != "" || len(rep.Skipped()) > 0 || len(rep.Inconclusive()) > 0):
		fmt.Fprintln(w, "no leak found in what was probed; the run is not complete (above)")
	case len(rep.Findings) == 0:
		fmt.Fprintln(w, "no leak found")
	default:
		fmt.Fprintf(w, "%d leaks found\n", len(rep.Findings))
	}
	return nil
}
