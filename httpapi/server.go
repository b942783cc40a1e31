package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
)

// Server serves bulkhead's HTTP API. It is safe for concurrent use.
type Server struct {
	db  *postgres.DB
	log *slog.Logger
	mux *http.ServeMux

	mu        sync.Mutex
	checkedAt time.Time
	findings  []postgres.Finding
	checkErr  error
}

// NewServer returns the HTTP handler over db. findings is the start-up
// self-check's result; readiness re-runs the check at most every 10 seconds.
func NewServer(db *postgres.DB, log *slog.Logger, findings []postgres.Finding) *Server {
	s := &Server{db: db, log: log, mux: http.NewServeMux(), findings: findings, checkedAt: time.Now()}
	s.mux.Handle("GET /healthz", s.handle(s.healthz))
	s.mux.Handle("GET /readyz", s.handle(s.readyz))
	s.mux.Handle("/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return errNoRoute
	}))
	return s
}

var errNoRoute = errors.New("no such route")

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handle adapts an error-returning handler: every error goes through writeError.
func (s *Server) handle(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			if errors.Is(err, errNoRoute) {
				writeProblem(w, Problem{Type: "about:blank", Title: "Not found", Status: http.StatusNotFound})
				return
			}
			writeError(w, r, s.log, err)
		}
	})
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
	if time.Since(s.checkedAt) < 10*time.Second {
		return s.findings, s.checkErr
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
