// Command bulkhead is the bulkhead data plane: the server, the embedded
// PostgreSQL, migrations and operator tools. It wires the packages together
// and does nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// config holds the global flags; every flag also reads BULKHEAD_<NAME>.
type config struct {
	dataDir       string
	databaseURL   string
	appURL        string
	queryExecMode string
	pgPort        int
	kekFile       string
	kekURI        string
	kekTimeout    time.Duration // bounds each KMS call
	tenantKeyDir  string
	// nextKEK is set by keys rotate-kek: the KEK being rotated to, accepted
	// in place of the configured one when the database already records it.
	nextKEK    *fieldcrypt.KEK
	contextKey string
	// acquireTimeout is serve's --db-acquire-timeout (zero elsewhere: the
	// default).
	acquireTimeout time.Duration
	poolSize       int32 // serve --db-pool-size
	logFormat      string
	logLevel       string
	know           knowledgeFlags
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "bulkhead:", err)
		os.Exit(1)
	}
}

// exitError ends the command with a code and no further message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRoot() *cobra.Command {
	cfg := &config{}
	root := &cobra.Command{
		Use:   "bulkhead",
		Short: "A multi-tenant data plane whose isolation is enforced by PostgreSQL",
		Long: `bulkhead is a data plane for multi-tenant AI-agent and RAG platforms. Tenant
isolation is enforced by the storage engines (PostgreSQL row-level security,
forced, with transaction-local context), so a bug in application code yields
zero rows or an error, never another tenant's data.

With no --database-url, bulkhead runs a private PostgreSQL cluster from the
locally installed binaries in --data-dir. Every flag can also be set by an
environment variable: --data-dir is BULKHEAD_DATA_DIR, --addr is BULKHEAD_ADDR,
and so on (--database-url also reads DATABASE_URL).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return bindEnv(cmd.Flags())
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&cfg.dataDir, "data-dir", ".bulkhead", "directory for the embedded PostgreSQL cluster, role credentials and local state")
	f.StringVar(&cfg.databaseURL, "database-url", "", "external PostgreSQL (postgres:// URL of a superuser or CREATEROLE role); empty runs the embedded cluster")
	f.StringVar(&cfg.appURL, "app-database-url", "", "how the server reaches the database as the runtime role (e.g. through PgBouncer); default: derived from --database-url")
	f.StringVar(&cfg.queryExecMode, "query-exec-mode", "", "pgx query exec mode: cache_statement (default), cache_describe or exec (PgBouncer < 1.21 in transaction mode), describe_exec, simple_protocol")
	f.StringVar(&cfg.kekFile, "kek-file", "", "local key-encryption key (a Tink keyset, mode 0600; default DATA_DIR/kek.json, created on first use)")
	f.DurationVar(&cfg.kekTimeout, "kek-timeout", fieldcrypt.DefaultKMSTimeout, "bound on each call to --kek-uri's KMS (client set-up, wrap, unwrap): an unreachable KMS at start-up stops bulkhead with an error after this long")
	f.StringVar(&cfg.kekURI, "kek-uri", "", "key-encryption key in a KMS instead of a file: aws-kms://..., gcp-kms://..., hcvault://... (credentials from the provider's environment)")
	f.StringVar(&cfg.tenantKeyDir, "tenant-key-dir", "", "per-tenant keys that tenant delete destroys (0700 directory, one 0600 file per tenant; default DATA_DIR/tenant-keys). Keep it out of database backups and back it up separately (docs/OPERATIONS.md)")
	f.StringVar(&cfg.contextKey, "context-key-file", "", "with --database-url: the key file (64 hex digits) that the server's bulkhead_context extension reads as bulkhead.context_key_file; the embedded cluster makes its own")
	f.IntVar(&cfg.pgPort, "pg-port", 0, "also listen on 127.0.0.1:PORT with the embedded cluster (default: Unix socket only)")
	f.StringVar(&cfg.logFormat, "log-format", "json", "log format: json or text")
	f.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cfg.know.register(f)

	root.AddCommand(newServeCmd(cfg), newDBCmd(cfg), newMigrateCmd(cfg), newTenantCmd(cfg), newEntityCmd(cfg), newKeysCmd(cfg), newTokenCmd(cfg), newAPIKeyCmd(cfg), newDemoCmd(cfg), newBenchCmd(cfg), newPolicyCmd(cfg), newProbeCmd(cfg), newAuditCmd(cfg), newAdoptCmd(cfg), newVersionCmd())
	return root
}

// bindEnv sets every flag not given on the command line from
// BULKHEAD_<FLAG_NAME> (and --database-url from DATABASE_URL too).
func bindEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		names := []string{"BULKHEAD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))}
		if f.Name == "database-url" {
			names = append(names, "DATABASE_URL")
		}
		for _, n := range names {
			if v, ok := os.LookupEnv(n); ok && v != "" {
				if err := f.Value.Set(v); err != nil {
					errs = append(errs, fmt.Errorf("environment variable %s: %w", n, err))
				}
				return
			}
		}
	})
	return errors.Join(errs...)
}

func (c *config) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", c.logFormat)
}
