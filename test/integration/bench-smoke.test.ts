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

test('bench:follow runs on a small log: every live append delivered, every event consumed', { timeout: 60_000 }, async () => {
  const { execFile } = await import('node:child_process');
  const output: string = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/follow.ts', '--events', '2000', '--writers', '2', '--seconds', '1'], { env: { ...process.env, DATABASE_URL: databaseUrl() } }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
    );
  });
  const live = /live, 2 writer instances, (\d+) appends \(delivered (\d+)\)/.exec(output);
  assert.ok(live, output);
  assert.ok(Number(live[1]) > 0);
  assert.equal(live[2], live[1], 'every live append reached the subscriber');
  assert.match(output, /consumer, 500 events, .*\(500 rows\)/);
  assert.match(output, /catch-up, all events \(2000 events\)/);
});

test('bench:telemetry runs each mode in its own process and prints the ratios to off', { timeout: 120_000 }, async () => {
  const { execFile } = await import('node:child_process');
  const { mkdtemp, readdir, readFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const out = await mkdtemp(join(tmpdir(), 'bench-telemetry-'));
  try {
    const args = ['--import', 'tsx', 'bench/telemetry.ts', '--duration', '1', '--warmup', '0', '--repeats', '1', '--clients', '2', '--out', out];
    const output: string = await new Promise((resolve, reject) => {
      execFile(process.execPath, args, { env: { ...process.env, DATABASE_URL: databaseUrl() } }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)));
    });
    for (const mode of ['off', 'api', 'sdk']) assert.match(output, new RegExp(`^\\| ${mode} \\| \\d+ \\| \\d+–\\d+ \\| \\d\\.\\d{3} \\|`, 'm'), output);
    assert.match(output, /^api\/off: \d\.\d{3}/m, output);
    assert.match(output, /^sdk\/off: \d\.\d{3}/m, output);
    assert.match(output, /^\| sdk \|.*\| 3\.00 \|$/m, 'three spans per loop: the request span, the read and the append');
    const [file] = await readdir(out);
    const report = JSON.parse(await readFile(join(out, file!), 'utf8')) as { summaries: { mode: string }[]; runs: { traceparentStored: boolean }[] };
    assert.deepEqual(report.summaries.map((summary) => summary.mode), ['off', 'api', 'sdk']);
    assert.deepEqual(report.runs.map((run) => run.traceparentStored), [false, false, true]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
