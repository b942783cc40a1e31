-- Full-text search under RLS: the options of issue 16 item 2, measured by hand
-- (docs/DECISIONS.md, docs/BENCHMARKS.md "Full-text search under RLS").
-- THROWAWAY CLUSTER ONLY: it alters bulkhead's chunks policy and schema.
--
--   bulkhead db start --data-dir /tmp/fts && bulkhead migrate up --data-dir /tmp/fts
--   psql "$(bulkhead db info --data-dir /tmp/fts | awk '/^superuser:/{print $2}')" -f scripts/fts-options.sql
--
-- Part 1 loads 3 tenants x 20,000 documents x 5 chunks; part 2 adds the RLS-off
-- GIN index and a prototype term table; part 3 gives chunks their document's
-- visibility; part 4 runs each query 6 times, as the runtime role and with RLS
-- off (superuser), alternating, in one session (grep "Execution"). For today's
-- chunks policy, run part 4 once before part 3 as well.

-- Part 1: data
INSERT INTO bulkhead.tenants (id, name) SELECT ('00000000-0000-0000-0000-00000000000'||i)::uuid, 't'||i FROM generate_series(1,3) i;
INSERT INTO bulkhead.entities (tenant_id, id, kind, name) SELECT ('00000000-0000-0000-0000-00000000000'||i)::uuid, ('00000000-0000-0000-0001-00000000000'||u)::uuid, 'user', 'u'||u FROM generate_series(1,3) i, generate_series(1,2) u;
INSERT INTO bulkhead.documents (tenant_id, id, owner_id, visibility, title)
SELECT t.id, gen_random_uuid(), ('00000000-0000-0000-0001-00000000000'||(1 + (d % 2)))::uuid, CASE WHEN d % 5 = 0 THEN 'private' ELSE 'tenant' END, 'doc'||d
FROM bulkhead.tenants t, generate_series(1,20000) d;
INSERT INTO bulkhead.chunks (tenant_id, id, document_id, ord, content)
SELECT d.tenant_id, gen_random_uuid(), d.id, o,
  (SELECT string_agg('w' || floor(5000 * power(random(), 3))::int, ' ') FROM generate_series(1, 60 + o*0 + (d.id::text < 'z')::int*0) g)
FROM bulkhead.documents d, generate_series(0,4) o;
ANALYZE bulkhead.chunks; ANALYZE bulkhead.documents;
SELECT tenant_id, count(*) FROM bulkhead.chunks GROUP BY 1;

-- Part 2: GIN index (for the RLS-off side) and the term table prototype
CREATE INDEX chunks_tsv_gin ON bulkhead.chunks USING gin (tsv);
CREATE TABLE bulkhead.chunk_terms (tenant_id uuid NOT NULL, term text NOT NULL, chunk_id uuid NOT NULL, document_id uuid NOT NULL, PRIMARY KEY (tenant_id, term, chunk_id));
INSERT INTO bulkhead.chunk_terms SELECT c.tenant_id, t, c.id, c.document_id FROM bulkhead.chunks c, unnest(tsvector_to_array(c.tsv)) t;
ANALYZE bulkhead.chunk_terms; ANALYZE bulkhead.chunks;
SELECT pg_size_pretty(pg_total_relation_size('bulkhead.chunk_terms')), pg_size_pretty(pg_relation_size('bulkhead.chunks_tsv_gin')), pg_size_pretty(pg_total_relation_size('bulkhead.chunks'));
ALTER TABLE bulkhead.chunk_terms OWNER TO bulkhead_owner;
ALTER TABLE bulkhead.chunk_terms ENABLE ROW LEVEL SECURITY; ALTER TABLE bulkhead.chunk_terms FORCE ROW LEVEL SECURITY;
CREATE POLICY bulkhead_tenant ON bulkhead.chunk_terms USING (tenant_id = (SELECT bulkhead.current_tenant()));
GRANT SELECT ON bulkhead.chunk_terms TO bulkhead_app;
-- (with a layer-2 policy in the generated Inherit form the term table read
-- builds the same 18,000-id array: see DECISIONS.md)

-- Part 3: chunks carry their document's visibility; the policy tests the row
ALTER TABLE bulkhead.chunks ADD COLUMN owner_id uuid, ADD COLUMN visibility text, ADD COLUMN room_id uuid;
UPDATE bulkhead.chunks c SET owner_id = d.owner_id, visibility = d.visibility, room_id = d.room_id FROM bulkhead.documents d WHERE d.tenant_id = c.tenant_id AND d.id = c.document_id;
VACUUM ANALYZE bulkhead.chunks;
ALTER POLICY bulkhead_select ON bulkhead.chunks USING ((visibility = 'tenant'::text) OR (owner_id = ANY (( SELECT bulkhead.current_actors('documents:read'::text) AS current_actors)::uuid[])) OR ((visibility = 'room'::text) AND (room_id = ANY (( SELECT bulkhead.member_rooms('documents:read'::text) AS member_rooms)::uuid[]))));

-- Part 4: the queries (byid uses 50 random ids of tenant 1's chunks)
SELECT '{' || string_agg(id::text, ',') || '}' AS ids FROM (SELECT id FROM bulkhead.chunks WHERE tenant_id = '00000000-0000-0000-0000-000000000001' ORDER BY random() LIMIT 50) s \gset
SET bulkhead.tenant_id = '00000000-0000-0000-0000-000000000001';
SET bulkhead.entity_id = '00000000-0000-0000-0001-000000000001';
\echo fts rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo fts off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo terms rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo terms off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo byid rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
RESET ROLE;
\echo byid off
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
\echo fts rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo fts off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo terms rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo terms off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo byid rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
RESET ROLE;
\echo byid off
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
\echo fts rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo fts off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo terms rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo terms off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo byid rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
RESET ROLE;
\echo byid off
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
\echo fts rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo fts off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo terms rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo terms off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo byid rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
RESET ROLE;
\echo byid off
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
\echo fts rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo fts off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo terms rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo terms off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo byid rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
RESET ROLE;
\echo byid off
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
\echo fts rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo fts off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q)
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM bulkhead.chunks c, q WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo terms rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
RESET ROLE;
\echo terms off
EXPLAIN (ANALYZE, TIMING OFF) WITH q AS (SELECT replace(plainto_tsquery('english', 'w2000 w3500')::text, ' & ', ' | ')::tsquery AS q, tsvector_to_array(to_tsvector('english', 'w2000 w3500')) AS terms),
 cand AS (SELECT DISTINCT t.chunk_id FROM bulkhead.chunk_terms t, q WHERE t.tenant_id = '00000000-0000-0000-0000-000000000001' AND t.term = ANY(q.terms))
  SELECT c.id, ts_rank_cd(c.tsv, q.q) AS rank FROM cand JOIN bulkhead.chunks c ON c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = cand.chunk_id, q WHERE c.tsv @@ q.q ORDER BY rank DESC, c.id LIMIT 50;
\echo byid rls
SET ROLE bulkhead_app;
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
RESET ROLE;
\echo byid off
EXPLAIN (ANALYZE, TIMING OFF) SELECT c.id, c.document_id, c.content FROM bulkhead.chunks c WHERE c.tenant_id = '00000000-0000-0000-0000-000000000001' AND c.id = ANY(:'ids'::uuid[]);
