-- Trace context in metadata.
--
-- With OpenTelemetry on, append() stores the W3C trace context of its span in each event's
-- metadata under "traceparent". A retry of the same append (same ids, same content) after an
-- unknown outcome runs in another span and so carries another traceparent; it must still be
-- recognised as the same append (an idempotent retry), not reported as an id clash. From now on
-- the idempotency check compares metadata without the "traceparent" key.
--
-- append_batch is otherwise unchanged: its definition is taken from the catalog, the one
-- comparison is replaced, and the function is created again under the same signature. The
-- migration fails (and rolls back) if that comparison is not found exactly once.
DO $migration$
DECLARE
  v_old   text := pg_get_functiondef('__SCHEMA__.append_batch(jsonb, boolean, bigint, uuid[], boolean)'::regprocedure);
  v_from  text := 'x.metadata = e.metadata';
  -- Metadata that is not an object (written by raw SQL or an old version) is compared as it is.
  v_to    text := '(CASE WHEN jsonb_typeof(x.metadata) = ''object'' THEN x.metadata - ''traceparent'' ELSE x.metadata END) = (CASE WHEN jsonb_typeof(e.metadata) = ''object'' THEN e.metadata - ''traceparent'' ELSE e.metadata END)';
  v_new   text;
BEGIN
  IF (length(v_old) - length(replace(v_old, v_from, ''))) / length(v_from) <> 1 THEN
    RAISE EXCEPTION 'append_batch does not compare metadata as expected; cannot apply migration 0005';
  END IF;
  v_new := replace(v_old, v_from, v_to);
  EXECUTE v_new;
END
$migration$;
