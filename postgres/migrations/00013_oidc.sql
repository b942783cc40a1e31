-- External identity (issue 13): issuer-to-tenant binding, just-in-time
-- entities, deactivation.
--
-- tenants.issuers is the set of external token issuers a tenant has
-- registered ("bulkhead tenant issuer add"), as a JSON object keyed by the
-- issuer's exact "iss" value: {"<iss>": {"jit": bool, "added_at": ts}}. An
-- issuer trusted with a tenant claim speaks only for tenants that list it.
-- It is tenant metadata written only by the control plane (the runtime role
-- cannot write tenants), like open_registration, and the tenants policy
-- already shows the runtime role its own tenant's row only; a table of its
-- own would be a tenant table with generated policies, i.e. a new generated
-- policy migration, for four columns nobody but the control plane writes.
--
-- entities.deactivated_at: an entity deactivated by the control plane;
-- external tokens naming it are refused even while unexpired. The runtime
-- role has no UPDATE grant on it (column grants name, metadata only), so an
-- entity can't reactivate itself.
--
-- bulkhead.auth_external(issuer, bound, entity, name, email, refresh) is the
-- one step that turns a verified external token into an entity of the
-- tenant in context. Like the other pre-authentication functions it answers
-- only in a pre-authentication context (a tenant, no entity, no
-- acting-for), runs as bulkhead_definer with a pinned search_path and
-- returns a status word, never a stored value:
--   unbound      the issuer is not bound to the tenant (bound = false means
--                the caller has no fixed binding from its configuration, so
--                the tenant must list the issuer)
--   unknown      no such entity and the tenant did not opt in to
--                just-in-time entities for this issuer
--   bad_name     no such entity, opted in, but no usable display name
--   deactivated  the entity is deactivated
--   created      created just now (kind user), recorded in audit_log
--   updated      the name or email claim changed and the last update is
--                older than refresh: updated, recorded in audit_log
--   ok           the entity exists and is active
-- Creation is race-safe: the entity id is deterministic (UUIDv5 of issuer
-- and subject, computed by the server) and the insert is ON CONFLICT DO
-- NOTHING on the primary key, so concurrent first requests create exactly
-- one row and exactly one audit record.

-- +goose Up
SET LOCAL lock_timeout = '5s';
ALTER TABLE bulkhead.tenants ADD COLUMN issuers jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(issuers) = 'object');
ALTER TABLE bulkhead.entities ADD COLUMN deactivated_at timestamptz;

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_external(p_issuer text, p_bound boolean, p_entity uuid, p_name text, p_email text, p_refresh interval)
  RETURNS text
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  reg jsonb;
  e_name text;
  e_meta jsonb;
  e_off timestamptz;
BEGIN
  IF t IS NULL OR bulkhead.current_entity() IS NOT NULL OR bulkhead.current_acting_for() IS NOT NULL
     OR p_issuer IS NULL OR p_entity IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT tn.issuers -> p_issuer INTO reg FROM bulkhead.tenants tn WHERE tn.id = t;
  IF NOT coalesce(p_bound, false) AND reg IS NULL THEN
    RETURN 'unbound';
  END IF;
  SELECT en.name, en.metadata, en.deactivated_at INTO e_name, e_meta, e_off
    FROM bulkhead.entities en WHERE en.tenant_id = t AND en.id = p_entity;
  IF NOT FOUND THEN
    IF reg IS NULL OR reg -> 'jit' IS DISTINCT FROM 'true'::jsonb THEN
      RETURN 'unknown';
    END IF;
    IF p_name IS NULL OR length(btrim(p_name)) = 0 OR length(p_name) > 200 THEN
      RETURN 'bad_name';
    END IF;
    INSERT INTO bulkhead.entities (tenant_id, id, kind, name, metadata)
      VALUES (t, p_entity, 'user', p_name, jsonb_strip_nulls(jsonb_build_object(
        'issuer', p_issuer, 'email', p_email, 'claims_at', now())))
      ON CONFLICT (tenant_id, id) DO NOTHING;
    IF FOUND THEN
      INSERT INTO bulkhead.audit_log (tenant_id, actor_id, action, target, detail)
        VALUES (t, p_entity, 'entity.jit_create', p_entity::text, jsonb_build_object('issuer', p_issuer));
      RETURN 'created';
    END IF;
    -- A concurrent first request created it: this statement sees it now.
    SELECT en.name, en.metadata, en.deactivated_at INTO e_name, e_meta, e_off
      FROM bulkhead.entities en WHERE en.tenant_id = t AND en.id = p_entity;
    IF NOT FOUND THEN
      RETURN 'unknown';
    END IF;
  END IF;
  IF e_off IS NOT NULL THEN
    RETURN 'deactivated';
  END IF;
  IF p_name IS NOT NULL AND length(btrim(p_name)) > 0 AND length(p_name) <= 200
     AND (e_name IS DISTINCT FROM p_name OR (p_email IS NOT NULL AND e_meta ->> 'email' IS DISTINCT FROM p_email))
     AND coalesce((e_meta ->> 'claims_at')::timestamptz, '-infinity') < now() - coalesce(p_refresh, interval '10 minutes') THEN
    UPDATE bulkhead.entities en
      SET name = p_name,
          metadata = en.metadata || jsonb_strip_nulls(jsonb_build_object('email', p_email, 'claims_at', now()))
      WHERE en.tenant_id = t AND en.id = p_entity AND en.deactivated_at IS NULL;
    IF FOUND THEN
      INSERT INTO bulkhead.audit_log (tenant_id, actor_id, action, target, detail)
        VALUES (t, p_entity, 'entity.claims_update', p_entity::text, jsonb_build_object('issuer', p_issuer));
      RETURN 'updated';
    END IF;
  END IF;
  RETURN 'ok';
END
$fn$;
-- +goose StatementEnd

-- What the function touches, and nothing else: it reads tenants (granted
-- in 00004) and inserts entities (00004); it also reads and updates
-- entities and appends to audit_log.
GRANT SELECT (tenant_id, id, name, metadata, deactivated_at), UPDATE (name, metadata) ON bulkhead.entities TO bulkhead_definer;
GRANT INSERT ON bulkhead.audit_log TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_external(text, boolean, uuid, text, text, interval) OWNER TO bulkhead_definer;
REVOKE ALL ON FUNCTION bulkhead.auth_external(text, boolean, uuid, text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.auth_external(text, boolean, uuid, text, text, interval) TO bulkhead_app;

-- +goose Down
SET LOCAL lock_timeout = '5s';
DROP FUNCTION bulkhead.auth_external(text, boolean, uuid, text, text, interval);
REVOKE INSERT ON bulkhead.audit_log FROM bulkhead_definer;
REVOKE SELECT (tenant_id, id, name, metadata, deactivated_at), UPDATE (name, metadata) ON bulkhead.entities FROM bulkhead_definer;
ALTER TABLE bulkhead.entities DROP COLUMN deactivated_at;
ALTER TABLE bulkhead.tenants DROP COLUMN issuers;
