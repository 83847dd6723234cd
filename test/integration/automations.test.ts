// Automations on PostgreSQL: the contract (test/contract/automation-contract.ts), then what only
// the real store has: two instances racing for one automation's lease, a reset checkpoint (the
// derived reaction ids keep the log free of doubles), and a server whose default isolation is
// not READ COMMITTED.
// The crash test, with processes killed at random, is automation-crash.test.ts.
//
// Each PostgreSQL-only test names, in a comment, the bug it is there to catch.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { EventStore, Query, QueryItem, type Automation, type EventInput, type SequencedEvent } from '../../src/index.ts';
import { defineAutomationContract } from '../contract/automation-contract.ts';
import { connectToSchema, createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { waitFor } from './fixtures/backends.ts';
import { reactionCounts } from './fixtures/reactions.ts';

keepEventLoopAliveDuringTests();

defineAutomationContract('PostgreSQL EventStore', async () => {
  const { store, dispose } = await createTestStore({ poolSize: 3 });
  return { store, dispose };
});

const LIMIT = 60_000;
const TRIGGERS = Query.of(QueryItem.types('Trigger'));
const trigger = (n: number): EventInput => ({ type: 'Trigger', tags: [`t:${n}`], data: { n } });
const react = (event: SequencedEvent<{ n: number }>): EventInput => ({ type: 'Reaction', tags: [`t:${event.data.n}`], data: { trigger: event.id, n: event.data.n } });

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await Promise.race([cleanup().catch(() => undefined), sleep(5000)]);
});

async function freshStore(): Promise<{ store: EventStore; schema: string }> {
  const created = await createTestStore({ poolSize: 3 });
  cleanups.push(created.dispose);
  return { store: created.store, schema: created.schema };
}

function start(automation: Automation): () => Promise<void> {
  const controller = new AbortController();
  const running = automation.run({ signal: controller.signal });
  running.catch(() => undefined);
  const stop = async (): Promise<void> => {
    controller.abort();
    await running;
  };
  cleanups.push(() => stop().catch(() => undefined));
  return stop;
}

describe('PostgreSQL automations', { timeout: LIMIT }, () => {
  // Bugs: the lease not guarding the automation (both instances decide the same events and both
  // reactions commit: doubles), or a standby that never takes over (missing reactions).
  test('two instances of one automation run at once (two stores, as two processes) while triggers flow, the holder stops midway: exactly one reaction per trigger, in order', async () => {
    const { store, schema } = await freshStore();
    const other = await connectToSchema(schema, { poolSize: 3 });
    cleanups.push(() => other.close());
    const decidedBy = { a: 0, b: 0 };
    // Own random ids: the derived ids would turn a double into an idempotent no-op and hide it.
    const make = (on: EventStore, instance: 'a' | 'b'): Automation =>
      on.automation<{ n: number }>('raced', {
        query: TRIGGERS,
        batchSize: 7,
        instanceId: instance,
        pollIntervalMs: 50,
        takeoverIntervalMs: 50,
        decide: (event) => {
          decidedBy[instance] += 1;
          return { ...react(event), id: crypto.randomUUID() };
        },
      });
    const stopA = start(make(store, 'a'));
    await waitFor('instance a to hold the lease', async () => (await store.consumerStatus('raced')).owner === 'a');
    const stopB = start(make(other, 'b'));
    for (let n = 0; n < 60; n++) {
      await (n % 2 === 0 ? store : other).append([trigger(n * 2), trigger(n * 2 + 1)]);
      if (n === 30) await stopA(); // b takes over mid-stream
      if (n % 10 === 0) await sleep(10);
    }
    await waitFor('the automation to reach the head', async () => {
      const status = await store.consumerStatus('raced');
      return status.position === (await store.head());
    }, 20_000);
    await stopB();
    const counts = await reactionCounts(schema);
    assert.deepEqual(counts.wrong, []);
    assert.equal(counts.triggers, 120);
    assert.equal(counts.reactions, 120);
    assert.ok(counts.inOrder, 'reactions in the order of their triggers');
    assert.ok(decidedBy.a > 0 && decidedBy.b > 0, `both instances did part of the work (${JSON.stringify(decidedBy)})`);
  });

  // Bug: a reset checkpoint (or a store restored from an older backup) decides every event
  // again and appends every reaction a second time.
  test('the checkpoint reset to 0: every trigger is decided again, and the derived ids keep the log free of doubles', async () => {
    const { store, schema } = await freshStore();
    await store.append(Array.from({ length: 10 }, (_, n) => trigger(n)));
    let decided = 0;
    const make = (): Automation => store.automation<{ n: number }>('reset', {
      query: TRIGGERS,
      pollIntervalMs: 50,
      decide: (event) => {
        decided += 1;
        // Something that differs between runs (as a timestamp would): still not appended again.
        return { ...react(event), metadata: { run: decided > 10 ? 2 : 1 } };
      },
    });
    const caughtUp = async (): Promise<void> => waitFor('the automation to reach the head', async () => (await store.consumerStatus('reset')).position === (await store.head()));
    let stop = start(make());
    await caughtUp();
    await stop();
    const head = await store.head();
    await store.resetConsumer('reset');
    stop = start(make());
    await caughtUp();
    await stop();
    assert.equal(decided, 20, 'every trigger decided twice');
    assert.equal(await store.head(), head, 'nothing appended by the second run');
    assert.deepEqual((await reactionCounts(schema)).wrong, []);
  });

  // Bug: the reactions appended at the server's default isolation: append_batch refuses anything
  // but READ COMMITTED, so the automation would fail on every event on such a server.
  test('on a database whose default isolation is SERIALIZABLE: the reactions commit (in an explicit READ COMMITTED transaction)', async () => {
    const database = `dses_auto_${randomBytes(4).toString('hex')}`;
    await withClient(async (client) => {
      await client.query(`CREATE DATABASE ${database}`);
      await client.query(`ALTER DATABASE ${database} SET default_transaction_isolation = 'serializable'`);
    });
    cleanups.push(() => withClient(async (client) => void (await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`))));
    const url = new URL(databaseUrl());
    url.pathname = `/${database}`;
    const strict = await EventStore.connect({ connectionString: url.toString(), schema: 'eventstore', poolSize: 2 });
    cleanups.push(() => strict.close());
    await strict.append([trigger(1), trigger(2), trigger(3)]);
    const automation = strict.automation<{ n: number }>('strict', { query: TRIGGERS, pollIntervalMs: 50, maxAttempts: 1, decide: react });
    const stop = start(automation);
    await waitFor('the automation to reach the head', async () => (await automation.status()).position === (await strict.head()));
    await stop();
    const { events } = await strict.read(Query.of(QueryItem.types('Reaction')));
    assert.deepEqual(events.map((event) => (event.data as { n: number }).n), [1, 2, 3]);
    assert.equal((await automation.status()).lastError, null);
  });
});
