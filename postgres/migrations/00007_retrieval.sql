-- Retrieval: chunks' full-text configuration and each tenant's knowledge
-- collection settings.
--
-- chunks.tsv becomes to_tsvector('english', content) (stemming, stop
-- words: a question's "the" and "of" must not match every chunk).
-- Rewriting the column rewrites chunks once. There is deliberately no GIN
-- index: '@@' is not leakproof, so under row-level security PostgreSQL
-- evaluates it only after the policies and never through an index; the
-- search scans the caller's tenant's chunks (docs/SECURITY.md, known
-- gaps). A confidential chunk's content column is empty (its text is only
-- sealed), so it is found by vector search only.
--
-- tenants.embedding_model is the embedder whose vectors fill the tenant's
-- active collection generation tenants.vector_generation. NULL means the
-- collection has not been provisioned yet (bulkhead tenant provision);
-- retrieval then fails with 503 instead of answering empty. Only the
-- maintenance path writes them (the runtime role cannot write tenants).

-- +goose Up
SET LOCAL lock_timeout = '5s';
ALTER TABLE bulkhead.chunks DROP COLUMN tsv;
ALTER TABLE bulkhead.chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED;
ALTER TABLE bulkhead.tenants
    ADD COLUMN vector_generation integer NOT NULL DEFAULT 1 CHECK (vector_generation >= 1),
    ADD COLUMN embedding_model text CHECK (length(embedding_model) BETWEEN 1 AND 200);

-- +goose Down
SET LOCAL lock_timeout = '5s';
ALTER TABLE bulkhead.tenants DROP COLUMN embedding_model, DROP COLUMN vector_generation;
ALTER TABLE bulkhead.chunks DROP COLUMN tsv;
ALTER TABLE bulkhead.chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
