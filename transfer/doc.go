// Package transfer moves one tenant from one bulkhead to another: Export
// writes an archive sealed to the target's recipient key, Import opens it
// on the target and writes the tenant there.
//
// Guarantees:
//   - The archive is encrypted to the target only (fieldcrypt.SealArchive:
//     HPKE X25519 to the target's recipient key, streaming AES-256-GCM):
//     the exporter needs no secret of the target, and nothing in the
//     archive is readable without the target's import key, which the
//     target keeps wrapped by its own KEK.
//   - Sealed columns travel as the ciphertext they are, with the tenant's
//     keysets inside the same archive; the target wraps the keysets with its
//     own tenant key and KEK. The source's KEK never leaves the source.
//   - Every byte is authenticated. Import reads the whole archive once to
//     verify it (a tampered, truncated or foreign archive, a newer schema,
//     an existing tenant or a different embedding model is refused before
//     anything is written), then applies it: the rows in one transaction
//     that verifies each table's row count and SHA-256 before it commits,
//     the tenant kept disabled until its keys and vectors are stored and
//     verified, and on any failure after the commit the tenant is deleted
//     again (collections dropped, keys shredded, rows removed).
//   - Rows are read on the maintenance path in one read-only snapshot, and
//     both operations are recorded in the tenant's audit_log.
//
// Not guaranteed: the archive does not prove who made it (anyone holding
// the public recipient key can make one; compare the SHA-256 that export
// prints), and vectors are read after the rows' snapshot, so export a
// tenant that takes no writes (bulkhead tenant disable) for an exact copy.
package transfer
