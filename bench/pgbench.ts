/**
 * Baselines measured in the same run, on the same server: what PostgreSQL itself does with the
 * same table shape and the same read SQL, driven by `pgbench` (-M prepared). Every value a script
 * uses reaches the server as a bound parameter (pgbench variables), never spliced into SQL.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Query, QueryItem } from '../src/index.ts';
// The read SQL the store sends, so that the SELECT baseline is the very same statement.
import { buildReadStatement } from '../src/postgres/read-sql.ts';
import { DECISION_TYPES, eventData, PRELOAD_ENTITIES, seededRandom, TENANTS } from './data.ts';
import { withAdminClient } from './server.ts';

const run = promisify(execFile);

export interface PgbenchRun {
  tps: number;
  latencyMeanMs: number;
  /** Per-transaction latencies from pgbench's transaction log (-l). */
  latenciesMs: number[];
}

export async function pgbenchVersion(): Promise<string> {
  try {
    const { stdout } = await run('pgbench', ['--version']);
    return stdout.trim();
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') {
      throw new Error('pgbench is not on PATH; the baselines need it (Debian/Ubuntu: apt install postgresql-client; any version talks to the embedded PostgreSQL 17)');
    }
    throw error;
  }
}

/** A table of the same shape and indexes as the store's events table, position from a sequence. */
const EVENTS_TABLE_DDL = `
CREATE TABLE IF NOT EXISTS bench_events (
  position    bigserial   PRIMARY KEY,
  id          uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
  type        text        NOT NULL,
  tags        text[]      NOT NULL DEFAULT '{}',
  data        jsonb       NOT NULL,
  metadata    jsonb       NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS bench_events_type_position_idx ON bench_events (type, position);
CREATE INDEX IF NOT EXISTS bench_events_tags_idx ON bench_events USING gin (tags) WITH (fastupdate = off);
`;

export async function createBaselineTable(url: string): Promise<void> {
  await withAdminClient(url, (client) => client.query(EVENTS_TABLE_DDL));
}

/** A payload like the workloads' (about 300 bytes), split around its entity id so each row differs. */
function payloadDefines(): string[] {
  const sample = JSON.stringify(eventData(0, seededRandom(42)));
  const marker = '{"entityId":0,';
  if (!sample.startsWith(marker)) throw new Error('eventData must start with entityId for the pgbench payload');
  return ['-D', 'payload_head={"entityId":', '-D', `payload_tail=,${sample.slice(marker.length)}`];
}

const INSERT_ONE_SCRIPT = `\\set e random(0, ${PRELOAD_ENTITIES - 1})
\\set t :e % ${TENANTS}
INSERT INTO bench_events (type, tags, data, occurred_at, recorded_at)
  VALUES ('OrderPlaced', ARRAY['entity:' || :e, 'tenant:' || :t], (:payload_head::text || :e || :payload_tail::text)::jsonb, now(), now());
`;

const INSERT_SERIES_SCRIPT = `INSERT INTO bench_events (type, tags, data, occurred_at, recorded_at)
  SELECT 'OrderPlaced', ARRAY['entity:' || g, 'tenant:' || (g % ${TENANTS})], (:payload_head::text || g || :payload_tail::text)::jsonb, now(), now()
  FROM generate_series(1, :rows::integer) g;
`;

/**
 * The store's decision read as pgbench scripts, one per entity class (the class fixes the types):
 * the statement text is buildReadStatement's, its parameters become pgbench variables.
 */
function readScripts(): { scripts: string[]; defines: string[] } {
  const sentinel = 'entity:__entity__';
  const scripts: string[] = [];
  const defines: string[] = ['-D', 'after=0'];
  DECISION_TYPES.forEach((types, entityClass) => {
    const query = Query.of(QueryItem.types(...types).tags(sentinel));
    const statement = buildReadStatement('"eventstore"', query.toInternal(), { after: 0n, limit: undefined, backwards: false });
    defines.push('-D', `types${entityClass}={${types.join(',')}}`);
    const text = statement.text.replace(/\$(\d+)/g, (_, index: string) => {
      const value = statement.values[Number(index) - 1];
      if (value === '0') return ':after';
      if (Array.isArray(value) && value[0] === sentinel) return `('{entity:' || :e || '}')`;
      if (Array.isArray(value) && value.join(',') === types.join(',')) return `:types${entityClass}`;
      throw new Error(`unexpected value ${JSON.stringify(value)} in the read statement: update bench/pgbench.ts`);
    });
    const classes = DECISION_TYPES.length;
    scripts.push(`\\set k random(0, ${Math.floor(PRELOAD_ENTITIES / classes) - 1})\n\\set e ${classes} * :k + ${entityClass}\n${text};\n`);
  });
  return { scripts, defines };
}

async function runScripts(url: string, scripts: string[], clients: number, durationSeconds: number, defines: string[]): Promise<PgbenchRun> {
  const directory = await mkdtemp(join(tmpdir(), 'dses-pgbench-'));
  try {
    const files: string[] = [];
    for (const [index, script] of scripts.entries()) {
      const file = join(directory, `script-${index}.sql`);
      await writeFile(file, script);
      files.push('-f', file);
    }
    const args = [
      '-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(2, clients)), '-T', String(durationSeconds),
      '-l', `--log-prefix=${join(directory, 'log')}`, ...defines, ...files, url,
    ];
    const { stdout } = await run('pgbench', args, { maxBuffer: 64 * 2 ** 20, env: { ...process.env, PGAPPNAME: 'bench-pgbench' } });
    return { ...parseSummary(stdout), latenciesMs: await readTransactionLogs(directory) };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

function parseSummary(stdout: string): { tps: number; latencyMeanMs: number } {
  const tps = stdout.match(/^tps = ([\d.]+)/m)?.[1];
  const latency = stdout.match(/^latency average = ([\d.]+) ms/m)?.[1];
  const failed = Number(stdout.match(/^number of failed transactions: (\d+)/m)?.[1] ?? 0);
  if (tps === undefined || latency === undefined) throw new Error(`cannot parse pgbench output:\n${stdout}`);
  if (failed > 0) throw new Error(`pgbench reported ${failed} failed transactions:\n${stdout}`);
  return { tps: Number(tps), latencyMeanMs: Number(latency) };
}

/** Lines: client_id transaction_no time_us script_no epoch epoch_us. */
async function readTransactionLogs(directory: string): Promise<number[]> {
  const latencies: number[] = [];
  for (const name of await readdir(directory)) {
    if (!name.startsWith('log')) continue;
    for (const line of (await readFile(join(directory, name), 'utf8')).split('\n')) {
      const microseconds = line.split(' ')[2];
      if (microseconds !== undefined) latencies.push(Number(microseconds) / 1000);
    }
  }
  return latencies;
}

/** (a) single-row INSERT into the events-shaped table. */
export function insertOne(url: string, clients: number, durationSeconds: number): Promise<PgbenchRun> {
  return runScripts(url, [INSERT_ONE_SCRIPT], clients, durationSeconds, payloadDefines());
}

/** (c) `rows`-row INSERT ... SELECT generate_series, one client. */
export function insertSeries(url: string, rows: number, durationSeconds: number): Promise<PgbenchRun> {
  return runScripts(url, [INSERT_SERIES_SCRIPT], 1, durationSeconds, [...payloadDefines(), '-D', `rows=${rows}`]);
}

/** (b) the store's own decision read of a random preloaded entity, on a store of the `eventstore` schema. */
export function decisionRead(url: string, clients: number, durationSeconds: number): Promise<PgbenchRun> {
  const { scripts, defines } = readScripts();
  return runScripts(url, scripts, clients, durationSeconds, defines);
}
