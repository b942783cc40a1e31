-- Credentials: API keys and refresh tokens (hashes only, each row private to
-- its entity), self-registration per tenant, and the narrow, allow-listed
-- SECURITY DEFINER look-ups that authentication needs before a caller has
-- an entity in scope. Each runs as bulkhead_definer with a pinned
-- search_path, filters by the tenant in context itself, and returns only
-- what the flow needs (hashes are keyed with a server secret).

-- +goose Up
ALTER TABLE bulkhead.tenants ADD COLUMN open_registration boolean NOT NULL DEFAULT false;

CREATE TABLE bulkhead.api_keys (
    tenant_id    uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    entity_id    uuid NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    secret_hash  bytea NOT NULL,
    scopes       text[] NOT NULL DEFAULT '{}',
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, entity_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.refresh_tokens (
    tenant_id   uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    entity_id   uuid NOT NULL,
    family_id   uuid NOT NULL,
    secret_hash bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, entity_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_family_idx ON bulkhead.refresh_tokens (tenant_id, family_id);

-- +goose StatementBegin
-- Parameters are referred to by position: in an SQL function a column of
-- the same name would win over a parameter name.
CREATE FUNCTION bulkhead.auth_user_by_email(text) RETURNS TABLE (entity_id uuid, password_hash text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT u.id, u.password_hash FROM bulkhead.users u
  WHERE u.tenant_id = bulkhead.current_tenant() AND lower(u.email) = lower($1)
  $fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_register(p_email text, p_name text, p_password_hash text) RETURNS uuid
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  e uuid := gen_random_uuid();
BEGIN
  IF t IS NULL OR NOT EXISTS (SELECT 1 FROM bulkhead.tenants tn WHERE tn.id = t AND tn.open_registration) THEN
    RETURN NULL;
  END IF;
  INSERT INTO bulkhead.entities (tenant_id, id, kind, name) VALUES (t, e, 'user', p_name);
  INSERT INTO bulkhead.users (tenant_id, id, email, password_hash) VALUES (t, e, p_email, p_password_hash);
  RETURN e;
END
$fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_api_key(uuid) RETURNS TABLE (entity_id uuid, secret_hash bytea, scopes text[], expires_at timestamptz, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT k.entity_id, k.secret_hash, k.scopes, k.expires_at, k.revoked_at FROM bulkhead.api_keys k
  WHERE k.tenant_id = bulkhead.current_tenant() AND k.id = $1
  $fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_refresh_token(uuid) RETURNS TABLE (entity_id uuid, family_id uuid, secret_hash bytea, expires_at timestamptz, used_at timestamptz, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT r.entity_id, r.family_id, r.secret_hash, r.expires_at, r.used_at, r.revoked_at FROM bulkhead.refresh_tokens r
  WHERE r.tenant_id = bulkhead.current_tenant() AND r.id = $1
  $fn$;
-- +goose StatementEnd

GRANT SELECT ON bulkhead.users, bulkhead.api_keys, bulkhead.refresh_tokens, bulkhead.tenants TO bulkhead_definer;
GRANT INSERT ON bulkhead.entities, bulkhead.users TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_user_by_email(text) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_register(text, text, text) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_api_key(uuid) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_refresh_token(uuid) OWNER TO bulkhead_definer;
REVOKE ALL ON FUNCTION bulkhead.auth_user_by_email(text), bulkhead.auth_register(text, text, text), bulkhead.auth_api_key(uuid), bulkhead.auth_refresh_token(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.auth_user_by_email(text), bulkhead.auth_register(text, text, text), bulkhead.auth_api_key(uuid), bulkhead.auth_refresh_token(uuid) TO bulkhead_app;

-- +goose Down
DROP FUNCTION bulkhead.auth_refresh_token(uuid);
DROP FUNCTION bulkhead.auth_api_key(uuid);
DROP FUNCTION bulkhead.auth_register(text, text, text);
DROP FUNCTION bulkhead.auth_user_by_email(text);
REVOKE INSERT ON bulkhead.entities, bulkhead.users FROM bulkhead_definer;
REVOKE SELECT ON bulkhead.users, bulkhead.tenants FROM bulkhead_definer;
DROP TABLE bulkhead.refresh_tokens;
DROP TABLE bulkhead.api_keys;
ALTER TABLE bulkhead.tenants DROP COLUMN open_registration;
