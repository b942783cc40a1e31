-- bulkhead_context 1.4: the context functions in C (issue 16, item 1).
-- current_tenant(), current_entity() and current_acting_for() keep their
-- names, signatures, grants and semantics (the setting enter() put into the
-- transaction as a uuid, NULL when unset or empty) and become inlined SQL
-- calls to the extension's current_tenant_native() and the others, which
-- read the library's own variables instead of looking each setting up by
-- name twice and casting its text: ~0.5 us less per tenant or entity
-- InitPlan, and every policy runs at least one (docs/BENCHMARKS.md). The
-- policies, the tenant columns' defaults and every helper keep calling the
-- same functions, so no policy text changes.
--
-- PrepareDatabase updates the extension as the admin; where it didn't (an
-- external database whose extension this role created), this role can,
-- since it owns it. Otherwise the migration stops with the fix.

-- +goose Up
SET LOCAL lock_timeout = '5s';
-- +goose StatementBegin
DO $up$
BEGIN
  IF pg_catalog.to_regprocedure('bulkhead.current_acting_for_native()') IS NULL THEN
    BEGIN
      ALTER EXTENSION bulkhead_context UPDATE TO '1.4';
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION 'bulkhead_context 1.4 is required (bulkhead.current_tenant_native): %', SQLERRM
        USING HINT = 'Install the extension files of this build (scripts/deps.sh, or make -C pgext install), then, as a superuser or the extension''s owner: ALTER EXTENSION bulkhead_context UPDATE TO ''1.4''.';
    END;
  END IF;
END
$up$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT bulkhead.current_tenant_native() $fn$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_entity() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT bulkhead.current_entity_native() $fn$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_acting_for() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT bulkhead.current_acting_for_native() $fn$;
-- +goose StatementEnd

-- +goose Down
SET LOCAL lock_timeout = '5s';
-- The C functions stay (they belong to the extension, which may be the
-- admin's); the context functions get 00001's bodies back.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT CASE WHEN pg_catalog.current_setting('bulkhead.tenant_id', true) OPERATOR(pg_catalog.<>) '' THEN pg_catalog.current_setting('bulkhead.tenant_id', true)::pg_catalog.uuid END $fn$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_entity() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT CASE WHEN pg_catalog.current_setting('bulkhead.entity_id', true) OPERATOR(pg_catalog.<>) '' THEN pg_catalog.current_setting('bulkhead.entity_id', true)::pg_catalog.uuid END $fn$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.current_acting_for() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT CASE WHEN pg_catalog.current_setting('bulkhead.acting_for', true) OPERATOR(pg_catalog.<>) '' THEN pg_catalog.current_setting('bulkhead.acting_for', true)::pg_catalog.uuid END $fn$;
-- +goose StatementEnd
