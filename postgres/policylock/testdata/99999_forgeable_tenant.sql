-- A broken migration for TestCheckFindsAForgeableContext: current_tenant()
-- still answers bulkhead's signed setting, so every policy and every cell
-- of the visibility matrix is unchanged, but it answers a setting any role
-- can SET first.
-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT coalesce(nullif(pg_catalog.current_setting('app.tenant_id', true), ''), nullif(pg_catalog.current_setting('bulkhead.tenant_id', true), ''))::pg_catalog.uuid $fn$;
-- +goose StatementEnd
-- +goose Down
SELECT 1;
