// Package fieldcrypt encrypts individual column values with per-tenant
// keys (Google Tink), so a mis-scoped query, a copied row, a dump or a DBA
// sees ciphertext, and deleting a tenant's keys makes its encrypted data in
// the live database unreadable. With a tenant key directory (TenantKeyDir,
// Options.TenantKeys), a tenant's keysets are wrapped by its tenant key
// inside the KEK, and deleting the tenant destroys that file: database
// backups taken before the deletion no longer open its data either, unless
// a copy of the file survives. Keysets wrapped by the KEK only (Hierarchy
// KEKOnly: tenants from before tenant keys, until Keyring.MigrateErasure)
// are erased from the live database only: a backup holding one opens with
// the KEK until that KEK is destroyed.
//
// What bulkhead encrypts with it (see postgres): agents.secrets,
// agents.system_prompt, documents.content_sealed and chunks.content_sealed
// (confidential documents). Any Go user may seal its own columns the same
// way, naming them with a Field.
//
// Guarantees:
//   - Each tenant has its own random AES-256-GCM keyset (and an HMAC-SHA256
//     PRF keyset for blind indexes), never derived from a master secret,
//     stored only wrapped by the key-encryption key (KEK), and by its tenant
//     key inside that if it has one, with the tenant id as associated data:
//     a wrapped keyset moved to another tenant does not unwrap.
//   - The key is chosen from the authenticated scope in the context, never
//     from the row or the envelope; no scope, no key.
//   - Every ciphertext is bound to (format version, tenant, table, column,
//     row id) as associated data, length-prefixed: a value copied to another
//     row, column or tenant does not open.
//   - Envelopes are versioned (magic 0x00 'b' 'h', version 1); anything else
//     is refused, so plaintext can't be passed off as a sealed value.
//   - Errors name no secret and no key material.
//   - Unwrapped keysets are cached in memory, bounded in number and time.
//     The cache never makes a writer store a value under a key that is no
//     longer primary: SealAt reports the keyset version it sealed with, for
//     the writer to check against the published version in its
//     transaction; Open reloads once when a value names a key the cached
//     keyset lacks.
//   - A keyset is only ever stored wrapped by the KEK the store records
//     (Store.Save refuses others, ErrKEKChanged); a keyring follows a KEK
//     rotation made elsewhere by loading the recorded KEK (Options.LoadKEK).
//
// A Keyring is safe for concurrent use.
package fieldcrypt
