/**
 * dses export / dses import against the store's own bulk append, measured in the same run:
 * loads N events with store.append (batches of 1000), then times `dses export -o file`,
 * `dses import --preserve-positions` into a fresh schema and `dses import` (no flag) into
 * another, each a child process under /usr/bin/time -v (for its peak RSS).
 *
 *   npm run bench:transfer -- [--events 1000000] [--import-batch-size 1000] [--tcp] [--keep-file]
 *
 * The import rates are given twice: over the child's whole life (node and tsx start-up
 * included) and as the command reports it itself (from its first batch to its last commit).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EventStore, Query, type EventInput } from '../src/index.ts';
import { startBenchServer, withAdminClient } from './server.ts';

const { values } = parseArgs({ options: { events: { type: 'string', default: '1000000' }, tcp: { type: 'boolean', default: false }, 'keep-file': { type: 'boolean', default: false }, 'import-batch-size': { type: 'string' } } });
const events = Number(values.events);
if (!Number.isSafeInteger(events) || events < 1000) throw new Error(`--events must be an integer of at least 1000, got ${values.events}`);

const repo = new URL('..', import.meta.url).pathname;
const server = await startBenchServer(values.tcp);
const url = server.adminUrl;
const suffix = `${process.pid}`;
const schemas = { source: `bench_transfer_source_${suffix}`, restored: `bench_transfer_restored_${suffix}`, migrated: `bench_transfer_migrated_${suffix}`, again: `bench_transfer_again_${suffix}` };
const directory = mkdtempSync(join(tmpdir(), 'dses-bench-transfer-'));
const file = join(directory, 'export.ndjson');

interface ChildRun {
  seconds: number;
  peakRssMb: number;
  stderr: string;
}

/** Runs `dses` under /usr/bin/time -v: wall time and the child's peak RSS. */
function dses(args: readonly string[]): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-v', process.execPath, '--import', 'tsx', 'bin/dses.js', '--url', url, ...args], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) return reject(new Error(`dses ${args.join(' ')} exited with ${code}: ${stderr}`));
      const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
      resolve({ seconds, peakRssMb: rss ? Number(rss[1]) / 1024 : Number.NaN, stderr });
    });
  });
}

/** The command's own "... in X s" summary line. */
function reportedSeconds(run: ChildRun): number {
  const match = / in (\d+(?:\.\d+)?) s \(/.exec(run.stderr);
  return match ? Number(match[1]) : Number.NaN;
}

async function migrated(schema: string): Promise<EventStore> {
  return EventStore.connect({ connectionString: url, schema, migrate: true, telemetry: false });
}

const rate = (count: number, seconds: number): number => Math.round(count / seconds);

/** Loads the events into `schema` with store.append, 1000 per call; the rate of the append calls alone. */
async function bulkAppend(schema: string): Promise<number> {
  const store = await migrated(schema);
  let seconds = 0;
  for (let start = 0; start < events; start += 1000) {
    const batch: EventInput[] = [];
    for (let index = start; index < Math.min(events, start + 1000); index += 1) {
      batch.push({ type: index % 3 === 0 ? 'BookLent' : 'BookReturned', tags: [`book:${index % 5000}`, `reader:${index % 997}`], data: { n: index, title: `Book ${index % 5000}` }, metadata: { correlationId: `c-${index}` } });
    }
    const started = process.hrtime.bigint();
    await store.append(batch);
    seconds += Number(process.hrtime.bigint() - started) / 1e9;
  }
  await store.close();
  return rate(events, seconds);
}

try {
  // The baseline: the store's own bulk append, 1000 events per call, one call in flight. It runs
  // again after the imports: the machine is shared, and its load moves during a run; the ratios
  // are taken against the mean of both.
  const appendRates: number[] = [await bulkAppend(schemas.source)];
  console.log(`bulk append (store.append, batches of 1000): ${appendRates[0]} events/s`);

  const exported = await dses(['--schema', schemas.source, 'export', '-o', file]);
  console.log(`dses export -o file: ${rate(events, exported.seconds)} events/s over the child's life (${exported.seconds.toFixed(1)} s), ${rate(events, reportedSeconds(exported))} events/s as reported; peak RSS ${exported.peakRssMb.toFixed(0)} MB; file ${(statSync(file).size / 1e6).toFixed(0)} MB`);

  const imports: { name: string; seconds: number; reported: number; peakRssMb: number }[] = [];
  for (const [schema, flags, name] of [[schemas.restored, ['--preserve-positions'], 'dses import --preserve-positions'], [schemas.migrated, [], 'dses import (no flag)']] as const) {
    await (await migrated(schema)).close();
    const run = await dses(['--schema', schema, 'import', ...flags, ...(values['import-batch-size'] ? ['--batch-size', values['import-batch-size']] : []), file]);
    const store = await EventStore.connect({ connectionString: url, schema, migrate: false, telemetry: false });
    const head = await store.head();
    const last = (await store.read(Query.all(), { backwards: true, limit: 1 })).events[0];
    await store.close();
    if (head !== BigInt(events) || last === undefined) throw new Error(`${name}: head ${head}, expected ${events}`);
    imports.push({ name, seconds: run.seconds, reported: reportedSeconds(run), peakRssMb: run.peakRssMb });
  }
  appendRates.push(await bulkAppend(schemas.again));
  const appendRate = (appendRates[0]! + appendRates[1]!) / 2;
  console.log(`bulk append again, after the imports: ${appendRates[1]} events/s (mean ${Math.round(appendRate)})`);
  for (const { name, seconds, reported, peakRssMb } of imports) {
    const lifeRate = rate(events, seconds);
    const ownRate = rate(events, reported);
    console.log(
      `${name}: ${lifeRate} events/s over the child's life (${seconds.toFixed(1)} s; ratio to the mean bulk append ${(lifeRate / appendRate).toFixed(2)}), ` +
        `${ownRate} events/s as reported (ratio ${(ownRate / appendRate).toFixed(2)}); peak RSS ${peakRssMb.toFixed(0)} MB`,
    );
  }
} finally {
  await withAdminClient(url, async (client) => {
    for (const schema of Object.values(schemas)) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }).catch(() => undefined);
  if (!values['keep-file']) rmSync(directory, { recursive: true, force: true });
  await server.stop();
}
