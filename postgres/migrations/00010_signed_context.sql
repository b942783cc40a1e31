-- Hand-written (issue 11, finding 1): the context settings the policies
-- read (bulkhead.tenant_id, bulkhead.entity_id, bulkhead.acting_for) become
-- settable only by bulkhead.enter(token), which checks bulkhead's HMAC
-- signature. The settings, their superuser-only status and enter() come from
-- the bulkhead_context extension (pgext/), which must be preloaded
-- (shared_preload_libraries): the embedded cluster does it. The context
-- functions of 00001 keep their bodies: they read the same settings, now
-- unforgeable, at no extra cost per row.

-- +goose Up
-- +goose StatementBegin
DO $check$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name OPERATOR(pg_catalog.=) 'bulkhead_context') THEN
    RAISE EXCEPTION 'the bulkhead_context extension is not installed on this PostgreSQL server: without it any SQL run as the runtime role could set another tenant''s context'
      USING HINT = 'Build and install pgext/ (scripts/deps.sh does it), add bulkhead_context to shared_preload_libraries, restart PostgreSQL. See docs/SECURITY.md.';
  END IF;
  IF coalesce((SELECT s.context FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) 'bulkhead.tenant_id'), '') OPERATOR(pg_catalog.<>) 'superuser' THEN
    RAISE EXCEPTION 'bulkhead_context is not in shared_preload_libraries: the context settings are still plain settings any role can set'
      USING HINT = 'Add bulkhead_context to shared_preload_libraries and restart PostgreSQL. See docs/SECURITY.md.';
  END IF;
END
$check$;
-- +goose StatementEnd
-- PrepareDatabase has normally created it as the admin already; if not, the
-- owner can (the extension is trusted) where it may create in the database.
CREATE EXTENSION IF NOT EXISTS bulkhead_context SCHEMA bulkhead;

-- +goose Down
-- Only an extension this role created (PrepareDatabase creates it as the
-- admin). Either way the settings stay superuser-only while the library is
-- preloaded: there is no going back to forgeable settings by migration.
-- +goose StatementBegin
DO $down$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'bulkhead_context' AND e.extowner OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user)) THEN
    DROP EXTENSION bulkhead_context;
  END IF;
END
$down$;
-- +goose StatementEnd
