-- dynamic-streams-eventstore schema "eventstore", generated from the library's migrations. Do not edit.

CREATE SCHEMA IF NOT EXISTS "eventstore";

CREATE TABLE IF NOT EXISTS "eventstore".migrations (
  version    integer     NOT NULL PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);

-- migration 1: events

-- The event log, its head, and the append function.
-- The schema placeholder is replaced by the validated, quoted schema name before this file runs.

CREATE TABLE "eventstore".events (
  position    bigint      NOT NULL,
  id          uuid        NOT NULL,
  type        text        NOT NULL,
  tags        text[]      NOT NULL DEFAULT '{}',
  data        jsonb       NOT NULL,
  metadata    jsonb       NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL,
  CONSTRAINT events_pkey PRIMARY KEY (position),
  CONSTRAINT events_id_key UNIQUE (id),
  CONSTRAINT events_position_positive CHECK (position > 0),
  CONSTRAINT events_type_not_empty CHECK (type <> '')
);

-- Decision reads filter by type and tag; conditions with a recent `after` walk the primary key.
CREATE INDEX events_type_position_idx ON "eventstore".events (type, position);
-- fastupdate = off: the GIN pending list would otherwise make tag reads 100x slower after bulk
-- writes until the next vacuum.
CREATE INDEX events_tags_idx ON "eventstore".events USING gin (tags) WITH (fastupdate = off);
CREATE INDEX events_data_idx ON "eventstore".events USING gin (data jsonb_path_ops) WITH (fastupdate = off);

-- One row: the last position written. Its row lock, held to commit, serializes appends, which
-- makes positions gap-free and commit-ordered, and makes every snapshot prefix-complete (a
-- snapshot that sees head = H sees every event up to H).
CREATE TABLE "eventstore".head (
  singleton boolean NOT NULL DEFAULT true,
  position  bigint  NOT NULL,
  CONSTRAINT head_pkey PRIMARY KEY (singleton),
  CONSTRAINT head_singleton CHECK (singleton)
);
INSERT INTO "eventstore".head (singleton, position) VALUES (true, 0);

-- Events are facts: once visible they never change or disappear.
CREATE FUNCTION "eventstore".reject_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are immutable: % on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON "eventstore".events
  FOR EACH ROW EXECUTE FUNCTION "eventstore".reject_event_change();
CREATE TRIGGER events_are_not_truncated BEFORE TRUNCATE ON "eventstore".events
  FOR EACH STATEMENT EXECUTE FUNCTION "eventstore".reject_event_change();

-- Appends a batch of commands atomically, checking each command's condition in order, so a later
-- command sees the events of the earlier ones.
--
-- p_commands: [{ "events": [{ id, type, tags, data, metadata, occurred_at }],
--                "condition": null | { "query": { all, items: [{ types, tags, any_of, all_of }], from, until },
--                                      "after": null | "<position>" } }]
-- p_check_ids: the caller saw the same event id twice in this batch.
-- p_scan_limit: a condition whose `after` is at most this far behind the head is checked by
--   walking the events since `after` on the primary key; older or absent `after` uses the
--   type, tag and payload indexes.
--
-- Returns one row per command, in order:
--   r_status 0 = appended (r_position = its last position)
--            1 = condition failed (r_conflict = a conflicting position)
--            2 = event id clash (r_conflict = position of a stored event with one of the ids)
--            3 = already appended by an earlier identical call (r_position = its last position)
--
-- Must run at READ COMMITTED, outside an explicit transaction block, with nothing else in its
-- transaction: the function relies on each statement after the lock taking a fresh snapshot.
CREATE FUNCTION "eventstore".append_batch(p_commands jsonb, p_check_ids boolean, p_scan_limit bigint DEFAULT 2000)
RETURNS TABLE (r_status smallint, r_position bigint, r_conflict bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  v_head      bigint;
  v_start     bigint;
  v_now       timestamptz;
  v_command   jsonb;
  v_events    jsonb;
  v_count     integer;
  v_condition jsonb;
  v_query     jsonb;
  v_after     bigint;
  v_conflict  bigint;
  v_found     integer;
  v_same      boolean;
  v_max       bigint;
  v_item      record;
  v_sql       text;
  v_probe     bigint;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'append_batch must run at READ COMMITTED, not %', current_setting('transaction_isolation')
      USING ERRCODE = 'invalid_transaction_state';
  END IF;

  -- The lock that serializes appends. Waiting here and then reading in later statements (each
  -- with a fresh snapshot) is what makes the check-then-insert atomic: a check in the same
  -- statement as the lock would still use the snapshot from before the wait.
  SELECT h.position INTO v_head FROM "eventstore".head h WHERE h.singleton FOR UPDATE;
  v_start := v_head;
  v_now := clock_timestamp();

  IF NOT p_check_ids THEN
    -- Usually no id of the batch is stored yet, and then no command needs the per-command check.
    p_check_ids := EXISTS (
      SELECT 1 FROM "eventstore".events x
      WHERE x.id IN (SELECT (e->>'id')::uuid FROM jsonb_array_elements(p_commands) c, jsonb_array_elements(c->'events') e));
  END IF;

  FOR v_command IN SELECT value FROM jsonb_array_elements(p_commands) LOOP
    v_events := v_command->'events';
    v_count := jsonb_array_length(v_events);

    -- Idempotent retry: every id stored with the same content returns the original position.
    IF p_check_ids THEN
      SELECT count(*)::integer,
             max(x.position),
             bool_and(x.type = e.type AND x.tags = e.tags AND x.data = COALESCE(e.data, 'null'::jsonb) AND x.metadata = e.metadata)
        INTO v_found, v_max, v_same
        FROM jsonb_to_recordset(v_events) AS e(id uuid, type text, tags text[], data jsonb, metadata jsonb)
        JOIN "eventstore".events x ON x.id = e.id;
      IF v_found > 0 THEN
        IF v_found = v_count AND v_same THEN
          RETURN QUERY SELECT 3::smallint, v_max, NULL::bigint;
        ELSE
          RETURN QUERY SELECT 2::smallint, NULL::bigint, v_max;
        END IF;
        CONTINUE;
      END IF;
    END IF;

    v_condition := v_command->'condition';
    IF v_condition IS NOT NULL AND jsonb_typeof(v_condition) = 'object' THEN
      v_query := v_condition->'query';
      v_after := COALESCE((v_condition->>'after')::bigint, 0);
      v_conflict := NULL;
      IF v_after < v_head THEN
        IF (v_query->>'all')::boolean THEN
          SELECT x.position INTO v_conflict FROM "eventstore".events x
           WHERE x.position > v_after
             AND (v_query->>'from' IS NULL OR x.occurred_at >= (v_query->>'from')::timestamptz)
             AND (v_query->>'until' IS NULL OR x.occurred_at <= (v_query->>'until')::timestamptz)
           ORDER BY x.position LIMIT 1;
        ELSIF v_head - v_after <= p_scan_limit THEN
          -- Recent `after`: walk the few events written since, on the primary key.
          SELECT x.position INTO v_conflict
            FROM "eventstore".events x
           WHERE x.position > v_after AND x.position <= v_head
             AND (v_query->>'from' IS NULL OR x.occurred_at >= (v_query->>'from')::timestamptz)
             AND (v_query->>'until' IS NULL OR x.occurred_at <= (v_query->>'until')::timestamptz)
             AND EXISTS (
               SELECT 1 FROM jsonb_to_recordset(v_query->'items') AS it(types text[], tags text[], any_of jsonb, all_of jsonb)
                WHERE (it.types IS NULL OR x.type = ANY (it.types))
                  AND (it.tags IS NULL OR x.tags @> it.tags)
                  AND (it.any_of IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements(it.any_of) p WHERE x.data @> p.value))
                  AND (it.all_of IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(it.all_of) p WHERE NOT x.data @> p.value)))
           ORDER BY x.position LIMIT 1;
        ELSE
          -- Old or absent `after`: one indexed probe per item. The statement text depends only on
          -- which parts the item has; every value is a bound parameter.
          FOR v_item IN SELECT * FROM jsonb_to_recordset(v_query->'items') AS it(types text[], tags text[], any_of jsonb, all_of jsonb) LOOP
            v_sql := 'SELECT x.position FROM "eventstore".events x WHERE x.position > $1';
            IF v_item.types IS NOT NULL THEN v_sql := v_sql || ' AND x.type = ANY ($2)'; END IF;
            IF v_item.tags IS NOT NULL THEN v_sql := v_sql || ' AND x.tags @> $3'; END IF;
            IF v_item.any_of IS NOT NULL THEN v_sql := v_sql || ' AND x.data @> ANY ($4)'; END IF;
            IF v_item.all_of IS NOT NULL THEN v_sql := v_sql || ' AND x.data @> ($5)[1] AND x.data @> ALL ($5)'; END IF;
            IF v_query->>'from' IS NOT NULL THEN v_sql := v_sql || ' AND x.occurred_at >= $6'; END IF;
            IF v_query->>'until' IS NOT NULL THEN v_sql := v_sql || ' AND x.occurred_at <= $7'; END IF;
            v_sql := v_sql || ' ORDER BY x.position LIMIT 1';
            EXECUTE v_sql INTO v_probe
              USING v_after, v_item.types, v_item.tags,
                    ARRAY(SELECT p.value FROM jsonb_array_elements(v_item.any_of) p),
                    ARRAY(SELECT p.value FROM jsonb_array_elements(v_item.all_of) p),
                    (v_query->>'from')::timestamptz, (v_query->>'until')::timestamptz;
            IF v_probe IS NOT NULL AND (v_conflict IS NULL OR v_probe < v_conflict) THEN
              v_conflict := v_probe;
            END IF;
          END LOOP;
        END IF;
      END IF;
      IF v_conflict IS NOT NULL THEN
        RETURN QUERY SELECT 1::smallint, NULL::bigint, v_conflict;
        CONTINUE;
      END IF;
    END IF;

    INSERT INTO "eventstore".events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
    -- jsonb_to_recordset turns a JSON null payload into SQL NULL; the key is always present, so
    -- NULL here means the payload null.
    SELECT v_head + e.ordinal, e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
      FROM ROWS FROM (jsonb_to_recordset(v_events) AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
           WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal);
    v_head := v_head + v_count;
    RETURN QUERY SELECT 0::smallint, v_head, NULL::bigint;
  END LOOP;

  IF v_head <> v_start THEN
    UPDATE "eventstore".head SET position = v_head WHERE singleton;
  END IF;
END $$;

INSERT INTO "eventstore".migrations (version, name) VALUES (1, 'events');

-- migration 2: faster-appends

-- Faster appends.
--
-- 1. The payload index becomes opt-in (EventStore.connect({ payloadIndex: true })). It indexes
--    every leaf of every payload and cost about half of each append's time; decision queries
--    that carry a type or a tag are served by the type and tag indexes and filter payloads on
--    the few rows they find.
-- 2. append_batch takes the batch's event ids as an array, so the "is any id stored already"
--    probe is a plain index lookup, and checks conditions with statements whose plans do not
--    depend on table statistics (a freshly loaded store has none).
-- 3. The function's statements use generic plans (they have one good plan whatever the values).
-- 4. A batch whose commands cannot see each other's events (the client works that out, erring
--    towards "they can") is checked against the store as it was when the lock was taken and
--    written with one INSERT: the same outcome as command by command, at a fraction of the cost.
DROP INDEX "eventstore".events_data_idx;

DROP FUNCTION "eventstore".append_batch(jsonb, boolean, bigint);

-- Appends a batch of commands atomically, checking each command's condition in order, so a later
-- command sees the events of the earlier ones.
--
-- p_commands: [{ "events": [{ id, type, tags, data, metadata, occurred_at }],
--                "condition": null | { "query": { all, items: [{ types, tags, any_of, all_of }], from, until },
--                                      "after": null | "<position>" } }]
-- p_check_ids: the caller saw the same event id twice in this batch.
-- p_scan_limit: a condition whose `after` is at most this far behind the head is checked by
--   walking the events since `after` on the primary key; older or absent `after` uses the tag
--   index (items with tags) or a probe planned for its values (items without).
-- p_ids: every event id of the batch (taken from p_commands when NULL).
-- p_independent: no command's condition can match an event of an earlier command of the batch,
--   so every condition may be checked against the events stored before the batch. Passing true
--   for a batch where that is false would let a conflicting command through: the client only
--   passes true after checking types and tags, and treats payload predicates and time bounds as
--   "might match".
--
-- Returns one row per command, in order:
--   r_status 0 = appended (r_position = its last position)
--            1 = condition failed (r_conflict = a conflicting position)
--            2 = event id clash (r_conflict = position of a stored event with one of the ids)
--            3 = already appended by an earlier identical call (r_position = its last position)
--
-- Must run at READ COMMITTED, outside an explicit transaction block, with nothing else in its
-- transaction: the function relies on each statement after the lock taking a fresh snapshot.
CREATE FUNCTION "eventstore".append_batch(p_commands jsonb, p_check_ids boolean, p_scan_limit bigint DEFAULT 128, p_ids uuid[] DEFAULT NULL, p_independent boolean DEFAULT false)
RETURNS TABLE (r_status smallint, r_position bigint, r_conflict bigint)
LANGUAGE plpgsql VOLATILE
-- Every static statement below has one good plan whatever the values (primary-key walks, unique
-- lookups, inserts); planning them again on each call (custom plans) doubled the function's CPU
-- time. A generic plan is made once per session, possibly while the table is still empty (when a
-- sequential scan looks cheapest) and kept as it grows: enable_seqscan = off keeps it on the
-- indexes. The probe for an old `after` is dynamic SQL and still planned for its values.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
  v_head      bigint;
  v_start     bigint;
  v_now       timestamptz;
  v_command   jsonb;
  v_events    jsonb;
  v_count     integer;
  v_condition jsonb;
  v_query     jsonb;
  v_item      jsonb;
  v_item_index integer;
  v_after     bigint;
  v_from      timestamptz;
  v_until     timestamptz;
  v_types     text[];
  v_tags      text[];
  v_any       jsonb[];
  v_all       jsonb[];
  v_conflict  bigint;
  v_probe     bigint;
  v_found     integer;
  v_same      boolean;
  v_max       bigint;
  v_sql       text;
  v_next      bigint;
  v_index     bigint;
  v_accepted  bigint[] := '{}';
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'append_batch must run at READ COMMITTED, not %', current_setting('transaction_isolation')
      USING ERRCODE = 'invalid_transaction_state';
  END IF;

  -- The lock that serializes appends. Waiting here and then reading in later statements (each
  -- with a fresh snapshot) is what makes the check-then-insert atomic: a check in the same
  -- statement as the lock would still use the snapshot from before the wait.
  SELECT h.position INTO v_head FROM "eventstore".head h WHERE h.singleton FOR UPDATE;
  v_start := v_head;
  -- v_head: the last position stored (what conditions are checked against);
  -- v_next: the last position given out (the same, unless inserts are deferred).
  v_next := v_head;
  v_now := clock_timestamp();

  IF NOT p_check_ids THEN
    -- Usually no id of the batch is stored yet, and then no command needs the per-command check.
    IF p_ids IS NULL THEN
      p_ids := ARRAY(SELECT (e->>'id')::uuid FROM jsonb_array_elements(p_commands) c, jsonb_array_elements(c->'events') e);
    END IF;
    p_check_ids := EXISTS (SELECT 1 FROM "eventstore".events x WHERE x.id = ANY (p_ids));
  END IF;
  -- An idempotent retry must see the earlier commands' events: go command by command.
  IF p_check_ids THEN
    p_independent := false;
  END IF;

  FOR v_command, v_index IN SELECT value, ordinality FROM jsonb_array_elements(p_commands) WITH ORDINALITY LOOP
    v_events := v_command->'events';
    v_count := jsonb_array_length(v_events);

    -- Idempotent retry: every id stored with the same content returns the original position.
    IF p_check_ids THEN
      SELECT count(*)::integer,
             max(x.position),
             bool_and(x.type = e.type AND x.tags = e.tags AND x.data = COALESCE(e.data, 'null'::jsonb) AND x.metadata = e.metadata)
        INTO v_found, v_max, v_same
        FROM jsonb_to_recordset(v_events) AS e(id uuid, type text, tags text[], data jsonb, metadata jsonb)
        JOIN "eventstore".events x ON x.id = e.id;
      IF v_found > 0 THEN
        IF v_found = v_count AND v_same THEN
          r_status := 3; r_position := v_max; r_conflict := NULL;
          RETURN NEXT;
        ELSE
          r_status := 2; r_position := NULL; r_conflict := v_max;
          RETURN NEXT;
        END IF;
        CONTINUE;
      END IF;
    END IF;

    v_condition := v_command->'condition';
    IF v_condition IS NOT NULL AND jsonb_typeof(v_condition) = 'object' THEN
      v_query := v_condition->'query';
      v_after := COALESCE((v_condition->>'after')::bigint, 0);
      v_from := (v_query->>'from')::timestamptz;
      v_until := (v_query->>'until')::timestamptz;
      v_conflict := NULL;
      IF v_after >= v_head THEN
        NULL; -- nothing was written after `after`
      ELSIF (v_query->>'all')::boolean THEN
        SELECT x.position INTO v_conflict FROM "eventstore".events x
         WHERE x.position > v_after
           AND (v_from IS NULL OR x.occurred_at >= v_from)
           AND (v_until IS NULL OR x.occurred_at <= v_until)
         ORDER BY x.position LIMIT 1;
      ELSE
        FOR v_item_index IN 0 .. jsonb_array_length(v_query->'items') - 1 LOOP
          -- Plain assignments, not queries: the client sends types and tags also as array
          -- literals (`types_pg`, `tags_pg`); callers that don't (raw SQL) get them extracted.
          v_item := v_query->'items'->v_item_index;
          v_types := NULL;
          v_tags := NULL;
          v_any := NULL;
          v_all := NULL;
          IF v_item ? 'types_pg' THEN
            v_types := (v_item->>'types_pg')::text[];
          ELSIF jsonb_typeof(v_item->'types') = 'array' THEN
            v_types := ARRAY(SELECT jsonb_array_elements_text(v_item->'types'));
          END IF;
          IF v_item ? 'tags_pg' THEN
            v_tags := (v_item->>'tags_pg')::text[];
          ELSIF jsonb_typeof(v_item->'tags') = 'array' THEN
            v_tags := ARRAY(SELECT jsonb_array_elements_text(v_item->'tags'));
          END IF;
          IF jsonb_typeof(v_item->'any_of') = 'array' THEN
            v_any := ARRAY(SELECT value FROM jsonb_array_elements(v_item->'any_of'));
          END IF;
          IF jsonb_typeof(v_item->'all_of') = 'array' THEN
            v_all := ARRAY(SELECT value FROM jsonb_array_elements(v_item->'all_of'));
          END IF;
          IF v_head - v_after <= p_scan_limit THEN
            -- Recent `after`: walk the few events written since, on the primary key. Only the
            -- position range can use an index here, so the plan is the same for every value.
            SELECT x.position INTO v_probe FROM "eventstore".events x
             WHERE x.position > v_after AND x.position <= v_head
               AND (v_types IS NULL OR x.type = ANY (v_types))
               AND (v_tags IS NULL OR x.tags @> v_tags)
               AND (v_any IS NULL OR x.data @> ANY (v_any))
               AND (v_all IS NULL OR x.data @> ALL (v_all))
               AND (v_from IS NULL OR x.occurred_at >= v_from)
               AND (v_until IS NULL OR x.occurred_at <= v_until)
               AND (v_conflict IS NULL OR x.position < v_conflict)
             ORDER BY x.position LIMIT 1;
          ELSIF v_tags IS NOT NULL THEN
            -- Older `after`, and the item has tags: the tag index finds the few candidates and
            -- the smallest position is taken from them. `+ 0` keeps both the position range and
            -- the order away from the primary key, so that the plan (generic, made once) cannot
            -- turn into a walk of every event since `after` in the hope of meeting a match soon,
            -- which for a boundary with no later events, the usual case, reads them all.
            SELECT min(x.position + 0) INTO v_probe FROM "eventstore".events x
             WHERE x.tags @> v_tags AND x.position + 0 > v_after
               AND (v_types IS NULL OR x.type = ANY (v_types))
               AND (v_any IS NULL OR x.data @> ANY (v_any))
               AND (v_all IS NULL OR x.data @> ALL (v_all))
               AND (v_from IS NULL OR x.occurred_at >= v_from)
               AND (v_until IS NULL OR x.occurred_at <= v_until);
          ELSE
            -- Older `after`, no tags: a probe planned for its values (type index, payload index
            -- or a walk of the primary key, as the statistics suggest). The statement text
            -- depends only on which parts the item has; every value is a bound parameter.
            v_sql := 'SELECT x.position FROM "eventstore".events x WHERE x.position > $1';
            IF v_types IS NOT NULL THEN v_sql := v_sql || ' AND x.type = ANY ($2)'; END IF;
            IF v_any IS NOT NULL THEN v_sql := v_sql || ' AND x.data @> ANY ($4)'; END IF;
            IF v_all IS NOT NULL THEN v_sql := v_sql || ' AND x.data @> ($5)[1] AND x.data @> ALL ($5)'; END IF;
            IF v_from IS NOT NULL THEN v_sql := v_sql || ' AND x.occurred_at >= $6'; END IF;
            IF v_until IS NOT NULL THEN v_sql := v_sql || ' AND x.occurred_at <= $7'; END IF;
            v_sql := v_sql || ' ORDER BY x.position LIMIT 1';
            EXECUTE v_sql INTO v_probe USING v_after, v_types, v_tags, v_any, v_all, v_from, v_until;
          END IF;
          IF v_probe IS NOT NULL AND (v_conflict IS NULL OR v_probe < v_conflict) THEN
            v_conflict := v_probe;
          END IF;
        END LOOP;
      END IF;
      IF v_conflict IS NOT NULL THEN
        r_status := 1; r_position := NULL; r_conflict := v_conflict;
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;

    IF p_independent THEN
      v_accepted := v_accepted || v_index;
    ELSE
      INSERT INTO "eventstore".events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
      -- jsonb_to_recordset turns a JSON null payload into SQL NULL; the key is always present, so
      -- NULL here means the payload null.
      SELECT v_head + e.ordinal, e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
        FROM ROWS FROM (jsonb_to_recordset(v_events) AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
             WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal);
      v_head := v_head + v_count;
    END IF;
    v_next := v_next + v_count;
    r_status := 0; r_position := v_next; r_conflict := NULL;
    RETURN NEXT;
  END LOOP;

  IF p_independent AND cardinality(v_accepted) > 0 THEN
    -- The accepted commands' events, in command order and within a command in the given order:
    -- the positions handed out above.
    INSERT INTO "eventstore".events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
    SELECT v_start + row_number() OVER (ORDER BY c.ordinality, e.ordinal), e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
      FROM jsonb_array_elements(p_commands) WITH ORDINALITY AS c(value, ordinality)
      CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(c.value->'events') AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
           WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal)
     WHERE c.ordinality = ANY (v_accepted);
    v_head := v_next;
  END IF;

  IF v_head <> v_start THEN
    UPDATE "eventstore".head SET position = v_head WHERE singleton;
  END IF;
END $$;

INSERT INTO "eventstore".migrations (version, name) VALUES (2, 'faster-appends');

-- migration 3: subscriptions-consumers-snapshots

-- Subscriptions, durable consumers and snapshots.
--
-- 1. Every append that moves the head notifies the channel named like the schema, with the new
--    head as payload. Subscribers LISTEN on it as a wake-up only: notifications are lost while a
--    listener reconnects, so they also poll. A trigger on the one head row (updated once per
--    batch) keeps append_batch unchanged and costs one notification per batch, not per event.
-- 2. consumers: one row per durable consumer, its checkpoint (every event up to `position` is
--    processed) and what an operator needs to see when it stopped.
-- 3. snapshots: a projection's state up to a position, keyed by name, version and query hash.
CREATE FUNCTION "eventstore".notify_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_TABLE_SCHEMA, NEW.position::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER head_moved AFTER UPDATE OF position ON "eventstore".head
  FOR EACH ROW WHEN (NEW.position > OLD.position) EXECUTE FUNCTION "eventstore".notify_head();

CREATE TABLE "eventstore".consumers (
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

CREATE TABLE "eventstore".snapshots (
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

INSERT INTO "eventstore".migrations (version, name) VALUES (3, 'subscriptions-consumers-snapshots');

-- migration 4: consumer-lease-keys

-- Consumer leases keyed without collisions.
--
-- A consumer's lease is a session advisory lock. It was keyed (hashtext(schema), hashtext(name)):
-- two consumer names with the same 32-bit hash shared one lock, so one of them could never run
-- while the other did. Each consumer row now gets a key of its own from a sequence, and the lease
-- is pg_try_advisory_lock(<namespace oid of the schema as int4>, lease_key): unique per schema,
-- and the namespace oid keeps the stores of one database apart.
--
-- Instances of the old and the new library version take different locks for the same consumer,
-- so they do not exclude each other: stop the old instances before starting new ones.
ALTER TABLE "eventstore".consumers
  ADD COLUMN lease_key integer GENERATED ALWAYS AS IDENTITY,
  ADD CONSTRAINT consumers_lease_key_key UNIQUE (lease_key);

INSERT INTO "eventstore".migrations (version, name) VALUES (4, 'consumer-lease-keys');

-- migration 5: trace-context

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
  v_old   text := pg_get_functiondef('"eventstore".append_batch(jsonb, boolean, bigint, uuid[], boolean)'::regprocedure);
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

INSERT INTO "eventstore".migrations (version, name) VALUES (5, 'trace-context');

-- migration 6: command-groups

-- Several commands in one atomic append (store.appendCommands).
--
-- A command of the batch may now open a group: `"group": k` on it makes it and the k - 1
-- commands after it all-or-nothing. Each condition of a group is checked in order and sees the
-- events of the group's earlier commands (as if they were appended one by one), but nothing of
-- the group is written unless every command passes. Commands without the key are groups of one:
-- for them the function answers as before, so older clients are served unchanged.
--
-- The group's events are inserted once all its commands have passed (the events table refuses
-- DELETE, and a subtransaction per group would wear out the subtransaction cache for every
-- session of the server); a condition is checked against the stored events, as before, and
-- against the group's earlier, not yet inserted events, with the same predicates.
--
-- Same signature and result columns as before, so CREATE OR REPLACE keeps every grant and every
-- caller. New answers, only ever given to commands of a group of two or more:
--   r_status 1 with r_conflict NULL and r_position = k: the condition matches an event of the
--            group's command k (0 = its first command), an earlier command of the same group;
--   r_status 4 = not written, because another command of its group failed.
-- An idempotent retry of a group is recognised when every one of its commands was stored with
-- the same content; when only some of them were, the first of those is an id clash (status 2).
CREATE OR REPLACE FUNCTION "eventstore".append_batch(p_commands jsonb, p_check_ids boolean, p_scan_limit bigint DEFAULT 128, p_ids uuid[] DEFAULT NULL, p_independent boolean DEFAULT false)
RETURNS TABLE (r_status smallint, r_position bigint, r_conflict bigint)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
  v_head      bigint;
  v_start     bigint;
  v_now       timestamptz;
  v_command   jsonb;
  v_events    jsonb;
  v_count     integer;
  v_condition jsonb;
  v_query     jsonb;
  v_item      jsonb;
  v_item_index integer;
  v_after     bigint;
  v_from      timestamptz;
  v_until     timestamptz;
  v_types     text[];
  v_tags      text[];
  v_any       jsonb[];
  v_all       jsonb[];
  v_conflict  bigint;
  v_probe     bigint;
  v_found     integer;
  v_same      boolean;
  v_max       bigint;
  v_sql       text;
  v_next      bigint;
  v_index     bigint;
  -- Independent batches: v_accepted[i] is true for each command i to insert at the end (looked up
  -- per row; `= ANY (list)` cost a comparison per command for each command of the batch).
  v_accepted  boolean[] := '{}';
  v_accepting boolean := false;
  -- The group being checked: its size, how many of its commands are still to come, the last
  -- position given out before it, its commands' answers so far, their events (not inserted yet).
  v_group_size    integer := 0;
  v_group_left    integer := 0;
  v_group_base    bigint;
  v_group_status  smallint[];
  v_group_pos     bigint[];
  v_group_conf    bigint[];
  v_group_index   bigint[];
  v_group_count   integer;
  -- The events of the group's commands that passed, kept only when commands are checked one by
  -- one (not independent): each command's events array (an array of them, which plpgsql appends
  -- to in place; one jsonb grown by || is copied whole each time), its index in the group, and
  -- how many of the group's events come before its first.
  v_group_events  jsonb[];
  v_pending_cmd   integer[];
  v_pending_start integer[];
  v_group_failed  boolean;
  v_conflict_cmd integer;
  v_status    smallint;
  v_position  bigint;
  v_i         integer;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'append_batch must run at READ COMMITTED, not %', current_setting('transaction_isolation')
      USING ERRCODE = 'invalid_transaction_state';
  END IF;

  -- The lock that serializes appends. Waiting here and then reading in later statements (each
  -- with a fresh snapshot) is what makes the check-then-insert atomic: a check in the same
  -- statement as the lock would still use the snapshot from before the wait.
  SELECT h.position INTO v_head FROM "eventstore".head h WHERE h.singleton FOR UPDATE;
  v_start := v_head;
  -- v_head: the last position stored (what conditions are checked against);
  -- v_next: the last position given out (the same, unless inserts are deferred).
  v_next := v_head;
  v_now := clock_timestamp();

  IF NOT p_check_ids THEN
    -- Usually no id of the batch is stored yet, and then no command needs the per-command check.
    IF p_ids IS NULL THEN
      p_ids := ARRAY(SELECT (e->>'id')::uuid FROM jsonb_array_elements(p_commands) c, jsonb_array_elements(c->'events') e);
    END IF;
    p_check_ids := EXISTS (SELECT 1 FROM "eventstore".events x WHERE x.id = ANY (p_ids));
  END IF;
  -- An idempotent retry must see the earlier commands' events: go command by command.
  IF p_check_ids THEN
    p_independent := false;
  END IF;

  FOR v_command, v_index IN SELECT value, ordinality FROM jsonb_array_elements(p_commands) WITH ORDINALITY LOOP
    v_events := v_command->'events';
    v_count := jsonb_array_length(v_events);
    IF v_group_left = 0 THEN
      v_group_size := GREATEST(COALESCE((v_command->>'group')::integer, 1), 1);
      v_group_left := v_group_size;
      IF v_group_size > 1 THEN
        v_group_base := v_next;
        v_group_status := '{}'; v_group_pos := '{}'; v_group_conf := '{}'; v_group_index := '{}';
        v_group_count := 0;
        v_group_events := '{}';
        v_pending_cmd := '{}'; v_pending_start := '{}';
        v_group_failed := false;
      END IF;
    END IF;
    v_group_left := v_group_left - 1;
    v_status := 0; v_position := NULL; v_conflict := NULL;

    IF v_group_size > 1 AND v_group_failed THEN
      v_status := 4;
    ELSE
      -- Idempotent retry: every id stored with the same content returns the original position.
      IF p_check_ids THEN
        SELECT count(*)::integer,
               max(x.position),
               bool_and(x.type = e.type AND x.tags = e.tags AND x.data = COALESCE(e.data, 'null'::jsonb) AND (CASE WHEN jsonb_typeof(x.metadata) = 'object' THEN x.metadata - 'traceparent' ELSE x.metadata END) = (CASE WHEN jsonb_typeof(e.metadata) = 'object' THEN e.metadata - 'traceparent' ELSE e.metadata END))
          INTO v_found, v_max, v_same
          FROM jsonb_to_recordset(v_events) AS e(id uuid, type text, tags text[], data jsonb, metadata jsonb)
          JOIN "eventstore".events x ON x.id = e.id;
        IF v_found > 0 THEN
          IF v_found = v_count AND v_same THEN
            v_status := 3; v_position := v_max;
          ELSE
            v_status := 2; v_conflict := v_max;
          END IF;
        END IF;
      END IF;

      v_condition := v_command->'condition';
      IF v_status = 0 AND v_condition IS NOT NULL AND jsonb_typeof(v_condition) = 'object' THEN
        v_query := v_condition->'query';
        v_after := COALESCE((v_condition->>'after')::bigint, 0);
        v_from := (v_query->>'from')::timestamptz;
        v_until := (v_query->>'until')::timestamptz;
        v_conflict := NULL;
        IF v_after >= v_head THEN
          NULL; -- nothing was stored after `after`
        ELSIF (v_query->>'all')::boolean THEN
          SELECT x.position INTO v_conflict FROM "eventstore".events x
           WHERE x.position > v_after
             AND (v_from IS NULL OR x.occurred_at >= v_from)
             AND (v_until IS NULL OR x.occurred_at <= v_until)
           ORDER BY x.position LIMIT 1;
        ELSE
          FOR v_item_index IN 0 .. jsonb_array_length(v_query->'items') - 1 LOOP
            -- Plain assignments, not queries: the client sends types and tags also as array
            -- literals (`types_pg`, `tags_pg`); callers that don't (raw SQL) get them extracted.
            v_item := v_query->'items'->v_item_index;
            v_types := NULL;
            v_tags := NULL;
            v_any := NULL;
            v_all := NULL;
            IF v_item ? 'types_pg' THEN
              v_types := (v_item->>'types_pg')::text[];
            ELSIF jsonb_typeof(v_item->'types') = 'array' THEN
              v_types := ARRAY(SELECT jsonb_array_elements_text(v_item->'types'));
            END IF;
            IF v_item ? 'tags_pg' THEN
              v_tags := (v_item->>'tags_pg')::text[];
            ELSIF jsonb_typeof(v_item->'tags') = 'array' THEN
              v_tags := ARRAY(SELECT jsonb_array_elements_text(v_item->'tags'));
            END IF;
            IF jsonb_typeof(v_item->'any_of') = 'array' THEN
              v_any := ARRAY(SELECT value FROM jsonb_array_elements(v_item->'any_of'));
            END IF;
            IF jsonb_typeof(v_item->'all_of') = 'array' THEN
              v_all := ARRAY(SELECT value FROM jsonb_array_elements(v_item->'all_of'));
            END IF;
            IF v_head - v_after <= p_scan_limit THEN
              -- Recent `after`: walk the few events written since, on the primary key. Only the
              -- position range can use an index here, so the plan is the same for every value.
              SELECT x.position INTO v_probe FROM "eventstore".events x
               WHERE x.position > v_after AND x.position <= v_head
                 AND (v_types IS NULL OR x.type = ANY (v_types))
                 AND (v_tags IS NULL OR x.tags @> v_tags)
                 AND (v_any IS NULL OR x.data @> ANY (v_any))
                 AND (v_all IS NULL OR x.data @> ALL (v_all))
                 AND (v_from IS NULL OR x.occurred_at >= v_from)
                 AND (v_until IS NULL OR x.occurred_at <= v_until)
                 AND (v_conflict IS NULL OR x.position < v_conflict)
               ORDER BY x.position LIMIT 1;
            ELSIF v_tags IS NOT NULL THEN
              -- Older `after`, and the item has tags: the tag index finds the few candidates and
              -- the smallest position is taken from them. `+ 0` keeps both the position range and
              -- the order away from the primary key, so that the plan (generic, made once) cannot
              -- turn into a walk of every event since `after` in the hope of meeting a match soon,
              -- which for a boundary with no later events, the usual case, reads them all.
              SELECT min(x.position + 0) INTO v_probe FROM "eventstore".events x
               WHERE x.tags @> v_tags AND x.position + 0 > v_after
                 AND (v_types IS NULL OR x.type = ANY (v_types))
                 AND (v_any IS NULL OR x.data @> ANY (v_any))
                 AND (v_all IS NULL OR x.data @> ALL (v_all))
                 AND (v_from IS NULL OR x.occurred_at >= v_from)
                 AND (v_until IS NULL OR x.occurred_at <= v_until);
            ELSE
              -- Older `after`, no tags: a probe planned for its values (type index, payload index
              -- or a walk of the primary key, as the statistics suggest). The statement text
              -- depends only on which parts the item has; every value is a bound parameter.
              v_sql := 'SELECT x.position FROM "eventstore".events x WHERE x.position > $1';
              IF v_types IS NOT NULL THEN v_sql := v_sql || ' AND x.type = ANY ($2)'; END IF;
              IF v_any IS NOT NULL THEN v_sql := v_sql || ' AND x.data @> ANY ($4)'; END IF;
              IF v_all IS NOT NULL THEN v_sql := v_sql || ' AND x.data @> ($5)[1] AND x.data @> ALL ($5)'; END IF;
              IF v_from IS NOT NULL THEN v_sql := v_sql || ' AND x.occurred_at >= $6'; END IF;
              IF v_until IS NOT NULL THEN v_sql := v_sql || ' AND x.occurred_at <= $7'; END IF;
              v_sql := v_sql || ' ORDER BY x.position LIMIT 1';
              EXECUTE v_sql INTO v_probe USING v_after, v_types, v_tags, v_any, v_all, v_from, v_until;
            END IF;
            IF v_probe IS NOT NULL AND (v_conflict IS NULL OR v_probe < v_conflict) THEN
              v_conflict := v_probe;
            END IF;
          END LOOP;
        END IF;

        -- The group's earlier commands' events, not inserted yet, at the positions they would
        -- get (all after every stored event). With independent commands none can match.
        v_conflict_cmd := NULL;
        IF v_conflict IS NULL AND v_group_size > 1 AND NOT p_independent AND v_group_count > 0 THEN
          IF (v_query->>'all')::boolean THEN
            SELECT v_pending_cmd[g.k] INTO v_conflict_cmd
              FROM unnest(v_group_events) WITH ORDINALITY AS g(events, k)
              CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(g.events) AS (occurred_at timestamptz)) WITH ORDINALITY AS p(occurred_at, ordinal)
             WHERE v_group_base + v_pending_start[g.k] + p.ordinal > v_after
               AND (v_from IS NULL OR p.occurred_at >= v_from)
               AND (v_until IS NULL OR p.occurred_at <= v_until)
             ORDER BY g.k, p.ordinal LIMIT 1;
          ELSE
            SELECT v_pending_cmd[g.k] INTO v_conflict_cmd
              FROM unnest(v_group_events) WITH ORDINALITY AS g(events, k)
              CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(g.events) AS (type text, tags text[], data jsonb, occurred_at timestamptz)) WITH ORDINALITY AS p(type, tags, data, occurred_at, ordinal)
              CROSS JOIN LATERAL jsonb_array_elements(v_query->'items') AS i(item)
             WHERE v_group_base + v_pending_start[g.k] + p.ordinal > v_after
               AND (NOT (i.item ? 'types') OR jsonb_typeof(i.item->'types') <> 'array' OR p.type = ANY (ARRAY(SELECT jsonb_array_elements_text(i.item->'types'))))
               AND (NOT (i.item ? 'tags') OR jsonb_typeof(i.item->'tags') <> 'array' OR p.tags @> ARRAY(SELECT jsonb_array_elements_text(i.item->'tags')))
               AND (jsonb_typeof(i.item->'any_of') IS DISTINCT FROM 'array' OR EXISTS (SELECT 1 FROM jsonb_array_elements(i.item->'any_of') a(v) WHERE COALESCE(p.data, 'null'::jsonb) @> a.v))
               AND (jsonb_typeof(i.item->'all_of') IS DISTINCT FROM 'array' OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(i.item->'all_of') a(v) WHERE NOT COALESCE(p.data, 'null'::jsonb) @> a.v))
               AND (v_from IS NULL OR p.occurred_at >= v_from)
               AND (v_until IS NULL OR p.occurred_at <= v_until)
             ORDER BY g.k, p.ordinal LIMIT 1;
          END IF;
        END IF;
        IF v_conflict IS NOT NULL THEN
          v_status := 1;
        ELSIF v_conflict_cmd IS NOT NULL THEN
          v_status := 1;
          v_position := v_conflict_cmd;
        END IF;
      END IF;
    END IF;

    IF v_group_size = 1 THEN
      -- A command on its own: written (or not) and answered at once, as it always was.
      IF v_status = 0 THEN
        IF p_independent THEN
          v_accepted[v_index] := true;
          v_accepting := true;
        ELSE
          INSERT INTO "eventstore".events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
          -- jsonb_to_recordset turns a JSON null payload into SQL NULL; the key is always present, so
          -- NULL here means the payload null.
          SELECT v_head + e.ordinal, e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
            FROM ROWS FROM (jsonb_to_recordset(v_events) AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
                 WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal);
          v_head := v_head + v_count;
        END IF;
        v_next := v_next + v_count;
        v_position := v_next;
      END IF;
      r_status := v_status; r_position := v_position; r_conflict := v_conflict;
      RETURN NEXT;
      CONTINUE;
    END IF;

    -- A command of a group: remember its answer; the group is settled after its last command.
    IF v_status = 0 THEN
      IF NOT p_independent THEN
        v_group_events := array_append(v_group_events, v_events);
        v_pending_cmd := array_append(v_pending_cmd, v_group_size - v_group_left - 1);
        v_pending_start := array_append(v_pending_start, v_group_count);
      END IF;
      v_group_count := v_group_count + v_count;
      v_position := v_group_base + v_group_count;
    ELSIF v_status IN (1, 2) THEN
      v_group_failed := true;
    END IF;
    v_i := v_group_size - v_group_left;
    v_group_status[v_i] := v_status;
    v_group_pos[v_i] := v_position;
    v_group_conf[v_i] := v_conflict;
    v_group_index[v_i] := v_index;
    CONTINUE WHEN v_group_left > 0;

    -- Stored already for some commands and new for others: not the same call again (that would
    -- find all of them), so the first stored one is an id clash and the group is not written.
    IF NOT v_group_failed AND 3 = ANY (v_group_status) AND 0 = ANY (v_group_status) THEN
      v_i := array_position(v_group_status, 3::smallint);
      v_group_status[v_i] := 2;
      v_group_conf[v_i] := v_group_pos[v_i];
      v_group_pos[v_i] := NULL;
      v_group_failed := true;
    END IF;
    IF v_group_failed THEN
      FOR v_i IN 1 .. v_group_size LOOP
        IF v_group_status[v_i] IN (0, 3) THEN
          v_group_status[v_i] := 4; v_group_pos[v_i] := NULL; v_group_conf[v_i] := NULL;
        END IF;
      END LOOP;
    ELSIF v_group_count > 0 THEN
      IF p_independent THEN
        FOR v_i IN 1 .. v_group_size LOOP
          v_accepted[v_group_index[v_i]] := true;
        END LOOP;
        v_accepting := true;
      ELSE
        INSERT INTO "eventstore".events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
        SELECT v_head + v_pending_start[g.k] + e.ordinal, e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
          FROM unnest(v_group_events) WITH ORDINALITY AS g(events, k)
          CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(g.events) AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
               WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal);
        v_head := v_head + v_group_count;
      END IF;
      v_next := v_next + v_group_count;
    END IF;
    FOR v_i IN 1 .. v_group_size LOOP
      r_status := v_group_status[v_i]; r_position := v_group_pos[v_i]; r_conflict := v_group_conf[v_i];
      RETURN NEXT;
    END LOOP;
  END LOOP;

  IF p_independent AND v_accepting THEN
    -- The accepted commands' events, in command order and within a command in the given order:
    -- the positions handed out above.
    INSERT INTO "eventstore".events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
    SELECT v_start + row_number() OVER (ORDER BY c.ordinality, e.ordinal), e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
      FROM jsonb_array_elements(p_commands) WITH ORDINALITY AS c(value, ordinality)
      CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(c.value->'events') AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
           WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal)
     WHERE v_accepted[c.ordinality];
    v_head := v_next;
  END IF;

  IF v_head <> v_start THEN
    UPDATE "eventstore".head SET position = v_head WHERE singleton;
  END IF;
END $$;

INSERT INTO "eventstore".migrations (version, name) VALUES (6, 'command-groups');
