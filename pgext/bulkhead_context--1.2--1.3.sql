\echo Use "ALTER EXTENSION bulkhead_context UPDATE TO '1.3'" to load this file. \quit

-- access_check_native is bulkhead.access_check in C (see bulkhead_context.c):
-- the per-request revocation check of the tenant and entity in context and
-- of the session or API key the server names. It reads this schema's
-- tenants, entities, refresh_tokens and api_keys through their btree
-- indexes, answers only about the context's own tenant, entity and
-- credentials, and raises SQLSTATE 28000 "access revoked" or returns true:
-- like enter(), any role may call it (without a tenant in context it raises).
CREATE FUNCTION @extschema@.access_check_native(session uuid, issued_at timestamptz, api_key uuid, require_entity boolean) RETURNS boolean
  AS 'MODULE_PATHNAME', 'bulkhead_access_check_native'
  LANGUAGE C STABLE PARALLEL UNSAFE;
