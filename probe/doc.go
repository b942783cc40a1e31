// Package probe is bulkhead's active leak prober: on a live PostgreSQL
// database it proves, by trying, what a catalog audit can only suspect.
//
// For every tenant table (a table with row-level security, or with the
// tenant column), inside transactions that are always rolled back, it
// writes canary rows for two tenants A and B (and the parent rows their
// foreign keys need), then, as the runtime role, tries to reach A's canary:
// as tenant B, with no context, with a malformed context and with a forged
// one (for bulkhead's signed context: a token signed with another key, and
// setting the context variables directly). The attempts are reads by scan
// and by id, blind UPDATE and DELETE, writing a row into A, moving a row to
// another tenant or under another tenant's parent, unique-constraint and
// foreign-key existence oracles (plain INSERT and ON CONFLICT), COPY in and
// out, and row counts through EXPLAIN ANALYZE. Each success is a Finding
// with a one-line reproduction.
//
// Guarantees: nothing is ever committed. In normal mode every transaction
// ends with ROLLBACK, whatever happens; in read-only mode every transaction
// is READ ONLY (PostgreSQL refuses any write) and no canary is written: the
// probe then only reads, and reports rows visible to a fresh tenant that has
// none, to no context, to a malformed and to a forged context, and
// statistics of the tenant column readable by the runtime role. Every probe
// transaction sets lock_timeout (2 s) and statement_timeout (60 s), so it
// never waits long behind the application. Sequences consumed by canary
// inserts are not rolled back (PostgreSQL never rolls them back); triggers
// fire inside the rolled-back transaction (NOTIFY is transactional and is
// not sent). A table the probe can't handle (no tenant column, a
// canary that violates a constraint) is reported as skipped with the
// reason, never guessed. Run takes one connection and is not safe for
// concurrent use of that connection.
package probe
