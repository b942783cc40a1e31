\echo Use "CREATE EXTENSION bulkhead_context" to load this file. \quit

-- enter puts the tenant, entity and acting-for of a token signed with the
-- server's context key into the current transaction (GUC_ACTION_LOCAL):
-- bulkhead.tenant_id, bulkhead.entity_id and bulkhead.acting_for, which no
-- other role than a superuser can set. Any role may call it: the signature,
-- not the caller, is the authority.
CREATE FUNCTION @extschema@.enter(token bytea) RETURNS void
  AS 'MODULE_PATHNAME', 'bulkhead_enter'
  LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
