// Package qdrant is the Qdrant backend of vector.Store: one Qdrant
// collection per tenant and generation, over gRPC
// (github.com/qdrant/go-client).
//
// Guarantees:
//   - A collection's name is CollectionName(c): "bulkhead_", the 32 hex
//     digits of the tenant UUID, "_g" and the generation in decimal, all
//     from the vector.Collection, which only a vector.Router mints from an
//     authenticated scope. No name is ever taken from request input, and
//     every method calls vector.CheckAccess before it touches the network,
//     so a reference used in another tenant's scope (at any generation)
//     fails with vector.ErrForbidden without a request.
//   - Each generation is its own Qdrant collection, with its own
//     dimension, points and count; creating or dropping one never touches
//     another. A generation never created is vector.ErrNotFound.
//   - Writes never create a collection: Upsert reads the collection's
//     dimension first and a missing collection is vector.ErrNotFound (and
//     Qdrant itself refuses an upsert into a missing collection). Only
//     CreateCollection creates, idempotently for the same dimension.
//   - Every point carries its tenant in its payload. Search, Scroll and
//     Delete re-check it on every point Qdrant returns; a point of another
//     tenant fails the call with vector.ErrUnavailable (defence in depth
//     behind the Router's own check).
//   - Errors: gRPC NotFound → vector.ErrNotFound; PermissionDenied and
//     Unauthenticated → vector.ErrForbidden; a dimension complaint →
//     vector.ErrDimension; Unavailable, DeadlineExceeded, connection
//     failures and anything unexpected → vector.ErrUnavailable, never an
//     empty result. Every call is bounded by Config.Timeout (default 5 s).
//   - Similarity is cosine, best first, ties broken by ascending id (the
//     ordering is done client-side: Qdrant does not order equal scores).
//     Point ids are UUIDs, which Qdrant stores natively.
//
// Layout: each collection has two named vectors of the same dimension:
// "cos" (Cosine distance, which Qdrant normalises on write; searched) and
// "raw" (Dot distance, stored exactly as given, on disk, no HNSW graph;
// returned by Scroll, so Router.Move's checksum over (id, vector, payload)
// matches across backends). The caller's payload is a nested object under
// "bulkhead_payload", the tenant is "bulkhead_tenant". Storing the vector
// twice costs memory and disk; it is what keeps vectors bit-exact.
//
// Credentials: Config.APIKey is sent with every request, or, with
// Config.TokenFunc, a per-request token for the collection the call uses
// (one generation of one tenant: TokenFunc receives its CollectionName).
// Qdrant's JWT RBAC (service.jwt_rbac) can scope a token to one
// collection, so a leaked or misrouted request with a tenant's token
// cannot reach another tenant's collection: Qdrant answers
// PermissionDenied, reported as vector.ErrForbidden. A token scoped that
// way also covers a single generation; a re-embedding job that reads
// generation N and writes N+1 gets one token for each. Send keys over TLS
// (Config.UseTLS).
//
// Limits, not hidden:
//   - Search is approximate once Qdrant builds an HNSW index for a segment
//     (small collections are scanned exactly), unless Config.ExactSearch.
//   - Upsert sends its points in one request after validating all of
//     them; Qdrant applies a request as one operation, but on
//     ErrUnavailable (timeout, lost connection) it may or may not have been
//     applied: retry. Delete checks that every id exists, then deletes:
//     two requests, not a transaction.
//   - Stats.Bytes is an estimate from the point count and dimension.
//
// Operations: Qdrant advises against thousands of collections per
// cluster (about 32 MB of WAL per shard, OOM reports near 2,000
// collections, a cap of 1,000 on Qdrant Cloud). Collection-per-tenant
// therefore needs several clusters (cells) as tenants grow (and while a
// tenant is re-embedded it holds two collections), and one
// cluster (or set of cells) per region: the vector.Router holds one Store
// per region and refuses requests that would cross regions.
//
// The contract (vector/vectortest) runs against a real server when
// BULKHEAD_TEST_QDRANT_URL is set; see contract_test.go.
package qdrant
