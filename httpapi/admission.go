package httpapi

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// Admission bounds the API requests doing work at once (issue 17,
// scenario 7: overload). A request first takes one of MaxInFlight slots;
// when none is free it waits, in arrival order, at most QueueTimeout and
// behind at most MaxQueue others. A request that finds the queue full, or
// whose wait runs out, is answered at once with 503 problem+json
// (type .../overloaded) and Retry-After: 1, before any credential is looked
// at or any connection acquired. So under any offered load, the work in
// progress is at most MaxInFlight requests, the waiting at most MaxQueue,
// and no request waits for a slot longer than QueueTimeout.
//
// 503, not 429: 429 tells one client it exceeded its own quota (the
// per-entity rate limits answer it); here the server as a whole is full,
// whoever asks, which is what 503 says, and what load balancers and client
// libraries retry elsewhere or later.
//
// Not admitted (never queued behind API traffic): /healthz, /readyz,
// /metrics, /openapi.json and /.well-known/jwks.json, and unknown routes
// (404, no work). A room stream holds its slot while it authenticates,
// checks participation and subscribes, and gives it back when the
// connection is upgraded (hijacked): a live stream does not count, it is
// bounded by StreamOptions.MaxConnsPerEntity and its reads by the pool.
//
// The zero value gives the defaults.
type Admission struct {
	// MaxInFlight is the number of API requests doing work at once. Zero:
	// twice the runtime pool's maximum connections (at least 4); a request
	// often spends part of its time outside the database (JSON, JWT
	// checks, embedding), so a few more than the pool keep it busy.
	MaxInFlight int
	// MaxQueue is the number of requests that may wait for a slot. Zero:
	// 4 × MaxInFlight. Negative: none wait (503 as soon as all slots are
	// taken).
	MaxQueue int
	// QueueTimeout bounds a request's wait for a slot. Zero: 1 s.
	QueueTimeout time.Duration
}

func (a Admission) withDefaults(poolConns int32) Admission {
	if a.MaxInFlight <= 0 {
		a.MaxInFlight = max(4, 2*int(poolConns))
	}
	if a.MaxQueue == 0 {
		a.MaxQueue = 4 * a.MaxInFlight
	}
	if a.MaxQueue < 0 {
		a.MaxQueue = 0
	}
	if a.QueueTimeout <= 0 {
		a.QueueTimeout = time.Second
	}
	return a
}

// admission is the slot pool. It is safe for concurrent use.
type admission struct {
	cfg      Admission
	sem      *semaphore.Weighted // FIFO: TryAcquire fails while others wait
	inFlight atomic.Int64
	queued   atomic.Int64
	// High-water marks since start: a scrape every 15 s misses a queue
	// that filled and drained between two scrapes.
	inFlightPeak atomic.Int64
	queuedPeak   atomic.Int64
	wait         prometheus.Histogram
	rejected     *prometheus.CounterVec
}

// Reasons a request is refused admission (the rejected counter's label).
const (
	rejectQueueFull    = "queue_full"
	rejectQueueTimeout = "queue_timeout"
	rejectClientGone   = "client_gone"
)

func newAdmission(cfg Admission) *admission {
	a := &admission{cfg: cfg, sem: semaphore.NewWeighted(int64(cfg.MaxInFlight)),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bulkhead_http_queue_wait_seconds",
			Help:    "Time API requests waited for an admission slot (admitted or not; 0 when one was free).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_http_rejected_total",
			Help: "API requests refused admission with 503 (server full), by reason: queue_full, queue_timeout, client_gone."}, []string{"reason"}),
	}
	for _, r := range []string{rejectQueueFull, rejectQueueTimeout, rejectClientGone} {
		a.rejected.WithLabelValues(r) // export zeros: an operator's alert sees the series before the first refusal
	}
	return a
}

func (a *admission) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.wait, a.rejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_http_in_flight", Help: "API requests holding an admission slot."},
			func() float64 { return float64(a.inFlight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_http_queued", Help: "API requests waiting for an admission slot."},
			func() float64 { return float64(a.queued.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_http_in_flight_peak", Help: "Most API requests holding an admission slot at once since start."},
			func() float64 { return float64(a.inFlightPeak.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_http_queued_peak", Help: "Most API requests waiting for an admission slot at once since start."},
			func() float64 { return float64(a.queuedPeak.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_http_max_in_flight", Help: "Admission slots (--max-in-flight)."},
			func() float64 { return float64(a.cfg.MaxInFlight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_http_max_queue", Help: "Requests that may wait for a slot (--max-queue)."},
			func() float64 { return float64(a.cfg.MaxQueue) }),
	}
}

// errOverloaded answers 503 with Retry-After: 1 (problem.go).
type errOverloaded struct{ reason string }

func (e errOverloaded) Error() string { return "overloaded: " + e.reason }

// acquire takes a slot, waiting as Admission says. release gives it back
// and may be called more than once.
func (a *admission) acquire(ctx context.Context) (release func(), err error) {
	start := time.Now()
	if !a.sem.TryAcquire(1) {
		if !a.enqueue() {
			a.wait.Observe(0)
			a.rejected.WithLabelValues(rejectQueueFull).Inc()
			return nil, errOverloaded{rejectQueueFull}
		}
		wctx, cancel := context.WithTimeout(ctx, a.cfg.QueueTimeout)
		err := a.sem.Acquire(wctx, 1)
		cancel()
		a.queued.Add(-1)
		if err != nil {
			a.wait.Observe(time.Since(start).Seconds())
			reason := rejectQueueTimeout
			if ctx.Err() != nil {
				reason = rejectClientGone
			}
			a.rejected.WithLabelValues(reason).Inc()
			return nil, errOverloaded{reason}
		}
	}
	a.wait.Observe(time.Since(start).Seconds())
	raise(&a.inFlightPeak, a.inFlight.Add(1))
	var once sync.Once
	return func() {
		once.Do(func() {
			a.inFlight.Add(-1)
			a.sem.Release(1)
		})
	}, nil
}

// enqueue takes a place in the queue if one is free. The count never
// exceeds MaxQueue, not even for an instant (the gauge reads it).
func (a *admission) enqueue() bool {
	for {
		n := a.queued.Load()
		if n >= int64(a.cfg.MaxQueue) {
			return false
		}
		if a.queued.CompareAndSwap(n, n+1) {
			raise(&a.queuedPeak, n+1)
			return true
		}
	}
}

// raise sets peak to v if v is higher.
func raise(peak *atomic.Int64, v int64) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// admit runs next only once it holds a slot, and gives the slot back when
// next returns or hijacks the connection (a WebSocket upgrade).
func (s *Server) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, err := s.adm.acquire(r.Context())
		if err != nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, r, s.log, err)
			return
		}
		defer release()
		next.ServeHTTP(&admittedWriter{ResponseWriter: w, release: release}, r)
	})
}

// unadmitted are the routes never queued behind API traffic: probes,
// metrics and documents that touch no tenant data.
var unadmitted = map[string]bool{
	"/healthz":               true,
	"/readyz":                true,
	"/openapi.json":          true,
	"/.well-known/jwks.json": true,
}

// admittedWriter gives the request's slot back when the connection is
// hijacked: the handler goes on serving a long-lived stream that no longer
// counts as a request in flight.
type admittedWriter struct {
	http.ResponseWriter
	release func()
}

// Hijack implements http.Hijacker (the WebSocket library finds it first).
func (w *admittedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.release()
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *admittedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
