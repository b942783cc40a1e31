package main

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/prometheus/client_golang/prometheus"
)

// depMetrics count and time the calls serve makes to the dependencies it
// waits on over the network: the embedding and chat endpoints, and
// external issuers' JWKS and discovery documents. Labels are fixed sets:
// the dependency and a reason from llm.Reasons or netReasons, never a URL,
// tenant or issuer.
type depMetrics struct {
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Dependency label values.
const (
	depEmbedder  = "embedder"
	depChat      = "chat"
	depJWKS      = "jwks"
	depDiscovery = "oidc_discovery"
)

// reasonStatus: a JWKS endpoint answered an error status.
const reasonStatus = "status"

// netReasons are the reasons of a failed JWKS or discovery fetch.
var netReasons = []string{llm.ReasonTimeout, llm.ReasonRefused, llm.ReasonNetwork, reasonStatus, llm.ReasonOther}

func newDepMetrics() *depMetrics {
	m := &depMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_dependency_failures_total",
			Help: "Failed calls to a network dependency (embedder, chat, jwks, oidc_discovery) by reason (timeout, deadline, refused, network, status_429, status_4xx, status_5xx, bad_response, canceled, other; for jwks and oidc_discovery: timeout, refused, network, status, other). A model call counts once, after its retries."},
			[]string{"dependency", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bulkhead_dependency_duration_seconds",
			Help:    "Duration of model calls (embedder, chat), retries and backoff included, by outcome (ok, error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 45, 60}},
			[]string{"dependency", "outcome"}),
	}
	// Pre-register every series: a rate() over a series that appears only
	// at the first failure misses that failure.
	for _, dep := range []string{depEmbedder, depChat} {
		for _, r := range llm.Reasons() {
			m.failures.WithLabelValues(dep, r)
		}
		m.duration.WithLabelValues(dep, "ok")
		m.duration.WithLabelValues(dep, "error")
	}
	for _, dep := range []string{depJWKS, depDiscovery} {
		for _, r := range netReasons {
			m.failures.WithLabelValues(dep, r)
		}
	}
	return m
}

func (m *depMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.failures, m.duration}
}

// model returns the llm.Observer of dependency dep.
func (m *depMetrics) model(dep string) llm.Observer {
	return func(took time.Duration, err error) {
		outcome := "ok"
		if err != nil {
			outcome = "error"
			m.failures.WithLabelValues(dep, llm.Reason(err)).Inc()
		}
		m.duration.WithLabelValues(dep, outcome).Observe(took.Seconds())
	}
}

// fetchFailed is auth.Options.FetchFailed.
func (m *depMetrics) fetchFailed(what string, err error) {
	dep := depJWKS
	if what == "discovery" {
		dep = depDiscovery
	}
	m.failures.WithLabelValues(dep, netReason(err)).Inc()
}

// netReason classifies a failed HTTP fetch.
func netReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return llm.ReasonTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return llm.ReasonRefused
	case errors.Is(err, jwkset.ErrInvalidHTTPStatusCode):
		return reasonStatus
	case errors.As(err, &ne):
		return llm.ReasonNetwork
	}
	return llm.ReasonOther
}
