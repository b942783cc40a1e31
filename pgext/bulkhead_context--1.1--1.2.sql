\echo Use "ALTER EXTENSION bulkhead_context UPDATE TO '1.2'" to load this file. \quit

-- can_author_native is bulkhead.can_author in C (see bulkhead_context.c):
-- whether author, one of the caller's own actors, participates in room, in
-- the tenant in context, read from this schema's participants through its
-- (tenant_id, entity_id, room_id) index. It answers only about the context's
-- actors, which only enter() (or a superuser) can set: like enter(), any
-- role may call it (without a context it returns false).
CREATE FUNCTION @extschema@.can_author_native(room uuid, author uuid, scope text) RETURNS boolean
  AS 'MODULE_PATHNAME', 'bulkhead_can_author_native'
  LANGUAGE C STABLE PARALLEL UNSAFE;
