-- bulkhead_context 1.3: access_check_native, the per-request revocation
-- check in C (issue 16, item 6). The PL/pgSQL access_check of 00014 cost
-- +31-40 us per request in the database (BenchmarkAccessCheck: three SPI
-- look-ups under the caller's policies, behind a SET search_path); the C
-- function reads the same rows (the context's tenant, its entity, that
-- entity's session or API key) through their btree indexes. access_check
-- keeps its name, signature and grants and becomes an inlined SQL call to
-- it, so postgres.DB's batch is unchanged.
--
-- PrepareDatabase updates the extension as the admin; where it didn't (an
-- external database whose extension this role created), this role can,
-- since it owns it. Otherwise the migration stops with the fix.

-- +goose Up
SET LOCAL lock_timeout = '5s';
-- +goose StatementBegin
DO $up$
BEGIN
  IF pg_catalog.to_regprocedure('bulkhead.access_check_native(uuid, timestamptz, uuid, boolean)') IS NULL THEN
    BEGIN
      ALTER EXTENSION bulkhead_context UPDATE TO '1.3';
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION 'bulkhead_context 1.3 is required (bulkhead.access_check_native): %', SQLERRM
        USING HINT = 'Install the extension files of this build (scripts/deps.sh, or make -C pgext install), then, as a superuser or the extension''s owner: ALTER EXTENSION bulkhead_context UPDATE TO ''1.3''.';
    END;
  END IF;
END
$up$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean) RETURNS boolean
  LANGUAGE sql STABLE
  AS $fn$ SELECT bulkhead.access_check_native($1, $2, $3, $4) $fn$;
-- +goose StatementEnd

-- +goose Down
SET LOCAL lock_timeout = '5s';
-- The C function stays (it belongs to the extension, which may be the
-- admin's); access_check gets 00014's PL/pgSQL body back, which is all
-- postgres.DB calls.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  e uuid := bulkhead.current_entity();
  dis timestamptz;
  nbf timestamptz;
BEGIN
  IF t IS NULL OR NOT EXISTS (SELECT 1 FROM bulkhead.tenants tn WHERE tn.id = t AND tn.disabled_at IS NULL) THEN
    RAISE EXCEPTION 'access revoked' USING ERRCODE = '28000';
  END IF;
  IF e IS NULL THEN
    RETURN true;
  END IF;
  SELECT en.disabled_at, en.tokens_not_before INTO dis, nbf FROM bulkhead.entities en WHERE en.tenant_id = t AND en.id = e;
  IF NOT FOUND THEN
    IF $4 IS NOT FALSE THEN
      RAISE EXCEPTION 'access revoked' USING ERRCODE = '28000';
    END IF;
    RETURN true;
  END IF;
  IF dis IS NOT NULL THEN
    RAISE EXCEPTION 'access revoked' USING ERRCODE = '28000';
  END IF;
  IF $1 IS NOT NULL THEN
    IF NOT EXISTS (SELECT 1 FROM bulkhead.refresh_tokens r
                   WHERE r.tenant_id = t AND r.family_id = $1 AND r.entity_id = e AND r.revoked_at IS NULL) THEN
      RAISE EXCEPTION 'access revoked' USING ERRCODE = '28000';
    END IF;
  ELSIF $3 IS NOT NULL THEN
    IF NOT EXISTS (SELECT 1 FROM bulkhead.api_keys k
                   WHERE k.tenant_id = t AND k.id = $3 AND k.entity_id = e AND k.revoked_at IS NULL
                     AND (k.expires_at IS NULL OR k.expires_at > now())) THEN
      RAISE EXCEPTION 'access revoked' USING ERRCODE = '28000';
    END IF;
  ELSIF nbf IS NOT NULL AND ($2 IS NULL OR $2 < nbf) THEN
    RAISE EXCEPTION 'access revoked' USING ERRCODE = '28000';
  END IF;
  RETURN true;
END
$fn$;
-- +goose StatementEnd
