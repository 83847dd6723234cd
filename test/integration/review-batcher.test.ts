// Review findings in the append batcher's outcome rules (src/append-batcher.ts), each a test that
// fails on the code it was written against. Real PostgreSQL; slow and failing inserts come from
// the test trigger (fixtures/fault-trigger.ts), waits from a held head-row lock.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AppendOutcomeUnknownError, EventStore, OperationAbortedError } from '../../src/index.ts';
import { createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { installFaultTrigger } from './fixtures/fault-trigger.ts';
import { appendInspection, recordingClients, settled } from './fixtures/appends.ts';

const SUITE = { timeout: 60_000 };
keepEventLoopAliveDuringTests();

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;
const { storedPosition, holdAppendLock } = appendInspection(() => schema);

before(async () => {
  ({ store, schema, dispose } = await createTestStore());
  await installFaultTrigger(schema);
});
after(() => dispose());

describe('review: a batch that fails as a whole', SUITE, () => {
  test("the culprit's caller aborts while the batch runs: the innocent append in the same batch is re-run alone and stored, not failed with the culprit's error", async () => {
    // [bad, good] go as one batch; bad's insert sleeps 0.5 s and then raises, which rolls back the
    // whole batch. Meanwhile bad's caller aborts: it is detached (unknown), good keeps waiting.
    // After the rollback only good is unsettled, and the batcher takes "one command left" for
    // "this command is the culprit": good gets bad's error, although nothing is wrong with it and
    // it was never run alone. Without the abort good would have been re-run alone and stored.
    const lock = await holdAppendLock();
    try {
      const ahead = settled(store.append({ type: 'Ahead', data: 1 }));
      await delay(100); // in flight, waiting for the lock: the next two form one batch
      const controller = new AbortController();
      const bad = settled(store.append([{ type: 'Slow', data: { sleep: 0.5 } }, { type: 'Boom', data: 1 }], undefined, { signal: controller.signal }));
      const goodId = randomUUID();
      const good = settled(store.append({ id: goodId, type: 'Innocent', data: 1 }));
      await lock.release();
      assert.equal((await ahead).status, 'fulfilled');
      await delay(200); // [bad, good] runs: bad's first event sleeps
      controller.abort();
      const badOutcome = await bad;
      assert.ok(badOutcome.status === 'rejected' && (badOutcome.reason instanceof AppendOutcomeUnknownError || badOutcome.reason instanceof OperationAbortedError), String((badOutcome as PromiseRejectedResult).reason));
      const goodOutcome = await good;
      assert.equal(goodOutcome.status, 'fulfilled', `an abort failed another caller's valid append with: ${String((goodOutcome as PromiseRejectedResult).reason)}`);
      assert.equal(await storedPosition(goodId), (goodOutcome as PromiseFulfilledResult<{ position: bigint }>).value.position);
    } finally {
      await lock.release();
    }
  });
});

describe('review: the per-attempt timeout', SUITE, () => {
  test('an append whose statement needs 1.3 s on a healthy connection is stored within appendTimeoutMs 4000 (not cancelled and re-run until the deadline)', async () => {
    // The attempt timeout (max(1 s, appendTimeoutMs / 4)) is meant to catch a dead peer, but it
    // cancels any statement that is merely slow, and every resend is as slow: the append can
    // never succeed, although its deadline leaves room for three runs of it.
    const bounded = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, appendTimeoutMs: 4_000 });
    try {
      const id = randomUUID();
      const outcome = await settled(bounded.append({ id, type: 'Slow', data: { sleep: 1.3 } }));
      const reason = (outcome as PromiseRejectedResult).reason as unknown;
      assert.equal(outcome.status, 'fulfilled', `a healthy 1.3 s append within a 4 s deadline failed with ${reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason)}`);
      assert.equal(await storedPosition(id), (outcome as PromiseFulfilledResult<{ position: bigint }>).value.position);
    } finally {
      await bounded.close();
    }
  });
});

/** Waits until no backend waits for the head lock any more (the append it held back has run). */
async function waitForNoLockWaiters(): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const { rows } = await withClient((client) => client.query<{ count: string }>("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'dynamic-streams-eventstore'"));
    if (rows[0]!.count === '0') return;
    await delay(50);
  }
}

describe('review: abandoned attempts', SUITE, () => {
  test('appends behind a lock held by another session do not leave one server backend per abandoned attempt (they would use up max_connections)', async () => {
    // An attempt without an answer is abandoned by closing its socket. A backend that waits for
    // a lock does not notice a closed socket: it stays, holding a connection slot of the server,
    // until the lock is free. One more every attempt timeout, per store, for as long as the lock
    // is held (a long transaction elsewhere, a vanished client's zombie, see
    // review-explicit-rc.test.ts).
    const bounded = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, appendTimeoutMs: 2_000, poolSize: 2 });
    const lock = await holdAppendLock();
    try {
      for (let round = 0; round < 2; round++) {
        const outcome = await settled(bounded.append({ type: 'Piled', data: round }));
        assert.equal(outcome.status, 'rejected', 'the lock is held: no append can succeed');
      }
      const waitingBackends = async (): Promise<number> =>
        Number((await withClient((client) => client.query<{ count: string }>("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dynamic-streams-eventstore' AND wait_event_type = 'Lock' AND datname = current_database()"))).rows[0]!.count);
      let waiting = await waitingBackends();
      for (let round = 0; round < 20 && waiting > 1; round++) {
        await delay(50);
        waiting = await waitingBackends();
      }
      assert.ok(waiting <= 1, `${waiting} server backends of this store still wait for the append lock after two appends gave up (4 s)`);
    } finally {
      await lock.release();
      await bounded.close({ timeoutMs: 2_000 });
    }
  });
});

describe('review: errors after sending that are not the server saying "rolled back"', SUITE, () => {
  test('query_timeout in the connection string: the append whose client-side read timeout fired while it waited for the lock is stored, so its rejection must be AppendOutcomeUnknownError', async () => {
    // pg honours ?query_timeout=... (also pg.defaults.query_timeout): it fails the query in the
    // client ("Query read timeout") and leaves the statement running on the server. The batcher
    // takes any error that is not a connection error for "the server refused it: rolled back".
    const url = new URL(databaseUrl());
    url.searchParams.set('query_timeout', '300');
    const timed = await EventStore.connect({ connectionString: url.toString(), schema, migrate: false, poolSize: 1, appendTimeoutMs: 2_000 });
    const lock = await holdAppendLock();
    try {
      const id = randomUUID();
      const outcome = await settled(timed.append({ id, type: 'ReadTimeout', data: 1 }));
      await lock.release();
      await waitForNoLockWaiters();
      await delay(200);
      const position = await storedPosition(id);
      if (outcome.status === 'rejected') {
        const reason = outcome.reason as Error;
        assert.ok(position === undefined || reason instanceof AppendOutcomeUnknownError, `rejected with ${reason.name}: ${reason.message} (a "nothing written" error), but the event is stored at position ${String(position)}`);
      } else {
        assert.equal(position, outcome.value.position);
      }
    } finally {
      await lock.release();
      await timed.close({ timeoutMs: 2_000 });
    }
  });

  test('a socket error whose code is not in the list (EHOSTDOWN: keepalive probes answered by ICMP "host unknown") after the append was sent: stored, so never a "nothing written" rejection', async () => {
    await recordingClients(async (clients) => {
      const single = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, poolSize: 1, appendTimeoutMs: 3_000 });
      const lock = await holdAppendLock();
      try {
        await single.head();
        const ours = [...clients].filter((client) => (client as unknown as { connectionParameters: { application_name?: string } }).connectionParameters.application_name === 'dynamic-streams-eventstore');
        assert.equal(ours.length, 1, 'the store has one connection');
        const client = ours[0]!;
        const id = randomUUID();
        const appending = settled(single.append({ id, type: 'HostDown', data: 1 }));
        await delay(200); // sent; the server waits for the lock
        // What libuv reports when the kernel gives up on the connection with that soft error.
        const stream = (client as unknown as { connection: { stream: { destroy(error: Error): void } } }).connection.stream;
        stream.destroy(Object.assign(new Error('read EHOSTDOWN'), { code: 'EHOSTDOWN', errno: -112, syscall: 'read' }));
        await delay(100);
        await lock.release(); // the backend, still waiting for the lock, now runs the append and commits
        const outcome = await appending;
        await waitForNoLockWaiters();
        await delay(200);
        const position = await storedPosition(id);
        if (outcome.status === 'rejected') {
          const reason = outcome.reason as Error;
          assert.ok(position === undefined || reason instanceof AppendOutcomeUnknownError, `rejected with ${reason.name}: ${reason.message} (a "nothing written" error), but the event is stored at position ${String(position)}`);
        } else {
          assert.equal(position, outcome.value.position);
        }
      } finally {
        await lock.release();
        await single.close({ timeoutMs: 2_000 });
      }
    });
  });
});
