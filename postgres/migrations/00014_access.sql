-- Taking access away (issue 12, item 4 / finding 5).
--
-- State:
--   - tenants.disabled_at, entities.disabled_at: a disabled tenant or entity
--     authenticates nothing (set and cleared by the control plane only: the
--     runtime role has no UPDATE on these columns).
--   - entities.tokens_not_before: access tokens without a session (minted
--     by `bulkhead token mint`, or an external issuer's) issued before it
--     are refused; set by revoke-sessions, a password change or reset.
--   - users.reset_hash / reset_expires_at: the one outstanding password
--     reset token of a user, as a keyed hash (HMAC-SHA256 under the
--     server's pepper), with its expiry. Issuing another replaces it;
--     redeeming clears it (single use).
--
-- bulkhead.access_check(session, issued_at, api_key, require_entity) is the
-- per-request check: postgres.DB sends it in the same batch as the context
-- (no extra round trip), right after bulkhead.enter, whenever the Go context
-- carries a postgres.Access. It is an ordinary function (not SECURITY
-- DEFINER): it reads, under the caller's own policies, the caller's tenant
-- row, its entity's row and its own refresh tokens and API keys, and raises
-- SQLSTATE 28000 ("access revoked", nothing else) unless
--   - the tenant in context exists and is not disabled;
--   - with an entity in context: its row exists (unless require_entity is
--     false: external principals need no row) and is not disabled; a
--     session (the refresh-token family an access token was minted with)
--     still has an unrevoked token; an API key is unrevoked and unexpired;
--     a token with neither was issued at or after tokens_not_before.
-- It runs once per transaction, not per row: three primary-key or indexed
-- look-ups.
--
-- Two SECURITY DEFINER functions (allow-listed in postgres.AuthFunctions,
-- owned by bulkhead_definer, pinned search_path, no hash returned):
--   - auth_password_reset(entity, keyed hash, new password hash): in a
--     pre-authentication context (a tenant, no entity), redeems the user's
--     reset token if the hash matches and it has not expired, and the
--     tenant and entity are enabled: sets the password, clears the token,
--     revokes every refresh token of the entity and moves its
--     tokens_not_before to now. One UPDATE consumes the token, so two
--     concurrent redemptions can't both succeed (the second re-reads the
--     row after the first commits and finds no token). Returns the entity
--     id, or NULL.
--   - auth_password_change(derived key, new password hash): in an entity's
--     own context (no acting-for), changes that entity's password if the
--     key derived from the current password matches (compared through
--     sha256, as auth_password_check does), with the same revocations.
--     Returns whether it did.

-- +goose Up
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30s';

ALTER TABLE bulkhead.tenants ADD COLUMN disabled_at timestamptz;
ALTER TABLE bulkhead.entities ADD COLUMN disabled_at timestamptz, ADD COLUMN tokens_not_before timestamptz;
ALTER TABLE bulkhead.users ADD COLUMN reset_hash bytea, ADD COLUMN reset_expires_at timestamptz;
ALTER TABLE bulkhead.users ADD CONSTRAINT users_reset_pair CHECK ((reset_hash IS NULL) = (reset_expires_at IS NULL)) NOT VALID;
ALTER TABLE bulkhead.users VALIDATE CONSTRAINT users_reset_pair;

-- +goose StatementBegin
CREATE FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean) RETURNS boolean
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
REVOKE ALL ON FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean) TO bulkhead_app;

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_password_reset(uuid, bytea, text) RETURNS uuid
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  e uuid;
BEGIN
  IF t IS NULL OR bulkhead.current_entity() IS NOT NULL OR bulkhead.current_acting_for() IS NOT NULL
     OR $2 IS NULL OR pg_catalog.length($3) = 0 THEN
    RETURN NULL;
  END IF;
  UPDATE bulkhead.users u SET password_hash = $3, reset_hash = NULL, reset_expires_at = NULL
  WHERE u.tenant_id = t AND u.id = $1 AND u.reset_hash IS NOT NULL
    AND pg_catalog.sha256(u.reset_hash) = pg_catalog.sha256($2) AND u.reset_expires_at > pg_catalog.now()
    AND EXISTS (SELECT 1 FROM bulkhead.tenants tn WHERE tn.id = t AND tn.disabled_at IS NULL)
    AND EXISTS (SELECT 1 FROM bulkhead.entities en WHERE en.tenant_id = t AND en.id = u.id AND en.disabled_at IS NULL)
  RETURNING u.id INTO e;
  IF e IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE bulkhead.refresh_tokens r SET revoked_at = pg_catalog.now() WHERE r.tenant_id = t AND r.entity_id = e AND r.revoked_at IS NULL;
  UPDATE bulkhead.entities en SET tokens_not_before = pg_catalog.now() WHERE en.tenant_id = t AND en.id = e;
  RETURN e;
END
$fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_password_change(text, text) RETURNS boolean
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  e uuid := bulkhead.current_entity();
BEGIN
  IF t IS NULL OR e IS NULL OR bulkhead.current_acting_for() IS NOT NULL
     OR pg_catalog.length($1) = 0 OR pg_catalog.length($2) = 0 THEN
    RETURN false;
  END IF;
  UPDATE bulkhead.users u SET password_hash = $2, reset_hash = NULL, reset_expires_at = NULL
  WHERE u.tenant_id = t AND u.id = e AND u.password_hash IS NOT NULL
    AND pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.split_part(u.password_hash, '$', 6), 'UTF8'))
        = pg_catalog.sha256(pg_catalog.convert_to($1, 'UTF8'));
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE bulkhead.refresh_tokens r SET revoked_at = pg_catalog.now() WHERE r.tenant_id = t AND r.entity_id = e AND r.revoked_at IS NULL;
  UPDATE bulkhead.entities en SET tokens_not_before = pg_catalog.now() WHERE en.tenant_id = t AND en.id = e;
  RETURN true;
END
$fn$;
-- +goose StatementEnd

GRANT SELECT ON bulkhead.entities TO bulkhead_definer;
GRANT UPDATE (password_hash, reset_hash, reset_expires_at) ON bulkhead.users TO bulkhead_definer;
GRANT UPDATE (revoked_at) ON bulkhead.refresh_tokens TO bulkhead_definer;
GRANT UPDATE (tokens_not_before) ON bulkhead.entities TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_password_reset(uuid, bytea, text) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_password_change(text, text) OWNER TO bulkhead_definer;
REVOKE ALL ON FUNCTION bulkhead.auth_password_reset(uuid, bytea, text), bulkhead.auth_password_change(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.auth_password_reset(uuid, bytea, text), bulkhead.auth_password_change(text, text) TO bulkhead_app;

-- +goose Down
SET LOCAL lock_timeout = '5s';
-- Membership in bulkhead_definer is needed here (postgres.WithDefinerMembership).
DROP FUNCTION bulkhead.auth_password_change(text, text);
DROP FUNCTION bulkhead.auth_password_reset(uuid, bytea, text);
REVOKE UPDATE (tokens_not_before) ON bulkhead.entities FROM bulkhead_definer;
REVOKE UPDATE (revoked_at) ON bulkhead.refresh_tokens FROM bulkhead_definer;
REVOKE UPDATE (password_hash, reset_hash, reset_expires_at) ON bulkhead.users FROM bulkhead_definer;
DROP FUNCTION bulkhead.access_check(uuid, timestamptz, uuid, boolean);
ALTER TABLE bulkhead.users DROP CONSTRAINT users_reset_pair;
ALTER TABLE bulkhead.users DROP COLUMN reset_expires_at, DROP COLUMN reset_hash;
ALTER TABLE bulkhead.entities DROP COLUMN tokens_not_before, DROP COLUMN disabled_at;
ALTER TABLE bulkhead.tenants DROP COLUMN disabled_at;
