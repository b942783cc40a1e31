// Package retrieval is bulkhead's knowledge layer: it ingests documents
// into PostgreSQL (chunks, full-text index, row-level security) and into
// the tenant's own vector collection, answers hybrid queries, and builds
// RAG answers from what the caller may see, and nothing else.
//
// Guarantees:
//
//   - The vector collection is always the one the vector.Router mints from
//     the authenticated scope, at the generation recorded in the tenant's
//     own row; no collection name ever comes from input.
//   - Every vector hit is read back through postgres.DB.Passages in the
//     caller's scope before it is used: row-level security (document
//     visibility: private, room, tenant) decides, and a row of another
//     tenant fails the call. A hit that is not visible is dropped. So a
//     vector layer that returned another tenant's points, or this tenant's
//     points the caller may not see, contributes nothing.
//   - A failed backend is an error (bulkhead.ErrUnavailable, 503), never an
//     empty result: a vector store that is down, a collection that is
//     missing for a tenant that exists (ErrNotProvisioned), an embedding or
//     chat endpoint that does not answer.
//   - An answer's prompt holds the question and the passages returned by
//     Query for the caller, nothing else; with no passage the model is not
//     called at all and the answer says there is no context.
//   - Collections are created only by Provision and Reembed (control
//     plane), never on write.
//
// Ingestion stores vectors first and rows second: a crash in between
// leaves vectors with no row, which no query can use (nothing reads them
// back) and Reconcile removes. Deleting a document removes its vectors in
// the same transaction as its rows (a failure rolls both back).
package retrieval
