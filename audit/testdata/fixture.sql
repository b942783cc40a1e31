-- The audit's fixture: a schema in which each check fires on exactly the
-- objects audit_test.go expects, and near misses stay silent. Run by the
-- bootstrap superuser in a fresh database; roles are cluster-wide and made
-- idempotently by the test before this file runs.

CREATE SCHEMA app AUTHORIZATION fx_owner;
CREATE SCHEMA scratch AUTHORIZATION fx_owner;
CREATE SCHEMA "Mixed Schema" AUTHORIZATION fx_owner;
GRANT USAGE ON SCHEMA app, scratch, "Mixed Schema" TO fx_app;
GRANT CREATE ON SCHEMA scratch TO fx_app;                       -- BH405, BH501

SET ROLE fx_owner;

CREATE FUNCTION app.current_tenant() RETURNS uuid LANGUAGE sql STABLE
  AS $$ SELECT nullif(pg_catalog.current_setting('app.tenant_id', true), '')::pg_catalog.uuid $$;
CREATE FUNCTION app.current_entity() RETURNS uuid LANGUAGE sql STABLE
  AS $$ SELECT nullif(pg_catalog.current_setting('app.entity_id', true), '')::pg_catalog.uuid $$;

-- The good table: every check stays silent on it.
CREATE TABLE app.good (tenant_id uuid NOT NULL, id uuid NOT NULL, body text, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.good ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.good USING (tenant_id = (SELECT app.current_tenant())) WITH CHECK (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON app.good TO fx_app;

-- A macro for "a good table like app.good" would hide what each test is
-- about, so each table is spelt out.

CREATE TABLE app.no_rls (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));          -- BH101
GRANT SELECT ON app.no_rls TO fx_app;

CREATE TABLE app.unreachable (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));     -- no RLS, no grant: noted, not audited

CREATE TABLE app.not_forced (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));      -- BH102
ALTER TABLE app.not_forced ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.not_forced USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.not_forced TO fx_app;

CREATE TABLE app.no_policy (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));       -- BH104, BH107
ALTER TABLE app.no_policy ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
GRANT SELECT ON app.no_policy TO fx_app;

CREATE TABLE app.policy_off (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));      -- BH105
CREATE POLICY tenant_isolation ON app.policy_off USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.policy_off TO fx_app;

-- Partitions: events_a has RLS, events_b does not (BH106).
CREATE TABLE app.events (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
CREATE TABLE app.events_a PARTITION OF app.events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE app.events_b PARTITION OF app.events FOR VALUES WITH (MODULUS 2, REMAINDER 1);
ALTER TABLE app.events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE app.events_a ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.events USING (tenant_id = (SELECT app.current_tenant()));
CREATE POLICY tenant_isolation ON app.events_a USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.events, app.events_a, app.events_b TO fx_app;

CREATE TABLE app.restrictive_only (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)); -- BH108, BH107
ALTER TABLE app.restrictive_only ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY only_mine ON app.restrictive_only AS RESTRICTIVE USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.restrictive_only TO fx_app;

CREATE TABLE app.nullable_tenant (tenant_id uuid, id uuid NOT NULL);                                       -- BH109, BH705
CREATE INDEX ON app.nullable_tenant (tenant_id);
ALTER TABLE app.nullable_tenant ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.nullable_tenant USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.nullable_tenant TO fx_app;

CREATE TABLE app.entity_permissive (tenant_id uuid NOT NULL, id uuid NOT NULL, owner_id uuid, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.entity_permissive ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.entity_permissive USING (tenant_id = (SELECT app.current_tenant()));
CREATE POLICY owner_sees ON app.entity_permissive FOR SELECT USING (owner_id = (SELECT app.current_entity()));  -- BH110, BH203
GRANT SELECT ON app.entity_permissive TO fx_app;

CREATE TABLE app.write_any (tenant_id uuid NOT NULL, id uuid NOT NULL, owner_id uuid, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.write_any ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.write_any USING (tenant_id = (SELECT app.current_tenant())) WITH CHECK (tenant_id = (SELECT app.current_tenant()));
CREATE POLICY ins_any ON app.write_any FOR INSERT WITH CHECK (owner_id IS NOT NULL);                         -- BH202, BH203
GRANT SELECT, INSERT ON app.write_any TO fx_app;

CREATE TABLE app.always_true (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.always_true ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY open ON app.always_true USING (true) WITH CHECK (true);                                       -- BH201, BH110, BH202
GRANT SELECT ON app.always_true TO fx_app;

CREATE TABLE app.per_row (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.per_row ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.per_row USING (tenant_id = app.current_tenant());                     -- BH204
GRANT SELECT ON app.per_row TO fx_app;

CREATE FUNCTION app.volatile_tenant() RETURNS uuid LANGUAGE sql VOLATILE
  AS $$ SELECT nullif(pg_catalog.current_setting('app.tenant_id', true), '')::pg_catalog.uuid $$;
CREATE TABLE app.volatile_pol (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.volatile_pol ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.volatile_pol USING (tenant_id = (SELECT app.volatile_tenant()));         -- BH205
GRANT SELECT ON app.volatile_pol TO fx_app;

CREATE TABLE app.no_missing_ok (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.no_missing_ok ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.no_missing_ok USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id'), '')::uuid)); -- BH206
GRANT SELECT ON app.no_missing_ok TO fx_app;

CREATE TABLE app.cast_direct (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.cast_direct ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.cast_direct USING (tenant_id = (SELECT current_setting('app.tenant_id', true)::uuid)); -- BH207
GRANT SELECT ON app.cast_direct TO fx_app;

-- Membership: the tautology (BH208, BH209) and its correct form (silent).
CREATE TABLE app.participants (tenant_id uuid NOT NULL, room_id uuid NOT NULL, entity_id uuid NOT NULL, PRIMARY KEY (tenant_id, room_id, entity_id));
ALTER TABLE app.participants ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.participants USING (tenant_id = (SELECT app.current_tenant())) WITH CHECK (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.participants TO fx_app;
CREATE TABLE app.messages (tenant_id uuid NOT NULL, id uuid NOT NULL, room_id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.messages ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON app.messages USING (tenant_id = (SELECT app.current_tenant())
  AND EXISTS (SELECT 1 FROM app.participants p WHERE p.room_id = room_id AND p.entity_id = (SELECT app.current_entity())));
GRANT SELECT ON app.messages TO fx_app;
CREATE TABLE app.messages_ok (tenant_id uuid NOT NULL, id uuid NOT NULL, room_id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.messages_ok ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON app.messages_ok USING (tenant_id = (SELECT app.current_tenant())
  AND EXISTS (SELECT 1 FROM app.participants p WHERE p.room_id = messages_ok.room_id AND p.entity_id = (SELECT app.current_entity())));
GRANT SELECT ON app.messages_ok TO fx_app;

CREATE TABLE app.admins (entity_id uuid PRIMARY KEY);                                                        -- not a tenant table
GRANT SELECT ON app.admins TO fx_app;
CREATE TABLE app.admin_bypass (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.admin_bypass ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_or_admin ON app.admin_bypass USING (tenant_id = (SELECT app.current_tenant())
  OR EXISTS (SELECT 1 FROM app.admins a WHERE a.entity_id = (SELECT app.current_entity())));                   -- BH209
GRANT SELECT ON app.admin_bypass TO fx_app;

CREATE TABLE app.in_sub (tenant_id uuid NOT NULL, id uuid NOT NULL, room_id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.in_sub ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON app.in_sub USING (tenant_id = (SELECT app.current_tenant())
  AND room_id IN (SELECT p.room_id FROM app.participants p WHERE p.entity_id = (SELECT app.current_entity()))); -- BH210
GRANT SELECT ON app.in_sub TO fx_app;

CREATE TABLE app.fail_open (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.fail_open ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.fail_open USING (tenant_id = (SELECT app.current_tenant()) OR (SELECT app.current_tenant()) IS NULL); -- BH211
GRANT SELECT ON app.fail_open TO fx_app;

CREATE TABLE app.shared_owned (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));   -- BH304
ALTER TABLE app.shared_owned ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.shared_owned USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.shared_owned TO fx_app;

CREATE TABLE app.truncatable (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));     -- BH401
ALTER TABLE app.truncatable ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.truncatable USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT, TRUNCATE ON app.truncatable TO fx_app;

CREATE TABLE app.triggerable (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));     -- BH402
ALTER TABLE app.triggerable ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.triggerable USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT, TRIGGER ON app.triggerable TO fx_app;

CREATE TABLE app.referenceable (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));   -- BH403
ALTER TABLE app.referenceable ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.referenceable USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT, REFERENCES ON app.referenceable TO fx_app;

CREATE TABLE app.public_read (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));     -- BH404
ALTER TABLE app.public_read ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.public_read USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.public_read TO PUBLIC;

CREATE TABLE app.regrant (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));         -- BH406
ALTER TABLE app.regrant ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.regrant USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.regrant TO fx_app WITH GRANT OPTION;

CREATE TABLE app.serial_ids (tenant_id uuid NOT NULL, id bigserial, PRIMARY KEY (tenant_id, id));          -- BH407
ALTER TABLE app.serial_ids ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.serial_ids USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.serial_ids TO fx_app;

-- BH501: a helper pinned to a schema the runtime role can create in.
CREATE FUNCTION app.helper_pinned() RETURNS uuid LANGUAGE sql STABLE SET search_path = scratch, pg_catalog
  AS $$ SELECT nullif(pg_catalog.current_setting('app.tenant_id', true), '')::pg_catalog.uuid $$;
CREATE TABLE app.pinned_helper_tbl (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.pinned_helper_tbl ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.pinned_helper_tbl USING (tenant_id = (SELECT app.helper_pinned()));
GRANT SELECT ON app.pinned_helper_tbl TO fx_app;

-- BH502, BH504: a plpgsql helper reading participants unqualified.
CREATE FUNCTION app.member_rooms_unq() RETURNS uuid[] LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN ARRAY(SELECT p.room_id FROM participants p WHERE p.entity_id = app.current_entity());
END $$;
CREATE TABLE app.shadowable (tenant_id uuid NOT NULL, id uuid NOT NULL, room_id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.shadowable ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY member ON app.shadowable USING (tenant_id = (SELECT app.current_tenant()) AND room_id = ANY (coalesce((SELECT app.member_rooms_unq()), '{}')));
GRANT SELECT ON app.shadowable TO fx_app;

CREATE FUNCTION app.definer_nopath() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;           -- BH503
REVOKE ALL ON FUNCTION app.definer_nopath() FROM PUBLIC;
CREATE FUNCTION app.definer_public() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$; -- BH505
CREATE FUNCTION app.messages_for(user_id uuid) RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT m.id FROM app.messages m JOIN app.participants p ON p.room_id = m.room_id WHERE p.entity_id = user_id $$; -- BH506
REVOKE ALL ON FUNCTION app.messages_for(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.messages_for(uuid) TO fx_app;
CREATE FUNCTION app.messages_for_me(user_id uuid) RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT m.id FROM app.messages m JOIN app.participants p ON p.room_id = m.room_id WHERE p.entity_id = user_id AND user_id = app.current_entity() $$;
REVOKE ALL ON FUNCTION app.messages_for_me(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.messages_for_me(uuid) TO fx_app;
CREATE FUNCTION app.leaky_eq(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$ SELECT a = b $$;
CREATE FUNCTION app.set_tenant_session(t uuid) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM set_config('app.tenant_id', t::text, false);                                                    -- BH508
END $$;
CREATE FUNCTION app.set_tenant_local(t uuid) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM set_config('app.tenant_id', t::text, true);
  -- SET app.tenant_id = 'x' in a comment does not count
END $$;
CREATE FUNCTION app.set_role_session() RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  SET ROLE fx_owner;                                                                                      -- BH508
END $$;

-- Views.
CREATE VIEW app.all_docs AS SELECT * FROM app.not_forced;                                                  -- BH601
CREATE VIEW app.docs_invoker WITH (security_invoker = true) AS SELECT * FROM app.not_forced;
CREATE VIEW app.good_view AS SELECT * FROM app.good;
GRANT SELECT ON app.all_docs, app.docs_invoker, app.good_view TO fx_app;
CREATE MATERIALIZED VIEW app.mv_good AS SELECT tenant_id, id FROM app.good;                                -- BH602
GRANT SELECT ON app.mv_good TO fx_app;

CREATE TABLE app.ruled (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.ruled ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.ruled USING (tenant_id = (SELECT app.current_tenant()));
CREATE RULE copy_ins AS ON INSERT TO app.ruled DO ALSO NOTIFY ruled;                                      -- BH603
GRANT SELECT ON app.ruled TO fx_app;

CREATE TABLE app.trig_foreign (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.trig_foreign ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.trig_foreign USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.trig_foreign TO fx_app;

CREATE TABLE app.notified (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.notified ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.notified USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.notified TO fx_app;
CREATE FUNCTION app.notify_change() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_notify('changes', NEW.tenant_id::text || ':' || NEW.id::text);
  RETURN NULL;
END $$;
CREATE TRIGGER notify_change AFTER INSERT ON app.notified FOR EACH ROW EXECUTE FUNCTION app.notify_change(); -- BH605

CREATE TABLE app.published (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.published ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.published USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.published TO fx_app;

CREATE TABLE app.unique_email (tenant_id uuid NOT NULL, id uuid NOT NULL, email text NOT NULL, PRIMARY KEY (tenant_id, id), UNIQUE (email)); -- BH701
ALTER TABLE app.unique_email ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.unique_email USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.unique_email TO fx_app;

CREATE TABLE app.global_ids (tenant_id uuid NOT NULL, id uuid PRIMARY KEY);                                -- BH701, BH703
ALTER TABLE app.global_ids ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.global_ids USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.global_ids TO fx_app;
CREATE TABLE app.fk_no_tenant (tenant_id uuid NOT NULL, id uuid NOT NULL, ref uuid REFERENCES app.global_ids (id), PRIMARY KEY (tenant_id, id)); -- BH702
ALTER TABLE app.fk_no_tenant ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.fk_no_tenant USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.fk_no_tenant TO fx_app;

CREATE TABLE app.unindexed (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (id, tenant_id));       -- BH703
ALTER TABLE app.unindexed ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.unindexed USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.unindexed TO fx_app;

CREATE TABLE app.searchable (tenant_id uuid NOT NULL, id uuid NOT NULL, body tsvector, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.searchable ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.searchable USING (tenant_id = (SELECT app.current_tenant()));
CREATE INDEX searchable_gin ON app.searchable USING gin (body);                                            -- BH704
GRANT SELECT ON app.searchable TO fx_app;

CREATE TABLE app.regional (tenant_id uuid NOT NULL, id uuid NOT NULL, region text NOT NULL, PRIMARY KEY (tenant_id, id));
ALTER TABLE app.regional ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.regional USING (tenant_id = (SELECT app.current_tenant()) AND region = (SELECT current_setting('app.region', true))); -- BH802, BH803
GRANT SELECT ON app.regional TO fx_app;

-- Quoted, mixed-case names in a second schema (BH101).
CREATE TABLE "Mixed Schema"."Tenant Docs" (tenant_id uuid NOT NULL, "Id" uuid NOT NULL, PRIMARY KEY (tenant_id, "Id"));
GRANT SELECT ON "Mixed Schema"."Tenant Docs" TO fx_app;

RESET ROLE;

-- Owned by others.
CREATE TABLE app.runtime_owned (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));   -- BH303 (+401..403: the owner holds every privilege)
ALTER TABLE app.runtime_owned ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.runtime_owned USING (tenant_id = (SELECT app.current_tenant()));
ALTER TABLE app.runtime_owned OWNER TO fx_app;
CREATE TABLE app.runtime_owned_unforced (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)); -- BH103, BH303
ALTER TABLE app.runtime_owned_unforced ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.runtime_owned_unforced USING (tenant_id = (SELECT app.current_tenant()));
ALTER TABLE app.runtime_owned_unforced OWNER TO fx_app;
ALTER TABLE app.shared_owned OWNER TO fx_shared;
CREATE TABLE app.app_notes (id int PRIMARY KEY);                                                           -- BH307
ALTER TABLE app.app_notes OWNER TO fx_app;
CREATE FUNCTION app.app_owned_fn() RETURNS int LANGUAGE sql SET search_path = pg_catalog AS $$ SELECT 1 $$; -- BH307
ALTER FUNCTION app.app_owned_fn() OWNER TO fx_app;

CREATE TABLE app.super_owned (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));     -- BH308
ALTER TABLE app.super_owned ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.super_owned USING (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT ON app.super_owned TO fx_app;

ALTER FUNCTION app.leaky_eq(text, text) LEAKPROOF;                                                        -- BH507

CREATE FUNCTION app.definer_bypass() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$; -- BH509
REVOKE ALL ON FUNCTION app.definer_bypass() FROM PUBLIC;
ALTER FUNCTION app.definer_bypass() OWNER TO fx_bypass;

CREATE FUNCTION app.capture() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NEW; END $$;
ALTER FUNCTION app.capture() OWNER TO fx_other;
CREATE TRIGGER capture BEFORE INSERT ON app.trig_foreign FOR EACH ROW EXECUTE FUNCTION app.capture();     -- BH604

CREATE PUBLICATION fx_pub FOR TABLE app.published, app.admins;                                            -- BH606 (admins: not a tenant table)

CREATE FOREIGN DATA WRAPPER fx_fdw;
CREATE SERVER fx_srv FOREIGN DATA WRAPPER fx_fdw;
CREATE FOREIGN TABLE app.remote (tenant_id uuid, id uuid) SERVER fx_srv;                                  -- BH607
GRANT SELECT ON app.remote TO fx_app;

DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET app.tenant_id = %L', current_database(), '00000000-0000-0000-0000-000000000001'); END $$; -- BH801
