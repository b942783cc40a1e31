package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/spf13/cobra"
)

func newServeCmd(cfg *config) *cobra.Command {
	var addr string
	var migrate bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP server (starts the embedded PostgreSQL unless --database-url is set)",
		Long: `serve starts the embedded PostgreSQL cluster in --data-dir (or uses
--database-url), applies pending migrations (unless --migrate=false), verifies
the database's isolation guarantees and serves HTTP on --addr:

  GET /healthz   the process is alive
  GET /readyz    the database is reachable and the isolation self-check passes

If the self-check finds anything (a tenant table without forced row-level
security, a runtime role that can bypass it, ...) serve refuses to start and
names each finding. SIGINT or SIGTERM shut it down gracefully and stop the
embedded cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return serve(cmd.Context(), cfg, addr, migrate, cmd)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "HTTP listen address")
	cmd.Flags().BoolVar(&migrate, "migrate", true, "apply pending migrations at start")
	return cmd
}

func serve(ctx context.Context, cfg *config, addr string, migrate bool, cmd *cobra.Command) error {
	start := time.Now()
	log, err := cfg.logger()
	if err != nil {
		return err
	}
	// Listen first: a port in use fails before anything is started.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer ln.Close()

	env, err := cfg.openEnv(ctx, log, startOwned)
	if err != nil {
		return err
	}
	defer env.close()
	if migrate {
		if err := env.migrate(ctx, log); err != nil {
			return err
		}
	}
	db, err := env.openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	findings, err := postgres.SelfCheck(ctx, db.Pool())
	if err != nil {
		return fmt.Errorf("self-check: %w", err)
	}
	if len(findings) > 0 {
		for _, f := range findings {
			fmt.Fprintln(cmd.ErrOrStderr(), "self-check:", f)
		}
		return fmt.Errorf("refusing to serve: the isolation self-check found %d problem(s); fix them (bulkhead never disables row-level security by itself)", len(findings))
	}

	srv := &http.Server{Handler: httpapi.NewServer(db, log, findings, httpapi.Options{}), ReadHeaderTimeout: 10 * time.Second}
	where := "external database " + env.database
	if env.cluster != nil {
		where = fmt.Sprintf("embedded PostgreSQL %d, socket in %s", env.cluster.Major(), env.cluster.SocketDir())
	}
	fmt.Fprintf(cmd.OutOrStdout(), "bulkhead serving on http://%s (data dir %s, %s); ready in %s\n",
		ln.Addr(), env.dataDirOr(cfg.dataDir), where, time.Since(start).Round(time.Millisecond))
	log.Info("serving", "addr", ln.Addr().String(), "data_dir", cfg.dataDir, "startup", time.Since(start).String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func (e *dbEnv) dataDirOr(d string) string {
	if e.cluster != nil {
		return e.cluster.DataDir()
	}
	return d
}
