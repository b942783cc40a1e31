// Package fieldcrypt encrypts individual column values with per-tenant
// keys (Google Tink), so a mis-scoped query, a copied row, a dump or a DBA
// sees ciphertext, and deleting a tenant's keys makes every copy of its
// encrypted data unreadable.
//
// What bulkhead encrypts with it (see postgres): agents.secrets,
// agents.system_prompt, documents.content_sealed and chunks.content_sealed
// (confidential documents). Any Go user may seal its own columns the same
// way, naming them with a Field.
//
// Guarantees:
//   - Each tenant has its own random AES-256-GCM keyset (and an HMAC-SHA256
//     PRF keyset for blind indexes), never derived from a master secret,
//     stored only wrapped by the key-encryption key (KEK) with the tenant id
//     as associated data: a wrapped keyset moved to another tenant does not
//     unwrap.
//   - The key is chosen from the authenticated scope in the context, never
//     from the row or the envelope; no scope, no key.
//   - Every ciphertext is bound to (format version, tenant, table, column,
//     row id) as associated data, length-prefixed: a value copied to another
//     row, column or tenant does not open.
//   - Envelopes are versioned (magic 0x00 'b' 'h', version 1); anything else
//     is refused, so plaintext can't be passed off as a sealed value.
//   - Errors name no secret and no key material.
//   - Unwrapped keysets are cached in memory, bounded in number and time.
//
// A Keyring is safe for concurrent use.
package fieldcrypt
