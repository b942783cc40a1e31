package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/prometheus/client_golang/prometheus"
)

// Authenticator turns a request's credentials into the caller's scope. It
// returns an error wrapping bulkhead.ErrUnauthenticated for missing or bad
// credentials; the reason is logged, never sent.
type Authenticator interface {
	Authenticate(r *http.Request) (bulkhead.Scope, error)
}

// AccessAuthenticator is implemented by authenticators that describe the
// credential for the per-request revocation check (auth.Authenticator: a
// token's session and issue time, an API key's id). Whatever the
// authenticator, every authenticated request is checked: the tenant and
// entity must exist and be enabled (postgres.Access).
type AccessAuthenticator interface {
	AuthenticateAccess(r *http.Request) (bulkhead.Scope, time.Time, postgres.Access, error)
}

// Options configures the server.
type Options struct {
	// Auth authenticates /v1 requests; nil refuses them all (401).
	Auth Authenticator
	// MaxBody bounds request bodies in bytes (413 beyond); default 1 MiB.
	MaxBody int64
	// Accounts runs bulkhead's own account flows and API keys; nil disables
	// those routes (404).
	Accounts *auth.Accounts
	// OperatorToken is the control plane's credential for /admin/v1; empty
	// refuses every admin request.
	OperatorToken bulkhead.Secret
	// Limits bounds request rates.
	Limits RateLimits
	// Admission bounds the API requests doing work at once (admission.go).
	Admission Admission
	// JWKS is the public JWK set of bulkhead's own token signer, served at
	// /.well-known/jwks.json so other services can verify its tokens.
	JWKS []byte
	// Stream configures GET /v1/rooms/{id}/stream (stream.go).
	Stream StreamOptions
	// Knowledge ingests documents and answers /v1/query and /v1/answer;
	// nil makes those routes and document writes answer 503.
	Knowledge *retrieval.Service
	// Collectors are extra Prometheus metrics served at /metrics (e.g. the
	// embedded cluster's supervisor).
	Collectors []prometheus.Collector
	// DatabaseUp, when set, is asked first by /readyz: false (the embedded
	// cluster's supervisor saw the postmaster die and has not restarted it
	// yet) answers 503 at once, before a connection whose backend has not
	// noticed its postmaster's death yet could answer a ping.
	DatabaseUp func() bool
}

// Server serves bulkhead's HTTP API. It is safe for concurrent use.
type Server struct {
	db          *postgres.DB
	log         *slog.Logger
	mux         *http.ServeMux
	auth        Authenticator
	maxBody     int64
	jwks        []byte
	opToken     [32]byte // sha256 of the operator token; zero: none
	accts       *auth.Accounts
	authIP      *limiters
	authAccount *limiters
	metrics     *metrics
	limits      RateLimits
	perEntity   *limiters
	authFailsIP *limiters
	stream      *streams
	know        *retrieval.Service
	dbUp        func() bool
	adm         *admission
	handler     http.Handler

	mu        sync.Mutex
	checkedAt time.Time
	findings  []postgres.Finding
	checkErr  error
}

// NewServer returns the HTTP handler over db. findings is the start-up
// self-check's result; readiness re-runs the check at most every 10 seconds.
func NewServer(db *postgres.DB, log *slog.Logger, findings []postgres.Finding, opts Options) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	s := &Server{db: db, log: log, mux: http.NewServeMux(), auth: opts.Auth, maxBody: opts.MaxBody, jwks: opts.JWKS,
		limits: opts.Limits, perEntity: newLimiters(opts.Limits.PerEntity, opts.Limits.PerEntityBurst),
		authFailsIP: newLimiters(opts.Limits.AuthFailuresPerIP, opts.Limits.AuthFailuresPerIPBurst),
		authIP:      newLimiters(opts.Limits.AuthPerIP, opts.Limits.AuthPerIPBurst),
		authAccount: newLimiters(opts.Limits.AuthPerAccount, opts.Limits.AuthPerAccountBurst),
		accts:       opts.Accounts, know: opts.Knowledge, dbUp: opts.DatabaseUp, findings: findings, checkedAt: time.Now()}
	s.adm = newAdmission(opts.Admission.withDefaults(db.Pool().Config().MaxConns))
	for _, rt := range s.routes() {
		h := s.handle(rt.handler)
		switch rt.access {
		case scoped:
			h = s.authenticated(h)
		case operator:
			h = s.operatorOnly(h)
		}
		if !unadmitted[rt.path] {
			// Outermost: a request refused admission costs no
			// authentication and no connection.
			h = s.admit(h)
		}
		s.mux.Handle(rt.method+" "+rt.path, h)
	}
	if opts.OperatorToken != "" {
		s.opToken = sha256.Sum256([]byte(opts.OperatorToken.Reveal()))
	}
	s.stream = newStreams(db, log, opts.Stream)
	s.mux.Handle("/", s.handle(s.noRoute))
	s.metrics = newMetrics(s)
	for _, c := range append(s.adm.collectors(), opts.Collectors...) {
		if err := s.metrics.reg.Register(c); err != nil {
			log.Warn("metric not served", "err", err)
		}
	}
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.handler = s.observe(s.mux)
	return s
}

// noRoute answers 405 (with Allow) for a path served under other methods,
// and 404 otherwise, both as problems.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allowed []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		return errNoRoute
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return errMethod
}

var errMethod = errors.New("method not allowed")

var errNoRoute = errors.New("no such route")

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// handle adapts an error-returning handler: every error goes through writeError.
func (s *Server) handle(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

// authenticated puts the authenticated caller's scope in the request's
// context; without one the request ends here with 401.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.auth == nil {
			writeError(w, r, s.log, bulkhead.ErrUnauthenticated)
			return
		}
		ip, err := s.checkFailedAuthIP(w, r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		res, err := s.authenticate(r)
		sc := res.scope
		if errors.Is(err, bulkhead.ErrUnavailable) {
			// Not a bad credential: what checks it is unreachable (an
			// issuer's keys, the directory). 503 with Retry-After; the reason
			// is logged and counted, never sent.
			s.metrics.authFails.WithLabelValues(reasonOf(err)).Inc()
			writeError(w, r, s.log, err)
			return
		}
		if err != nil {
			s.authFailsIP.allow(ip)
			s.metrics.authFails.WithLabelValues(reasonOf(err)).Inc()
			s.log.InfoContext(r.Context(), "authentication failed", "path", r.URL.Path, "reason", reasonOf(err), "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="bulkhead"`)
			writeError(w, r, s.log, bulkhead.ErrUnauthenticated)
			return
		}
		if ok, d := s.perEntity.allow(sc.Tenant.String() + "/" + sc.Entity.String()); !ok {
			writeError(w, r, s.log, s.rateLimited(w, "entity", d))
			return
		}
		ctx, err := bulkhead.WithScope(withExpiry(r.Context(), res.exp), sc)
		if err != nil {
			writeError(w, r, s.log, bulkhead.ErrUnauthenticated)
			return
		}
		// Every transaction of the request checks that the credential is
		// still live (postgres.Access); the gate checks once more before a
		// response that no transaction preceded.
		ctx = postgres.WithAccess(ctx, res.access)
		r = r.WithContext(ctx)
		next.ServeHTTP(&accessGate{ResponseWriter: w, r: r, s: s}, r)
	})
}

// operatorOnly admits requests bearing the operator token (compared in
// constant time) and marks their context for the maintenance path. Failed
// attempts count against the client IP like any failed authentication.
func (s *Server) operatorOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, err := s.checkFailedAuthIP(w, r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		given := sha256.Sum256([]byte(tok))
		if s.opToken == ([32]byte{}) || subtle.ConstantTimeCompare(given[:], s.opToken[:]) != 1 {
			s.authFailsIP.allow(ip)
			s.metrics.authFails.WithLabelValues("operator").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="bulkhead-admin"`)
			writeError(w, r, s.log, bulkhead.ErrUnauthenticated)
			return
		}
		ctx := bulkhead.AsMaintenance(r.Context(), "admin api: "+r.Method+" "+r.Pattern)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) jwksDoc(w http.ResponseWriter, r *http.Request) error {
	if s.jwks == nil {
		return errNoRoute
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(s.jwks)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz answers 200 only when the database is reachable as the runtime
// role and the self-check finds nothing. The body names the failing checks
// but carries no connection details.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if s.dbUp != nil && !s.dbUp() {
		s.log.WarnContext(ctx, "readiness: database unreachable", "err", "the embedded PostgreSQL is restarting")
		writeProblem(w, Problem{Type: "https://bulkhead.dev/problems/not-ready", Title: "Database unreachable", Status: http.StatusServiceUnavailable})
		return nil
	}
	if err := s.db.Pool().Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "readiness: database unreachable", "err", err)
		writeProblem(w, Problem{Type: "https://bulkhead.dev/problems/not-ready", Title: "Database unreachable", Status: http.StatusServiceUnavailable})
		return nil
	}
	findings, err := s.selfCheck(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "readiness: self-check failed to run", "err", err)
		writeProblem(w, Problem{Type: "https://bulkhead.dev/problems/not-ready", Title: "Self-check could not run", Status: http.StatusServiceUnavailable})
		return nil
	}
	if len(findings) > 0 {
		checks := make([]string, 0, len(findings))
		for _, f := range findings {
			checks = append(checks, f.Check)
		}
		writeProblem(w, Problem{Type: "https://bulkhead.dev/problems/not-ready", Title: "Isolation self-check failed", Status: http.StatusServiceUnavailable,
			Detail: "failing checks: " + joinUnique(checks)})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (s *Server) selfCheck(ctx context.Context) ([]postgres.Finding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A result is reused for 10 s, but a check that could not run (the
	// database went away mid-check) is not: readiness returns as soon as
	// the database does.
	if s.checkErr == nil && time.Since(s.checkedAt) < 10*time.Second {
		return s.findings, nil
	}
	s.findings, s.checkErr = postgres.SelfCheck(ctx, s.db.Pool())
	s.checkedAt = time.Now()
	return s.findings, s.checkErr
}

func joinUnique(ss []string) string {
	seen := map[string]bool{}
	out := ""
	for _, s := range ss {
		if seen[s] {
			continue
		}
		seen[s] = true
		if out != "" {
			out += ", "
		}
		out += s
	}
	return out
}

// Reasoner is implemented by authentication errors that carry a fixed,
// low-cardinality reason for metrics.
type Reasoner interface{ Reason() string }

func reasonOf(err error) string {
	var r Reasoner
	if errors.As(err, &r) {
		return r.Reason()
	}
	return "rejected"
}

// checkFailedAuthIP returns the client IP, or a 429 error once that IP has
// spent its budget of failed authentications: then no credential is even
// looked at.
func (s *Server) checkFailedAuthIP(w http.ResponseWriter, r *http.Request) (string, error) {
	ip := clientIP(r, s.limits.TrustedProxies)
	if spent, d := s.authFailsIP.exhausted(ip); spent {
		return ip, s.rateLimited(w, "auth_failures_ip", d)
	}
	return ip, nil
}

// rateLimited counts a refusal by limit, sets Retry-After and returns the
// error the one error path answers with 429.
func (s *Server) rateLimited(w http.ResponseWriter, limit string, d time.Duration) error {
	s.metrics.rateLimited.WithLabelValues(limit).Inc()
	retryAfter(w, d)
	return errRateLimited{d}
}
