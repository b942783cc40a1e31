-- Field encryption: wrapped per-tenant keysets, the KEK check value and key
-- events, in a schema only the key service role may read; sealed columns
-- for confidential documents and their chunks.

-- +goose Up
CREATE TABLE bulkhead_keys.keysets (
    tenant_id  uuid PRIMARY KEY,
    aead       bytea NOT NULL,
    prf        bytea NOT NULL,
    kek_id     text NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bulkhead_keys.kek_check (
    id         integer PRIMARY KEY CHECK (id = 1),
    kek_id     text NOT NULL,
    check_value bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Survives the tenant: records key creation, rotation and erasure.
CREATE TABLE bulkhead_keys.key_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    action    text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX key_events_tenant_idx ON bulkhead_keys.key_events (tenant_id, at);

REVOKE ALL ON ALL TABLES IN SCHEMA bulkhead_keys FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON bulkhead_keys.keysets, bulkhead_keys.kek_check TO bulkhead_keyservice;
GRANT SELECT, INSERT ON bulkhead_keys.key_events TO bulkhead_keyservice;
GRANT SELECT ON bulkhead_keys.key_events TO bulkhead_maintenance;

ALTER TABLE bulkhead.documents ADD COLUMN content_sealed bytea;
ALTER TABLE bulkhead.chunks ADD COLUMN content_sealed bytea;

-- +goose Down
ALTER TABLE bulkhead.chunks DROP COLUMN content_sealed;
ALTER TABLE bulkhead.documents DROP COLUMN content_sealed;
DROP TABLE bulkhead_keys.key_events;
DROP TABLE bulkhead_keys.kek_check;
DROP TABLE bulkhead_keys.keysets;
