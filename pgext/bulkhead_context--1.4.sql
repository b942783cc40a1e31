\echo Use "CREATE EXTENSION bulkhead_context" to load this file. \quit

-- enter puts the tenant, entity and acting-for of a token signed with the
-- server's context key into the current transaction (GUC_ACTION_LOCAL):
-- bulkhead.tenant_id, bulkhead.entity_id and bulkhead.acting_for, which no
-- other role than a superuser can set. Any role may call it: the signature,
-- not the caller, is the authority.
CREATE FUNCTION @extschema@.enter(token bytea) RETURNS void
  AS 'MODULE_PATHNAME', 'bulkhead_enter'
  LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
-- member_rooms_native is bulkhead.member_rooms in C (see bulkhead_context.c):
-- the rooms of the entity in context, in the tenant in context, read from
-- this schema's participants through its (tenant_id, entity_id) index. It
-- answers only about the context, which only enter() (or a superuser) can
-- set: like enter(), any role may call it (bulkhead's databases admit only
-- bulkhead's roles, and without a context it returns an empty array).
CREATE FUNCTION @extschema@.member_rooms_native(scope text) RETURNS uuid[]
  AS 'MODULE_PATHNAME', 'bulkhead_member_rooms_native'
  LANGUAGE C STABLE PARALLEL UNSAFE;

-- can_author_native is bulkhead.can_author in C (see bulkhead_context.c):
-- whether author, one of the caller's own actors, participates in room, in
-- the tenant in context, read from this schema's participants through its
-- (tenant_id, entity_id, room_id) index. It answers only about the context's
-- actors, which only enter() (or a superuser) can set: like enter(), any
-- role may call it (without a context it returns false).
CREATE FUNCTION @extschema@.can_author_native(room uuid, author uuid, scope text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'bulkhead_can_author_native'
  LANGUAGE C STABLE PARALLEL UNSAFE;

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

-- The context functions in C (see bulkhead_context.c): the tenant, entity and
-- acting-for in context as uuids, NULL when unset or empty, read from this
-- library's own settings, which only enter() (or a superuser) can set.
-- bulkhead.current_tenant() and the others become inlined SQL calls to them
-- (migration 00021). Reading one's own context grants nothing: any role may
-- read the settings with current_setting() anyway.
CREATE FUNCTION @extschema@.current_tenant_native() RETURNS uuid
  AS 'MODULE_PATHNAME', 'bulkhead_current_tenant_native'
  LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.current_entity_native() RETURNS uuid
  AS 'MODULE_PATHNAME', 'bulkhead_current_entity_native'
  LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.current_acting_for_native() RETURNS uuid
  AS 'MODULE_PATHNAME', 'bulkhead_current_acting_for_native'
  LANGUAGE C STABLE PARALLEL SAFE;
