// Package bulkhead holds the domain types of the bulkhead data plane, its
// sentinel errors and the typed context accessors that carry a caller's
// Scope (tenant, entity, acting-for principal) through a request.
//
// Guarantees:
//   - A Scope enters a context only through WithScope, which validates it; the
//     accessors never invent one. Code that finds no scope must fail closed
//     (the postgres package returns ErrUnauthenticated before sending SQL).
//   - Cross-tenant work is explicit: it needs a context marked by
//     AsMaintenance with a non-empty reason, which is logged and audited by
//     the code that honours it.
//
// The root package imports no subpackage; subpackages import it.
package bulkhead
