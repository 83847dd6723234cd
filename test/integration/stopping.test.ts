// Stopping consumers and subscriptions on a real PostgreSQL: a consumer asked to stop (abort of
// run()'s signal, or store.close()) stops between events — the handler call running then finishes,
// the events processed so far commit with the checkpoint at the last of them, and run() returns —
// instead of working through the rest of its batch; close() returns only after that, with the
// consumer's session gone; a subscription backing off from an unreachable server ends on close().
//
// Each test names, in a comment, the bug it is there to catch.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventStore, Query, QueryItem, type ConsumerContext, type EventInput, type SequencedEvent } from '../../src/index.ts';
import { createTestStore, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { backendsOf, connectionStringFor, positions, uniqueApplicationName, waitFor } from './fixtures/backends.ts';
import { readModel, type ReadModel } from './fixtures/read-model.ts';
import { startTcpProxy } from './fixtures/tcp-proxy.ts';

keepEventLoopAliveDuringTests();

const LIMIT = 30_000;
const M = Query.of(QueryItem.types('M'));
const events = (count: number): EventInput[] => Array.from({ length: count }, (_, n) => ({ type: 'M', data: { n } }));

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await Promise.race([cleanup().catch(() => undefined), sleep(5000)]);
});

async function freshStore(app = uniqueApplicationName('stop')): Promise<{ store: EventStore; schema: string; app: string; model: ReadModel }> {
  const created = await createTestStore({ connectionString: connectionStringFor(app), poolSize: 3 });
  cleanups.push(created.dispose);
  const model = readModel(created.schema, 'read_model');
  await withClient((client) => model.create(client));
  return { store: created.store, schema: created.schema, app, model };
}

const appliedPositions = async (model: ReadModel): Promise<bigint[]> => (await withClient((client) => model.rows(client))).map((row) => row.position);

/** How `promise` settled within `ms`. */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<{ state: 'resolved' | 'rejected' | 'pending'; error?: unknown }> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<{ state: 'pending' }>((resolve) => (timer = setTimeout(() => resolve({ state: 'pending' }), ms)));
  try {
    return await Promise.race([promise.then(() => ({ state: 'resolved' as const }), (error: unknown) => ({ state: 'rejected' as const, error })), pending]);
  } finally {
    clearTimeout(timer);
  }
}

/** The backend pid of the store's connections (named `app`) holding a consumer lease (a two-key advisory lock). */
async function leaseHolderPid(app: string): Promise<number | undefined> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      `SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE a.application_name = $1 AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2`,
      [app],
    );
    return rows[0]?.pid;
  });
}

interface Write {
  position: bigint;
  /** context.signal.aborted when the handler wrote (after its slow part). */
  abortedAtWrite: boolean;
  /** The signal's abort event fired during the call. */
  abortEventFired: boolean;
}

/** A handler that takes `ms` (ignoring its signal), then writes the event's row through the transaction. */
function slowHandler(model: ReadModel, ms: number, calls: bigint[], writes: Write[]) {
  return async (event: SequencedEvent, { transaction, signal, attempt }: ConsumerContext): Promise<void> => {
    let fired = false;
    const onAbort = (): void => void (fired = true);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      calls.push(event.position);
      await sleep(ms);
      await model.apply(transaction, event, 'slow', attempt);
      writes.push({ position: event.position, abortedAtWrite: signal.aborted, abortEventFired: fired });
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };
}

describe('a consumer stops between events', { timeout: LIMIT }, () => {
  // Bugs: a stop that waits for the whole batch (up to batchSize x the handler's time, here 95
  // more calls of 150 ms), the running call's work lost or its transaction aborted by the stop,
  // the checkpoint not at the last processed event (applied twice or skipped on resume), the
  // handler's signal not fired.
  test('abort during a slow handler with batchSize 100: run() resolves after about one handler call; the checkpoint is the last processed event; the running call saw its signal fire and its write committed; a new run resumes with nothing applied twice or skipped', async (t) => {
    const { store, model } = await freshStore();
    await store.append(events(150));
    const calls: bigint[] = [];
    const writes: Write[] = [];
    const controller = new AbortController();
    const running = store.consumer('slow', { query: M, batchSize: 100, pollIntervalMs: 60_000, handle: slowHandler(model, 150, calls, writes) }).run({ signal: controller.signal });
    cleanups.push(async () => {
      controller.abort();
      await running.catch(() => undefined);
    });
    await waitFor('the 5th handler call', () => calls.length === 5, 10_000, 2);
    const stopping = Date.now();
    controller.abort();
    const outcome = await settleWithin(running, 20_000);
    const took = Date.now() - stopping;
    assert.equal(outcome.state, 'resolved', `run() ${outcome.state} ${String(outcome.error ?? '')}`);
    t.diagnostic(`run() resolved ${took} ms after the abort`);
    assert.ok(took < 3000, `run() took ${took} ms to stop (one handler call is 150 ms; the rest of the batch would be 95 calls, ~14 s)`);
    assert.deepEqual(calls, positions(1n, 5n), 'no handler call started after the stop');
    const status = await store.consumerStatus('slow');
    assert.equal(status.position, 5n, 'the checkpoint is the last processed event');
    assert.equal(status.state, 'idle');
    assert.equal(status.lastError, null);
    assert.deepEqual(await appliedPositions(model), positions(1n, 5n), 'the events processed before the stop are committed, the running one included');
    const last = writes.at(-1)!;
    assert.equal(last.position, 5n);
    assert.equal(last.abortEventFired, true, "the running call's signal fired");
    assert.equal(last.abortedAtWrite, true, 'its write came after the stop and still committed: the stop did not abort its transaction');
    assert.ok(writes.slice(0, -1).every((write) => !write.abortEventFired), 'earlier calls ended before the stop');

    // Resume: from 6 on, each once.
    const resumedCalls: bigint[] = [];
    const resumed = new AbortController();
    const again = store.consumer('slow', { query: M, batchSize: 100, pollIntervalMs: 60_000, handle: slowHandler(model, 0, resumedCalls, []) }).run({ signal: resumed.signal });
    await waitFor('the resumed run to catch up', async () => (await store.consumerStatus('slow')).position === 150n, 15_000, 20);
    resumed.abort();
    await again;
    assert.deepEqual(resumedCalls, positions(6n, 150n), 'the new run starts right after the last processed event');
    assert.deepEqual(await appliedPositions(model), positions(1n, 150n), 'every event applied once, in order');
  });

  // Bugs: a handler that honours its signal (throws when it fires) recorded as a failure, retried,
  // or its partial work committed; the stop held up by the retries.
  test('a handler that throws when its signal fires: run() resolves promptly without a failure; that batch rolls back and the next run applies it once', async () => {
    const { store, model } = await freshStore();
    await store.append(events(40));
    const calls: bigint[] = [];
    const controller = new AbortController();
    const handle = async (event: SequencedEvent, { transaction, signal, attempt }: ConsumerContext): Promise<void> => {
      calls.push(event.position);
      await model.apply(transaction, event, 'honouring', attempt);
      if (event.position === 15n) await sleep(60_000, undefined, { signal }); // an HTTP call given the signal, say
    };
    const running = store.consumer('honouring', { query: M, batchSize: 10, pollIntervalMs: 60_000, retryDelayMs: 10, handle }).run({ signal: controller.signal });
    cleanups.push(async () => {
      controller.abort();
      await running.catch(() => undefined);
    });
    await waitFor('the call at 15', () => calls.includes(15n), 10_000, 2);
    const stopping = Date.now();
    controller.abort();
    const outcome = await settleWithin(running, 10_000);
    assert.equal(outcome.state, 'resolved', `run() ${outcome.state} ${String(outcome.error ?? '')}`);
    assert.ok(Date.now() - stopping < 3000, `run() took ${Date.now() - stopping} ms to stop`);
    assert.deepEqual(calls, positions(1n, 15n), 'no call after the stop, no retry');
    const status = await store.consumerStatus('honouring');
    assert.equal(status.position, 10n, 'the batch 11..20 rolled back as a whole');
    assert.equal(status.state, 'idle');
    assert.equal(status.lastError, null, 'a stop is not a failure');
    assert.equal(status.failedPosition, null);
    assert.deepEqual(await appliedPositions(model), positions(1n, 10n));

    const resumed = new AbortController();
    const again = store.consumer('honouring', { query: M, batchSize: 10, pollIntervalMs: 60_000, handle: (event, context) => model.apply(context.transaction, event, 'resumed', context.attempt) }).run({ signal: resumed.signal });
    await waitFor('the resumed run to catch up', async () => (await store.consumerStatus('honouring')).position === 40n, 15_000, 20);
    resumed.abort();
    await again;
    assert.deepEqual(await appliedPositions(model), positions(1n, 40n), 'every event applied once, in order');
  });
});

describe('store.close() and running consumers', { timeout: LIMIT }, () => {
  // Bugs: close() returning while a consumer still runs (its session outliving the store, its
  // batch still open), or waiting for the whole batch instead of the running handler call.
  test('close() with a handler mid-flight: it resolves only after run() resolved and the consumer session is gone; the events processed so far are committed', async (t) => {
    const { store, schema, app, model } = await freshStore();
    await store.append(events(60));
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    const calls: bigint[] = [];
    const handle = async (event: SequencedEvent, { transaction, attempt }: ConsumerContext): Promise<void> => {
      calls.push(event.position);
      if (event.position === 3n) {
        entered();
        await sleep(400);
      } else if (event.position > 3n) {
        await sleep(100);
      }
      await model.apply(transaction, event, 'closing', attempt);
    };
    const order: string[] = [];
    const running = store.consumer('closing', { query: M, batchSize: 100, pollIntervalMs: 60_000, handle }).run();
    void running.then(() => order.push('run() resolved'), (error: unknown) => order.push(`run() rejected: ${String(error)}`));
    await inHandler;
    const pid = await leaseHolderPid(app);
    assert.ok(pid !== undefined, 'the consumer holds its lease');
    const closing = Date.now();
    await store.close();
    order.push('close() resolved');
    const took = Date.now() - closing;
    t.diagnostic(`close() resolved after ${took} ms`);
    assert.deepEqual(order, ['run() resolved', 'close() resolved']);
    const sessions = await withClient(async (client) => (await client.query('SELECT pid FROM pg_stat_activity WHERE pid = $1', [pid])).rows);
    assert.deepEqual(sessions, [], 'the consumer session is gone when close() resolves');
    assert.deepEqual(await backendsOf(app), [], 'no connection of the store is left');
    assert.ok(took < 3000, `close() took ${took} ms (the running call has 400 ms to go; the batch would take 57 more calls of 100 ms)`);
    assert.deepEqual(calls, positions(1n, 3n), 'no call after the close');
    assert.deepEqual(await appliedPositions(model), positions(1n, 3n), 'the running call finished and committed with the events before it');
    const checkpoint = await withClient(async (client) => (await client.query(`SELECT position, status FROM "${schema}".consumers WHERE name = 'closing'`)).rows[0]);
    assert.deepEqual(checkpoint, { position: '3', status: 'idle' });
  });
});

describe('close() past its timeout with a handler that does not finish', { timeout: LIMIT }, () => {
  // Bug: handlerTimeoutMs (60 s) outlasting close({ timeoutMs }): close() returned while the
  // consumer's session (and its lease, and its open transaction) lived on.
  test('close({ timeoutMs: 500 }) while a handler sleeps 20 s in its transaction: close() resolves in time, the session and the lease are gone, nothing of the call committed', async (t) => {
    const { store, schema, app, model } = await freshStore();
    await store.append(events(3));
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    const handle = async (event: SequencedEvent, { transaction, attempt }: ConsumerContext): Promise<void> => {
      if (event.position === 2n) {
        entered();
        await transaction.query('SELECT pg_sleep(20)');
      }
      await model.apply(transaction, event, 'hung', attempt);
    };
    const running = store.consumer('hung', { query: M, batchSize: 100, handlerTimeoutMs: 60_000, handle }).run();
    running.catch(() => undefined);
    await inHandler;
    await sleep(100);
    const pid = await leaseHolderPid(app);
    assert.ok(pid !== undefined, 'the consumer holds its lease');
    const closing = Date.now();
    await store.close({ timeoutMs: 500 });
    const took = Date.now() - closing;
    t.diagnostic(`close() resolved after ${took} ms`);
    assert.ok(took < 2_000, `close() took ${took} ms`);
    await waitFor('the consumer session to end', async () => (await withClient(async (client) => (await client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount)) === 0, 3_000);
    assert.equal(await leaseHolderPid(app), undefined, 'the lease is free');
    assert.equal((await settleWithin(running, 3_000)).state !== 'pending', true, 'run() ended');
    assert.deepEqual(await appliedPositions(model), [], 'the batch of the hung call rolled back');
    const checkpoint = await withClient(async (client) => (await client.query(`SELECT position FROM "${schema}".consumers WHERE name = 'hung'`)).rows[0]);
    assert.deepEqual(checkpoint, { position: '0' });
  });
});

describe('waits that end on close() while the server is unreachable', { timeout: LIMIT }, () => {
  // Bug: a subscription whose reads fail (server gone) sleeps its backoff to the end, up to the
  // poll interval, after close(); with a 60 s poll interval the sleep reaches ~25 s.
  test('a subscription backing off after failed reads: close() ends the iteration promptly, without an error', async (t) => {
    const { schema } = await freshStore();
    const proxy = await startTcpProxy();
    cleanups.push(() => proxy.close());
    const store = await EventStore.connect({ connectionString: proxy.connectionString(), schema, migrate: false, poolSize: 2 });
    cleanups.push(() => store.close());
    await store.append(events(2));
    proxy.cut();
    const iterator = store.subscribe(Query.all(), { pollIntervalMs: 60_000 })[Symbol.asyncIterator]();
    const next = iterator.next();
    next.catch(() => undefined);
    // The 7th failed read is followed by a backoff of 1.6 to 3.2 s.
    await waitFor('7 failed reads', () => proxy.refused >= 7, 15_000, 1);
    const closing = Date.now();
    await store.close();
    const outcome = await settleWithin(next, 10_000);
    const took = Date.now() - closing;
    t.diagnostic(`the iteration ended ${took} ms after close()`);
    assert.equal(outcome.state, 'resolved', `next() ${outcome.state} ${String(outcome.error ?? '')}`);
    assert.deepEqual(await next, { done: true, value: undefined });
    assert.ok(took < 1000, `the iteration ended ${took} ms after close() (its backoff sleep was at least 1.6 s)`);
  });

  // Bug: the same for a consumer whose session is lost: its reconnect backoff holding up close().
  test('a consumer reconnecting with backoff: close() ends run() promptly', async () => {
    const { schema } = await freshStore();
    const proxy = await startTcpProxy();
    cleanups.push(() => proxy.close());
    const store = await EventStore.connect({ connectionString: proxy.connectionString(), schema, migrate: false, poolSize: 2 });
    cleanups.push(() => store.close());
    await store.append(events(2));
    const running = store.consumer('unreachable', { query: M, pollIntervalMs: 60_000, handle: () => undefined }).run();
    await waitFor('the consumer to catch up', async () => (await store.consumerStatus('unreachable')).position === 2n, 10_000, 20);
    proxy.cut();
    await waitFor('5 failed reconnects', () => proxy.refused >= 5, 15_000, 1);
    const closing = Date.now();
    await store.close();
    const outcome = await settleWithin(running, 10_000);
    assert.equal(outcome.state, 'resolved', `run() ${outcome.state} ${String(outcome.error ?? '')}`);
    assert.ok(Date.now() - closing < 1000, `run() ended ${Date.now() - closing} ms after close()`);
  });
});
