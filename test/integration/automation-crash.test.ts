// The automation crash test: two processes run the same automation (one holds the lease, the
// other waits as a standby); at random moments the lease holder is SIGKILLed and replaced, while
// this process appends triggering events. At the end the log holds exactly one reaction per trigger,
// none missing, none twice, in trigger order, checked in SQL.
//
// Bugs it is there to catch: the reactions committed apart from the checkpoint (a kill between
// the two commits leaves reactions whose trigger is decided again: doubles; or, in the other
// order, a checkpoint past triggers whose reactions never committed: missing), a lease that does
// not end with its process (the standby never takes over), a standby deciding while the holder
// runs. The children give reactions random ids of their own, so that the derived-id defence
// cannot turn a double into an idempotent no-op and hide it.
//
// Seeded: the seed is printed; AUTOMATION_CRASH_SEED repeats a run, AUTOMATION_CRASH_MS sets its
// length (default 40 s of kills).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { Query, QueryItem, type EventInput } from '../../src/index.ts';
import { createTestStore, keepEventLoopAliveDuringTests, seededRandom } from '../helpers.ts';
import { connectionStringFor, uniqueApplicationName, waitFor } from './fixtures/backends.ts';
import { reactionCounts } from './fixtures/reactions.ts';

keepEventLoopAliveDuringTests();

const root = fileURLToPath(new URL('../../', import.meta.url));
const childScript = fileURLToPath(new URL('./fixtures/automation-child.ts', import.meta.url));
const seed = Number(process.env.AUTOMATION_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const durationMs = Number(process.env.AUTOMATION_CRASH_MS ?? 40_000);
const NAME = 'crash-reactions';

const children = new Set<ChildProcessByStdio<null, Readable, Readable>>();
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

interface Child {
  process: ChildProcessByStdio<null, Readable, Readable>;
  started: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

function startChild(schema: string, instance: string): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: connectionStringFor(uniqueApplicationName('auto-crash')), AUTOMATION_SCHEMA: schema, AUTOMATION_NAME: NAME, AUTOMATION_INSTANCE: instance },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const started = new Promise<void>((resolve) => {
    const check = (): void => {
      if (stdout.includes('RUNNING\n')) resolve();
    };
    child.stdout.on('data', check);
    void exited.then(() => resolve());
  });
  return { process: child, started, exited, output: () => `--- ${instance} stdout ---\n${stdout}\n--- ${instance} stderr ---\n${stderr}` };
}

test(`automation processes SIGKILLed at random while triggers flow: exactly one reaction per trigger, none missing (seed ${seed})`, { timeout: durationMs + 90_000 }, async () => {
  console.log(`automation crash test: seed ${seed} (AUTOMATION_CRASH_SEED=${seed} repeats it), ${durationMs} ms of kills`);
  // One sequence per actor: how their calls interleave depends on timing, each one's own does not.
  const randomFor = { killer: seededRandom(seed), appender: seededRandom(seed + 1) };
  const { store, schema, dispose } = await createTestStore({ poolSize: 3 });
  try {
    const deadline = Date.now() + durationMs;
    const failures: string[] = [];
    let kills = 0;
    let generation = 0;

    // Two children at all times; at random moments the one holding the lease (the one doing the
    // work: killing the standby would prove little) is killed and replaced at once.
    const alive = new Map<string, Child>();
    const spawnOne = (): void => {
      const instance = `child-${++generation}`;
      const child = startChild(schema, instance);
      alive.set(instance, child);
      void child.exited.then((exit) => {
        alive.delete(instance);
        if (exit.signal !== 'SIGKILL') failures.push(`${instance} exited by itself (${JSON.stringify(exit)})\n${child.output()}`);
      });
    };
    const killer = async (): Promise<void> => {
      const random = randomFor.killer;
      spawnOne();
      spawnOne();
      while (Date.now() < deadline) {
        await sleep(100 + Math.floor(random() * 900));
        const status = await store.consumerStatus(NAME);
        const holder = status.state === 'running' && status.owner !== null ? alive.get(status.owner) : undefined;
        if (!holder) continue;
        holder.process.kill('SIGKILL');
        await holder.exited;
        kills += 1;
        spawnOne();
      }
      for (const child of alive.values()) child.process.kill('SIGKILL');
      await Promise.all([...alive.values()].map((child) => child.exited));
    };

    // The triggers: small batches at a random pace, for as long as the kills go on.
    let triggers = 0;
    const appender = async (): Promise<void> => {
      const random = randomFor.appender;
      while (Date.now() < deadline) {
        const count = 1 + Math.floor(random() * 3);
        const batch: EventInput[] = Array.from({ length: count }, () => ({ type: 'Trigger', tags: [`t:${triggers}`], data: { n: triggers++ } }));
        await store.append(batch);
        await sleep(Math.floor(random() * 20));
      }
    };

    await Promise.all([killer(), appender()]);
    assert.deepEqual(failures, []);

    // A last instance that is not killed finishes the work.
    const finisher = store.automation<{ n: number }>(NAME, {
      query: Query.of(QueryItem.types('Trigger')),
      instanceId: 'finisher',
      pollIntervalMs: 100,
      takeoverIntervalMs: 50,
      decide: (event) => ({ id: randomUUID(), type: 'Reaction', tags: [`t:${event.data.n}`], data: { trigger: event.id, n: event.data.n, by: 'finisher' } }),
    });
    const controller = new AbortController();
    const running = finisher.run({ signal: controller.signal });
    await waitFor('the finisher to reach the head', async () => (await finisher.status()).position === (await store.head()), 30_000, 50);
    controller.abort();
    await running;

    const counts = await reactionCounts(schema);
    console.log(`automation crash test: seed ${seed}, ${kills} kills, ${counts.triggers} triggers, ${counts.reactions} reactions`);
    assert.ok(kills >= 20, `only ${kills} kills`);
    assert.equal(counts.triggers, triggers);
    assert.deepEqual(counts.wrong.slice(0, 20), [], `seed ${seed}: triggers with a number of reactions other than one (${counts.wrong.length} in all)`);
    assert.equal(counts.reactions, triggers, `seed ${seed}`);
    assert.ok(counts.inOrder, `seed ${seed}: reactions out of trigger order`);
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await dispose();
  }
});
