// Package adopt moves an existing PostgreSQL database whose application
// filters tenants itself (WHERE server_id = ...) to isolation enforced by
// row-level security, online and reversibly, in per-table phases:
//
//	original -> backfilled -> shadow -> enforced
//
// and back (Rollback goes one phase back, or to the original).
//
// Guarantees:
//
//   - A reviewed Plan drives everything; Inspect proposes one and never
//     guesses an ambiguous table (it is left with Decide set, and every later
//     phase refuses a plan that still has one).
//   - Each table's phase is recorded in the database (schema bulkhead_adopt),
//     written in the same transaction as the change it describes, so Status
//     is exact after a crash. Every DDL step is one transaction with a
//     lock_timeout; backfill is batched by primary-key range and resumable.
//   - Backfill fills the tenant column only from explicit rules (a constant,
//     a parent row through a key, an SQL expression); rows no rule covers are
//     reported, never guessed; a row two rules give different tenants, or a
//     rule that matches no row, stops it before anything is written.
//   - Shadow blocks nothing. Writes strict mode would refuse (or not reach)
//     are recorded by WHEN-guarded AFTER ROW triggers, with no false
//     positive: table, operation, the caller's tenant, a query fingerprint
//     and the row's key, never its contents; exact up to a per-transaction
//     cap, then sampled with weights (bounded cost and storage in a storm,
//     counts marked approximate). Reads are compared exactly by sampled
//     differential replay: the statement runs again in shadow, strict and
//     shadow mode inside a savepoint, rolled back; rows both shadow runs
//     returned and the strict run did not are recorded. Proxy does it for
//     any application that connects through it; Replayer for a Go
//     application that calls it.
//   - Rollback restores what adopt changed exactly: policies, RLS flags,
//     grants, the runtime role it created, defaults, constraints and added
//     columns; values it backfilled into existing columns are set back to
//     NULL, each while it is still the value backfill wrote. Other data is
//     not touched (checksums show it).
//
// Only layer 1 (tenant) isolation is enforced: the rls package's other
// Kinds call helpers over bulkhead's own tables (participants, entities,
// delegations) and don't map onto a foreign schema; Inspect notes the
// tables where a layer-2 rule would apply.
package adopt
