package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/retrieval"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type     string                  `json:"type"`
	Title    string                  `json:"title"`
	Status   int                     `json:"status"`
	Detail   string                  `json:"detail,omitempty"`
	Problems []bulkhead.FieldProblem `json:"problems,omitempty"`
}

// problems maps bulkhead's error set to HTTP, in one table.
var problems = []struct {
	err    error
	status int
	slug   string
	title  string
}{
	{bulkhead.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "Authentication required"},
	{bulkhead.ErrForbidden, http.StatusForbidden, "forbidden", "Forbidden"},
	{bulkhead.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{bulkhead.ErrConflict, http.StatusConflict, "conflict", "Conflict"},
	{bulkhead.ErrInvalid, http.StatusBadRequest, "invalid", "Invalid input"},
	// Before ErrUnavailable: a full disk under the vector store is also
	// "the backend failed", but the precise answer is that the write was
	// refused for lack of space. 507, not 503 + Retry-After: space comes
	// back when an operator frees it, not in a few seconds, so inviting an
	// automatic retry would only repeat the failure; a distinct status is
	// also a distinct metric label (code="507") to alert on, and readiness
	// stays 200 because reads keep working.
	{bulkhead.ErrNoSpace, http.StatusInsufficientStorage, "insufficient-storage", "Insufficient storage: the write was not stored"},
	{bulkhead.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "Service unavailable, retry later"},
	// Damaged stored data is not the request's fault, but 500 would say
	// "unexpected" and invite retries: 409 says the resource's state
	// conflicts with the request (its owner can delete or replace it).
	{bulkhead.ErrDamaged, http.StatusConflict, "damaged-data", "Stored data failed its integrity check"},
}

// problemFor returns the problem for err; anything unknown is a 500 with a
// generic title.
func problemFor(err error) Problem {
	var rl errRateLimited
	var ov errOverloaded
	switch {
	case errors.As(err, &ov):
		return Problem{Type: "https://bulkhead.dev/problems/overloaded", Title: "Server busy, retry later", Status: http.StatusServiceUnavailable}
	case errors.As(err, &rl):
		return Problem{Type: "https://bulkhead.dev/problems/rate-limited", Title: "Too many requests", Status: http.StatusTooManyRequests}
	case errors.Is(err, errTooLarge):
		return Problem{Type: "https://bulkhead.dev/problems/too-large", Title: "Request body too large", Status: http.StatusRequestEntityTooLarge}
	case errors.Is(err, errUnsupportedType):
		return Problem{Type: "https://bulkhead.dev/problems/unsupported-media-type", Title: "Request body must be application/json", Status: http.StatusUnsupportedMediaType}
	case errors.Is(err, errMethod):
		return Problem{Type: "about:blank", Title: "Method not allowed", Status: http.StatusMethodNotAllowed}
	case errors.Is(err, errNoRoute):
		return Problem{Type: "about:blank", Title: "Not found", Status: http.StatusNotFound}
	// Before the table: both also match bulkhead.ErrUnavailable. An
	// unusable answer (wrong dimension) is the endpoint's or the
	// configuration's fault and retrying won't fix it: 502, no Retry-After.
	case errors.Is(err, retrieval.ErrModelResponse):
		return Problem{Type: "https://bulkhead.dev/problems/bad-model-response", Title: "The model endpoint returned an unusable answer", Status: http.StatusBadGateway}
	case errors.Is(err, retrieval.ErrModel):
		return Problem{Type: "https://bulkhead.dev/problems/model-unavailable", Title: "The model endpoint failed or did not answer in time, retry later", Status: http.StatusServiceUnavailable}
	}
	for _, p := range problems {
		if errors.Is(err, p.err) {
			pr := Problem{Type: "https://bulkhead.dev/problems/" + p.slug, Title: p.title, Status: p.status}
			var ve *bulkhead.ValidationError
			if errors.As(err, &ve) {
				pr.Problems = ve.Problems
			}
			return pr
		}
	}
	return Problem{Type: "about:blank", Title: http.StatusText(http.StatusInternalServerError), Status: http.StatusInternalServerError}
}

// writeError sends err as problem+json, logging it in full when it is a 5xx.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := problemFor(err)
	if p.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "5") // admission sets 1: a slot frees in well under a second
	}
	switch {
	case p.Status == http.StatusServiceUnavailable:
		// A dependency is down (PostgreSQL restarting, a vector store or
		// model unreachable): every request fails alike, thousands a second
		// under load. One line a second, counting the others, says as much.
		if ok, n := unavailableLog.allow(time.Now()); ok {
			log.WarnContext(r.Context(), "request failed", "request_id", requestID(r.Context()), "status", p.Status, "method", r.Method, "path", r.URL.Path, "err", err, "similar_not_logged", n)
		}
	case p.Status == http.StatusInsufficientStorage:
		// A full disk fails every write alike, and the log may share that
		// disk: one line a second, at ERROR (an operator must act).
		if ok, n := noSpaceLog.allow(time.Now()); ok {
			log.ErrorContext(r.Context(), "request failed: no space left for the write", "status", p.Status, "method", r.Method, "path", r.URL.Path, "err", err, "similar_not_logged", n)
		}
	case p.Status >= 500:
		log.ErrorContext(r.Context(), "request failed", "request_id", requestID(r.Context()), "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeProblem(w, p)
}

// unavailableLog thins the log lines of 503 answers to one a second.
var unavailableLog = &logSampler{every: time.Second}

// noSpaceLog thins the log lines of 507 answers to one a second.
var noSpaceLog = &logSampler{every: time.Second}

// logSampler lets one event through per interval and counts the others.
// It is safe for concurrent use.
type logSampler struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int64
}

// allow reports whether an event at now may be logged and, if so, how
// many were held back since the last one that was.
func (l *logSampler) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

func writeProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
