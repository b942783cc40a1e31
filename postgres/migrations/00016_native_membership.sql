-- bulkhead_context 1.1: member_rooms_native, the membership look-up of the
-- strict policies in C (issue 16, item 1). The PL/pgSQL SECURITY DEFINER
-- member_rooms cost ~30-40 us per statement in a definer context; the C
-- function reads participants through its (tenant_id, entity_id) index for
-- the entity in context, ~4 us. 00017 (generated) makes member_rooms an
-- inlined SQL call to it and keeps the delegation path in PL/pgSQL as
-- member_rooms_delegated.
--
-- PrepareDatabase updates the extension as the admin; where it didn't (an
-- external database whose extension this role created), this role can,
-- since it owns it. Otherwise the migration stops with the fix.

-- +goose Up
-- +goose StatementBegin
DO $up$
BEGIN
  IF pg_catalog.to_regprocedure('bulkhead.member_rooms_native(text)') IS NULL THEN
    BEGIN
      ALTER EXTENSION bulkhead_context UPDATE TO '1.1';
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION 'bulkhead_context 1.1 is required (bulkhead.member_rooms_native): %', SQLERRM
        USING HINT = 'Install the extension files of this build (scripts/deps.sh, or make -C pgext install), then, as a superuser or the extension''s owner: ALTER EXTENSION bulkhead_context UPDATE TO ''1.1''.';
    END;
  END IF;
END
$up$;
-- +goose StatementEnd

-- +goose Down
-- The function stays (it belongs to the extension, which may be the
-- admin's); 00017's Down puts the PL/pgSQL member_rooms back, which is all
-- the policies call.
SELECT 1;
