// The integrity check behind `dses verify`: is the schema what the migrations make it, and do the
// stored events keep the store's invariants (positions exactly 1..head, ids unique and valid,
// tags sorted sets)? Everything runs in one REPEATABLE READ READ ONLY transaction, so the checks
// see one snapshot while appends go on. The checks that read every event walk the primary key
// in position ranges, so progress can be reported and no statement holds millions of rows.
import type pg from 'pg';
import { EventStoreDatabaseError } from '../errors.ts';
import { quoteSchemaName } from './identifiers.ts';
import { loadMigrations } from './schema.ts';
import { withConnection } from './admin.ts';

export type VerifyCheck = 'schema' | 'migrations' | 'triggers' | 'functions' | 'indexes' | 'head' | 'positions' | 'ids' | 'tags' | 'checkpoints';

export const VERIFY_CHECKS: readonly VerifyCheck[] = ['schema', 'migrations', 'triggers', 'functions', 'indexes', 'head', 'positions', 'ids', 'tags', 'checkpoints'];

export interface VerifyProblem {
  check: VerifyCheck;
  message: string;
}

export interface VerifyReport {
  schema: string;
  events: bigint;
  head: bigint | null;
  problems: VerifyProblem[];
}

export interface VerifyOptions {
  /** Positions per scan step (default 100 000). */
  rangeSize?: number;
  /** At most this many examples of each kind of damage are listed (default 10); the totals are always exact. */
  examples?: number;
  /** Called after each range of the event scan with the highest position scanned and the last one. */
  onProgress?: (scanned: bigint, last: bigint) => void;
}

/** The indexes the migrations create, by table (events_data_idx is optional: payloadIndex). */
const EXPECTED_INDEXES: Record<string, string[]> = {
  events: ['events_pkey', 'events_id_key', 'events_type_position_idx', 'events_tags_idx'],
  head: ['head_pkey'],
  consumers: ['consumers_pkey', 'consumers_lease_key_key'],
  snapshots: ['snapshots_pkey'],
  migrations: ['migrations_pkey'],
};

const EXPECTED_TRIGGERS: { table: string; name: string; function: string }[] = [
  { table: 'events', name: 'events_are_immutable', function: 'reject_event_change' },
  { table: 'events', name: 'events_are_not_truncated', function: 'reject_event_change' },
  { table: 'head', name: 'head_moved', function: 'notify_head' },
];

const EXPECTED_FUNCTIONS = ['append_batch(jsonb, boolean, bigint, uuid[], boolean)', 'reject_event_change()', 'notify_head()'];

/** Throws a clear error when `schema` holds no event store (nothing to verify or count). */
export async function assertStoreSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const quoted = quoteSchemaName(schema);
  const { rows } = await client.query<{ namespace: boolean; events: boolean }>(
    'SELECT to_regnamespace($1) IS NOT NULL AS namespace, to_regclass($2) IS NOT NULL AS events',
    [quoted, `${quoted}.events`],
  );
  if (!rows[0]!.namespace) throw new EventStoreDatabaseError(`schema ${quoted} does not exist in this database (wrong --schema? \`dses migrate\` creates a store)`, undefined);
  if (!rows[0]!.events) throw new EventStoreDatabaseError(`schema ${quoted} has no events table: it holds no event store (\`dses migrate\` creates one)`, undefined);
}

/** Checks the store in `schema`; an empty `problems` means it is intact. */
export async function verifyStore(connectionString: string, schema: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const quoted = quoteSchemaName(schema);
  const rangeSize = BigInt(options.rangeSize ?? 100_000);
  const examples = options.examples ?? 10;
  return withConnection(connectionString, async (client) => {
    await assertStoreSchema(client, schema);
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const problems: VerifyProblem[] = [];
      const problem = (check: VerifyCheck, message: string): void => void problems.push({ check, message });
      const catalog = await checkCatalog(client, schema, quoted, problem);

      const { rows: bounds } = await client.query<{ count: string; max: string | null }>(`SELECT count(*) AS count, max(position) AS max FROM ${quoted}.events`);
      const events = BigInt(bounds[0]!.count);
      const last = BigInt(bounds[0]!.max ?? 0);

      let head: bigint | null = null;
      if (catalog.tables.has('head')) {
        const { rows } = await client.query<{ position: string }>(`SELECT position FROM ${quoted}.head`);
        if (rows.length !== 1) problem('head', `the head table has ${rows.length} rows, expected exactly 1`);
        if (rows.length > 0) {
          head = BigInt(rows[0]!.position);
          if (head !== last) problem('head', `the head row says ${head}, but the highest stored position is ${last}`);
        }
      }

      await scanEvents(client, quoted, { rangeSize, examples, last, events, problem, onProgress: options.onProgress });

      // A valid unique index guarantees unique ids; without one, look for duplicates (a full scan).
      if (!catalog.validIndexes.has('events_id_key')) {
        const { rows } = await client.query<{ id: string; positions: string[]; total: string }>(
          `SELECT id, (array_agg(position ORDER BY position))[1:5]::text[] AS positions, count(*) OVER () AS total
             FROM ${quoted}.events GROUP BY id HAVING count(*) > 1 ORDER BY min(position) LIMIT $1`,
          [examples],
        );
        for (const row of rows) problem('ids', `id ${row.id} is stored more than once, at positions ${row.positions.join(', ')}`);
        if (rows.length > 0 && BigInt(rows[0]!.total) > BigInt(rows.length)) problem('ids', `${rows[0]!.total} ids are stored more than once (the first ${rows.length} listed)`);
      }
      await checkCheckpoints(client, quoted, catalog.tables, examples, problem);
      return { schema, events, head, problems };
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  });
}

async function checkCatalog(client: pg.ClientBase, schema: string, quoted: string, problem: (check: VerifyCheck, message: string) => void): Promise<{ tables: Set<string>; validIndexes: Set<string> }> {
  const { rows: tableRows } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
    [schema],
  );
  const tables = new Set(tableRows.map((row) => row.name));
  for (const table of Object.keys(EXPECTED_INDEXES)) if (!tables.has(table)) problem('schema', `table ${quoted}.${table} is missing`);

  const migrations = loadMigrations();
  if (tables.has('migrations')) {
    const { rows } = await client.query<{ version: number; name: string }>(`SELECT version, name FROM ${quoted}.migrations ORDER BY version`);
    const applied = new Map(rows.map((row) => [row.version, row.name]));
    for (const migration of migrations) {
      const name = applied.get(migration.version);
      if (name === undefined) problem('migrations', `migration ${migration.version} (${migration.name}) is not recorded as applied`);
      else if (name !== migration.name) problem('migrations', `migration ${migration.version} is recorded as "${name}", but this library's migration ${migration.version} is "${migration.name}"`);
    }
    for (const row of rows) {
      if (row.version > migrations.length) problem('migrations', `migration ${row.version} (${row.name}) is newer than this library knows (${migrations.length}): upgrade dses`);
    }
  }

  const { rows: triggerRows } = await client.query<{ table: string; name: string; enabled: string; function: string }>(
    `SELECT c.relname AS table, t.tgname AS name, t.tgenabled AS enabled, p.proname AS function
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE n.nspname = $1 AND NOT t.tgisinternal`,
    [schema],
  );
  for (const expected of EXPECTED_TRIGGERS) {
    const found = triggerRows.find((row) => row.table === expected.table && row.name === expected.name);
    if (found === undefined) problem('triggers', `trigger ${expected.name} on ${quoted}.${expected.table} is missing`);
    else if (found.enabled === 'D') problem('triggers', `trigger ${expected.name} on ${quoted}.${expected.table} is disabled`);
    else if (found.function !== expected.function) problem('triggers', `trigger ${expected.name} on ${quoted}.${expected.table} runs ${found.function}(), expected ${expected.function}()`);
  }

  for (const signature of EXPECTED_FUNCTIONS) {
    const { rows } = await client.query<{ present: boolean }>('SELECT to_regprocedure($1) IS NOT NULL AS present', [`${quoted}.${signature}`]);
    if (!rows[0]!.present) problem('functions', `function ${quoted}.${signature} is missing`);
  }

  const { rows: indexRows } = await client.query<{ table: string; name: string; valid: boolean; ready: boolean }>(
    `SELECT t.relname AS table, i.relname AS name, x.indisvalid AS valid, x.indisready AS ready
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $1`,
    [schema],
  );
  const validIndexes = new Set<string>();
  for (const row of indexRows) {
    if (row.valid && row.ready) validIndexes.add(row.name);
    // Every index of the schema, expected or not: an invalid one (a failed CREATE INDEX
    // CONCURRENTLY, a damaged catalog) is not used for reads and may not enforce uniqueness.
    else problem('indexes', `index ${quoted}.${row.name} on ${row.table} is not valid${row.ready ? '' : ' (not even ready for inserts)'}: REINDEX INDEX ${quoted}.${row.name}`);
  }
  for (const [table, names] of Object.entries(EXPECTED_INDEXES)) {
    if (!tables.has(table)) continue;
    for (const name of names) if (!indexRows.some((row) => row.name === name && row.table === table)) problem('indexes', `index ${quoted}.${name} on ${table} is missing`);
  }
  return { tables, validIndexes };
}

/**
 * Consumer checkpoints and snapshots remember the id of the event at their position: one whose
 * position holds no event or another event now (a store restored from an older backup) would
 * be refused by the consumer, or not used, at run time; verify says so beforehand.
 */
async function checkCheckpoints(client: pg.ClientBase, quoted: string, tables: Set<string>, examples: number, problem: (check: VerifyCheck, message: string) => void): Promise<void> {
  const mismatch = (remembered: string | null, stored: string | null, holder: string): string =>
    stored === null ? 'but no event is stored there' : `but another event is stored there (${stored}; the ${holder} names ${remembered})`;
  if (tables.has('consumers')) {
    const { rows } = await client.query<{ name: string; position: string; remembered: string | null; stored: string | null }>(
      `SELECT c.name, c.position, c.checkpoint_event_id::text AS remembered, e.id::text AS stored
         FROM ${quoted}.consumers c LEFT JOIN ${quoted}.events e ON e.position = c.position
        WHERE c.position > 0 AND (e.id IS NULL OR (c.checkpoint_event_id IS NOT NULL AND c.checkpoint_event_id <> e.id))
        ORDER BY c.name LIMIT $1`,
      [examples],
    );
    for (const row of rows) problem('checkpoints', `consumer ${JSON.stringify(row.name)} has processed up to position ${row.position}, ${mismatch(row.remembered, row.stored, 'checkpoint')}`);
  }
  if (tables.has('snapshots')) {
    const { rows } = await client.query<{ name: string; version: number; position: string; remembered: string | null; stored: string | null }>(
      `SELECT s.name, s.version, s.position, s.event_id::text AS remembered, e.id::text AS stored
         FROM ${quoted}.snapshots s LEFT JOIN ${quoted}.events e ON e.position = s.position
        WHERE s.position > 0 AND (e.id IS NULL OR (s.event_id IS NOT NULL AND s.event_id <> e.id))
        ORDER BY s.name, s.version LIMIT $1`,
      [examples],
    );
    for (const row of rows) problem('checkpoints', `snapshot ${JSON.stringify(row.name)} version ${row.version} is at position ${row.position}, ${mismatch(row.remembered, row.stored, 'snapshot')}: it is not used`);
  }
}

interface ScanSettings {
  rangeSize: bigint;
  examples: number;
  last: bigint;
  events: bigint;
  problem: (check: VerifyCheck, message: string) => void;
  onProgress: ((scanned: bigint, last: bigint) => void) | undefined;
}

/**
 * Walks positions 1..last in ranges. Each range is one aggregate over the primary key (gaps,
 * duplicate positions, invalid ids, tags that may not be a sorted set); the examples are
 * fetched only for a range where the aggregate found something, so a clean store costs one
 * statement per range.
 */
async function scanEvents(client: pg.ClientBase, quoted: string, settings: ScanSettings): Promise<void> {
  const { rangeSize, examples, last, problem } = settings;
  let previous = 0n;
  const shown = { gaps: 0, duplicates: 0, ids: 0, tags: 0 };
  const totals = { missing: 0n, duplicates: 0n, ids: 0n, tags: 0n, nonPositive: 0n };

  const { rows: below } = await client.query<{ count: string }>(`SELECT count(*) AS count FROM ${quoted}.events WHERE position <= 0`);
  totals.nonPositive = BigInt(below[0]!.count);
  if (totals.nonPositive > 0n) problem('positions', `${totals.nonPositive} events have a position below 1`);

  // Tags are a sorted set when each is greater than the one before. The store sorts with
  // JavaScript's order (UTF-16 code units); "C" collation orders by code point, which agrees
  // except between characters above U+FFFF and U+E000..U+FFFF, so events with characters above
  // U+FFFF are candidates too, and every candidate is decided here with JavaScript's order.
  // Written so the usual event (at most two tags) costs no subquery: this expression and the id
  // check are most of the scan's time.
  const suspectTags = `(CASE WHEN tags IS NULL OR coalesce(array_ndims(tags), 1) > 1 THEN true
      WHEN array_position(tags, NULL) IS NOT NULL THEN true
      WHEN cardinality(tags) < 2 THEN false
      WHEN array_to_string(tags, ' ') ~ '[\\U00010000-\\U0010FFFF]' THEN true
      WHEN cardinality(tags) = 2 THEN tags[1] COLLATE "C" >= tags[2] COLLATE "C"
      ELSE EXISTS (SELECT 1 FROM generate_subscripts(tags, 1) i WHERE i > 1 AND tags[i - 1] COLLATE "C" >= tags[i] COLLATE "C") END IS NOT FALSE)`;
  // The version nibble and the variant bits from the binary form: a regular expression on the
  // text form cost ten times as much.
  const invalidId = `(id IS NULL OR NOT ((get_byte(uuid_send(id), 6) >> 4) BETWEEN 1 AND 8 AND (get_byte(uuid_send(id), 8) >> 6) = 2
      OR id = '00000000-0000-0000-0000-000000000000' OR id = 'ffffffff-ffff-ffff-ffff-ffffffffffff'))`;

  for (let low = 0n; low < last; low += rangeSize) {
    const high = low + rangeSize < last ? low + rangeSize : last;
    const { rows } = await client.query<{ first: string | null; last: string | null; duplicates: string; missing: string | null; ids: string; tags: string }>(
      `SELECT min(position) AS first, max(position) AS last,
              count(*) FILTER (WHERE position = prev) AS duplicates,
              sum(position - prev - 1) FILTER (WHERE position > prev + 1) AS missing,
              count(*) FILTER (WHERE ${invalidId}) AS ids,
              count(*) FILTER (WHERE ${suspectTags}) AS tags
         FROM (SELECT position, id, tags, lag(position) OVER (ORDER BY position) AS prev FROM ${quoted}.events WHERE position > $1 AND position <= $2) w`,
      [low.toString(), high.toString()],
    );
    const range = rows[0]!;
    settings.onProgress?.(high, last);
    // An empty range: its gap is counted from the next range's first position.
    if (range.first === null) continue;
    // The first row of a range has no predecessor in it: compare with the last one before.
    const leadingGap = BigInt(range.first) - previous - 1n;
    if (leadingGap > 0n) {
      totals.missing += leadingGap;
      if (shown.gaps++ < examples) problem('positions', gapMessage(previous + 1n, previous + leadingGap));
    }
    if (BigInt(range.missing ?? 0) > 0n || BigInt(range.duplicates) > 0n) {
      totals.missing += BigInt(range.missing ?? 0);
      totals.duplicates += BigInt(range.duplicates);
      const { rows: anomalies } = await client.query<{ position: string; prev: string }>(
        `SELECT position, prev FROM (SELECT position, lag(position) OVER (ORDER BY position) AS prev FROM ${quoted}.events WHERE position > $1 AND position <= $2) w
          WHERE position = prev OR position > prev + 1 ORDER BY position LIMIT $3`,
        [low.toString(), high.toString(), 2 * examples],
      );
      for (const anomaly of anomalies) {
        const position = BigInt(anomaly.position);
        const prev = BigInt(anomaly.prev);
        if (position === prev) {
          if (shown.duplicates++ < examples) problem('positions', `position ${position} is stored more than once`);
        } else if (shown.gaps++ < examples) {
          problem('positions', gapMessage(prev + 1n, position - 1n));
        }
      }
    }
    if (BigInt(range.ids) > 0n) {
      totals.ids += BigInt(range.ids);
      const { rows: bad } = await client.query<{ position: string; id: string | null }>(
        `SELECT position, id::text AS id FROM ${quoted}.events WHERE position > $1 AND position <= $2 AND ${invalidId} ORDER BY position LIMIT $3`,
        [low.toString(), high.toString(), examples],
      );
      for (const row of bad) if (shown.ids++ < examples) problem('ids', `event ${row.position} has ${row.id === null ? 'no id' : `the id ${row.id}, not a valid UUID (version 1 to 8, RFC 4122 variant)`}`);
    }
    if (BigInt(range.tags) > 0n) {
      const { rows: suspects } = await client.query<{ position: string; tags: (string | null)[] | null }>(
        `SELECT position, tags FROM ${quoted}.events WHERE position > $1 AND position <= $2 AND ${suspectTags} ORDER BY position`,
        [low.toString(), high.toString()],
      );
      for (const row of suspects) {
        const why = tagsProblem(row.tags);
        if (why === undefined) continue;
        totals.tags += 1n;
        if (shown.tags++ < examples) problem('tags', `event ${row.position}: tags ${JSON.stringify(row.tags)} ${why}`);
      }
    }
    previous = BigInt(range.last!);
  }

  if (shown.gaps > examples) problem('positions', `${totals.missing} positions are missing in all (the first ${examples} gaps listed)`);
  if (shown.duplicates > examples) problem('positions', `${totals.duplicates} positions are stored more than once in all (the first ${examples} listed)`);
  if (shown.ids > examples) problem('ids', `${totals.ids} events have an invalid id in all (the first ${examples} listed)`);
  if (shown.tags > examples) problem('tags', `${totals.tags} events have tags that are not a sorted set in all (the first ${examples} listed)`);
  // Cannot happen when the counts above are right; a safety net for the arithmetic.
  if (totals.missing === 0n && totals.duplicates === 0n && settings.events - totals.nonPositive !== last) {
    problem('positions', `${settings.events} events are stored, but the highest position is ${last}`);
  }
}

function gapMessage(from: bigint, to: bigint): string {
  return from === to ? `position ${from} is missing` : `positions ${from} to ${to} are missing (${to - from + 1n})`;
}

/** Why stored tags are not what the store writes (a sorted set of strings), or undefined if they are. */
function tagsProblem(tags: (string | null)[] | null): string | undefined {
  if (tags === null) return 'are NULL';
  if (tags.some((tag) => tag === null)) return 'contain NULL';
  if (tags.some((tag) => typeof tag !== 'string')) return 'are not a one-dimensional array';
  for (let index = 1; index < tags.length; index += 1) {
    if (tags[index - 1] === tags[index]) return `repeat ${JSON.stringify(tags[index])}`;
    if (tags[index - 1]! > tags[index]!) return `are not sorted (${JSON.stringify(tags[index - 1])} before ${JSON.stringify(tags[index])})`;
  }
  return undefined;
}
