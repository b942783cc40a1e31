-- Live delivery of room messages (GET /v1/rooms/{id}/stream): every new
-- memory is announced on the channel bulkhead_memories as
-- "<tenant_id>:<room_id>:<id>". Ids only, never content: a listener learns
-- that a row exists, and the stream reads it back in the subscriber's own
-- scope, so row-level security decides what is forwarded (postgres.Notifier).
--
-- The function is plain (not SECURITY DEFINER: it reads nothing, and a
-- trigger runs with the inserting role's rights), pins search_path and
-- qualifies every name. NOTIFY is transactional: a rolled-back insert
-- announces nothing. Nobody needs EXECUTE on a trigger function (it is
-- checked when the trigger is created, not when it fires), so none is
-- granted.

-- +goose Up
-- CREATE TRIGGER locks memories against writes: give up rather than queue
-- behind a long transaction with every insert queued behind it (rerun it).
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30s';
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

-- +goose Down
DROP TRIGGER IF EXISTS memories_notify ON bulkhead.memories;
DROP FUNCTION IF EXISTS bulkhead.notify_memory_inserted();
