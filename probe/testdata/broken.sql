-- A database of deliberately broken tenant tables, one leak class each, and
-- good tables that must stay silent (TestProbeFindsEveryBrokenTable). The
-- policies read the tenant from the plain setting app.tenant_id; the
-- runtime role is probe_app; tables belong to probe_owner unless said.
CREATE ROLE probe_owner NOLOGIN;
CREATE ROLE probe_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
CREATE SCHEMA acme AUTHORIZATION probe_owner;
CREATE SCHEMA "Mixed Case" AUTHORIZATION probe_owner;
GRANT USAGE ON SCHEMA acme, "Mixed Case" TO probe_app;
SET ROLE probe_owner;

CREATE FUNCTION acme.cur() RETURNS uuid LANGUAGE sql STABLE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

-- Good: RLS + FORCE, one tenant policy, tenant-leading keys (a domain-typed column too).
CREATE DOMAIN acme.label AS text CHECK (length(VALUE) < 100);
CREATE TABLE acme.good (tenant_id uuid NOT NULL, id uuid NOT NULL, body text NOT NULL, tag acme.label NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE acme.good_child (tenant_id uuid NOT NULL, id uuid NOT NULL, good_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, good_id) REFERENCES acme.good (tenant_id, id));
CREATE TABLE "Mixed Case"."Good Items" ("tenant_id" uuid NOT NULL, "Id" uuid NOT NULL, "Label" text NOT NULL, PRIMARY KEY ("tenant_id", "Id"));
CREATE TABLE acme.good_parted (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
CREATE TABLE acme.good_parted_0 PARTITION OF acme.good_parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE acme.good_parted_1 PARTITION OF acme.good_parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);

-- 1. rls-off: no row-level security at all.
CREATE TABLE acme.b_rls_off (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
-- 2. owner-noforce: RLS without FORCE on a table the runtime role owns.
CREATE TABLE acme.b_owner_noforce (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
-- 3. true-policy: a permissive USING (true) next to the tenant policy.
CREATE TABLE acme.b_true_policy (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
-- 4. move-tenant: the UPDATE policy checks nothing about the new row.
CREATE TABLE acme.b_no_check (tenant_id uuid NOT NULL, id uuid NOT NULL, note text, PRIMARY KEY (tenant_id, id));
-- 5. blind-update: the UPDATE policy lets every row be updated.
CREATE TABLE acme.b_update_open (tenant_id uuid NOT NULL, id uuid NOT NULL, note text NOT NULL DEFAULT 'x', PRIMARY KEY (tenant_id, id));
-- 6. blind-delete: the DELETE policy lets every row be deleted.
CREATE TABLE acme.b_delete_open (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
-- 7. no-context: a missing tenant means "all".
CREATE TABLE acme.b_nocontext (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
-- 8. malformed: a tenant that is not a uuid means "all".
CREATE TABLE acme.b_malformed (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
-- 9. unique-oracle: a unique key without the tenant column.
CREATE TABLE acme.b_parent (tenant_id uuid NOT NULL, id uuid NOT NULL, email text NOT NULL UNIQUE, PRIMARY KEY (tenant_id, id), UNIQUE (id));
-- 10. fk-oracle, move-parent: a foreign key without the tenant column.
CREATE TABLE acme.b_child (tenant_id uuid NOT NULL, id uuid NOT NULL, parent_id uuid NOT NULL REFERENCES acme.b_parent (id),
  PRIMARY KEY (tenant_id, id));
-- 11. explain-count: a policy no index can serve, next to an index on the tenant.
CREATE TABLE acme.b_explain (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (id, tenant_id));
CREATE INDEX ON acme.b_explain (tenant_id);
-- 12. read-partition: partitions without their own row-level security.
CREATE TABLE acme.b_parted (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
CREATE TABLE acme.b_parted_0 PARTITION OF acme.b_parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE acme.b_parted_1 PARTITION OF acme.b_parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);

-- Not probed: row-level security but no tenant column; no tenant at all.
CREATE TABLE acme.no_tenant (owner_name text PRIMARY KEY);
ALTER TABLE acme.no_tenant ENABLE ROW LEVEL SECURITY;
CREATE TABLE acme.lookup (code text PRIMARY KEY);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['acme.good', 'acme.good_child', '"Mixed Case"."Good Items"', 'acme.good_parted', 'acme.b_owner_noforce', 'acme.b_true_policy',
      'acme.b_nocontext', 'acme.b_malformed', 'acme.b_parent', 'acme.b_child', 'acme.b_parted'] LOOP
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['acme.good', 'acme.good_child', '"Mixed Case"."Good Items"', 'acme.good_parted', 'acme.b_owner_noforce', 'acme.b_true_policy',
      'acme.b_parent', 'acme.b_child', 'acme.b_parted'] LOOP
    EXECUTE format('CREATE POLICY tenant ON %s USING (tenant_id = (SELECT acme.cur())) WITH CHECK (tenant_id = (SELECT acme.cur()))', t);
  END LOOP;
END $$;
ALTER TABLE acme.good_parted_0 ENABLE ROW LEVEL SECURITY;
ALTER TABLE acme.good_parted_1 ENABLE ROW LEVEL SECURITY;
ALTER TABLE acme.b_owner_noforce NO FORCE ROW LEVEL SECURITY;
CREATE POLICY everyone ON acme.b_true_policy USING (true);

ALTER TABLE acme.b_no_check ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY r ON acme.b_no_check FOR SELECT USING (tenant_id = (SELECT acme.cur()));
CREATE POLICY i ON acme.b_no_check FOR INSERT WITH CHECK (tenant_id = (SELECT acme.cur()));
CREATE POLICY u ON acme.b_no_check FOR UPDATE USING (tenant_id = (SELECT acme.cur())) WITH CHECK (true);
CREATE POLICY d ON acme.b_no_check FOR DELETE USING (tenant_id = (SELECT acme.cur()));

ALTER TABLE acme.b_update_open ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY r ON acme.b_update_open FOR SELECT USING (tenant_id = (SELECT acme.cur()));
CREATE POLICY i ON acme.b_update_open FOR INSERT WITH CHECK (tenant_id = (SELECT acme.cur()));
CREATE POLICY u ON acme.b_update_open FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY d ON acme.b_update_open FOR DELETE USING (tenant_id = (SELECT acme.cur()));

ALTER TABLE acme.b_delete_open ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY r ON acme.b_delete_open FOR SELECT USING (tenant_id = (SELECT acme.cur()));
CREATE POLICY i ON acme.b_delete_open FOR INSERT WITH CHECK (tenant_id = (SELECT acme.cur()));
CREATE POLICY u ON acme.b_delete_open FOR UPDATE USING (tenant_id = (SELECT acme.cur())) WITH CHECK (tenant_id = (SELECT acme.cur()));
CREATE POLICY d ON acme.b_delete_open FOR DELETE USING (true);

CREATE POLICY tenant ON acme.b_nocontext
  USING (tenant_id = coalesce(nullif(current_setting('app.tenant_id', true), '')::uuid, tenant_id));
CREATE POLICY tenant ON acme.b_malformed
  USING (CASE WHEN coalesce(current_setting('app.tenant_id', true), '') = '' THEN false
              WHEN current_setting('app.tenant_id', true) ~ '^[0-9a-f-]{36}$' THEN tenant_id = current_setting('app.tenant_id', true)::uuid
              ELSE true END);

ALTER TABLE acme.b_explain ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON acme.b_explain USING (tenant_id::text = current_setting('app.tenant_id', true));

RESET ROLE;
ALTER TABLE acme.b_owner_noforce OWNER TO probe_app;
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname IN ('acme', 'Mixed Case') AND c.relkind IN ('r', 'p') LOOP
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO probe_app', t);
  END LOOP;
END $$;
-- Partitions of the good table are closed to the runtime role; the broken
-- table's are open and have no row-level security of their own.
REVOKE ALL ON acme.good_parted_0, acme.good_parted_1 FROM probe_app;
