-- Row-level security's cost inside PostgreSQL, without the client, the
-- network or the scheduler's placement of backends (docs/BENCHMARKS.md,
-- "The RLS cost inside the database"). Each statement runs 2,000 times in a
-- PL/pgSQL loop (a cached plan, executor start-up and shut-down included,
-- as a prepared statement from pgx) as the runtime role under bulkhead's
-- policies, and as a role with the runtime role's privileges that bypasses
-- row-level security; the two sides alternate, 12 rounds each, and the
-- minimum and median per execution are printed. The minimum is the figure
-- to read on a shared machine: interference only adds time.
-- THROWAWAY CLUSTER ONLY: it loads data and creates a role.
--
--   bulkhead db start --data-dir /tmp/rc && bulkhead migrate up --data-dir /tmp/rc
--   psql "$(bulkhead db info --data-dir /tmp/rc | awk '/^superuser:/{print $2}')" -f scripts/rls-cost.sql
--
-- Data: 1,000 tenants, 11 entities each, one world and 10 rooms each, every
-- entity in about half the rooms, 10 memories per participant and room
-- (~550,000). The caller is one participant of one room.
\set QUIET on
\set ON_ERROR_STOP on
SET session_replication_role = replica; -- no triggers or foreign-key checks while loading
INSERT INTO bulkhead.tenants (id, name) SELECT gen_random_uuid(), 't' || g FROM generate_series(1, 1000) g;
INSERT INTO bulkhead.entities (tenant_id, id, kind, name) SELECT t.id, gen_random_uuid(), 'user', 'e' || g FROM bulkhead.tenants t, generate_series(1, 11) g;
INSERT INTO bulkhead.worlds (tenant_id, id, owner_id, name)
  SELECT t.id, gen_random_uuid(), (SELECT e.id FROM bulkhead.entities e WHERE e.tenant_id = t.id LIMIT 1), 'w' FROM bulkhead.tenants t;
INSERT INTO bulkhead.rooms (tenant_id, id, world_id, name) SELECT w.tenant_id, gen_random_uuid(), w.id, 'r' || g FROM bulkhead.worlds w, generate_series(1, 10) g;
INSERT INTO bulkhead.participants (tenant_id, room_id, entity_id)
  SELECT r.tenant_id, r.id, e.id FROM bulkhead.rooms r JOIN bulkhead.entities e ON e.tenant_id = r.tenant_id WHERE random() < 0.5;
INSERT INTO bulkhead.memories (tenant_id, id, room_id, author_id, content, created_at)
  SELECT p.tenant_id, gen_random_uuid(), p.room_id, p.entity_id, 'message ' || g || ' with some words', now() - g * interval '1 minute'
  FROM bulkhead.participants p, generate_series(1, 10) g;
RESET session_replication_role;
ANALYZE;
CREATE ROLE rls_cost_bypass NOLOGIN BYPASSRLS IN ROLE bulkhead_app;

-- The caller: a participant of a room with at least 30 memories; its
-- context set as a superuser may (bulkhead.enter does it for the server).
SELECT p.tenant_id AS t, p.room_id AS r, p.entity_id AS e, (SELECT m.id FROM bulkhead.memories m WHERE m.tenant_id = p.tenant_id AND m.room_id = p.room_id LIMIT 1) AS m
FROM bulkhead.participants p WHERE (SELECT count(*) FROM bulkhead.memories m WHERE m.tenant_id = p.tenant_id AND m.room_id = p.room_id) >= 30
LIMIT 1 \gset
SET bulkhead.tenant_id = :'t';
SET bulkhead.entity_id = :'e';

-- op: 1 directory read (layer 1 only), 2 point read, 3 participant check,
-- 4 history page (50), 5 and 6 below. Returns µs per execution; fails if the caller sees
-- nothing (a side that reads nothing would look cheap).
CREATE FUNCTION pg_temp.run(op int, t uuid, r uuid, e uuid, m uuid, n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE s timestamptz; x int;
BEGIN
  s := clock_timestamp();
  FOR i IN 1..n LOOP
    CASE op
    WHEN 1 THEN SELECT count(*) INTO x FROM bulkhead.entities WHERE tenant_id = t AND id = e;
    WHEN 2 THEN SELECT count(*) INTO x FROM bulkhead.memories WHERE tenant_id = t AND id = m;
    WHEN 3 THEN SELECT count(*) INTO x FROM (SELECT 1 WHERE EXISTS (SELECT 1 FROM bulkhead.participants WHERE tenant_id = t AND room_id = r AND entity_id = e)) q;
    WHEN 4 THEN SELECT count(*) INTO x FROM (SELECT id, content, created_at FROM bulkhead.memories WHERE tenant_id = t AND room_id = r ORDER BY created_at DESC, id DESC LIMIT 50) q;
    -- 5 and 6: 2 and 4 with the membership check an application would
    -- write without row-level security (bench rls's "app-side checks").
    WHEN 5 THEN SELECT count(*) INTO x FROM bulkhead.memories mm WHERE tenant_id = t AND id = m
      AND EXISTS (SELECT 1 FROM bulkhead.participants p WHERE p.tenant_id = t AND p.room_id = mm.room_id AND p.entity_id = e);
    ELSE SELECT count(*) INTO x FROM (SELECT id, content, created_at FROM bulkhead.memories WHERE tenant_id = t AND room_id = r
      AND EXISTS (SELECT 1 FROM bulkhead.participants p WHERE p.tenant_id = t AND p.room_id = r AND p.entity_id = e) ORDER BY created_at DESC, id DESC LIMIT 50) q;
    END CASE;
  END LOOP;
  IF x < 1 THEN RAISE 'operation % read nothing as %', op, current_user; END IF;
  RETURN extract(epoch FROM clock_timestamp() - s) * 1e6 / n;
END $$;
CREATE TEMP TABLE samples (op int, side text, us float8);
GRANT INSERT ON samples TO PUBLIC;

SELECT format('SET ROLE %s; INSERT INTO samples SELECT %s, %L, pg_temp.run(%s, %L, %L, %L, %L, 2000); RESET ROLE;',
              side, op, side, op, :'t', :'r', :'e', :'m')
FROM generate_series(1, 12) round, generate_series(1, 6) op, unnest(ARRAY['rls_cost_bypass', 'bulkhead_app']) side
WHERE op <= 4 OR side = 'rls_cost_bypass'
ORDER BY round, op, (side = 'bulkhead_app') = (round % 2 = 0) \gexec

\set QUIET off
-- Per operation, µs per execution (minimum of 12 rounds; medians beside):
-- under the policies, the bypassing role's WHERE tenant_id query, and the
-- bypassing role's query with the application's membership check (the
-- same query where the operation checks no membership).
WITH m AS (
  SELECT op, side, min(us) AS lo, percentile_cont(0.5) WITHIN GROUP (ORDER BY us) AS mid FROM samples GROUP BY op, side
), r AS (
  SELECT o.op, rls.lo AS rls, rls.mid AS rls_mid, base.lo AS base, base.mid AS base_mid, coalesce(app.lo, base.lo) AS app, coalesce(app.mid, base.mid) AS app_mid
  FROM generate_series(1, 4) o(op)
  JOIN m rls ON rls.op = o.op AND rls.side = 'bulkhead_app'
  JOIN m base ON base.op = o.op AND base.side = 'rls_cost_bypass'
  LEFT JOIN m app ON app.op = CASE o.op WHEN 2 THEN 5 WHEN 4 THEN 6 END AND app.side = 'rls_cost_bypass'
)
SELECT CASE op WHEN 1 THEN 'directory read (layer 1 only)' WHEN 2 THEN 'point read' WHEN 3 THEN 'participant check' ELSE 'history page (50)' END AS operation,
       round(rls::numeric, 2) AS rls_us, round(base::numeric, 2) AS tenant_where_us, round(app::numeric, 2) AS app_side_us,
       round((rls - base)::numeric, 2) AS rls_minus_where, round((rls - app)::numeric, 2) AS rls_minus_app,
       round(rls_mid::numeric, 2) || ' / ' || round(base_mid::numeric, 2) || ' / ' || round(app_mid::numeric, 2) AS medians
FROM r ORDER BY op;
