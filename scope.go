package bulkhead

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Scope is who a request acts as: the tenant it is confined to, the entity
// (user, agent, external principal) inside that tenant, and optionally the
// principal an agent claims to act for. ActingFor is only a claim: the
// database honours it only while a valid delegation row exists.
type Scope struct {
	Tenant    uuid.UUID
	Entity    uuid.UUID // uuid.Nil: no entity (tenant-wide access only)
	ActingFor uuid.UUID // uuid.Nil: acting as itself
}

// Validate reports whether s can be used: a tenant is required, and acting
// for someone needs an entity to do the acting.
// It returns a *ValidationError (ErrInvalid).
func (s Scope) Validate() error {
	switch {
	case s.Tenant == uuid.Nil:
		return Invalid("tenant", "required")
	case s.ActingFor != uuid.Nil && s.Entity == uuid.Nil:
		return Invalid("acting_for", "needs an entity")
	case s.ActingFor != uuid.Nil && s.ActingFor == s.Entity:
		return Invalid("acting_for", "must differ from the entity")
	}
	return nil
}

type scopeKey struct{}

// WithScope returns a copy of ctx carrying s. It is meant for
// authentication middleware: a scope never comes from request bodies or
// query strings. An invalid s is not stored, so the returned context has no
// scope and scoped operations fail closed; the validation error is returned
// for the caller to report.
func WithScope(ctx context.Context, s Scope) (context.Context, error) {
	if err := s.Validate(); err != nil {
		return context.WithValue(ctx, scopeKey{}, nil), err
	}
	return context.WithValue(ctx, scopeKey{}, &s), nil
}

// ScopeFrom returns the scope in ctx and whether there is one.
func ScopeFrom(ctx context.Context) (Scope, bool) {
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	if s == nil {
		return Scope{}, false
	}
	return *s, true
}

// Maintenance marks a context for explicitly cross-tenant work.
type Maintenance struct {
	Reason string
}

type maintenanceKey struct{}

// AsMaintenance marks ctx for cross-tenant maintenance work (tenant
// deletion, migrations of data, benchmarks). The reason is mandatory and is
// recorded by the code that honours it. It panics on an empty reason: that
// is a programmer error, and cross-tenant access must always be greppable.
func AsMaintenance(ctx context.Context, reason string) context.Context {
	if strings.TrimSpace(reason) == "" {
		panic("bulkhead.AsMaintenance: empty reason")
	}
	return context.WithValue(ctx, maintenanceKey{}, &Maintenance{Reason: reason})
}

// MaintenanceFrom returns the maintenance mark in ctx and whether there is one.
func MaintenanceFrom(ctx context.Context) (Maintenance, bool) {
	m, _ := ctx.Value(maintenanceKey{}).(*Maintenance)
	if m == nil {
		return Maintenance{}, false
	}
	return *m, true
}

// ParseID parses a UUID from untrusted input, naming field in the error.
// It returns a *ValidationError (ErrInvalid).
func ParseID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, Invalid(field, fmt.Sprintf("not a UUID: %q", truncate(s, 40)))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
