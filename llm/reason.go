package llm

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// Sentinels Reason classifies by; each error they mark also matches
// ErrUnavailable.
var (
	errAttemptTimeout = errors.New("no answer within")
	errDeadline       = errors.New("no answer within the call deadline")
	errBadResponse    = errors.New("malformed response")
)

// Reason labels: the fixed, low-cardinality categories of failure that
// Reason returns, for metrics and logs.
const (
	ReasonTimeout     = "timeout"      // an attempt got no (complete) answer within Timeout, and no retry was left
	ReasonDeadline    = "deadline"     // the call's Deadline passed (attempts, backoff and Retry-After included)
	ReasonRefused     = "refused"      // the connection was refused (nothing listens)
	ReasonNetwork     = "network"      // another transport error (DNS, reset, TLS)
	ReasonStatus429   = "status_429"   // the endpoint answered 429, after retries
	ReasonStatus4xx   = "status_4xx"   // another error status below 500 (bad key, rejected input, redirect)
	ReasonStatus5xx   = "status_5xx"   // the endpoint answered 5xx, after retries
	ReasonBadResponse = "bad_response" // a 2xx answer that breaks the protocol: not JSON, wrong count, wrong dimension, zero or non-finite vector, empty answer, oversized
	ReasonCanceled    = "canceled"     // the caller's context ended (client gone, its own deadline)
	ReasonOther       = "other"        // an error this package did not make
)

// Reasons returns every label Reason can return, for pre-registering
// metric series.
func Reasons() []string {
	return []string{ReasonTimeout, ReasonDeadline, ReasonRefused, ReasonNetwork, ReasonStatus429,
		ReasonStatus4xx, ReasonStatus5xx, ReasonBadResponse, ReasonCanceled, ReasonOther}
}

// Reason classifies an error of OpenAIEmbedder.Embed or OpenAIChat.Complete
// (or of the Embedder and Chat wrappers of this package); "" for nil. When
// the caller's context ended it is ReasonCanceled, whatever the last
// attempt met.
func Reason(err error) string {
	var se *StatusError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errDeadline):
		return ReasonDeadline
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return ReasonCanceled
	case errors.Is(err, errBadResponse):
		return ReasonBadResponse
	case errors.As(err, &se):
		switch {
		case se.StatusCode == 429:
			return ReasonStatus429
		case se.StatusCode >= 500:
			return ReasonStatus5xx
		}
		return ReasonStatus4xx
	case errors.Is(err, errAttemptTimeout):
		return ReasonTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, ErrUnavailable):
		return ReasonNetwork
	}
	return ReasonOther
}

// Observer is told about every call of an observed Embedder or Chat: how
// long it took and its error (nil on success). It must be safe for
// concurrent use and quick.
type Observer func(took time.Duration, err error)

// ObserveEmbedder returns e with every Embed call reported to obs. Model
// and Dimension are e's.
func ObserveEmbedder(e Embedder, obs Observer) Embedder { return observedEmbedder{e, obs} }

type observedEmbedder struct {
	Embedder
	obs Observer
}

func (o observedEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	start := time.Now()
	v, err := o.Embedder.Embed(ctx, texts)
	o.obs(time.Since(start), err)
	return v, err
}

// ObserveChat returns c with every Complete call reported to obs.
func ObserveChat(c Chat, obs Observer) Chat { return observedChat{c, obs} }

type observedChat struct {
	Chat
	obs Observer
}

func (o observedChat) Complete(ctx context.Context, msgs []Message) (string, error) {
	start := time.Now()
	s, err := o.Chat.Complete(ctx, msgs)
	o.obs(time.Since(start), err)
	return s, err
}
