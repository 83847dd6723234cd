// Checks one benchmark adapter against a real PostgreSQL before it is benchmarked: that its read,
// its conditional append and its bulk path mean what bench/adapter.ts says they mean.
//
//   tsx bench/check-adapter.ts <ours|dcb-es|rico>
//
// Starts an ephemeral embedded PostgreSQL 17, creates a fresh database, runs the checks in order
// (each builds on the state the previous left) and prints one line per check. Exits 1 on any
// mismatch. The checks are sequential: they say nothing about behaviour under concurrency.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../src/index.ts';
import type { BenchAdapter, BenchEvent, BenchPosition, BenchQuery } from './adapter.ts';

const ADAPTER_NAME = /^[a-z0-9-]+$/;
const BULK_BATCH = 5000;

const name = process.argv[2];
if (!name || !ADAPTER_NAME.test(name)) {
  console.error('usage: tsx bench/check-adapter.ts <ours|dcb-es|rico>');
  process.exit(2);
}

let failures = 0;
function check(what: string, ok: boolean, detail = ''): void {
  if (!ok) failures += 1;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
}

function event(type: string, tags: string[], n: number): BenchEvent {
  return { type, tags, data: { n, note: 'check-adapter' } };
}

function repeat(count: number, make: (i: number) => BenchEvent): BenchEvent[] {
  return Array.from({ length: count }, (_, i) => make(i));
}

function withDatabase(connectionString: string, database: string): string {
  const url = new URL(connectionString);
  url.pathname = `/${database}`;
  return url.toString();
}

async function createDatabase(serverConnectionString: string, database: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverConnectionString });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  return withDatabase(serverConnectionString, database);
}

async function runChecks(adapter: BenchAdapter): Promise<void> {
  const A = 'CheckA';
  const B = 'CheckB';
  const C = 'CheckC';
  const types = [A, B];
  const e1: BenchQuery = { types, tag: 'entity:1' };
  const e2: BenchQuery = { types, tag: 'entity:2' };
  const fresh: BenchQuery = { types, tag: 'entity:3' };
  let total = 0;

  // Events that must match e1: types A|B carrying entity:1 (alone or among other tags) ...
  const matching = [
    ...repeat(3, (i) => event(A, ['entity:1'], i)),
    ...repeat(2, (i) => event(B, ['entity:1'], i)),
    event(A, ['other:9', 'entity:1'], 0),
  ];
  // ... and events that must not: another type with the tag, the types with other tags, no tags,
  // and a tag that only shares a prefix.
  const nonMatching = [
    ...repeat(2, (i) => event(C, ['entity:1'], i)),
    ...repeat(4, (i) => event(A, ['entity:2'], i)),
    event(B, ['entity:2', 'other:9'], 0),
    event(A, [], 0),
    event(B, ['entity:10'], 0),
    event(A, ['entity:1x'], 0),
  ];
  const outcome = await adapter.append([...matching.slice(0, 3), ...nonMatching.slice(0, 4)]);
  check('unconditional append of a batch returns appended', outcome === 'appended', outcome);
  for (const single of [...matching.slice(3), ...nonMatching.slice(4)]) {
    const one = await adapter.append([single]);
    if (one !== 'appended') check('unconditional append of one event returns appended', false, one);
  }
  total += matching.length + nonMatching.length;

  const read1 = await adapter.read(e1);
  check('read {types, tag} returns exactly the matching events', read1.count === matching.length, `count ${read1.count}, expected ${matching.length}`);
  const read2 = await adapter.read(e2);
  check('read of another entity returns its own events', read2.count === 5, `count ${read2.count}, expected 5`);
  const readNone = await adapter.read(fresh);
  check('read of an entity without events returns none', readNone.count === 0, `count ${readNone.count}`);
  const readAgain = await adapter.read(e1);
  check(
    'positionKey is equal for two reads with no append in between',
    adapter.positionKey(read1.position) === adapter.positionKey(readAgain.position),
    `${adapter.positionKey(read1.position)} vs ${adapter.positionKey(readAgain.position)}`,
  );

  const conditional = (query: BenchQuery, position: BenchPosition, n: number) =>
    adapter.append([event(A, [query.tag], 100 + n)], { query, position });

  const first = await conditional(e1, read1.position, 1);
  check('conditional append with the read position succeeds', first === 'appended', first);
  total += first === 'appended' ? 1 : 0;
  const stale = await conditional(e1, read1.position, 2);
  check('conditional append with the same, now stale position conflicts', stale === 'conflict', stale);
  total += stale === 'appended' ? 1 : 0;
  const afterConflict = await adapter.read(e1);
  check('a conflicting append writes nothing', afterConflict.count === matching.length + 1, `count ${afterConflict.count}, expected ${matching.length + 1}`);
  check(
    'positionKey differs after an append to the entity',
    adapter.positionKey(afterConflict.position) !== adapter.positionKey(read1.position),
    `${adapter.positionKey(read1.position)} -> ${adapter.positionKey(afterConflict.position)}`,
  );

  // read2 was taken before the appends to entity:1: they must not count against entity:2.
  const disjoint = await conditional(e2, read2.position, 3);
  check('conditional append on a disjoint entity (position older than other entities\' appends) does not conflict', disjoint === 'appended', disjoint);
  total += disjoint === 'appended' ? 1 : 0;
  // Events of a type outside the query, carrying the tag, must not count either.
  const reread = await adapter.read(e1);
  const otherType = await adapter.append([event(C, ['entity:1'], 200)]);
  total += otherType === 'appended' ? 1 : 0;
  const afterOtherType = await conditional(e1, reread.position, 4);
  check('an event of a type outside the query does not conflict', afterOtherType === 'appended', afterOtherType);
  total += afterOtherType === 'appended' ? 1 : 0;

  // An entity without events: the read's position works, and only once.
  const none1 = await conditional(fresh, readNone.position, 5);
  check('conditional append on an empty entity with its read position succeeds', none1 === 'appended', none1);
  total += none1 === 'appended' ? 1 : 0;
  const none2 = await conditional(fresh, readNone.position, 6);
  check('a second one with the same position conflicts', none2 === 'conflict', none2);
  total += none2 === 'appended' ? 1 : 0;

  const bulkQuery: BenchQuery = { types: [A], tag: 'bulk:1' };
  const bulk = repeat(BULK_BATCH, (i) => event(A, [`item:${i}`, 'bulk:1'], i));
  const started = performance.now();
  const bulkOutcome = await adapter.append(bulk);
  const bulkMs = performance.now() - started;
  check(`a batch of ${BULK_BATCH} events appends`, bulkOutcome === 'appended', `${bulkOutcome}, ${bulkMs.toFixed(0)} ms, maxPreloadBatch ${adapter.maxPreloadBatch}`);
  total += bulkOutcome === 'appended' ? BULK_BATCH : 0;
  const bulkRead = await adapter.read(bulkQuery);
  check('the batch reads back', bulkRead.count === BULK_BATCH, `count ${bulkRead.count}`);
  const bulkConditional = await adapter.append([event(A, ['bulk:1'], 0)], { query: bulkQuery, position: bulkRead.position });
  check('conditional append after the batch with the read position succeeds', bulkConditional === 'appended', bulkConditional);
  total += bulkConditional === 'appended' ? 1 : 0;

  total += await raceProbe(adapter);

  if (!adapter.streamAll) {
    console.log('skip streamAll (the adapter does not implement it)');
    return;
  }
  let streamed = 0;
  let previous = -1n;
  let ordered = true;
  const count = await adapter.streamAll((position) => {
    streamed += 1;
    if (position <= previous) ordered = false;
    previous = position;
  });
  check('streamAll counts all events', count === total && streamed === total, `returned ${count}, callbacks ${streamed}, expected ${total}`);
  check('streamAll delivers positions in increasing order', ordered);
}

/**
 * Not a pass/fail check (a peer may genuinely not guarantee it; see its adapter's header): RACERS
 * appends read the same entity, then all append with that read's position at once. DCB allows at most
 * one winner per round. Returns the number of events written.
 */
async function raceProbe(adapter: BenchAdapter): Promise<number> {
  const RACERS = 8;
  const ROUNDS = 20;
  let written = 0;
  let roundsWithSeveralWinners = 0;
  let mostWinners = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const query: BenchQuery = { types: ['CheckRace'], tag: `race:${round}` };
    await adapter.append([event('CheckRace', [query.tag], 0)]);
    written += 1;
    const reads = await Promise.all(Array.from({ length: RACERS }, () => adapter.read(query)));
    const outcomes = await Promise.all(reads.map((read, i) => adapter.append([event('CheckRace', [query.tag], i + 1)], { query, position: read.position })));
    const winners = outcomes.filter((outcome) => outcome === 'appended').length;
    written += winners;
    if (winners > 1) roundsWithSeveralWinners += 1;
    mostWinners = Math.max(mostWinners, winners);
  }
  console.log(
    `info race probe: ${RACERS} racers x ${ROUNDS} rounds on one entity each: ` +
      `${roundsWithSeveralWinners} round(s) with more than one winner (most winners in a round: ${mostWinners})` +
      (roundsWithSeveralWinners > 0 ? ' -- VIOLATES DCB guarantee A' : ''),
  );
  return written;
}

let server: EmbeddedPostgresServer | undefined;
let adapter: BenchAdapter | undefined;
try {
  server = await startEmbeddedPostgres({ dataDir: join(tmpdir(), `dses-check-adapter-${process.pid}-${Date.now()}`), port: 0, ephemeral: true });
  const connectionString = await createDatabase(server.connectionString, `check_${name.replaceAll('-', '_')}`);
  const module = (await import(`./adapters/${name}.ts`)) as { default: () => BenchAdapter };
  adapter = module.default();
  console.log(`checking ${adapter.name} (bench/adapters/${name}.ts)`);
  await adapter.open(connectionString);
  await runChecks(adapter);
} catch (error) {
  failures += 1;
  console.log(`FAIL unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  await adapter?.close().catch((error: unknown) => console.log(`close failed: ${String(error)}`));
  // pg-pool's end() resolves once it has asked its clients to end, not once they have: stopping the
  // server before they are gone makes it send them FATAL 57P01, which a pool without an 'error'
  // listener (rico's) raises as an uncaught error.
  await delay(250);
  await server?.stop();
}
console.log(failures === 0 ? `${name}: all checks passed` : `${name}: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
