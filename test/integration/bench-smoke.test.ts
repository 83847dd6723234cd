// The benchmark harness starts: a worker process with our adapter runs a short W1 on a fresh
// database and reports loops without false conflicts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { launchWorker } from '../../bench/children.ts';
import { createFreshDatabase, dropDatabase } from '../../bench/server.ts';
import { databaseUrl, keepEventLoopAliveDuringTests } from '../helpers.ts';

keepEventLoopAliveDuringTests();

const database = `bench_smoke_${randomBytes(4).toString('hex')}`;
let url: string;
before(async () => (url = await createFreshDatabase(databaseUrl(), database)));
after(() => dropDatabase(databaseUrl(), database));

test('a bench worker runs W1 with our adapter: loops > 0 and no false conflicts', { timeout: 30_000 }, async () => {
  const run = launchWorker('ours', url, [{ kind: 'W1', clients: 2, entityBase: 1_000_000_000, phases: { warmupMs: 0, durationMs: 300, repeats: 1 } }]);
  const [repeats] = await run.results;
  assert.equal(await run.adapterName, 'dynamic-streams-eventstore');
  const measurement = repeats![0]!;
  assert.ok(measurement.ops > 0, `expected loops, got ${measurement.ops}`);
  assert.equal(measurement.counters.falseConflicts ?? 0, 0);
  assert.equal(measurement.samples.read?.length, measurement.ops);
  assert.equal(measurement.samples.append?.length, measurement.ops);
});
