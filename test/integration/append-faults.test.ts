// Append outcomes when connections die: each defect found with a fault-injecting TCP proxy
// between the store and PostgreSQL (test/faults/proxy.ts) gets a test here that reproduces its
// exact sequence. The randomized scenarios under load are in test/faults/.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import {
  AppendOutcomeUnknownError,
  EventStore,
  EventStoreClosedError,
  OperationAbortedError,
  OperationTimeoutError,
  Query,
  type EventStoreOptions,
} from '../../src/index.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { appendInspection, carriesAppend, carriesRead, tracked, within } from './fixtures/appends.ts';

const SUITE = { timeout: 120_000 };
keepEventLoopAliveDuringTests();

let schema: string;
let dispose: () => Promise<void>;
const { storedPosition, storedCount } = appendInspection(() => schema);
let proxy: FaultProxy;

before(async () => {
  ({ schema, dispose } = await createTestStore());
  proxy = await FaultProxy.start({ targetPort: Number(new URL(databaseUrl()).port) });
});
after(async () => {
  await proxy.close();
  await dispose();
});

/** A store whose every connection goes through the proxy. */
function proxiedStore(options: EventStoreOptions = {}): Promise<EventStore> {
  return EventStore.connect({ connectionString: proxy.connectionString(databaseUrl()), schema, migrate: false, ...options });
}

describe('the reply of a committed append is lost', SUITE, () => {
  test('connection cut after the server got the append, and no connection for 600 ms: the store resends once it can and resolves with the original position', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 10_000 });
    try {
      await store.head(); // a pooled connection exists
      const trigger = proxy.arm({
        direction: 'to-server',
        match: carriesAppend,
        deliver: true,
        action: { kind: 'cut', side: 'client' },
        onFire: () => {
          proxy.refuse(true);
          setTimeout(() => proxy.refuse(false), 600);
        },
      });
      const id = randomUUID();
      const startedAt = Date.now();
      const outcome = await within(10_000, 'the append', store.append({ id, type: 'Lost', data: 1 }));
      await trigger.fired;
      assert.equal(outcome.status, 'fulfilled', `a committed append must not be reported as failed: ${String((outcome as PromiseRejectedResult).reason)}`);
      assert.ok(Date.now() - startedAt >= 550, 'it waited for the server to be reachable again');
      assert.equal(await storedPosition(id), outcome.value.position);
      assert.equal(await storedCount(id), 1);
    } finally {
      proxy.heal();
      await store.close();
    }
  });

  test('generated ids: the resend after a lost reply stores the event once (the caller never retries)', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 10_000 });
    try {
      proxy.arm({ direction: 'to-server', match: carriesAppend, deliver: true, action: { kind: 'cut', side: 'client' } });
      const marker = randomUUID();
      const outcome = await within(10_000, 'the append', store.append({ type: 'Generated', data: { marker } }));
      assert.equal(outcome.status, 'fulfilled', String((outcome as PromiseRejectedResult).reason));
      const count = await withClient(async (client) => Number((await client.query<{ count: string }>(`SELECT count(*) FROM "${schema}".events WHERE data->>'marker' = $1`, [marker])).rows[0]!.count));
      assert.equal(count, 1);
    } finally {
      proxy.heal();
      await store.close();
    }
  });

  test('the caller aborts during the resend of a committed append: never ABORTED, the truth is "stored" or "unknown"', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 10_000 });
    const locker = new pg.Client({ connectionString: databaseUrl() });
    await locker.connect();
    try {
      await store.head();
      await locker.query('BEGIN');
      let locking: Promise<unknown> | undefined;
      proxy.arm({
        direction: 'to-server',
        match: carriesAppend,
        deliver: true,
        action: { kind: 'cut', side: 'client' },
        onFire: () => {
          // No way back for 200 ms; meanwhile the first send commits and we take the append
          // lock, so that the resend waits for it: the abort then meets the resend.
          proxy.refuse(true);
          setTimeout(() => proxy.refuse(false), 200);
          setTimeout(() => (locking = locker.query(`SELECT 1 FROM "${schema}".head FOR UPDATE`)), 50);
        },
      });
      const controller = new AbortController();
      const id = randomUUID();
      const appending = tracked(store.append({ id, type: 'Resent', data: 1 }, undefined, { signal: controller.signal }));
      await delay(700);
      await locking;
      controller.abort();
      const outcome = await within(5_000, 'the aborted append', appending);
      await locker.query('COMMIT');
      assert.equal(await storedCount(id), 1, 'the first send committed');
      if (outcome.status === 'rejected') {
        assert.ok(!(outcome.reason instanceof OperationAbortedError), 'ABORTED claims nothing was written, but the first send had committed');
        assert.ok(outcome.reason instanceof AppendOutcomeUnknownError, String(outcome.reason));
        assert.deepEqual(outcome.reason.ids, [id]);
      } else {
        assert.equal(outcome.value.position, await storedPosition(id));
      }
    } finally {
      proxy.heal();
      await locker.end().catch(() => undefined);
      await store.close();
    }
  });
});

describe('a dead peer (blackholed connection: no reply, no FIN, no RST)', SUITE, () => {
  test('an append whose connection goes silent is resent on a new connection and answered before appendTimeoutMs; later appends are not stuck', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 4_000 });
    try {
      await store.head();
      proxy.arm({ direction: 'to-server', match: carriesAppend, deliver: true, action: { kind: 'stall', direction: 'both' } });
      const id = randomUUID();
      const startedAt = Date.now();
      const first = tracked(store.append({ id, type: 'Silent', data: 1 }));
      await delay(50);
      const later = tracked(store.append({ type: 'Later', data: 1 }));
      const outcome = await within(6_000, 'the append on a dead connection', first);
      assert.ok(Date.now() - startedAt < 4_500, `answered within its deadline (${Date.now() - startedAt} ms)`);
      assert.equal(outcome.status, 'fulfilled', String((outcome as PromiseRejectedResult).reason));
      assert.equal(await storedPosition(id), outcome.value.position);
      assert.equal((await within(6_000, 'the append queued behind it', later)).status, 'fulfilled');
      assert.equal((await within(3_000, 'a fresh append', store.append({ type: 'Fresh', data: 1 }))).status, 'fulfilled');
    } finally {
      proxy.heal();
      await within(5_000, 'close()', store.close());
    }
  });

  test('every connection silent: the append gets AppendOutcomeUnknownError at appendTimeoutMs, queued ones TIMEOUT (never written), an abort frees its caller, close() is bounded', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 2_500, readTimeoutMs: 1_000, connectTimeoutMs: 1_000 });
    try {
      await store.head();
      // The append's connection goes silent once it has sent; every later connection is silent from the start.
      proxy.arm({
        direction: 'to-server',
        match: carriesAppend,
        deliver: false,
        action: { kind: 'stall', direction: 'both' },
        onFire: () => proxy.faultNew(Infinity, { kind: 'stall', direction: 'both' }),
      });
      const id = randomUUID();
      const startedAt = Date.now();
      const sent = tracked(store.append({ id, type: 'Void', data: 1 }));
      await delay(100);
      const queuedId = randomUUID();
      const queued = tracked(store.append({ id: queuedId, type: 'Void', data: 2 }));
      const controller = new AbortController();
      const abortable = tracked(store.append({ type: 'Void', data: 3 }, undefined, { signal: controller.signal }));
      await delay(100);
      controller.abort();
      const aborted = await within(500, 'the aborted queued append', abortable);
      assert.ok(aborted.status === 'rejected' && aborted.reason instanceof OperationAbortedError, String((aborted as PromiseRejectedResult).reason));

      const read = await within(4_000, 'a read on a silent connection', store.read(Query.all(), { limit: 1 }));
      assert.ok(read.status === 'rejected' && read.reason instanceof OperationTimeoutError, `read: ${String((read as PromiseRejectedResult).reason)}`);

      const outcome = await within(5_000, 'the sent append', sent);
      const waited = Date.now() - startedAt;
      assert.ok(waited < 3_500, `waited ${waited} ms for a 2500 ms deadline`);
      assert.ok(outcome.status === 'rejected' && outcome.reason instanceof AppendOutcomeUnknownError, String((outcome as PromiseRejectedResult).reason));
      const queuedOutcome = await within(3_000, 'the queued append', queued);
      assert.ok(queuedOutcome.status === 'rejected' && queuedOutcome.reason instanceof OperationTimeoutError, String((queuedOutcome as PromiseRejectedResult).reason));

      // close() with an append in flight on a silent connection: bounded by its timeout.
      const last = tracked(store.append({ type: 'Void', data: 4 }));
      await delay(100);
      const closedAt = Date.now();
      const closed = await within(3_000, 'close({ timeoutMs: 500 })', store.close({ timeoutMs: 500 }));
      assert.equal(closed.status, 'fulfilled');
      assert.ok(Date.now() - closedAt < 1_500, `close took ${Date.now() - closedAt} ms`);
      const lastOutcome = await within(1_000, 'the append cut short by close()', last);
      assert.ok(lastOutcome.status === 'rejected' && (lastOutcome.reason instanceof AppendOutcomeUnknownError || lastOutcome.reason instanceof EventStoreClosedError), String((lastOutcome as PromiseRejectedResult).reason));
      proxy.heal();
      assert.equal(await storedPosition(queuedId), undefined, 'TIMEOUT means never written');
    } finally {
      proxy.heal();
      await store.close().catch(() => undefined);
    }
  });

  test('an abort of an append alone on a silent connection frees the caller within a second and a half', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 20_000 });
    try {
      await store.head();
      proxy.arm({ direction: 'to-server', match: carriesAppend, deliver: true, action: { kind: 'stall', direction: 'both' } });
      const controller = new AbortController();
      const id = randomUUID();
      const appending = tracked(store.append({ id, type: 'Stuck', data: 1 }, undefined, { signal: controller.signal }));
      await delay(300);
      const abortedAt = Date.now();
      controller.abort();
      const outcome = await within(3_000, 'the aborted append', appending);
      assert.ok(Date.now() - abortedAt < 1_500, `freed after ${Date.now() - abortedAt} ms`);
      assert.equal(outcome.status, 'rejected');
      // Its bytes reached the server (deliver: true): it may have committed. Unknown is the truth.
      assert.ok(outcome.reason instanceof AppendOutcomeUnknownError || (outcome.reason instanceof OperationAbortedError && (await storedCount(id)) === 0), String(outcome.reason));
    } finally {
      proxy.heal();
      await within(25_000, 'close()', store.close());
    }
  });

  test('a read whose connection goes silent fails with TIMEOUT at readTimeoutMs and the pool recovers', async () => {
    const store = await proxiedStore({ readTimeoutMs: 800, poolSize: 2 });
    try {
      await store.read(Query.all(), { limit: 1 });
      proxy.arm({ direction: 'to-server', match: carriesRead, deliver: true, action: { kind: 'stall', direction: 'both' } });
      const startedAt = Date.now();
      const outcome = await within(4_000, 'the read', store.read(Query.all(), { limit: 1 }));
      assert.ok(outcome.status === 'rejected' && outcome.reason instanceof OperationTimeoutError, String((outcome as PromiseRejectedResult).reason));
      assert.ok(Date.now() - startedAt < 2_500, `took ${Date.now() - startedAt} ms`);
      for (let round = 0; round < 4; round++) assert.equal((await within(3_000, 'a later read', store.read(Query.all(), { limit: 1 }))).status, 'fulfilled');
    } finally {
      proxy.heal();
      await within(5_000, 'close()', store.close());
    }
  });
});

describe('subscriptions on a silent connection', SUITE, () => {
  test('a subscription whose read times out keeps going (it does not end with the TIMEOUT) and delivers what is appended after', async () => {
    const store = await proxiedStore({ readTimeoutMs: 500 });
    const writer = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false });
    const controller = new AbortController();
    try {
      const start = await store.head();
      const received: string[] = [];
      let failure: unknown;
      const following = (async () => {
        try {
          for await (const event of store.subscribe(Query.all(), { after: start, signal: controller.signal, pollIntervalMs: 100 })) received.push(event.id);
        } catch (error) {
          failure = error;
        }
      })();
      await delay(200);
      proxy.arm({ direction: 'to-server', match: carriesRead, deliver: true, action: { kind: 'stall', direction: 'both' }, times: 2 });
      await delay(1_500); // at least one read timed out meanwhile
      const id = randomUUID();
      await writer.append({ id, type: 'AfterStall', data: 1 });
      const deadline = Date.now() + 8_000;
      while (!received.includes(id) && failure === undefined && Date.now() < deadline) await delay(50);
      assert.equal(failure, undefined, `the subscription ended with ${String(failure)}`);
      assert.ok(received.includes(id), 'the event appended after the stall arrived');
      controller.abort();
      await following;
    } finally {
      controller.abort();
      proxy.heal();
      await writer.close();
      await within(5_000, 'close()', store.close());
    }
  });
});
