-- bulkhead_context 1.2: can_author_native, the write check of memories in
-- C (issue 16, item 1). The PL/pgSQL SECURITY DEFINER can_author cost ~44 us
-- per appended row (pg_stat_statements, docs/BENCHMARKS.md); the C function
-- reads participants through its (tenant_id, entity_id, room_id) index for
-- the entity in context. 00019 (generated) makes can_author an inlined SQL
-- call to it and keeps the delegation path in PL/pgSQL as
-- can_author_delegated.
--
-- PrepareDatabase updates the extension as the admin; where it didn't (an
-- external database whose extension this role created), this role can,
-- since it owns it. Otherwise the migration stops with the fix.

-- +goose Up
-- +goose StatementBegin
DO $up$
BEGIN
  IF pg_catalog.to_regprocedure('bulkhead.can_author_native(uuid, uuid, text)') IS NULL THEN
    BEGIN
      ALTER EXTENSION bulkhead_context UPDATE TO '1.2';
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION 'bulkhead_context 1.2 is required (bulkhead.can_author_native): %', SQLERRM
        USING HINT = 'Install the extension files of this build (scripts/deps.sh, or make -C pgext install), then, as a superuser or the extension''s owner: ALTER EXTENSION bulkhead_context UPDATE TO ''1.2''.';
    END;
  END IF;
END
$up$;
-- +goose StatementEnd

-- +goose Down
-- The function stays (it belongs to the extension, which may be the
-- admin's); 00019's Down puts the PL/pgSQL can_author back, which is all
-- the policies call.
SELECT 1;
