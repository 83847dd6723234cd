// Review findings about deadlines and connections that outlive close(), each a test through the
// fault-injecting proxy (test/faults/proxy.ts) that fails on the code it was written against.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { AppendOutcomeUnknownError, DuplicateEventIdError, EventStore, EventStoreClosedError, OperationTimeoutError, Query, type EventStoreOptions } from '../../src/index.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { appendInspection, carriesRead, recordingClients, tracked, within } from './fixtures/appends.ts';

const SUITE = { timeout: 60_000 };
keepEventLoopAliveDuringTests();

let schema: string;
let dispose: () => Promise<void>;
const { holdAppendLock } = appendInspection(() => schema);
let proxy: FaultProxy;

before(async () => {
  ({ schema, dispose } = await createTestStore());
  proxy = await FaultProxy.start({ targetPort: Number(new URL(databaseUrl()).port) });
});
after(async () => {
  await proxy.close();
  await dispose();
});

function proxiedStore(options: EventStoreOptions = {}): Promise<EventStore> {
  return EventStore.connect({ connectionString: proxy.connectionString(databaseUrl()), schema, migrate: false, ...options });
}

function openSockets(clients: Iterable<pg.Client>): number {
  let open = 0;
  for (const client of clients) {
    const stream = (client as unknown as { connection?: { stream?: { destroyed?: boolean } } }).connection?.stream;
    if (stream && !stream.destroyed) open++;
  }
  return open;
}

describe('review: close({ timeoutMs }) is bounded', SUITE, () => {
  test('a connection still being opened to a silent server does not hold close({ timeoutMs: 500 }) for connectTimeoutMs', async () => {
    const store = await proxiedStore({ connectTimeoutMs: 8_000 });
    let closing: Promise<void> | undefined;
    try {
      await store.head();
      // The idle pooled connection dies; every new one is silent from its first byte.
      proxy.faultAll({ kind: 'cut' });
      proxy.faultNew(Infinity, { kind: 'stall', direction: 'both' });
      await delay(100);
      const appending = tracked(store.append({ type: 'NeverSent', data: 1 }));
      await delay(200); // the batcher waits for a new connection (the server never answers its startup)
      const startedAt = Date.now();
      closing = store.close({ timeoutMs: 500 });
      const closed = await within(3_000, 'close({ timeoutMs: 500 })', closing);
      assert.equal(closed.status, 'fulfilled', `close() took longer than ${Date.now() - startedAt} ms for a 500 ms timeout: ${String((closed as PromiseRejectedResult).reason)}`);
      const outcome = await within(1_000, 'the append cut short by close()', appending);
      assert.ok(outcome.status === 'rejected' && outcome.reason instanceof EventStoreClosedError, String((outcome as PromiseRejectedResult).reason));
    } finally {
      proxy.heal();
      await closing?.catch(() => undefined);
      await store.close().catch(() => undefined);
    }
  });
});

describe('review: nothing of a closed store stays open', SUITE, () => {
  test('an idle pooled connection whose peer went silent: its socket is closed once close() returns (else the process cannot exit)', async () => {
    await recordingClients(async (clients) => {
      const store = await proxiedStore();
      try {
        await store.head();
        proxy.faultAll({ kind: 'stall', direction: 'both' }); // the peer vanished: no FIN, no RST, no reply
        const closed = await within(3_000, 'close({ timeoutMs: 1000 })', store.close({ timeoutMs: 1_000 }));
        assert.equal(closed.status, 'fulfilled');
        await delay(1_500);
        assert.equal(openSockets(clients), 0, 'sockets of the closed store still open 1.5 s after close() returned');
      } finally {
        proxy.heal();
        await store.close().catch(() => undefined);
      }
    });
  });

  test('the LISTEN connection, its peer gone silent: closed once close() returns', async () => {
    await recordingClients(async (clients) => {
      const store = await proxiedStore();
      const controller = new AbortController();
      try {
        const following = (async () => {
          for await (const _event of store.subscribe(Query.all(), { signal: controller.signal, pollIntervalMs: 60_000 })) {
            // only waiting matters
          }
        })();
        following.catch(() => undefined);
        // Wait until the store's LISTEN connection is up.
        const deadline = Date.now() + 5_000;
        for (;;) {
          const listening = await withClient(async (client) => (await client.query(`SELECT 1 FROM pg_stat_activity WHERE query = $1 AND state = 'idle'`, [`LISTEN "${schema}"`])).rowCount);
          if (listening) break;
          assert.ok(Date.now() < deadline, 'the store never listened');
          await delay(50);
        }
        proxy.faultAll({ kind: 'stall', direction: 'both' });
        const closed = await within(3_000, 'close({ timeoutMs: 1000 })', store.close({ timeoutMs: 1_000 }));
        assert.equal(closed.status, 'fulfilled');
        await within(2_000, 'the subscription ending', following);
        await delay(1_500);
        assert.equal(openSockets(clients), 0, 'sockets of the closed store still open 1.5 s after close() returned');
      } finally {
        controller.abort();
        proxy.heal();
        await store.close().catch(() => undefined);
      }
    });
  });
});

describe('review: deadlines of single calls', SUITE, () => {
  test('a read on a silent connection rejects at readTimeoutMs, not a second later', async () => {
    const store = await proxiedStore({ readTimeoutMs: 100 });
    try {
      await store.read(Query.all(), { limit: 1 });
      proxy.arm({ direction: 'to-server', match: carriesRead, deliver: true, action: { kind: 'stall', direction: 'both' } });
      const startedAt = Date.now();
      const outcome = await within(5_000, 'the read', store.read(Query.all(), { limit: 1 }));
      const waited = Date.now() - startedAt;
      assert.ok(outcome.status === 'rejected' && outcome.reason instanceof OperationTimeoutError, String((outcome as PromiseRejectedResult).reason));
      assert.ok(waited < 700, `a read with readTimeoutMs 100 rejected after ${waited} ms`);
    } finally {
      proxy.heal();
      await within(5_000, 'close()', store.close());
    }
  });

  test('an append refused for an id clash answers within appendTimeoutMs, also when the lookup of the clashing ids gets no answer', async () => {
    const store = await proxiedStore({ appendTimeoutMs: 1_000, readTimeoutMs: 5_000 });
    try {
      const id = randomUUID();
      await store.append({ id, type: 'Taken', data: 1 });
      // The store asks which of the ids are taken, on a connection that goes silent.
      proxy.arm({ direction: 'to-server', match: (chunk) => chunk.statements.some((sql) => sql.includes('WHERE id = ANY')), deliver: true, action: { kind: 'stall', direction: 'both' } });
      const startedAt = Date.now();
      const outcome = await within(8_000, 'the clashing append', store.append({ id, type: 'Taken', data: 2 }));
      const waited = Date.now() - startedAt;
      assert.ok(outcome.status === 'rejected' && outcome.reason instanceof DuplicateEventIdError, String((outcome as PromiseRejectedResult).reason));
      assert.ok(waited < 2_500, `an append with appendTimeoutMs 1000 answered after ${waited} ms`);
    } finally {
      proxy.heal();
      await within(8_000, 'close()', store.close());
    }
  });
});

describe('review: an abandoned attempt gives its connection back only once', SUITE, () => {
  test('the cancel of a given-up attempt answers after its statement failed: the connection, back in the pool, is not closed under the next user', async () => {
    // poolSize 1: the probe before giving up finds no connection, so the attempt is given up at
    // its deadline: cancel, then close the connection once the cancel is answered. The cancel
    // ends the statement (57014, a refusal: the connection is not broken), release() waits for
    // the cancel and gives the connection back, and the read waiting for it takes it; then the
    // deferred close of the given-up attempt closes it under the read.
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const store = await proxiedStore({ poolSize: 1, appendTimeoutMs: 2_000, readTimeoutMs: 5_000, connectTimeoutMs: 5_000 });
    const lock = await holdAppendLock();
    try {
      await store.head();
      const appending = tracked(store.append({ type: 'GivenUp', data: 1 }));
      await delay(1_200);
      // The next new connection is the cancel request: the server's answer to it (closing it) is held up.
      proxy.faultNew(1, { kind: 'delay', ms: 400, direction: 'to-client' });
      const reading = tracked(store.read(Query.all(), { limit: 1 })); // waits for the only connection
      const appended = await within(5_000, 'the append', appending);
      assert.ok(appended.status === 'rejected' && appended.reason instanceof AppendOutcomeUnknownError, String((appended as PromiseRejectedResult).reason));
      const read = await within(6_000, 'the read', reading);
      assert.equal(read.status, 'fulfilled', `the read that got the connection next failed: ${String((read as PromiseRejectedResult).reason)}`);
      await delay(200);
      assert.deepEqual(unhandled.map(String), [], 'unhandled rejections');
    } finally {
      process.off('unhandledRejection', onUnhandled);
      proxy.heal();
      await lock.release();
      await within(5_000, 'close()', store.close({ timeoutMs: 2_000 }));
    }
  });
});
