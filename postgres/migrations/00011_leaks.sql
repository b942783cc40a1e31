-- Closing side channels the runtime role could read (issue 11, findings 2,
-- 3 and 9).
--
-- Notifications (finding 2). Until now every new memory was announced on
-- one channel, bulkhead_memories, as "<tenant>:<room>:<memory>", and any
-- session of the runtime role could LISTEN to it (PostgreSQL has no
-- privilege on LISTEN) and learn every tenant's id. Now each tenant has its
-- own channel, named "bulkhead_" + the first 128 bits of
-- HMAC-SHA256(key, tenant id), and the payload is "<room>:<memory>" only.
-- The key is 244 random bits made here (never derived from anything) and
-- lives in bulkhead.notify_key, readable only by bulkhead_definer: the
-- runtime role can't compute another tenant's channel name.
--
--   - The trigger function becomes SECURITY DEFINER (owned by
--     bulkhead_definer, executable by nobody: a trigger needs no EXECUTE),
--     because it has to read the key.
--   - bulkhead.notify_listen() LISTENs, in the caller's own session, on the
--     channel of the tenant in context, and returns its name. It answers
--     only with a tenant and no entity in context (the server's notifier
--     context): an entity can't learn even its own tenant's channel, which
--     carries the ids of rooms it may not be in. It runs LISTEN itself so
--     the channel name never appears in a query text (pg_stat_activity
--     shows a session's query to every session of the same role).
--   - bulkhead.notify_unlisten(channel) is an ordinary function: UNLISTEN
--     with the channel as a parameter, for the same reason.
--
-- Definer functions (finding 3). auth_user_by_email(email) returned a
-- user's entity id and argon2id hash to any caller in the tenant, entity
-- scopes included; auth_api_key and auth_refresh_token returned stored
-- (keyed) hashes the same way. Now no credential hash leaves the database,
-- and the pre-authentication look-ups answer only in a pre-authentication
-- context (a tenant, no entity, no acting-for): with an entity in context
-- they return nothing.
--
--   - auth_password_params(email): the PHC string of the user's hash
--     without the hash itself ("$argon2id$v=19$m=..,t=..,p=..$<salt>"):
--     what Go needs to run argon2id (the expensive part stays out of the
--     database, bounded by the server's semaphore).
--   - auth_password_check(email, key): the user's entity id if key (the
--     argon2id output Go derived, base64) equals the stored one, else NULL.
--     The two are compared through sha256, so how long the comparison takes
--     says nothing about how much of the stored value matched.
--   - auth_api_key(id, hash) and auth_refresh_token(id, hash): the row's
--     facts (entity, scopes or family, expiry, use, revocation) only when
--     the presented keyed hash matches; never the stored hash.
--   - auth_register also refuses with an entity in context.
--
-- Role hygiene (finding 9). refresh_tokens had the same index twice:
-- refresh_tokens_family_idx (written by hand in 00004) and the generator's
-- refresh_tokens_family_id_idx. The hand-written one goes. (The rest of
-- finding 9 is not a migration's to do: Bootstrap no longer makes the owner
-- a member of bulkhead_definer, Migrator.UseAdmin grants that membership
-- only while migrations run, and Bootstrap closes the cluster's other
-- databases to PUBLIC; the self-check refuses each.)

-- +goose Up
-- CREATE OR REPLACE of the trigger function and the ALTERs below lock
-- memories briefly: give up rather than queue behind a long transaction.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30s';

CREATE TABLE bulkhead.notify_key (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- HMAC's two padded keys (key XOR 0x36.., key XOR 0x5c..), 64 bytes each.
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64)
);
REVOKE ALL ON bulkhead.notify_key FROM PUBLIC;
GRANT SELECT ON bulkhead.notify_key TO bulkhead_definer;

-- +goose StatementBegin
DO $do$
DECLARE
  -- Two version-4 UUIDs: 244 random bits from the server's CSPRNG
  -- (pgcrypto is not needed), zero-padded to SHA-256's 64-byte block.
  k bytea := pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
      OPERATOR(pg_catalog.||) pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
      OPERATOR(pg_catalog.||) pg_catalog.repeat('00', 32), 'hex');
  ip bytea := k;
  op bytea := k;
BEGIN
  FOR i IN 0..63 LOOP
    ip := pg_catalog.set_byte(ip, i, pg_catalog.get_byte(k, i) # 54);
    op := pg_catalog.set_byte(op, i, pg_catalog.get_byte(k, i) # 92);
  END LOOP;
  INSERT INTO bulkhead.notify_key (inner_pad, outer_pad) VALUES (ip, op);
END
$do$;
-- +goose StatementEnd

-- The channel of a tenant. Plain (its callers are definer functions), and
-- executable only by bulkhead_definer.
-- +goose StatementBegin
CREATE FUNCTION bulkhead.notify_channel(uuid) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT 'bulkhead_' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.encode(
    pg_catalog.sha256(k.outer_pad OPERATOR(pg_catalog.||) pg_catalog.sha256(k.inner_pad OPERATOR(pg_catalog.||) pg_catalog.uuid_send($1))),
    'hex'), 32)
  FROM bulkhead.notify_key k
  $fn$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION bulkhead.notify_channel(uuid) FROM PUBLIC;
ALTER FUNCTION bulkhead.notify_channel(uuid) OWNER TO bulkhead_definer;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.notify_memory_inserted() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $fn$
BEGIN
  PERFORM pg_catalog.pg_notify(bulkhead.notify_channel(NEW.tenant_id),
    pg_catalog.concat_ws(':', NEW.room_id, NEW.id));
  RETURN NULL;
END
$fn$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION bulkhead.notify_memory_inserted() FROM PUBLIC;
ALTER FUNCTION bulkhead.notify_memory_inserted() OWNER TO bulkhead_definer;

-- +goose StatementBegin
CREATE FUNCTION bulkhead.notify_listen() RETURNS text
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  c text;
BEGIN
  IF t IS NULL OR bulkhead.current_entity() IS NOT NULL OR bulkhead.current_acting_for() IS NOT NULL THEN
    RETURN NULL;
  END IF;
  c := bulkhead.notify_channel(t);
  EXECUTE pg_catalog.format('LISTEN %I', c);
  RETURN c;
END
$fn$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION bulkhead.notify_listen() FROM PUBLIC;
ALTER FUNCTION bulkhead.notify_listen() OWNER TO bulkhead_definer;
GRANT EXECUTE ON FUNCTION bulkhead.notify_listen() TO bulkhead_app;

-- +goose StatementBegin
CREATE FUNCTION bulkhead.notify_unlisten(text) RETURNS void
  LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
  AS $fn$
BEGIN
  EXECUTE pg_catalog.format('UNLISTEN %I', $1);
END
$fn$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION bulkhead.notify_unlisten(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.notify_unlisten(text) TO bulkhead_app;

-- Pre-authentication look-ups: no hash leaves the database.
DROP FUNCTION bulkhead.auth_user_by_email(text);
DROP FUNCTION bulkhead.auth_api_key(uuid);
DROP FUNCTION bulkhead.auth_refresh_token(uuid);

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_password_params(text) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT pg_catalog.regexp_replace(u.password_hash, '\$[^$]*$', '') FROM bulkhead.users u
  WHERE u.tenant_id = bulkhead.current_tenant() AND bulkhead.current_entity() IS NULL AND bulkhead.current_acting_for() IS NULL
    AND pg_catalog.lower(u.email) = pg_catalog.lower($1) AND u.password_hash IS NOT NULL
  $fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_password_check(text, text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT u.id FROM bulkhead.users u
  WHERE u.tenant_id = bulkhead.current_tenant() AND bulkhead.current_entity() IS NULL AND bulkhead.current_acting_for() IS NULL
    AND pg_catalog.lower(u.email) = pg_catalog.lower($1) AND u.password_hash IS NOT NULL
    AND pg_catalog.length($2) > 0
    AND pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.split_part(u.password_hash, '$', 6), 'UTF8'))
        = pg_catalog.sha256(pg_catalog.convert_to($2, 'UTF8'))
  $fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_api_key(uuid, bytea) RETURNS TABLE (entity_id uuid, scopes text[], expires_at timestamptz, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT k.entity_id, k.scopes, k.expires_at, k.revoked_at FROM bulkhead.api_keys k
  WHERE k.tenant_id = bulkhead.current_tenant() AND bulkhead.current_entity() IS NULL AND bulkhead.current_acting_for() IS NULL
    AND k.id = $1 AND pg_catalog.sha256(k.secret_hash) = pg_catalog.sha256($2)
  $fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bulkhead.auth_refresh_token(uuid, bytea) RETURNS TABLE (entity_id uuid, family_id uuid, expires_at timestamptz, used_at timestamptz, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT r.entity_id, r.family_id, r.expires_at, r.used_at, r.revoked_at FROM bulkhead.refresh_tokens r
  WHERE r.tenant_id = bulkhead.current_tenant() AND bulkhead.current_entity() IS NULL AND bulkhead.current_acting_for() IS NULL
    AND r.id = $1 AND pg_catalog.sha256(r.secret_hash) = pg_catalog.sha256($2)
  $fn$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.auth_register(p_email text, p_name text, p_password_hash text) RETURNS uuid
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  t uuid := bulkhead.current_tenant();
  e uuid := gen_random_uuid();
BEGIN
  IF t IS NULL OR bulkhead.current_entity() IS NOT NULL OR bulkhead.current_acting_for() IS NOT NULL
     OR NOT EXISTS (SELECT 1 FROM bulkhead.tenants tn WHERE tn.id = t AND tn.open_registration) THEN
    RETURN NULL;
  END IF;
  INSERT INTO bulkhead.entities (tenant_id, id, kind, name) VALUES (t, e, 'user', p_name);
  INSERT INTO bulkhead.users (tenant_id, id, email, password_hash) VALUES (t, e, p_email, p_password_hash);
  RETURN e;
END
$fn$;
-- +goose StatementEnd

ALTER FUNCTION bulkhead.auth_password_params(text) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_password_check(text, text) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_api_key(uuid, bytea) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_refresh_token(uuid, bytea) OWNER TO bulkhead_definer;
REVOKE ALL ON FUNCTION bulkhead.auth_password_params(text), bulkhead.auth_password_check(text, text),
  bulkhead.auth_api_key(uuid, bytea), bulkhead.auth_refresh_token(uuid, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.auth_password_params(text), bulkhead.auth_password_check(text, text),
  bulkhead.auth_api_key(uuid, bytea), bulkhead.auth_refresh_token(uuid, bytea) TO bulkhead_app;

DROP INDEX bulkhead.refresh_tokens_family_idx;

-- +goose Down
SET LOCAL lock_timeout = '5s';
CREATE INDEX refresh_tokens_family_idx ON bulkhead.refresh_tokens (tenant_id, family_id);
-- Membership in bulkhead_definer is needed here (postgres.WithDefinerMembership).
DROP FUNCTION bulkhead.auth_refresh_token(uuid, bytea);
DROP FUNCTION bulkhead.auth_api_key(uuid, bytea);
DROP FUNCTION bulkhead.auth_password_check(text, text);
DROP FUNCTION bulkhead.auth_password_params(text);
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bulkhead.auth_register(p_email text, p_name text, p_password_hash text) RETURNS uuid
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
CREATE FUNCTION bulkhead.auth_user_by_email(text) RETURNS TABLE (entity_id uuid, password_hash text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
  SELECT u.id, u.password_hash FROM bulkhead.users u
  WHERE u.tenant_id = bulkhead.current_tenant() AND lower(u.email) = lower($1)
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
ALTER FUNCTION bulkhead.auth_user_by_email(text) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_api_key(uuid) OWNER TO bulkhead_definer;
ALTER FUNCTION bulkhead.auth_refresh_token(uuid) OWNER TO bulkhead_definer;
REVOKE ALL ON FUNCTION bulkhead.auth_user_by_email(text), bulkhead.auth_api_key(uuid), bulkhead.auth_refresh_token(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkhead.auth_user_by_email(text), bulkhead.auth_api_key(uuid), bulkhead.auth_refresh_token(uuid) TO bulkhead_app;
DROP FUNCTION bulkhead.notify_unlisten(text);
DROP FUNCTION bulkhead.notify_listen();
-- The schema owner may drop the definer's functions but not replace them.
DROP TRIGGER memories_notify ON bulkhead.memories;
DROP FUNCTION bulkhead.notify_memory_inserted();
-- +goose StatementBegin
CREATE FUNCTION bulkhead.notify_memory_inserted() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $fn$
BEGIN
  PERFORM pg_catalog.pg_notify('bulkhead_memories',
    pg_catalog.concat_ws(':', NEW.tenant_id, NEW.room_id, NEW.id));
  RETURN NULL;
END
$fn$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION bulkhead.notify_memory_inserted() FROM PUBLIC;
CREATE TRIGGER memories_notify AFTER INSERT ON bulkhead.memories
  FOR EACH ROW EXECUTE FUNCTION bulkhead.notify_memory_inserted();
DROP FUNCTION bulkhead.notify_channel(uuid);
DROP TABLE bulkhead.notify_key;
