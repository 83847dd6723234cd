// appendCommands next to append of the same events, in one run. The job: register meters, each
// only if it does not exist (one event and a uniqueness condition per meter), G meters per
// request, from C concurrent clients. Three ways to write each request:
//
//   appends    G concurrent append() calls, one per meter with its own condition (the batcher
//              gives them one round trip, but they are not atomic together)
//   merged     one append() of the G events with one condition: the OR of the G meters' queries
//              (atomic; what callers had to do before appendCommands; it cannot say which failed)
//   commands   one appendCommands() of G commands (atomic, each command with its own condition)
//
// Modes alternate in short rounds (appends, merged, commands, commands, merged, appends, ...) on
// the same store, so that the drift of this shared machine and the growing table fall on each
// alike. Only the ratios to `appends` are comparable across machines. Every request succeeds
// (the meters are new); each round checks that its events were all written.
//
// npm run bench:commands [-- --clients 16 --group 10,100 --seconds 3 --rounds 3] [--tcp]
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { EventStore, Query, QueryItem, type AppendCommand } from '../src/index.ts';
import { createFreshDatabase, dropDatabase, startBenchServer } from './server.ts';
import { percentiles } from './stats.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    group: { type: 'string', default: '10,100' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    tcp: { type: 'boolean', default: false },
  },
  strict: true,
});
function positive(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return value;
}
const CLIENTS = positive(values.clients, 'clients');
const GROUPS = values.group.split(',').map((text) => positive(text.trim(), 'group'));
const ROUND_MS = 1000 * positive(values.seconds, 'seconds');
const ROUNDS = positive(values.rounds, 'rounds');
const MODES = ['appends', 'merged', 'commands'] as const;
type Mode = (typeof MODES)[number];

const server = await startBenchServer(values.tcp);
const database = `dses_commands_${process.pid}`;
const url = await createFreshDatabase(server.adminUrl, database);
const store = await EventStore.connect({ connectionString: url, schema: 'commands' });

const meter = (id: string) => ({ type: 'MeterRegistered', tags: [`meter:${id}`], data: { id, model: 'M-42', installedAt: '2026-12-02' } });
const exists = (id: string) => QueryItem.types('MeterRegistered').tags(`meter:${id}`);

async function request(mode: Mode, size: number): Promise<void> {
  const ids = Array.from({ length: size }, () => randomUUID());
  if (mode === 'appends') {
    await Promise.all(ids.map((id) => store.append(meter(id), { failIfEventsMatch: Query.of(exists(id)) })));
  } else if (mode === 'merged') {
    await store.append(ids.map(meter), { failIfEventsMatch: Query.of(...ids.map(exists)) });
  } else {
    const commands: AppendCommand[] = ids.map((id) => ({ events: meter(id), condition: { failIfEventsMatch: Query.of(exists(id)) } }));
    await store.appendCommands(commands);
  }
}

/** Events per second of C clients sending requests of `size` meters for ROUND_MS. */
async function round(mode: Mode, size: number): Promise<number> {
  const headBefore = await store.head();
  const stopAt = performance.now() + ROUND_MS;
  let events = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() < stopAt) {
      await request(mode, size);
      events += size;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const written = Number((await store.head()) - headBefore);
  if (written !== events) throw new Error(`${mode}: ${events} events acknowledged, ${written} written`);
  return events / seconds;
}

try {
  console.log(`appendCommands vs append, ${CLIENTS} clients, ${ROUNDS} rounds of ${ROUND_MS / 1000} s per mode; ${os.cpus().length} CPUs, ${server.embedded ? "embedded PostgreSQL 17" : "DATABASE_URL"}, ${server.transport}`);
  for (const size of GROUPS) {
    const rates = new Map<Mode, number[]>(MODES.map((mode) => [mode, []]));
    await round('commands', size); // warm-up (plans, pool, JIT)
    for (let index = 0; index < ROUNDS; index++) {
      for (const mode of index % 2 === 0 ? MODES : [...MODES].reverse()) rates.get(mode)!.push(await round(mode, size));
    }
    const median = (mode: Mode): number => percentiles(rates.get(mode)!)!.p50;
    const baseline = median('appends');
    console.log(`\n${size} meters per request (events/s, median of ${ROUNDS}):`);
    for (const mode of MODES) console.log(`  ${mode.padEnd(9)} ${Math.round(median(mode)).toString().padStart(7)}  ${(median(mode) / baseline).toFixed(2)}x   [${rates.get(mode)!.map(Math.round).join(', ')}]`);
  }
} finally {
  await store.close();
  await dropDatabase(server.adminUrl, database);
  await server.stop();
}
