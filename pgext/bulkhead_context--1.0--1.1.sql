\echo Use "ALTER EXTENSION bulkhead_context UPDATE TO '1.1'" to load this file. \quit

-- member_rooms_native is bulkhead.member_rooms in C (see bulkhead_context.c):
-- the rooms of the entity in context, in the tenant in context, read from
-- this schema's participants through its (tenant_id, entity_id) index. It
-- answers only about the context, which only enter() (or a superuser) can
-- set: like enter(), any role may call it (bulkhead's databases admit only
-- bulkhead's roles, and without a context it returns an empty array).
CREATE FUNCTION @extschema@.member_rooms_native(scope text) RETURNS uuid[]
  AS 'MODULE_PATHNAME', 'bulkhead_member_rooms_native'
  LANGUAGE C STABLE PARALLEL UNSAFE;
