package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead/adopt"
	"github.com/bulkhead-dev/bulkhead/audit"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
)

// adoptFlags are shared by the adopt sub-commands.
type adoptFlags struct {
	plan        string
	tables      []string
	batchSize   int
	lockTimeout time.Duration
	format      string
}

func newAdoptCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "adopt",
		Short: "Move an existing database from application filters to enforced row-level security, online and reversibly",
		Long: `adopt takes a database whose application filters tenants itself (WHERE
server_id = ...) to isolation enforced by PostgreSQL, table by table, with no
downtime and a way back:

  plan      inspect the schema, write a plan to review (YAML with comments, or JSON)
            and the SQL it implies
  backfill  fill missing tenant values (and owners, for kinds owned, private and room)
            from the plan's explicit rules (batched, resumable, checksummed);
            rows no rule covers are reported
  shadow    install the policies in audit mode: nothing is blocked, writes strict
            mode would refuse are recorded (adopt report)
  enforce   make tables strict (refuses while shadow shows violations; --force)
  keys      make the foreign keys between tenant tables carry the tenant (after
            backfill): no row can point at another tenant's row
  harden    make the tenant context unforgeable: the policies read bulkhead's
            signed context instead of the application's setting (--undo)
  rollback  one phase back, or --to original: everything adopt changed restored
  status    each table's phase, as recorded in the database
  report    what shadow recorded
  proxy     record the reads strict mode would hide: the application connects
            through it during shadow (sampled replay)

--database-url names the database, as a superuser or the tables' owner.
docs/ADOPT.md describes the cycle and the shadow design.`,
	}
	cmd.AddCommand(newAdoptPlanCmd(cfg), newAdoptBackfillCmd(cfg), newAdoptShadowCmd(cfg), newAdoptEnforceCmd(cfg), newAdoptKeysCmd(cfg),
		newAdoptHardenCmd(cfg), newAdoptRollbackCmd(cfg), newAdoptStatusCmd(cfg), newAdoptReportCmd(cfg), newAdoptProxyCmd(cfg))
	return cmd
}

func (f *adoptFlags) register(cmd *cobra.Command, tables bool) {
	cmd.Flags().StringVar(&f.plan, "plan", "adopt-plan.yaml", "the reviewed plan file (.yaml or .json)")
	if tables {
		cmd.Flags().StringSliceVar(&f.tables, "tables", nil, "only these tables (comma-separated; default every tenant table of the plan)")
		cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Second, "lock_timeout of each step's transaction (retried a few times)")
	}
}

func (f *adoptFlags) options() adopt.Options {
	return adopt.Options{BatchSize: f.batchSize, LockTimeout: f.lockTimeout}
}

func adoptConnect(ctx context.Context, cfg *config) (*pgx.Conn, error) {
	if cfg.databaseURL == "" {
		return nil, errors.New("--database-url (or DATABASE_URL) is required: the database to adopt, as a superuser or the tables' owner")
	}
	pc, err := pgx.ParseConfig(cfg.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url: %v", redactErr(err, cfg.databaseURL))
	}
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %v", redactURL(cfg.databaseURL), redactErr(err, cfg.databaseURL))
	}
	return conn, nil
}

// withPlan loads the plan, connects and runs fn.
func withPlan(cmd *cobra.Command, cfg *config, f *adoptFlags, fn func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error) error {
	p, err := adopt.Load(f.plan)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	conn, err := adoptConnect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(ctx, conn, p)
}

func newAdoptPlanCmd(cfg *config) *cobra.Command {
	var opts adopt.InspectOptions
	var out, sqlOut, format string
	cmd := &cobra.Command{
		Use:   "plan --database-url URL [--schema public] [--tenant-column server_id] [--out adopt-plan.yaml] [--sql adopt-plan.sql]",
		Short: "Inspect the database (read-only) and write a plan to review, and the SQL it implies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			conn, err := adoptConnect(ctx, cfg)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			p, err := adopt.Inspect(ctx, conn, opts)
			if err != nil {
				return err
			}
			if format == "" {
				format = "yaml"
				if strings.HasSuffix(out, ".json") {
					format = "json"
				}
			}
			b, err := p.Encode(format == "json")
			if err != nil {
				return err
			}
			if err := writeOut(cmd, out, b); err != nil {
				return err
			}
			if sqlOut != "" {
				s, err := adopt.SQL(p)
				if err != nil {
					return err
				}
				if err := writeOut(cmd, sqlOut, []byte(s)); err != nil {
					return err
				}
			}
			undecided := 0
			for _, t := range p.Tables {
				if t.Decide {
					undecided++
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "plan: %d tables, %d left for you to decide (decide: true); review %s before backfill\n", len(p.Tables), undecided, out)
			if p.Runtime.Warning != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", p.Runtime.Warning)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Schema, "schema", "public", "the application's schema")
	f.StringSliceVar(&opts.TenantColumns, "tenant-column", []string{"server_id", "tenant_id"}, "candidate tenant column names, in preference order")
	f.StringVar(&opts.TenantSetting, "tenant-setting", "", "the setting the application puts the tenant in (default: detected, else app.current_tenant_id)")
	f.StringVar(&opts.EntitySetting, "entity-setting", "", "the setting the application puts the acting entity in, for tables of kind owned, private or room (default: detected, else none)")
	f.StringVar(&opts.RuntimeRole, "runtime-role", "app_runtime", "the role the application should connect as once enforced")
	f.StringVar(&out, "out", "adopt-plan.yaml", "plan file to write (- for stdout)")
	f.StringVar(&sqlOut, "sql", "", "also write the SQL the plan implies to this file (- for stdout)")
	f.StringVar(&format, "format", "", "yaml or json (default from --out's extension)")
	return cmd
}

func writeOut(cmd *cobra.Command, path string, b []byte) error {
	if path == "-" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// barProgress returns an adopt.Options.Progress that draws a bar on w for
// each table and rule in turn, with its rows/s, and the function that ends
// the last bar.
func barProgress(w io.Writer) (func(table, rule string, done, total int64, rps float64), func()) {
	var bar *progressBar
	var label string
	progress := func(table, rule string, done, total int64, rps float64) {
		if l := table + " " + rule; l != label {
			if bar != nil {
				bar.done()
			}
			label, bar = l, newProgress(w, l)
		}
		bar.update(done, total)
		fmt.Fprintf(w, " %.0f rows/s", rps)
	}
	end := func() {
		if bar != nil {
			bar.done()
		}
	}
	return progress, end
}

func newAdoptBackfillCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	cmd := &cobra.Command{
		Use:   "backfill --plan FILE [--tables a,b] [--batch-size 5000]",
		Short: "Fill missing tenant (and owner) values from the plan's rules (batched by key range, resumable, checksummed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				o := f.options()
				var end func()
				o.Progress, end = barProgress(cmd.ErrOrStderr())
				res, err := adopt.Backfill(ctx, conn, p, f.tables, o)
				end()
				w := cmd.OutOrStdout()
				incomplete := 0
				for _, r := range res {
					fmt.Fprintf(w, "%-28s %-11s filled %v, uncovered %d, %.0f rows/s, checksum %s -> %s\n", r.Table, r.Phase, r.Rules, r.Uncovered, r.RowsPerSec, r.ChecksumBefore, r.ChecksumAfter)
					if r.Uncovered > 0 {
						incomplete++
						fmt.Fprintf(w, "  rows no rule covers (first keys): %s\n", strings.Join(r.UncoveredKeys, " "))
					}
					if len(r.OwnerRules) > 0 || r.OwnerUncovered > 0 {
						fmt.Fprintf(w, "  owners: filled %v, without an owner %d\n", r.OwnerRules, r.OwnerUncovered)
					}
					if r.OwnerUncovered > 0 {
						fmt.Fprintf(w, "  rows without an owner (first keys; once enforced nobody writes them): %s\n", strings.Join(r.OwnerUncoveredKeys, " "))
					}
				}
				if err != nil {
					return err
				}
				if incomplete > 0 {
					return fmt.Errorf("%d tables have rows no rule covers: add rules to the plan and run backfill again", incomplete)
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().IntVar(&f.batchSize, "batch-size", 5000, "rows per batch (one transaction each)")
	return cmd
}

func newAdoptShadowCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	cmd := &cobra.Command{
		Use:   "shadow --plan FILE [--tables a,b]",
		Short: "Install the policies in audit mode: nothing blocked, violations recorded (see adopt report)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				if err := adopt.Shadow(ctx, conn, p, f.tables, f.options()); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "shadow: policies installed in audit mode; watch `bulkhead adopt report`")
				fmt.Fprintln(cmd.OutOrStdout(), "note: COPY ... FROM into these tables now fails for roles under row-level security (PostgreSQL refuses it, SQLSTATE 0A000); load with INSERT, or COPY into a staging table and INSERT ... SELECT")
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newAdoptEnforceCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	var o adopt.EnforceOptions
	cmd := &cobra.Command{
		Use:   "enforce --plan FILE [--tables a,b] [--window 1h] [--force]",
		Short: "Make tables strict (refuses while shadow recorded violations in --window), then verify and audit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				o.Options = f.options()
				start := time.Now()
				if err := adopt.Enforce(ctx, conn, p, f.tables, o); err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "enforced in %s\n", time.Since(start).Round(time.Millisecond))
				if err := adopt.Verify(ctx, conn, p, f.tables); err != nil {
					return fmt.Errorf("self-check after enforce: %w", err)
				}
				fmt.Fprintln(w, "self-check: RLS enabled and forced, strict policy only, recorder removed")
				rep, col, err := auditAdopted(ctx, conn, p)
				if err != nil {
					return fmt.Errorf("audit after enforce: %w", err)
				}
				bySev := map[string]int{}
				for _, fd := range rep.Findings {
					bySev[fd.Severity.String()]++
				}
				fmt.Fprintf(w, "audit (bulkhead audit --runtime-role %s --tenant-column %s): %d findings %v\n", p.Runtime.Name, col, len(rep.Findings), bySev)
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().DurationVar(&o.Window, "window", time.Hour, "violations recorded this recently block enforcement")
	cmd.Flags().BoolVar(&o.Force, "force", false, "enforce despite recorded violations")
	return cmd
}

// auditAdopted runs bulkhead audit on the adopted database as enforce and
// harden report it: the plan's runtime role, the first tenant table's
// column (returned, for the message).
func auditAdopted(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) (*audit.Report, string, error) {
	col := ""
	if ts := p.TenantTables(); len(ts) > 0 {
		col = ts[0].TenantColumn
	}
	rep, err := audit.Run(ctx, conn, audit.Options{RuntimeRole: p.Runtime.Name, TenantColumn: col})
	return rep, col, err
}

func newAdoptKeysCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	var undo bool
	cmd := &cobra.Command{
		Use:   "keys --plan FILE [--tables a,b] [--undo]",
		Short: "Replace each foreign key between tenant tables by one that carries the tenant (online; --undo restores them)",
		Long: `keys replaces every single-column foreign key from the named tenant tables (all
by default) to another tenant table's primary key, child(col) -> parent(id), by
child(tenant, col) -> parent(tenant, id) with the same actions. Foreign-key
checks ignore row-level security: without this a tenant can attach its rows to
another tenant's, and probe which ids exist in other tenants (audit BH702).
Every tenant table must be backfilled. Unlike shadow it blocks: from then on a
write pointing at another tenant's row fails, in any phase; run it after enforce,
or when the application is known not to write such rows. The parent's (tenant, id) index is built
concurrently; each key is added NOT VALID, then validated without blocking
writes. Keys whose rows already point at another tenant's row are left alone
and reported (exit 1); the others are replaced. Rollback to original, or
--undo, restores the application's keys exactly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				start := time.Now()
				if undo {
					if err := adopt.UndoKeys(ctx, conn, p, f.tables, f.options()); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "keys restored in %s\n", time.Since(start).Round(time.Millisecond))
					return nil
				}
				res, err := adopt.Keys(ctx, conn, p, f.tables, f.options())
				for _, r := range res {
					if r.Replacement != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "%s.%s -> %s: replaced by %s\n", r.Table, r.Constraint, r.References, r.Replacement)
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "%s.%s -> %s: left as it is: %s\n", r.Table, r.Constraint, r.References, r.Note)
					}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "keys done in %s\n", time.Since(start).Round(time.Millisecond))
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&undo, "undo", false, "restore the application's foreign keys and drop adopt's indexes")
	return cmd
}

func newAdoptHardenCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	var undo, prepare bool
	cmd := &cobra.Command{
		Use:   "harden --plan FILE --context-key-file FILE [--prepare | --undo]",
		Short: "Make the tenant context unforgeable: policies read bulkhead's signed context, not the application's setting",
		Long: `harden switches what the adopted tables' policies, column defaults and shadow
recorder read the tenant from: the plan's tenant_setting (app.current_tenant_id),
which any SQL on the application's connection can SET to another tenant, becomes
bulkhead.tenant_id, which only bulkhead.enter(token) sets, with a token signed by
the context key, one context per transaction (docs/SECURITY.md).

The order, with no downtime (docs/ADOPT.md, "Unforgeable context"):
  1. adopt harden --prepare: installs bulkhead_context in the database and
     proves the key, switching nothing;
  2. the application enters a signed context at the start of each transaction
     (SELECT bulkhead.enter($token)), keeping its own SET;
  3. adopt harden: the switch. An application that doesn't sign sees nothing.
The server must preload bulkhead_context with the key in --context-key-file:
harden enters a token signed with it as the runtime role and refuses, changing
nothing, unless the server accepts it. One transaction, online; --undo goes back
to the application's setting. The plan's tenant_type must be uuid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				w := cmd.OutOrStdout()
				if undo {
					changed, err := adopt.Unharden(ctx, conn, p, f.options())
					if err != nil {
						return err
					}
					if !changed {
						fmt.Fprintf(w, "the policies already read %s\n", p.TenantSetting)
						return nil
					}
					fmt.Fprintf(w, "the policies read %s again: any role can SET it (the bulkhead_context extension stays)\n", p.TenantSetting)
					return nil
				}
				if cfg.contextKey == "" {
					return errors.New("--context-key-file is required: the key file the server's bulkhead_context extension verifies contexts with (bulkhead.context_key_file)")
				}
				key, err := postgres.LoadContextKey(cfg.contextKey)
				if err != nil {
					return err
				}
				changed, err := adopt.Harden(ctx, conn, p, key, adopt.HardenOptions{Options: f.options(), Prepare: prepare})
				if err != nil {
					return err
				}
				if prepare {
					fmt.Fprintf(w, "prepared: bulkhead_context is installed and verifies the key; the application can enter signed contexts now (keeping its own SET of %s), then run adopt harden\n", p.TenantSetting)
					return nil
				}
				if !changed {
					fmt.Fprintf(w, "already hardened: the policies read %s\n", adopt.SignedTenantSetting)
				} else {
					fmt.Fprintf(w, "hardened: the policies read %s (set only by bulkhead.enter with a signed token); %s opens nothing\n", adopt.SignedTenantSetting, p.TenantSetting)
				}
				rep, _, err := auditAdopted(ctx, conn, p)
				if err != nil {
					return fmt.Errorf("audit after harden: %w", err)
				}
				forgeable := 0
				for _, fd := range rep.Findings {
					if fd.Check != "BH802" {
						continue
					}
					if fd.Object.Name == adopt.StateSchema+".strict" {
						// The shadow switch's replay setting: forging it can
						// only close the switch, for the forger's own reads.
						fmt.Fprintf(w, "audit BH802: %s (shadow tables' replay switch: it can only hide rows from whoever sets it)\n", fd.Object.Name)
						continue
					}
					forgeable++
					fmt.Fprintf(w, "audit BH802: %s: %s\n", fd.Object.Name, fd.Detail)
				}
				fmt.Fprintf(w, "audit (bulkhead audit --runtime-role %s): %d forgeable tenant settings (BH802)\n", p.Runtime.Name, forgeable)
				return nil
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Second, "lock_timeout of the switch's transaction (retried a few times)")
	cmd.Flags().BoolVar(&undo, "undo", false, "go back to the application's tenant_setting")
	cmd.Flags().BoolVar(&prepare, "prepare", false, "only install bulkhead_context and prove the key: the application can then enter signed contexts")
	cmd.MarkFlagsMutuallyExclusive("undo", "prepare")
	return cmd
}

func newAdoptRollbackCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	var to string
	cmd := &cobra.Command{
		Use:   "rollback --plan FILE [--tables a,b] [--to original|backfilled|shadow]",
		Short: "Move tables one phase back (or to --to), restoring exactly what adopt changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				start := time.Now()
				o := f.options()
				var end func()
				o.Progress, end = barProgress(cmd.ErrOrStderr())
				notes, err := adopt.Rollback(ctx, conn, p, f.tables, adopt.Phase(to), o)
				end()
				for _, n := range notes {
					fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rolled back in %s\n", time.Since(start).Round(time.Millisecond))
				st, err := adopt.Status(ctx, conn, p)
				if err != nil {
					return err
				}
				return adopt.WriteStatus(cmd.OutOrStdout(), st)
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().IntVar(&f.batchSize, "batch-size", 5000, "rows per batch when restoring backfilled values")
	cmd.Flags().StringVar(&to, "to", "", "target phase (default: one phase back)")
	return cmd
}

func newAdoptStatusCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	cmd := &cobra.Command{
		Use:   "status --plan FILE [--format text|json]",
		Short: "Each table's phase, as recorded in the database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				st, err := adopt.Status(ctx, conn, p)
				if err != nil {
					return err
				}
				mode, err := adopt.ContextMode(ctx, conn, p)
				if err != nil {
					return err
				}
				if f.format == "json" {
					return (&adopt.Report{Context: mode, Tables: st, Violations: []adopt.Violation{}}).WriteJSON(cmd.OutOrStdout())
				}
				if mode == adopt.ContextSigned {
					fmt.Fprintf(cmd.OutOrStdout(), "context: signed (%s, set only by bulkhead.enter with a signed token)\n", adopt.SignedTenantSetting)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "context: legacy (%s: any role can SET it; adopt harden makes it unforgeable)\n", p.TenantSetting)
				}
				return adopt.WriteStatus(cmd.OutOrStdout(), st)
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&f.format, "format", "text", "text or json")
	return cmd
}

func newAdoptReportCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "report --plan FILE [--since 24h] [--format text|json]",
		Short: "What shadow recorded: per table, operation, tenant and query fingerprint (counts and row keys, never contents)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withPlan(cmd, cfg, f, func(ctx context.Context, conn *pgx.Conn, p *adopt.Plan) error {
				var from time.Time
				if since > 0 {
					from = time.Now().Add(-since)
				}
				rep, err := adopt.Read(ctx, conn, p, from)
				if err != nil {
					return err
				}
				if f.format == "json" {
					return rep.WriteJSON(cmd.OutOrStdout())
				}
				return rep.WriteText(cmd.OutOrStdout())
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().DurationVar(&since, "since", 0, "only violations seen this recently (default all)")
	cmd.Flags().StringVar(&f.format, "format", "text", "text or json")
	return cmd
}

func newAdoptProxyCmd(cfg *config) *cobra.Command {
	f := &adoptFlags{}
	var o adopt.ProxyOptions
	var skip, tlsCert, tlsKey string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "proxy --plan FILE [--listen 127.0.0.1:6543] [--upstream HOST:PORT|SOCKET] [--sample 0.01] [--tls-cert FILE --tls-key FILE [--require-tls]]",
		Short: "Record the reads strict mode would hide: a proxy the application connects through during shadow",
		Long: `proxy is the read side of shadow mode. Point the application's database URL
at it. Every message passes unchanged, authentication included;
for a sampled fraction of single SELECT/WITH reads, after the results reach
the application and before its ReadyForQuery does, the proxy replays the
statement on the same connection (shadow, strict, shadow; in a savepoint, or
a REPEATABLE READ transaction outside one; rolled back) and records the rows
both shadow runs returned that strict mode hides: adopt report lists them
under the table "query". --database-url is where records are written (the
operator); --upstream defaults to its server. Stops on SIGINT or SIGTERM.

TLS: with --tls-cert and --tls-key the proxy offers TLS to the application
(--require-tls refuses clients without it). Towards the database it uses TLS
when --database-url's sslmode is require, verify-ca or verify-full, with that
URL's certificate settings, and never falls back to plain text; any other
sslmode (prefer, the default, included) connects in plain text. With TLS on
both sides, SCRAM's channel binding can't pass the proxy: clients connect with
channel_binding=disable (the proxy refuses others with that message). Run
beside the database on its Unix socket, clients keep their defaults.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if every <= 0 {
				return fmt.Errorf("--stats-every %v: want a positive duration", every)
			}
			if o.AuthTimeout <= 0 {
				return fmt.Errorf("--auth-timeout %v: want a positive duration", o.AuthTimeout)
			}
			p, err := adopt.Load(f.plan)
			if err != nil {
				return err
			}
			if skip != "" {
				if o.Skip, err = regexp.Compile(skip); err != nil {
					return fmt.Errorf("--skip: %v", err)
				}
			}
			if cfg.databaseURL == "" {
				return errors.New("--database-url (or DATABASE_URL) is required: where the proxy records, as the operator")
			}
			pc, err := pgxpool.ParseConfig(cfg.databaseURL)
			if err != nil {
				return fmt.Errorf("--database-url: %v", redactErr(err, cfg.databaseURL))
			}
			if o.Upstream == "" {
				h, port := pc.ConnConfig.Host, pc.ConnConfig.Port
				o.Upstream = net.JoinHostPort(h, strconv.Itoa(int(port)))
				if strings.HasPrefix(h, "/") {
					o.Upstream = filepath.Join(h, fmt.Sprintf(".s.PGSQL.%d", port))
				}
			}
			o.UpstreamTLS = upstreamTLS(pc.ConnConfig)
			if tlsCert != "" || tlsKey != "" {
				if tlsCert == "" || tlsKey == "" {
					return errors.New("--tls-cert and --tls-key go together")
				}
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return fmt.Errorf("--tls-cert, --tls-key: %v", err)
				}
				o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ctx := cmd.Context()
			pool, err := pgxpool.NewWithConfig(ctx, pc)
			if err != nil {
				return fmt.Errorf("connect to %s: %v", redactURL(cfg.databaseURL), redactErr(err, cfg.databaseURL))
			}
			defer pool.Close()
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("connect to %s: %v", redactURL(cfg.databaseURL), redactErr(err, cfg.databaseURL))
			}
			if err := proxyTables(ctx, cmd.ErrOrStderr(), pool, p); err != nil {
				return err
			}
			if o.Logger, err = cfg.logger(); err != nil {
				return err
			}
			px, err := adopt.NewProxy(pool, o)
			if err != nil {
				return err
			}
			clientTLS, upTLS := "plain text", "plain text"
			if o.TLS != nil {
				clientTLS = "TLS offered"
				if o.RequireTLS {
					clientTLS = "TLS required"
				}
			}
			if o.UpstreamTLS != nil {
				upTLS = "TLS"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "adopt proxy: listening on %s (%s), forwarding to %s (%s), replaying %.4g of reads\n", px.Addr(), clientTLS, o.Upstream, upTLS, o.Sample)
			if w := plainTextWarning(px.Addr(), o.RequireTLS); w != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), w)
			}
			report := func() {
				s := px.Stats()
				fmt.Fprintf(cmd.ErrOrStderr(), "adopt proxy: %d connections, %d reads, %d sampled, %d replayed, %d skipped, %d failed, %d hidden rows recorded, %d records dropped\n",
					s.Connections, s.Reads, s.Sampled, s.Replayed, s.Skipped, s.Failed, s.Hidden, px.Dropped())
			}
			go func() {
				t := time.NewTicker(every)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						report()
					}
				}
			}()
			err = px.Serve(ctx)
			report()
			return err
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:6543", "address the application connects to")
	cmd.Flags().StringVar(&o.Upstream, "upstream", "", "the database server: host:port, or a Unix socket path (default: --database-url's)")
	cmd.Flags().Float64Var(&o.Sample, "sample", 0.01, "fraction (0..1) of eligible reads replayed")
	cmd.Flags().DurationVar(&o.Timeout, "replay-timeout", time.Second, "statement_timeout of each replay")
	cmd.Flags().DurationVar(&o.AuthTimeout, "auth-timeout", time.Minute, "a client that hasn't finished start-up and authentication by then is disconnected (PostgreSQL's authentication_timeout)")
	cmd.Flags().StringVar(&skip, "skip", "", "reads matching this regular expression are never replayed")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "certificate (PEM) the proxy offers the application in TLS")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "the certificate's private key (PEM)")
	cmd.Flags().BoolVar(&o.RequireTLS, "require-tls", false, "refuse applications that connect without TLS (needs --tls-cert and --tls-key)")
	cmd.Flags().DurationVar(&every, "stats-every", time.Minute, "how often to print the counters")
	return cmd
}

// proxyTables refuses to start a proxy that could record nothing (no
// table of the plan is in shadow: a strict replay of a table without the
// shadow policy returns what the application's read did) and says which
// tables its replays cover.
func proxyTables(ctx context.Context, w io.Writer, pool *pgxpool.Pool, p *adopt.Plan) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	st, err := adopt.Status(ctx, c.Conn(), p)
	if err != nil {
		return err
	}
	var in, out []string
	for _, t := range st {
		if t.Phase == adopt.PhaseShadow {
			in = append(in, t.Table)
		} else {
			out = append(out, t.Table+" ("+string(t.Phase)+")")
		}
	}
	if len(in) == 0 {
		return errors.New("adopt proxy: no table of the plan is in shadow, so its replays would record nothing: run adopt shadow first (adopt status shows each table's phase)")
	}
	fmt.Fprintf(w, "adopt proxy: records reads of the tables in shadow: %s\n", strings.Join(in, ", "))
	if len(out) > 0 {
		fmt.Fprintf(w, "adopt proxy: not in shadow, not recorded: %s\n", strings.Join(out, ", "))
	}
	return nil
}

// upstreamTLS is the TLS the proxy uses towards the database: the
// database URL's when its sslmode requires TLS (require, verify-ca,
// verify-full: pgx builds no plain-text fallback for them), none for the
// others, which allow plain text anyway.
func upstreamTLS(c *pgx.ConnConfig) *tls.Config {
	if c.TLSConfig == nil {
		return nil
	}
	for _, f := range c.Fallbacks {
		if f.TLSConfig == nil {
			return nil // prefer or allow
		}
	}
	return c.TLSConfig.Clone()
}

// plainTextWarning is the warning the proxy prints when it listens at
// addr: "" on a loopback address or when TLS is required, since only then
// can no application's traffic reach it in plain text over a network.
func plainTextWarning(addr net.Addr, requireTLS bool) string {
	if loopback(addr) || requireTLS {
		return ""
	}
	return fmt.Sprintf("adopt proxy: warning: %s is not a loopback address and TLS is not required (--require-tls): an application's queries and results may cross the network in plain text", addr)
}

// loopback reports whether a is a loopback address (127.0.0.0/8, ::1).
// An unspecified address (0.0.0.0, ::) listens on every interface: not
// loopback.
func loopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}
