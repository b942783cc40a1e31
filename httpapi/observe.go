package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics. Labels are route patterns,
// methods, status codes and fixed reasons: never ids, tenants or tokens.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	authFails   *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_http_requests_total", Help: "HTTP requests by route pattern, method and status."}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bulkhead_http_request_duration_seconds", Help: "HTTP request latency by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route", "method"}),
		authFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_auth_failures_total", Help: "Rejected credentials by reason."}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_rate_limited_total", Help: "Requests refused with 429, by limit."}, []string{"limit"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.authFails, m.rateLimited, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pool := s.db.Pool()
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("bulkhead_db_pool_connections", "Open connections of the runtime role's pool.", func() float64 { return float64(pool.Stat().TotalConns()) })
	gauge("bulkhead_db_pool_acquired", "Connections in use.", func() float64 { return float64(pool.Stat().AcquiredConns()) })
	gauge("bulkhead_db_pool_idle", "Idle connections.", func() float64 { return float64(pool.Stat().IdleConns()) })
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_db_pool_acquires_total", Help: "Connection acquisitions."},
		func() float64 { return float64(pool.Stat().AcquireCount()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_db_acquire_timeouts_total",
		Help: "Waits for a pool connection that ran out (--db-acquire-timeout), each answered 503."},
		func() float64 { return float64(s.db.AcquireTimeouts()) }))
	for _, c := range postgres.SealedColumns {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_damaged_values_total",
			Help:        "Stored values refused as damaged: sealed values that do not open, plaintext where a sealed value belongs.",
			ConstLabels: prometheus.Labels{"table": c.Table, "column": c.Column}},
			func() float64 { return float64(s.db.DamagedValues(c)) }))
	}
	if kr := s.db.Keyring(); kr != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_keyset_cache_hits_total", Help: "Unwrapped-keyset cache hits."},
			func() float64 { h, _ := kr.CacheStats(); return float64(h) }))
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bulkhead_keyset_cache_misses_total", Help: "Unwrapped-keyset cache misses."},
			func() float64 { _, ms := kr.CacheStats(); return float64(ms) }))
	}
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// statusWriter remembers the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

type requestIDKey struct{}

// requestID is the id observe gave the request of ctx ("" outside one).
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// observe gives every request an id (a well-formed incoming X-Request-Id,
// or a new one), counts and times it by route pattern, and writes one
// access-log line without headers, bodies or credentials.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDRE.MatchString(id) {
			b := make([]byte, 12)
			rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		d := time.Since(start)
		method := methodLabel(r.Method)
		s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(sw.code)).Inc()
		s.metrics.latency.WithLabelValues(route, method).Observe(d.Seconds())
		s.log.InfoContext(r.Context(), "request", "request_id", id, "method", r.Method, "route", route, "status", sw.code,
			"duration_ms", float64(d.Microseconds())/1000, "remote", r.RemoteAddr)
	})
}

// methodLabel bounds the method label: a client can send any token as a
// method, and each new one would otherwise add series to /metrics.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
