// The numbers behind `dses stats` and the consumer list of `dses consumers`. Each statement is
// chosen to stay cheap on a large store: counts by type are one pass over the (type, position)
// index, the top tags are counted on a sample above a size, and append rates find their first
// position by binary search on the primary key instead of scanning recorded_at (not indexed).
import type pg from 'pg';
import { quoteSchemaName } from './identifiers.ts';
import { withConnection } from './admin.ts';
import { assertStoreSchema } from './verify.ts';

export interface StoreStats {
  schema: string;
  /** The head row: with gap-free positions, the number of events (`dses verify` checks that). */
  head: bigint;
  /** Exact count of stored events. */
  events: bigint;
  size: { tableBytes: number; indexBytes: number; totalBytes: number };
  /** Exact counts, most frequent first. */
  types: { type: string; events: bigint }[];
  /** The most frequent tags; counts are estimates scaled from the sample when `sampled`. */
  tags: { tag: string; events: bigint }[];
  tagSample: { sampled: boolean; percent: number };
  /** Events recorded in the last 5, 15 and 60 minutes. */
  rates: { minutes: number; events: bigint; perMinute: number }[];
  /** Events recorded in each of the last 60 whole minutes and the current one, oldest first (`minute`: its start, ISO 8601). */
  timeline: { minute: string; events: bigint }[];
}

export interface StatsOptions {
  /** How many of the most frequent tags (default 10). */
  topTags?: number;
  /** Above this many events the tags are counted on a TABLESAMPLE SYSTEM sample of about this many (default 100 000). */
  tagSampleSize?: number;
}

export async function storeStats(connectionString: string, schema: string, options: StatsOptions = {}): Promise<StoreStats> {
  const quoted = quoteSchemaName(schema);
  const topTags = options.topTags ?? 10;
  const sampleSize = options.tagSampleSize ?? 100_000;
  return withConnection(connectionString, async (client) => {
    await assertStoreSchema(client, schema);
    // One snapshot for all the numbers.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const { rows: heads } = await client.query<{ head: string; events: string }>(
        `SELECT (SELECT position FROM ${quoted}.head) AS head, (SELECT count(*) FROM ${quoted}.events) AS events`,
      );
      const head = BigInt(heads[0]!.head ?? 0);
      const events = BigInt(heads[0]!.events);
      const { rows: sizes } = await client.query<{ table_bytes: string; index_bytes: string; total_bytes: string }>(
        'SELECT pg_table_size($1::regclass) AS table_bytes, pg_indexes_size($1::regclass) AS index_bytes, pg_total_relation_size($1::regclass) AS total_bytes',
        [`${quoted}.events`],
      );
      const { rows: types } = await client.query<{ type: string; events: string }>(
        `SELECT type, count(*) AS events FROM ${quoted}.events GROUP BY type ORDER BY count(*) DESC, type`,
      );

      const sampled = events > BigInt(sampleSize);
      // SYSTEM samples whole pages: cheap, and good enough for the frequent tags (rare ones may be missed).
      const percent = sampled ? Math.max(0.01, Math.min(100, (100 * sampleSize) / Number(events))) : 100;
      const { rows: tags } = await client.query<{ tag: string; events: string }>(
        sampled
          ? `SELECT tag, count(*) AS events FROM ${quoted}.events TABLESAMPLE SYSTEM ($2), unnest(tags) AS tag GROUP BY tag ORDER BY count(*) DESC, tag LIMIT $1`
          : `SELECT tag, count(*) AS events FROM ${quoted}.events, unnest(tags) AS tag GROUP BY tag ORDER BY count(*) DESC, tag LIMIT $1`,
        sampled ? [topTags, percent] : [topTags],
      );
      const scale = sampled ? 100 / percent : 1;

      const rates: StoreStats['rates'] = [];
      for (const minutes of [5, 15, 60]) {
        const recent = await eventsSince(client, quoted, minutes, head);
        rates.push({ minutes, events: recent, perMinute: Number(recent) / minutes });
      }
      const timeline = await perMinute(client, quoted, TIMELINE_MINUTES, head);
      return {
        schema,
        head,
        events,
        size: { tableBytes: Number(sizes[0]!.table_bytes), indexBytes: Number(sizes[0]!.index_bytes), totalBytes: Number(sizes[0]!.total_bytes) },
        types: types.map((row) => ({ type: row.type, events: BigInt(row.events) })),
        tags: tags.map((row) => ({ tag: row.tag, events: BigInt(Math.round(Number(row.events) * scale)) })),
        tagSample: { sampled, percent },
        rates,
        timeline,
      };
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  });
}

const TIMELINE_MINUTES = 60;

/**
 * Events per minute from the start of the minute `minutes` ago to now, every minute present
 * (zeros included). The first position in range is found by binary search, as in eventsSince;
 * the events from there are counted once, grouped by minute.
 */
async function perMinute(client: pg.ClientBase, quoted: string, minutes: number, head: bigint): Promise<StoreStats['timeline']> {
  // In UTC, so that a minute is a minute whatever the session's time zone.
  const start = `date_trunc('minute', now() AT TIME ZONE 'UTC') - make_interval(mins => $2)`;
  const low = await firstPositionSince(client, quoted, `(${start}) AT TIME ZONE 'UTC'`, [minutes], head);
  const { rows } = await client.query<{ minute: string; events: string }>(
    `WITH counts AS (
       SELECT date_trunc('minute', recorded_at AT TIME ZONE 'UTC') AS minute, count(*) AS events
         FROM ${quoted}.events WHERE position >= $1 AND recorded_at AT TIME ZONE 'UTC' >= ${start} GROUP BY 1)
     SELECT to_char(m.minute, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS minute, COALESCE(c.events, 0)::text AS events
       FROM generate_series(${start}, date_trunc('minute', now() AT TIME ZONE 'UTC'), interval '1 minute') AS m(minute)
       LEFT JOIN counts c USING (minute)
      ORDER BY m.minute`,
    [low.toString(), minutes],
  );
  return rows.map((row) => ({ minute: row.minute, events: BigInt(row.events) }));
}

/**
 * The smallest position whose event was recorded at or after `since` (an SQL expression over
 * `values`, which are bound from $2 on), by binary search over positions: recorded_at is not
 * indexed, but it grows with position (taken under the append lock). head + 1 when none is.
 */
async function firstPositionSince(client: pg.ClientBase, quoted: string, since: string, values: unknown[], head: bigint): Promise<bigint> {
  const recent = async (position: bigint): Promise<boolean | null> => {
    const { rows } = await client.query<{ recent: boolean }>(
      `SELECT recorded_at >= ${since} AS recent FROM ${quoted}.events WHERE position >= $1 ORDER BY position LIMIT 1`,
      [position.toString(), ...values],
    );
    return rows[0]?.recent ?? null;
  };
  // Positions are gap-free; a gap only shifts the probe.
  let low = 1n;
  let high = head + 1n;
  while (low < high) {
    const middle = (low + high) / 2n;
    if ((await recent(middle)) !== false) high = middle;
    else low = middle + 1n;
  }
  return low;
}

/**
 * Events recorded in the last `minutes`. recorded_at is not indexed, but it grows with position
 * (taken under the append lock), so a binary search over positions finds the first recent one in
 * about log2(head) primary-key lookups; the events from there are then counted exactly by
 * recorded_at, so a clock that stepped back a little costs accuracy only at the boundary.
 */
async function eventsSince(client: pg.ClientBase, quoted: string, minutes: number, head: bigint): Promise<bigint> {
  const low = await firstPositionSince(client, quoted, 'now() - make_interval(mins => $2)', [minutes], head);
  const { rows } = await client.query<{ events: string }>(
    `SELECT count(*) AS events FROM ${quoted}.events WHERE position >= $1 AND recorded_at >= now() - make_interval(mins => $2)`,
    [low.toString(), minutes],
  );
  return BigInt(rows[0]!.events);
}

/** The names of the consumers in `schema`, in order. */
export async function consumerNames(connectionString: string, schema: string): Promise<string[]> {
  const quoted = quoteSchemaName(schema);
  return withConnection(connectionString, async (client) => {
    await assertStoreSchema(client, schema);
    const { rows: present } = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [`${quoted}.consumers`]);
    if (!present[0]!.present) return [];
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${quoted}.consumers ORDER BY name COLLATE "C"`);
    return rows.map((row) => row.name);
  });
}
