// Package bench measures what isolation costs against a baseline measured
// in the same run, interleaved with it; results are ratios, never timed
// assertions:
//
//   - rls: the same queries through the same Go code on an identical copy
//     of the data whose policies are removed (the query's own WHERE
//     tenant_id is the only filter there);
//   - crypto: sealed against plaintext columns, and Tink against bare
//     AES-GCM;
//   - api: the full HTTP stack with RLS against the same server without;
//   - vector: one collection per tenant against one shared collection with
//     a tenant filter, and the exact scan against a bare SIMD scan;
//   - retrieval: ingestion through the knowledge layer against rows only,
//     and query/answer latency against a scoped point read over HTTP.
//
// It starts its own throwaway cluster and vector store, so it never touches
// a user's data.
package bench
