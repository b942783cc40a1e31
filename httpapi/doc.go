// Package httpapi is bulkhead's HTTP surface. Every error leaves through one
// function (writeError) as an RFC 9457 application/problem+json body whose
// status comes from one table; 5xx bodies carry a generic title only and
// the full error goes to the log.
//
// Every authenticated request carries its credential's postgres.Access, so
// each of its transactions checks in the database that the credential is
// still live (tenant, entity, session, API key); a response that no
// transaction preceded is held back until the same check has passed (one
// round trip), and replaced by a 401 if it fails.
//
// Under overload (admission.go), at most Admission.MaxInFlight API requests
// do work at once and at most Admission.MaxQueue wait, each for at most
// Admission.QueueTimeout; every other request is answered at once with 503
// and Retry-After, before authentication. Probes and /metrics are never
// queued.
package httpapi
