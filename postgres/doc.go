// Package postgres is everything in bulkhead that talks to PostgreSQL: role
// and database bootstrap, migrations, the scoped transaction helpers, the
// repositories over the core schema, and the start-up self-check.
//
// Guarantees:
//   - The server connects as the runtime role (Runtime), which owns nothing,
//     is NOSUPERUSER NOBYPASSRLS NOINHERIT and holds DML grants only; every
//     tenant table is ENABLE + FORCE ROW LEVEL SECURITY with the policies of
//     the one generator (package rls).
//   - Tenant, entity and acting-for context is entered with
//     bulkhead.enter(token), a token signed with the ContextKey that the
//     bulkhead_context extension verifies: SQL running as the runtime role
//     can't set the context settings itself (they are superuser-only). The
//     settings are transaction-local, so they can't outlive their
//     transaction on a pooled connection (pgxpool or PgBouncer in
//     transaction mode). The token travels in the same round trip as the
//     first statement. No scope in the context: ErrUnauthenticated before
//     any SQL.
//   - Driver errors are translated once, here: no rows -> ErrNotFound, unique
//     violation -> ErrConflict, RLS WITH CHECK refusal -> ErrForbidden,
//     foreign key violation -> ErrNotFound (the referenced row is missing or
//     hidden; the two are indistinguishable on purpose).
//   - A context carrying an Access (WithAccess) is checked in every
//     transaction InScope and Read open with it, in the same batch as the
//     context (no extra round trip): a disabled or missing tenant or entity,
//     a revoked session or API key, or a session-less token older than the
//     entity's tokens_not_before is ErrUnauthenticated before any statement
//     of the transaction runs (SQLSTATE 28000 from bulkhead.access_check).
//   - Cross-tenant work runs only through InMaintenance, as the maintenance
//     role, with a reason that is logged.
package postgres
