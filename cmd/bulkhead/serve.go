package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

func newServeCmd(cfg *config) *cobra.Command {
	var addr, authConfig string
	var tlsf tlsFiles
	var streamOrigins []string
	var migrate bool
	var drainTimeout time.Duration
	var maxBody int64
	var lim limitFlags
	var adm httpapi.Admission
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP server (starts the embedded PostgreSQL unless --database-url is set)",
		Long: `serve starts the embedded PostgreSQL cluster in --data-dir (or uses
--database-url), applies pending migrations (unless --migrate=false), verifies
the database's isolation guarantees and serves HTTP on --addr:

  GET /healthz   the process is alive
  GET /readyz    the database is reachable and the isolation self-check passes
  GET /metrics   Prometheus metrics
  /v1/...        the API (OpenAPI document at /openapi.json), authenticated by
                 bearer JWTs: bulkhead's own (bulkhead token mint) and those
                 of the issuers in --auth-config

If the self-check finds anything (a tenant table without forced row-level
security, a runtime role that can bypass it, ...) serve refuses to start and
names each finding. SIGINT or SIGTERM shut it down gracefully: new
connections are refused, room streams close with 1001, requests in flight
finish (for at most --shutdown-timeout), then the embedded cluster stops.

With the embedded cluster, serve is PostgreSQL's supervisor: a postmaster
that dies (killed, crashed) is started again with capped exponential backoff
and runs its crash recovery; requests answer 503 with Retry-After and
/readyz 503 meanwhile (docs/RELIABILITY.md). A cluster serve started and
"bulkhead db stop" stopped cleanly is not restarted.

Under overload, at most --max-in-flight API requests work at once and at
most --max-queue wait (each at most --queue-timeout) for a slot; the others
are answered at once with 503 and Retry-After: 1, and a request that gets no
database connection within --db-acquire-timeout answers 503 too. /healthz,
/readyz and /metrics are never queued.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			limits, err := lim.limits()
			if err != nil {
				return err
			}
			if (tlsf.cert == "") != (tlsf.key == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			if drainTimeout <= 0 {
				return errors.New("--shutdown-timeout must be positive")
			}
			if adm.MaxInFlight < 0 || adm.QueueTimeout < 0 || cfg.acquireTimeout < 0 {
				return errors.New("--max-in-flight, --queue-timeout and --db-acquire-timeout can't be negative")
			}
			return serve(cmd.Context(), cfg, addr, tlsf, migrate, authConfig, maxBody, limits, adm, streamOrigins, drainTimeout, cmd)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "HTTP listen address")
	cmd.Flags().StringVar(&tlsf.cert, "tls-cert", "", "serve HTTPS with this PEM certificate chain (reloaded when the file changes)")
	cmd.Flags().StringVar(&tlsf.key, "tls-key", "", "the PEM private key of --tls-cert (mode 0600; reloaded with it)")
	cmd.Flags().BoolVar(&migrate, "migrate", true, "apply pending migrations at start")
	cmd.Flags().DurationVar(&drainTimeout, "shutdown-timeout", 15*time.Second, "on SIGINT/SIGTERM, how long requests in flight may take to finish before their connections are closed unanswered")
	cmd.Flags().StringVar(&authConfig, "auth-config", "", `JSON file of external JWT issuers: {"issuers":[{"issuer","audience", "jwks_url" or "hs256_secret_file" (neither: OIDC discovery from the issuer URL), "algorithms", "tenant" (a fixed tenant) or "tenant_claim" (then only tenants that ran 'tenant issuer add' may be named), "name_claim","email_claim"}]}; bulkhead's own tokens (bulkhead token mint) are always accepted`)
	cmd.Flags().Int32Var(&cfg.poolSize, "db-pool-size", 0, "connections of the runtime role's pool (0: pgxpool's default, the larger of 4 and the number of CPUs)")
	cmd.Flags().Int64Var(&maxBody, "max-body", 2<<20, "largest request body in bytes (413 beyond); documents hold up to 1 MiB of text")
	cmd.Flags().StringSliceVar(&streamOrigins, "stream-origins", nil, "browser origins (scheme://host[:port]) allowed to open room streams over WebSocket; none by default")
	cmd.Flags().Float64Var(&lim.perEntity, "rate-per-entity", 50, "requests per second per authenticated entity (0: unlimited)")
	cmd.Flags().IntVar(&lim.perEntityBurst, "rate-per-entity-burst", 100, "burst of --rate-per-entity")
	cmd.Flags().Float64Var(&lim.authFailures, "auth-failures-per-ip", 1, "failed authentications per second per client IP before 429 (0: unlimited)")
	cmd.Flags().IntVar(&lim.authFailuresBurst, "auth-failures-per-ip-burst", 20, "burst of --auth-failures-per-ip")
	cmd.Flags().Float64Var(&lim.authPerIP, "auth-rate-per-ip", 5, "calls per second per client IP to the account endpoints (register, login, refresh, logout)")
	cmd.Flags().IntVar(&lim.authPerIPBurst, "auth-rate-per-ip-burst", 30, "burst of --auth-rate-per-ip")
	cmd.Flags().Float64Var(&lim.authPerAccount, "auth-rate-per-account", 0.2, "register and login attempts per second per tenant and email")
	cmd.Flags().IntVar(&lim.authPerAccountBurst, "auth-rate-per-account-burst", 10, "burst of --auth-rate-per-account")
	cmd.Flags().IntVar(&adm.MaxInFlight, "max-in-flight", 0, "API requests doing work at once (0: twice the runtime pool's connections, at least 4)")
	cmd.Flags().IntVar(&adm.MaxQueue, "max-queue", 0, "API requests that may wait for a slot of --max-in-flight; beyond, 503 at once (0: 4 × --max-in-flight; -1: none wait)")
	cmd.Flags().DurationVar(&adm.QueueTimeout, "queue-timeout", time.Second, "longest wait for a slot of --max-in-flight before 503")
	cmd.Flags().DurationVar(&cfg.acquireTimeout, "db-acquire-timeout", postgres.DefaultAcquireTimeout, "longest wait for a database connection before 503")
	cmd.Flags().StringSliceVar(&lim.trusted, "trusted-proxies", nil, "CIDRs of proxies whose X-Forwarded-For is believed (default: none; the peer address is the client)")
	return cmd
}

// tlsFiles are --tls-cert and --tls-key; empty: plain HTTP.
type tlsFiles struct{ cert, key string }

func serve(ctx context.Context, cfg *config, addr string, tlsf tlsFiles, migrate bool, authConfig string, maxBody int64, limits httpapi.RateLimits, adm httpapi.Admission, streamOrigins []string, drainTimeout time.Duration, cmd *cobra.Command) error {
	start := time.Now()
	log, err := cfg.logger()
	if err != nil {
		return err
	}
	var certs *certReloader
	if tlsf.cert != "" {
		if certs, err = newCertReloader(tlsf.cert, tlsf.key, log); err != nil {
			return err
		}
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
	deps := newDepMetrics()
	cfg.know.metrics = deps
	collectors := deps.collectors()
	var dbUp func() bool
	if env.cluster != nil {
		// bulkhead is the embedded cluster's supervisor: a postmaster that
		// dies is started again (env.close stops the supervisor first).
		if err := env.cluster.Supervise(pgcluster.SuperviseConfig{}); err != nil {
			return err
		}
		collectors = append(collectors, supervisorMetrics(env.cluster)...)
		dbUp = func() bool { return env.cluster.SupervisorStats().Up }
	}
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

	signer, err := cfg.signer()
	if err != nil {
		return err
	}
	issuers := []auth.IssuerConfig{{Issuer: tokenIssuer, JWKS: signer.JWKS(), Algorithms: []string{"EdDSA"}, Audience: token.Audience, TenantClaim: token.TenantClaim}}
	if authConfig != "" {
		external, err := auth.LoadIssuers(authConfig)
		if err != nil {
			return err
		}
		issuers = append(issuers, external...)
	}
	verifier, err := auth.NewVerifier(ctx, issuers, auth.Options{Logger: log, FetchFailed: deps.fetchFailed})
	if err != nil {
		return fmt.Errorf("authentication config: %w", err)
	}
	defer verifier.Close()
	opToken, err := operatorToken(filepath.Join(cfg.dataDir, "operator-token"))
	if err != nil {
		return err
	}
	accounts, err := cfg.accounts(db, signer)
	if err != nil {
		return err
	}
	stream := httpapi.StreamOptions{Origins: streamOrigins}
	if cfg.appURL != "" {
		// The runtime role's DSN may go through PgBouncer in transaction
		// mode, where LISTEN receives nothing: listen over a direct
		// connection as the same role.
		direct, err := pgx.ParseConfig(env.directAppDSN)
		if err != nil {
			return err
		}
		stream.Notifier = postgres.NewNotifier(db, postgres.NotifierConfig{ConnConfig: direct, Logger: log})
		defer stream.Notifier.Close()
	}
	know, closeKnow, err := cfg.knowledgeWith(db, log, func(region string, s *embedded.Store) {
		s.SetLogger(log.With("region", region))
		collectors = append(collectors, vectorMetrics(region, s)...)
	})
	if err != nil {
		return fmt.Errorf("knowledge layer: %w", err)
	}
	defer closeKnow()
	authn := auth.NewAuthenticator(verifier, tokenIssuer).WithAPIKeys(accounts).WithDirectory(db, 0)
	api := httpapi.NewServer(db, log, findings, httpapi.Options{Auth: authn,
		Accounts: accounts, MaxBody: maxBody, JWKS: signer.JWKS(), Limits: limits, Admission: adm, OperatorToken: opToken, Stream: stream, Knowledge: know, Collectors: collectors, DatabaseUp: dbUp})
	// Tell the CLI where the control plane is (it can't open the vector
	// store this process holds).
	info := serveInfo{Addr: ln.Addr().String(), PID: os.Getpid()}
	scheme := "http"
	if certs != nil {
		scheme, info.TLSCert = "https", absPath(tlsf.cert)
	}
	if b, err := json.Marshal(info); err == nil {
		if err := os.WriteFile(serveFile(cfg.dataDir), b, 0o600); err != nil {
			return err
		}
		defer os.Remove(serveFile(cfg.dataDir))
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
	}
	where := "external database " + env.database
	if env.cluster != nil {
		where = fmt.Sprintf("embedded PostgreSQL %d, socket in %s", env.cluster.Major(), env.cluster.SocketDir())
	}
	fmt.Fprintf(cmd.OutOrStdout(), "bulkhead serving on %s://%s (data dir %s, %s); ready in %s\n",
		scheme, ln.Addr(), env.dataDirOr(cfg.dataDir), where, time.Since(start).Round(time.Millisecond))
	log.Info("serving", "addr", ln.Addr().String(), "data_dir", cfg.dataDir, "startup", time.Since(start).String())

	errc := make(chan error, 1)
	go func() {
		if certs != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	return drain(srv, api, drainTimeout, log)
}

// drain shuts the HTTP server down: the listener closes at once (new
// connections are refused), room streams close with 1001 (going away),
// idle keep-alive connections close, and requests in flight run to their
// end, for at most timeout. Past it, the connections left are closed: their
// clients get no answer, so nothing unanswered counts as acknowledged (a
// handler still running finishes its transaction before the pool closes).
func drain(srv *http.Server, api *httpapi.Server, timeout time.Duration, log *slog.Logger) error {
	start := time.Now()
	log.Info("shutting down: draining requests in flight", "timeout", timeout.String())
	api.CloseStreams() // Shutdown does not close upgraded connections
	shutCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutting down: requests still in flight after the drain timeout; closing their connections unanswered", "timeout", timeout.String())
		srv.Close()
		return nil
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("shutting down: drained", "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// supervisorMetrics exposes the embedded cluster's supervisor at /metrics.
func supervisorMetrics(cl *pgcluster.Cluster) []prometheus.Collector {
	stat := func(f func(pgcluster.SupervisorStats) int64) func() float64 {
		return func() float64 { return float64(f(cl.SupervisorStats())) }
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_postgres_up", Help: "1 while the embedded PostgreSQL runs, 0 from its death until it is ready again."},
			stat(func(s pgcluster.SupervisorStats) int64 {
				if s.Up {
					return 1
				}
				return 0
			})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_postgres_crashes_total", Help: "Embedded PostgreSQL postmasters that died without a clean shutdown."},
			stat(func(s pgcluster.SupervisorStats) int64 { return s.Crashes })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_postgres_restarts_total", Help: "Embedded PostgreSQL postmasters started again by bulkhead after a crash."},
			stat(func(s pgcluster.SupervisorStats) int64 { return s.Restarts })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_postgres_failed_starts_total", Help: "Restart attempts of the embedded PostgreSQL that failed (and were retried with backoff)."},
			stat(func(s pgcluster.SupervisorStats) int64 { return s.FailedStarts })),
	}
}

// vectorMetrics exposes an embedded vector store at /metrics. A failed
// compaction loses nothing, but a store whose compactions keep failing
// (a full disk, most often) has a log that only grows: alert on it.
func vectorMetrics(region string, s *embedded.Store) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_vector_compaction_failures_total",
			Help:        "Background compactions of the embedded vector store that failed (nothing is lost: the log is kept and folded by a later compaction; each failure is logged).",
			ConstLabels: prometheus.Labels{"region": region}},
			func() float64 { n, _ := s.CompactionFailures(); return float64(n) }),
	}
}

func (e *dbEnv) dataDirOr(d string) string {
	if e.cluster != nil {
		return e.cluster.DataDir()
	}
	return d
}

type limitFlags struct {
	perEntity, authFailures, authPerIP, authPerAccount                     float64
	perEntityBurst, authFailuresBurst, authPerIPBurst, authPerAccountBurst int
	trusted                                                                []string
}

func (l limitFlags) limits() (httpapi.RateLimits, error) {
	out := httpapi.RateLimits{PerEntity: rate.Limit(l.perEntity), PerEntityBurst: l.perEntityBurst,
		AuthFailuresPerIP: rate.Limit(l.authFailures), AuthFailuresPerIPBurst: l.authFailuresBurst,
		AuthPerIP: rate.Limit(l.authPerIP), AuthPerIPBurst: l.authPerIPBurst,
		AuthPerAccount: rate.Limit(l.authPerAccount), AuthPerAccountBurst: l.authPerAccountBurst}
	for _, c := range l.trusted {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return out, fmt.Errorf("--trusted-proxies %q: not a CIDR", c)
		}
		out.TrustedProxies = append(out.TrustedProxies, p)
	}
	return out, nil
}

// operatorToken reads the control plane's credential, creating a random
// one (mode 0600) on first use; a file others can read is refused.
func operatorToken(path string) (bulkhead.Secret, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		tok := "bhop_" + rand.Text() + rand.Text()
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("create operator token %s: %w", path, err)
		}
		fmt.Fprintf(os.Stderr, "bulkhead: created the operator token for /admin/v1 in %s\n", path)
		return bulkhead.Secret(tok), nil
	}
	if err != nil {
		return "", fmt.Errorf("read operator token: %w", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("operator token %s is accessible to others: chmod 600 %s", path, path)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("operator token %s is shorter than 32 characters", path)
	}
	return bulkhead.Secret(tok), nil
}
