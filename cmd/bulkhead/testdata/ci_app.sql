-- The example application schema of docs/CI.md: a plain tenant setting
-- (app.tenant_id), an owner role and a runtime role app_user. TestCIFlow
-- applies it to a database, as the workflow's migration step does.
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE app_user NOLOGIN NOSUPERUSER NOBYPASSRLS;
CREATE SCHEMA app AUTHORIZATION app_owner;
GRANT USAGE ON SCHEMA app TO app_user;
SET ROLE app_owner;
CREATE FUNCTION app.current_tenant() RETURNS uuid LANGUAGE sql STABLE SET search_path = pg_catalog
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
CREATE TABLE app.projects (tenant_id uuid NOT NULL, id uuid NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE app.tasks (tenant_id uuid NOT NULL, id uuid NOT NULL, project_id uuid NOT NULL, title text NOT NULL,
  PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, project_id) REFERENCES app.projects (tenant_id, id));
ALTER TABLE app.projects ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE app.tasks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON app.projects USING (tenant_id = (SELECT app.current_tenant())) WITH CHECK (tenant_id = (SELECT app.current_tenant()));
CREATE POLICY tenant ON app.tasks USING (tenant_id = (SELECT app.current_tenant())) WITH CHECK (tenant_id = (SELECT app.current_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON app.projects, app.tasks TO app_user;
RESET ROLE;
