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
CREATE OR REPLACE FUNCTION __SCHEMA__.append_batch(p_commands jsonb, p_check_ids boolean, p_scan_limit bigint DEFAULT 128, p_ids uuid[] DEFAULT NULL, p_independent boolean DEFAULT false)
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
          JOIN __SCHEMA__.events x ON x.id = e.id;
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
          INSERT INTO __SCHEMA__.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
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
        INSERT INTO __SCHEMA__.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
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
    INSERT INTO __SCHEMA__.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
    SELECT v_start + row_number() OVER (ORDER BY c.ordinality, e.ordinal), e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, v_now
      FROM jsonb_array_elements(p_commands) WITH ORDINALITY AS c(value, ordinality)
      CROSS JOIN LATERAL ROWS FROM (jsonb_to_recordset(c.value->'events') AS (id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz))
           WITH ORDINALITY AS e(id, type, tags, data, metadata, occurred_at, ordinal)
     WHERE v_accepted[c.ordinality];
    v_head := v_next;
  END IF;

  IF v_head <> v_start THEN
    UPDATE __SCHEMA__.head SET position = v_head WHERE singleton;
  END IF;
END $$;
