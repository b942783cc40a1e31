-- A broken migration for TestCheckFindsAWeakenedPolicy: anyone in the
-- tenant may write a memory into any room, as anyone.
-- +goose Up
ALTER POLICY bulkhead_insert ON bulkhead.memories WITH CHECK (true);
-- +goose Down
SELECT 1;
