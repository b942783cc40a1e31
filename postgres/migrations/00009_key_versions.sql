-- Online key operations (issue 12).
--
-- tenants.key_version mirrors the version of the tenant's wrapped keyset
-- (bulkhead_keys.keysets.version) as of its last primary-key change. The
-- runtime role reads it (its own tenant's row only) in the same
-- transaction as every write of a sealed value, after the write: a server
-- whose cached keyset is older rolls back, reloads its keys and seals
-- again, so no server seals with a key that is no longer primary once the
-- rotation has published the new version. Only the maintenance path
-- writes it (the runtime role cannot write tenants).
--
-- kek_check.kek_ref says where the recorded key-encryption key is found (a
-- local file path or a KMS URI, never key material), so running servers
-- load the new KEK after `keys rotate-kek` without a restart.

-- +goose Up
SET LOCAL lock_timeout = '5s';
ALTER TABLE bulkhead.tenants ADD COLUMN key_version bigint NOT NULL DEFAULT 0 CHECK (key_version >= 0);
ALTER TABLE bulkhead_keys.kek_check ADD COLUMN kek_ref text CHECK (length(kek_ref) BETWEEN 1 AND 4096);

-- +goose Down
SET LOCAL lock_timeout = '5s';
ALTER TABLE bulkhead_keys.kek_check DROP COLUMN kek_ref;
ALTER TABLE bulkhead.tenants DROP COLUMN key_version;
