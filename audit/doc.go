// Package audit checks a PostgreSQL database's tenant isolation from its
// catalogs: row-level security coverage, policy expressions (read from
// PostgreSQL's own parse trees, so an unqualified column captured by a
// sub-query is seen as the self-comparison it is), roles, grants,
// functions, views, rules, triggers, publications, constraints, context
// settings and the server's minor version against published RLS CVEs.
//
// Guarantees:
//   - Read-only: Run works in one READ ONLY transaction that it always
//     rolls back; it never writes, whatever role it runs as.
//   - Set-based: a fixed number of catalog queries whatever the number of
//     tables or policies (1,000 tables and 5,000 policies in about 2 s
//     here), never one query per table.
//   - Honest about what it could not see: a catalog the role can't read
//     marks the checks that need it as Skipped (Report.Incomplete), it
//     does not silently pass them.
//   - Works on any schema: tenant tables are discovered from the tenant
//     column and from existing row-level security and policies.
//
// Checks lists every check; docs/AUDIT.md is generated from it (WriteCatalog).
package audit
