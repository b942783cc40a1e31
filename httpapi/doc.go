// Package httpapi is bulkhead's HTTP surface. Every error leaves through one
// function (writeError) as an RFC 9457 application/problem+json body whose
// status comes from one table; 5xx bodies carry a generic title only and
// the full error goes to the log.
package httpapi
