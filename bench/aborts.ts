// Aborts under load: what a share of callers on short AbortSignal timeouts costs everyone else.
// Each round appends N events concurrently from one store (conditional appends on their own
// boundaries, so nothing conflicts) and is timed; the baseline round has no signals, the
// measured one gives every tenth caller `AbortSignal.timeout(1..5 ms)`. Rounds alternate so that
// both see the same machine; only the ratio is comparable across machines.
//
// Also checks the outcome rules on every call: an acknowledged append is stored at its position,
// an ABORTED one is not stored, and no caller without a signal fails.
//
// npm run bench:aborts [-- --appends 400 --rounds 10]
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { AppendOutcomeUnknownError, EventStore, OperationAbortedError, Query, QueryItem } from '../src/index.ts';
import { createFreshDatabase, dropDatabase, startBenchServer } from './server.ts';
import { percentiles } from './stats.ts';

const { values } = parseArgs({ options: { appends: { type: 'string', default: '400' }, rounds: { type: 'string', default: '10' }, tcp: { type: 'boolean', default: false } } });
const APPENDS = Number(values.appends);
const ROUNDS = Number(values.rounds);

const server = await startBenchServer(values.tcp);
const database = `dses_aborts_${process.pid}`;
const url = await createFreshDatabase(server.adminUrl, database);
const store = await EventStore.connect({ connectionString: url, schema: 'aborts' });
const raw = new pg.Client({ connectionString: url });
await raw.connect();

interface Round {
  ms: number;
  aborted: number;
  unknown: number;
}

async function round(withAborts: boolean): Promise<Round> {
  const ids = Array.from({ length: APPENDS }, () => randomUUID());
  const started = performance.now();
  const outcomes = await Promise.allSettled(
    ids.map((id, index) =>
      store.append(
        { id, type: 'Storm', tags: [`storm:${id}`], data: { index } },
        { failIfEventsMatch: Query.of(QueryItem.tags(`storm:${id}`)) },
        withAborts && index % 10 === 0 ? { signal: AbortSignal.timeout(1 + (index % 5)) } : {},
      ),
    ),
  );
  const ms = performance.now() - started;
  const { rows } = await raw.query<{ id: string; position: string }>('SELECT id, position FROM aborts.events WHERE id = ANY ($1::uuid[])', [ids]);
  const stored = new Map(rows.map((row) => [row.id, BigInt(row.position)]));
  let aborted = 0;
  let unknown = 0;
  outcomes.forEach((outcome, index) => {
    const id = ids[index]!;
    if (outcome.status === 'fulfilled') {
      if (stored.get(id) !== outcome.value.position) throw new Error(`#${index} acknowledged at ${outcome.value.position} but stored at ${stored.get(id)}`);
    } else if (outcome.reason instanceof OperationAbortedError && index % 10 === 0 && withAborts) {
      if (stored.has(id)) throw new Error(`#${index} ABORTED but stored`);
      aborted++;
    } else if (outcome.reason instanceof AppendOutcomeUnknownError && index % 10 === 0 && withAborts) {
      unknown++;
    } else {
      throw new Error(`#${index} failed: ${String(outcome.reason)}`);
    }
  });
  return { ms, aborted, unknown };
}

try {
  await round(false); // warm-up
  const baseline: number[] = [];
  const measured: number[] = [];
  let aborted = 0;
  let unknown = 0;
  for (let index = 0; index < ROUNDS; index++) {
    baseline.push((await round(false)).ms);
    const result = await round(true);
    measured.push(result.ms);
    aborted += result.aborted;
    unknown += result.unknown;
  }
  const median = (list: number[]): number => percentiles(list)!.p50;
  console.log(`${APPENDS} concurrent conditional appends, ${ROUNDS} rounds each, median:`);
  console.log(`  no signals (baseline):            ${median(baseline).toFixed(1)} ms`);
  console.log(`  10 % on AbortSignal.timeout(1-5):  ${median(measured).toFixed(1)} ms  (${(median(measured) / median(baseline)).toFixed(2)}x)`);
  console.log(`  of the ${(APPENDS / 10) * ROUNDS} callers with a timeout: ${aborted} ABORTED (not written), ${unknown} detached with APPEND_OUTCOME_UNKNOWN, the rest acknowledged`);
} finally {
  await raw.end();
  await store.close();
  await dropDatabase(server.adminUrl, database);
  await server.stop();
}
