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
DROP INDEX __SCHEMA__.events_data_idx;

DROP FUNCTION __SCHEMA__.append_batch(jsonb, boolean, bigint);

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
CREATE FUNCTION __SCHEMA__.append_batch(p_commands jsonb, p_check_ids boolean, p_scan_limit bigint DEFAULT 128, p_ids uuid[] DEFAULT NULL, p_independent boolean DEFAULT false)
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
  SELECT h.position INTO v_head FROM __SCHEMA__.head h WHERE h.singleton FOR UPDATE;
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
    p_check_ids := EXISTS (SELECT 1 FROM __SCHEMA__.events x WHERE x.id = ANY (p_ids));
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
        JOIN __SCHEMA__.events x ON x.id = e.id;
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
        SELECT x.position INTO v_conflict FROM __SCHEMA__.events x
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
            SELECT x.position INTO v_probe FROM __SCHEMA__.events x
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
            SELECT min(x.position + 0) INTO v_probe FROM __SCHEMA__.events x
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
            v_sql := 'SELECT x.position FROM __SCHEMA__.events x WHERE x.position > $1';
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
      INSERT INTO __SCHEMA__.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
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
    INSERT INTO __SCHEMA__.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
    SELECT v_start + row_number() OVER (ORDER BY c.ordinality, e.ordinal), e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
      FROM jsonb_array_elements(p_commands) WITH ORDINALITY AS c(value, ordinality)
      CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(c.value->'events') AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
           WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal)
     WHERE c.ordinality = ANY (v_accepted);
    v_head := v_next;
  END IF;

  IF v_head <> v_start THEN
    UPDATE __SCHEMA__.head SET position = v_head WHERE singleton;
  END IF;
END $$;
