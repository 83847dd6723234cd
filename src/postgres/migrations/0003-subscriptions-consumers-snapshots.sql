-- Subscriptions, durable consumers and snapshots.
--
-- 1. Every append that moves the head notifies the channel named like the schema, with the new
--    head as payload. Subscribers LISTEN on it as a wake-up only: notifications are lost while a
--    listener reconnects, so they also poll. A trigger on the one head row (updated once per
--    batch) keeps append_batch unchanged and costs one notification per batch, not per event.
-- 2. consumers: one row per durable consumer, its checkpoint (every event up to `position` is
--    processed) and what an operator needs to see when it stopped.
-- 3. snapshots: a projection's state up to a position, keyed by name, version and query hash.
CREATE FUNCTION __SCHEMA__.notify_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_TABLE_SCHEMA, NEW.position::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER head_moved AFTER UPDATE OF position ON __SCHEMA__.head
  FOR EACH ROW WHEN (NEW.position > OLD.position) EXECUTE FUNCTION __SCHEMA__.notify_head();

CREATE TABLE __SCHEMA__.consumers (
  name            text        NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
  position        bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
  -- The id of the event at `position` when the checkpoint was written: a consumer refuses to
  -- continue if another event sits there now (a store restored from an older backup).
  checkpoint_event_id uuid,
  -- 'idle' (never ran or stopped cleanly), 'running', 'failed' (stopped on an error, see below)
  status          text        NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'failed')),
  failed_position bigint,
  last_error      text,
  last_error_at   timestamptz,
  -- Which instance holds the lease (for operators; the lease itself is an advisory lock).
  owner           text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE __SCHEMA__.snapshots (
  name       text        NOT NULL,
  version    integer     NOT NULL,
  query_hash text        NOT NULL,
  position   bigint      NOT NULL CHECK (position >= 0),
  -- The id of the event at `position` when saved (NULL at 0): a snapshot whose position now holds
  -- another event (a store restored from an older backup, appended to since) is not used.
  event_id   uuid,
  state      jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version, query_hash)
);
