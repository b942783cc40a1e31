\echo Use "ALTER EXTENSION bulkhead_context UPDATE TO '1.4'" to load this file. \quit

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
