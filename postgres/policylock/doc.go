// Package policylock is the policy gate for code review: it records the
// isolation rules a database really enforces in a reviewed file
// (policies.lock at the repository root) and finds every difference from it.
//
// A Lock holds, for every table with row-level security in any non-system
// schema: its RLS and FORCE flags and owner, its policies as PostgreSQL
// deparses them (pg_policies, so equal text means equal parse trees), the
// grants on tables, columns and schemas, the SECURITY DEFINER functions
// (owner, pinned settings, body hash, who may execute them) and, for
// bulkhead's own schema, the visibility matrix: every caller relation of
// the reference model's fixture (package rls/model) running every statement
// shape of the matrix (SELECT, INSERT, UPDATE of a harmless column, UPDATE
// that moves identity or authority, DELETE) as the runtime role, observed on
// real PostgreSQL inside a transaction that is always rolled back.
//
// The matrix is observed, not computed: a policy edited in a migration
// changes what PostgreSQL does, so it changes the matrix even when the
// generator's declarations did not move. Compare shows the change as
// "memories / INSERT / dave [r2 member, not in r1, owns s2]: room_id=r1
// author_id=dave: refused → allowed". The package's tests prove that the
// observed matrix of bulkhead's migrations is the model's matrix.
//
// Reading a lock never writes: catalog queries run in a READ ONLY
// transaction, and the matrix's fixture rows and statements run in one
// transaction that is rolled back whatever happens.
package policylock
