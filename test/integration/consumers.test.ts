// Durable consumers (store.consumer) against a real PostgreSQL: every matching event's effect is
// applied exactly once, in position order, with the checkpoint — under concurrent writers, with
// handlers that fail for a while or for good, when the process running it is killed mid-batch,
// when its session is terminated, with several instances competing for the lease — and the
// checkpoint, status and reset behave as documented.
//
// Each test names, in a comment, the bug it is there to catch.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  CheckpointAheadError,
  ConsumerFailedError,
  ConsumerRunningError,
  EventStoreClosedError,
  InvalidInputError,
  Query,
  QueryItem,
  type Consumer,
  type ConsumerContext,
  type ConsumerOptions,
  type EventInput,
  type EventStore,
  type SequencedEvent,
} from '../../src/index.ts';
import { createTestStore, keepEventLoopAliveDuringTests, seededRandom, withClient } from '../helpers.ts';
import { connectNamed, connectionStringFor, uniqueApplicationName, waitFor } from './fixtures/backends.ts';
import { readModel, type ReadModel, type ReadModelRow } from './fixtures/read-model.ts';

keepEventLoopAliveDuringTests();

/** Per test: a consumer that stops making progress fails its test instead of hanging the file. */
const LIMIT = 20_000;

const root = fileURLToPath(new URL('../../', import.meta.url));
const childScript = fileURLToPath(new URL('./fixtures/consumer-child.ts', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Fixtures

const cleanups: Array<() => Promise<void>> = [];
/** Gates handlers wait on: all opened by the `after` hook, so that a failed test's blocked handler lets its consumer end. */
const gates: Array<() => void> = [];
after(async () => {
  for (const open of gates) open();
  // Each bounded: a consumer stuck in its handler (after a failed test) must not hang the file.
  for (const cleanup of cleanups.reverse()) await Promise.race([cleanup().catch(() => undefined), sleep(3000)]);
});

/** A store in a fresh schema (dropped by the file's `after` hook), its connections named `app`. */
async function freshStore(app = uniqueApplicationName('con'), poolSize = 4): Promise<{ store: EventStore; schema: string; app: string }> {
  const created = await createTestStore({ connectionString: connectionStringFor(app), poolSize });
  cleanups.push(created.dispose);
  return { store: created.store, schema: created.schema, app };
}

/** Another instance on the schema (as another process would have), closed by the file's `after` hook. */
async function otherStore(schema: string, app = uniqueApplicationName('con-other'), poolSize = 3): Promise<EventStore> {
  const store = await connectNamed(schema, app, { poolSize });
  cleanups.push(() => store.close());
  return store;
}

/** A read model table in the schema, created. */
async function createModel(schema: string, table = 'read_model'): Promise<ReadModel> {
  const model = readModel(schema, table);
  await withClient((client) => model.create(client));
  return model;
}

const rowsOf = (model: ReadModel): Promise<ReadModelRow[]> => withClient((client) => model.rows(client));

/** One call of a handler, as the handler saw it. */
interface Call {
  instance: string;
  position: bigint;
  attempt: number;
  at: number;
}

/** The usual handler: record the call, write the event's row through the consumer's transaction. */
function applying(model: ReadModel, instance: string, calls: Call[], before?: (event: SequencedEvent, context: ConsumerContext) => Promise<void> | void) {
  return async (event: SequencedEvent, context: ConsumerContext): Promise<void> => {
    calls.push({ instance, position: event.position, attempt: context.attempt, at: Date.now() });
    await before?.(event, context);
    await model.apply(context.transaction, event, instance, context.attempt);
  };
}

interface Running {
  consumer: Consumer;
  controller: AbortController;
  /** run()'s promise (a rejection is also kept in `error`). */
  done: Promise<void>;
  settled: boolean;
  error: unknown;
  stop(): Promise<void>;
}

/** Calls run() in the background; the file's `after` hook stops it if the test did not. */
function start(consumer: Consumer): Running {
  const controller = new AbortController();
  const running: Running = {
    consumer,
    controller,
    done: consumer.run({ signal: controller.signal }),
    settled: false,
    error: undefined,
    stop: async () => {
      controller.abort();
      await running.done;
    },
  };
  running.done.then(
    () => (running.settled = true),
    (error: unknown) => {
      running.settled = true;
      running.error = error;
    },
  );
  cleanups.push(async () => {
    controller.abort();
    await running.done.catch(() => undefined);
  });
  return running;
}

/** Waits until the checkpoint of `name` reaches `target`; fails at once if `running` ended. */
async function caughtUp(store: EventStore, name: string, target: bigint, running?: Running, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    `consumer "${name}" to reach position ${target}`,
    async () => {
      if (running?.settled) {
        await running.done;
        throw new Error(`run() of "${name}" ended before reaching ${target}`);
      }
      return (await store.consumerStatus(name)).position >= target;
    },
    timeoutMs,
    20,
  );
}

const positionsOf = async (store: EventStore, query: Query, after = 0n): Promise<bigint[]> => (await store.read(query, { after })).events.map((e) => e.position);

/**
 * The read model must hold exactly `expected`, applied in position order, each once: rows in the
 * order they were applied have strictly increasing positions and gap-free sequence numbers. On a
 * mismatch, says what kind (duplicate, out of order, skipped, extra) and where.
 */
function assertAppliedExactly(rows: readonly ReadModelRow[], expected: readonly bigint[], context: string): void {
  const actual = rows.map((row) => row.position);
  const problems: string[] = [];
  const seen = new Set<bigint>();
  for (const [index, row] of rows.entries()) {
    if (row.seq !== index + 1) {
      problems.push(`sequence numbers not gap-free at index ${index}: ${row.seq}`);
      break;
    }
  }
  for (let index = 1; index < actual.length; index++) {
    if (actual[index]! <= actual[index - 1]!) {
      problems.push(`applied out of order at index ${index}: ${actual[index - 1]} then ${actual[index]}`);
      break;
    }
  }
  for (const position of actual) seen.add(position);
  const expectedSet = new Set(expected);
  const missing = expected.filter((position) => !seen.has(position));
  if (missing.length > 0) problems.push(`skipped: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''} (${missing.length} of ${expected.length})`);
  const extra = actual.filter((position) => !expectedSet.has(position));
  if (extra.length > 0) problems.push(`not expected: ${extra.slice(0, 10).join(', ')}${extra.length > 10 ? ', ...' : ''} (${extra.length})`);
  assert.deepEqual(problems, [], `${context}: ${rows.length} rows, expected ${expected.length}`);
  assert.deepEqual(actual, expected, context);
}

const event = (type: string, tags: string[] = [], data: Record<string, unknown> = {}): EventInput => ({ type, tags, data });

function range(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}

/** How `promise` settled within `ms` (a run() still going after it is aborted by the file's `after` hook). */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<{ state: 'resolved' | 'rejected' | 'pending'; error?: unknown }> {
  promise.catch(() => undefined);
  const timer = sleep(ms).then(() => ({ state: 'pending' as const }));
  return Promise.race([promise.then(() => ({ state: 'resolved' as const }), (error: unknown) => ({ state: 'rejected' as const, error })), timer]);
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  gates.push(resolve);
  return { promise, resolve };
}

/** The backends (pid, application_name) holding the advisory lock that is the lease of consumer `name` in `schema`. */
async function leaseHolders(schema: string, name: string): Promise<Array<{ pid: number; application_name: string }>> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ pid: number; application_name: string }>(
      `SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.classid = (SELECT oid FROM pg_namespace WHERE nspname = $1)
          AND l.objid = (SELECT lease_key::oid FROM "${schema}".consumers WHERE name = $2)`,
      [schema, name],
    );
    return rows;
  });
}

const M = Query.of(QueryItem.types('M'));

// ---------------------------------------------------------------------------------------------

describe('exactly-once effects', () => {
  // Bugs: a checkpoint moved past events the consumer never read (cursor taken from a page that
  // was not prefix-complete, or moved to the head after a full page), pages overlapping (an event
  // applied twice: a primary-key violation that stops the consumer), effects committed apart
  // from the checkpoint.
  test('several hundred events appended concurrently by 3 instances while two consumers run (batchSize 7 filtered, batchSize 3 all): each read model holds exactly the matching positions, in order, once; checkpoint = head, lag 0', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    // Every append sleeps 0-5 ms with the append lock held, so that reads run while appends are in flight.
    await withClient((client) =>
      client.query(`
        CREATE FUNCTION "${schema}".test_jitter() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(random() * 0.005); RETURN NULL; END $$;
        CREATE TRIGGER test_jitter AFTER INSERT ON "${schema}".events FOR EACH STATEMENT EXECUTE FUNCTION "${schema}".test_jitter();`),
    );
    const filteredModel = await createModel(schema, 'rm_filtered');
    const allModel = await createModel(schema, 'rm_all');
    const writers = await Promise.all(range(3).map(() => otherStore(schema, undefined, 2)));
    const reader = await otherStore(schema);
    await store.append(range(20).map((n) => event(['A', 'B', 'C'][n % 3]!, [`k:${n % 4}`], { n })));

    const filteredQuery = Query.of(QueryItem.types('A'), QueryItem.tags('k:1'));
    const filteredCalls: Call[] = [];
    const allCalls: Call[] = [];
    const filtered = start(reader.consumer('filtered', { query: filteredQuery, batchSize: 7, pollIntervalMs: 200, handle: applying(filteredModel, 'r', filteredCalls) }));
    const all = start(reader.consumer('all', { query: Query.all(), batchSize: 3, pollIntervalMs: 200, handle: applying(allModel, 'r', allCalls) }));

    const random = seededRandom(20260501);
    const loops = writers.flatMap((writer) =>
      range(2).map(async () => {
        for (let n = 0; n < 35; n++) {
          const count = 1 + Math.floor(random() * 3);
          await writer.append(range(count).map(() => event(['A', 'B', 'C'][Math.floor(random() * 3)]!, [`k:${Math.floor(random() * 4)}`])));
          if (random() < 0.3) await sleep(Math.floor(random() * 4));
        }
      }),
    );
    await Promise.all(loops);
    const processedWhileWriting = [filteredCalls.length, allCalls.length];
    const head = await store.head();
    assert.ok(head >= 300n, `several hundred events: ${head}`);

    const expectedFiltered = await positionsOf(store, filteredQuery);
    const expectedAll = await positionsOf(store, Query.all());
    await caughtUp(store, 'filtered', head, filtered);
    await caughtUp(store, 'all', head, all);
    assertAppliedExactly(await rowsOf(filteredModel), expectedFiltered, 'filtered read model');
    assertAppliedExactly(await rowsOf(allModel), expectedAll, 'all read model');
    assert.ok(processedWhileWriting.every((count) => count > 0), `processed while the writers wrote: ${processedWhileWriting.join(', ')}`);
    // No retries happened, so no handler call was wasted either: one call per event.
    assert.equal(filteredCalls.length, expectedFiltered.length);
    assert.equal(allCalls.length, expectedAll.length);

    for (const name of ['filtered', 'all']) {
      const status = await store.consumerStatus(name);
      assert.equal(status.position, head, `${name}: checkpoint at the head (the filtered one moves past the non-matching tail too)`);
      assert.equal(status.head, head);
      assert.equal(status.lag, 0n);
      assert.equal(status.state, 'running');
      assert.equal(status.failedPosition, null);
    }
    await filtered.stop();
    await all.stop();
    assert.equal((await store.consumerStatus('filtered')).state, 'idle');
  });
});

describe('failing handlers', () => {
  // Bug: after a failing event is retried alone, the consumer goes on from the end of the page
  // (or the head) instead of the failing event, skipping the events after it in the page; or it
  // drops the work before the failing event; or it commits a failed attempt's writes.
  test('a handler failing on attempts 1 and 2 (middle of a full page, adjacent failures, middle of a short live page): every event applied once, in order, nothing skipped; retries back off', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    // Backlog: 40 events, every 4th one not matching.
    await store.append(range(40).map((n) => event(n % 4 === 3 ? 'N' : 'M', [], { n })));
    const backlog = await positionsOf(store, M);
    assert.equal(backlog.length, 30);
    const batchSize = 6;
    // backlog[2]: in the middle of the first page (full: 6 of 30); backlog[3]: the event right
    // after it (then first of its page); backlog[7], backlog[16]: further in.
    const failing = new Set([backlog[2]!, backlog[3]!, backlog[7]!, backlog[16]!]);
    const calls: Call[] = [];
    const consumer = store.consumer('transient', {
      query: M,
      batchSize,
      maxAttempts: 5,
      retryDelayMs: 20,
      pollIntervalMs: 200,
      handle: applying(model, 'i', calls, (e, { attempt }) => {
        if (failing.has(e.position) && attempt < 3) throw new Error(`transient failure at ${e.position} (attempt ${attempt})`);
      }),
    });
    const running = start(consumer);
    await caughtUp(store, 'transient', backlog.at(-1)!, running);
    assertAppliedExactly(await rowsOf(model), backlog, 'after the backlog');

    // Live: one append whose matching events (4) make a short page (batchSize 6); the second of
    // them fails twice. A consumer that moved to the page's end (or the head) after retrying it
    // would skip the third and fourth.
    await waitFor('the consumer to be idle at the head', async () => (await store.consumerStatus('transient')).position === 40n, 5000);
    failing.add(43n); // positions are gap-free: this append gets 41..47
    assert.equal((await store.append([event('M'), event('N'), event('M'), event('M'), event('N'), event('M'), event('N')])).position, 47n);
    assert.deepEqual(await positionsOf(store, M, 40n), [41n, 43n, 44n, 46n]);
    await caughtUp(store, 'transient', 46n, running);
    // And a short page whose failing event is its last, then one whose failing event is its first.
    failing.add(50n);
    assert.equal((await store.append([event('M'), event('M'), event('M')])).position, 50n); // 48..50
    await caughtUp(store, 'transient', 50n, running);
    failing.add(51n);
    assert.equal((await store.append([event('M'), event('N'), event('M')])).position, 53n); // 51..53
    await caughtUp(store, 'transient', 53n, running);

    const expected = await positionsOf(store, M);
    const rows = await rowsOf(model);
    assertAppliedExactly(rows, expected, 'after the live pages');
    for (const row of rows) assert.equal(row.attempt, failing.has(row.position) ? 3 : 1, `attempt that committed ${row.position}`);
    for (const position of failing) {
      const attempts = calls.filter((call) => call.position === position);
      assert.deepEqual(attempts.map((call) => call.attempt), [1, 2, 3], `attempts at ${position}`);
      // retryDelayMs 20, doubling: >= 20 ms before attempt 2, >= 40 ms before attempt 3.
      assert.ok(attempts[1]!.at - attempts[0]!.at >= 19, `backoff before attempt 2 at ${position}: ${attempts[1]!.at - attempts[0]!.at} ms`);
      assert.ok(attempts[2]!.at - attempts[1]!.at >= 39, `backoff before attempt 3 at ${position}: ${attempts[2]!.at - attempts[1]!.at} ms`);
    }
    // Every call other than a retry of a failing event is an attempt 1; the failing events' page
    // neighbours before them ran twice (the rolled-back batch, then the prefix alone), never more.
    for (const position of expected) {
      const count = calls.filter((call) => call.position === position).length;
      assert.ok(failing.has(position) ? count === 3 : count <= 2, `${position} handled ${count} times`);
    }
    const status = await store.consumerStatus('transient');
    assert.equal(status.state, 'running');
    assert.equal(status.failedPosition, null);
    assert.equal(status.lastError, null, 'transient failures that were overcome are no failure');
    assert.equal(running.settled, false);
    await running.stop();
  });

  // Bug: a poison event skipped (checkpoint moved past it), or retried forever, or the failure not
  // visible in the status; the work before it lost; a fixed handler resuming elsewhere than at it.
  test('a poison event: run() rejects with ConsumerFailedError after maxAttempts; status failed at it, checkpoint before it; a fixed handler resumes exactly there; resetConsumer clears a failure', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    await store.append(range(30).map((n) => event(n % 3 === 1 ? 'N' : 'M', [], { n })));
    const matching = await positionsOf(store, M);
    // Pages of 5: the poison event is the third of the third page (the page holds 2 events before it and 2 after).
    const poison = matching[12]!;
    const before = matching[11]!;
    const calls: Call[] = [];
    const thrown: Error[] = [];
    const failingConsumer = store.consumer('poisoned', {
      query: M,
      batchSize: 5,
      maxAttempts: 3,
      retryDelayMs: 5,
      instanceId: 'first',
      handle: applying(model, 'first', calls, (e, { attempt }) => {
        if (e.position !== poison) return;
        const error = new Error(`cannot apply event ${e.position} (attempt ${attempt})`);
        thrown.push(error);
        throw error;
      }),
    });
    const started = Date.now();
    const outcome = await settleWithin(failingConsumer.run(), 5000);
    assert.equal(outcome.state, 'rejected', 'run() rejects (neither skips the event nor retries it forever)');
    const error = outcome.error;
    assert.ok(error instanceof ConsumerFailedError, `got ${String(error)}`);
    assert.equal(error.consumer, 'poisoned');
    assert.equal(error.position, poison);
    assert.equal(error.attempts, 3);
    assert.equal(error.cause, thrown.at(-1), "cause: the handler's last error");
    assert.match(error.message, /cannot apply event/);
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(calls.filter((call) => call.position === poison).map((call) => call.attempt), [1, 2, 3]);
    assert.ok(calls.every((call) => call.position <= poison), 'nothing after the poison event was handled');

    const failed = await store.consumerStatus('poisoned');
    assert.equal(failed.state, 'failed');
    assert.equal(failed.failedPosition, poison);
    assert.equal(failed.position, before, 'checkpoint: the matching event before the poison one');
    assert.match(failed.lastError ?? '', /cannot apply event/);
    assert.ok(failed.lastErrorAt instanceof Date);
    assert.equal(failed.owner, 'first');
    assertAppliedExactly(await rowsOf(model), matching.filter((p) => p < poison), 'the events before the poison one, not it, not later ones');

    // Run again with the handler fixed: it resumes at the poison event, not before, not after.
    const resumedCalls: Call[] = [];
    const fixed = start(store.consumer('poisoned', { query: M, batchSize: 5, instanceId: 'fixed', handle: applying(model, 'fixed', resumedCalls) }));
    await caughtUp(store, 'poisoned', matching.at(-1)!, fixed);
    assert.equal(resumedCalls[0]!.position, poison, 'resumed exactly at the failed event');
    assertAppliedExactly(await rowsOf(model), matching, 'all events after resuming');
    const resumed = await store.consumerStatus('poisoned');
    assert.equal(resumed.state, 'running');
    assert.equal(resumed.failedPosition, null);
    assert.equal(resumed.owner, 'fixed');
    await fixed.stop();
    assert.equal((await store.consumerStatus('poisoned')).state, 'idle');

    // resetConsumer clears a failure (here keeping the checkpoint).
    const other = store.consumer('poisoned-2', {
      query: M,
      maxAttempts: 1,
      handle: (e) => {
        if (e.position === poison) throw new Error('always');
      },
    });
    const otherOutcome = await settleWithin(other.run(), 5000);
    assert.ok(otherOutcome.state === 'rejected' && otherOutcome.error instanceof ConsumerFailedError, `got ${otherOutcome.state} ${String(otherOutcome.error)}`);
    const failedAgain = await store.consumerStatus('poisoned-2');
    assert.equal(failedAgain.state, 'failed');
    assert.equal(failedAgain.position, before);
    await store.resetConsumer('poisoned-2', { position: before });
    const cleared = await store.consumerStatus('poisoned-2');
    assert.deepEqual(
      { state: cleared.state, position: cleared.position, failedPosition: cleared.failedPosition, lastError: cleared.lastError, lastErrorAt: cleared.lastErrorAt },
      { state: 'idle', position: before, failedPosition: null, lastError: null, lastErrorAt: null },
    );
  });
});

describe('failing handlers: errors that look like lost connections', () => {
  // Bug: the consumer decides "my session is gone" from the shape of the handler's error (its
  // code or message) instead of from its session. An HTTP client's ECONNREFUSED, or a lost
  // connection to another database, thrown by the handler then restarts the session again and
  // again: the event is retried forever, never counts toward maxAttempts, and the status shows
  // no error at all.
  test("a handler's own ECONNREFUSED (its HTTP call failed) counts as a handler failure: ConsumerFailedError after maxAttempts, visible in the status", { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append([event('M'), event('M'), event('M')]);
    let calls = 0;
    const consumer = store.consumer('downstream-down', {
      query: M,
      maxAttempts: 3,
      retryDelayMs: 5,
      pollIntervalMs: 100,
      handle: (e) => {
        if (e.position !== 2n) return;
        calls += 1;
        // What an HTTP client throws when the service it calls is down.
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8080'), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect' });
      },
    });
    const controller = new AbortController();
    const outcome = await settleWithin(consumer.run({ signal: controller.signal }), 3000);
    controller.abort();
    const status = await store.consumerStatus('downstream-down');
    assert.equal(
      outcome.state,
      'rejected',
      `run() should stop with ConsumerFailedError after 3 attempts; it is still retrying after ${calls} calls (status ${status.state}, lastError ${status.lastError})`,
    );
    assert.ok(outcome.error instanceof ConsumerFailedError, String(outcome.error));
    assert.equal(calls, 3);
    assert.equal(status.state, 'failed');
    assert.equal(status.position, 1n);
    assert.match(status.lastError ?? '', /ECONNREFUSED/);
  });
});

describe('failures at commit', () => {
  // Bug caught: errors from the checkpoint update or COMMIT treated as fatal database errors:
  // run() rejected at once, nothing recorded, and the good events of the batch never committed.
  test('a deferred constraint failing at COMMIT: the events before the culprit commit, the culprit is retried, then recorded as failed', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    await withClient((client) => client.query(`CREATE TABLE "${schema}".deferred (k text, CONSTRAINT deferred_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)`));
    await store.append([event('M', [], { k: 'a' }), event('M', [], { k: 'b' }), event('M', [], { k: 'a' }), event('M', [], { k: 'c' })]);
    const consumer = store.consumer<{ k: string }>('deferred', {
      query: M,
      retryDelayMs: 1,
      maxAttempts: 3,
      handle: async (delivered, { transaction }) => {
        await transaction.query(`INSERT INTO "${schema}".deferred (k) VALUES ($1)`, [delivered.data.k]);
      },
    });
    const outcome = await settleWithin(consumer.run(), 5000);
    assert.equal(outcome.state, 'rejected');
    assert.ok(outcome.error instanceof ConsumerFailedError, `got ${String(outcome.error)}`);
    assert.equal(outcome.error.position, 3n);
    const status = await store.consumerStatus('deferred');
    assert.equal(status.state, 'failed');
    assert.equal(status.position, 2n);
    assert.equal(status.failedPosition, 3n);
    assert.match(status.lastError ?? '', /deferred_k/);
    const { rows } = await withClient((client) => client.query<{ k: string }>(`SELECT k FROM "${schema}".deferred ORDER BY k`));
    assert.deepEqual(rows.map((row) => row.k), ['a', 'b']);
  });
});

describe('handlers that hang', () => {
  // Bugs caught: a hanging handler holding the lease forever (no standby takes over, stop and
  // close never return), and a timed-out handler's late statement running outside any
  // transaction (an effect without its checkpoint, applied again by the retry).
  test('a handler that never finishes: each call times out as a failed attempt, its statement is cancelled, a late write is refused; then ConsumerFailedError', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    await withClient((client) => client.query(`CREATE TABLE "${schema}".late (k text)`));
    await store.append([event('M', [], { k: 'a' }), event('M', [], { k: 'hang' })]);
    const lateWrites: Promise<unknown>[] = [];
    let calls = 0;
    const consumer = store.consumer<{ k: string }>('hangs', {
      query: M,
      maxAttempts: 2,
      retryDelayMs: 1,
      handlerTimeoutMs: 300,
      handle: async (delivered, { transaction }) => {
        if (delivered.data.k !== 'hang') return;
        calls += 1;
        if (calls === 1) {
          await transaction.query('SELECT pg_sleep(60)'); // a statement that would hold the session
        } else {
          await new Promise((resolve) => setTimeout(resolve, 600)); // ignores its signal, then writes late
          lateWrites.push(transaction.query(`INSERT INTO "${schema}".late VALUES ('late')`).then(() => 'written', (error: unknown) => error));
        }
      },
    });
    const started = Date.now();
    const outcome = await settleWithin(consumer.run(), 10_000);
    assert.equal(outcome.state, 'rejected');
    assert.ok(outcome.error instanceof ConsumerFailedError, `got ${String(outcome.error)}`);
    assert.equal(outcome.error.position, 2n);
    assert.match(String((outcome.error.cause as Error).message), /did not finish within 300 ms/);
    assert.ok(Date.now() - started < 5000, 'the pg_sleep statement was cancelled, not waited for');
    await new Promise((resolve) => setTimeout(resolve, 700));
    const late = await Promise.all(lateWrites);
    assert.ok(late.length > 0 && late.every((result) => result instanceof Error), `late writes must be refused, got ${late.map(String).join(', ')}`);
    const { rows } = await withClient((client) => client.query(`SELECT count(*)::int AS n FROM "${schema}".late`));
    assert.equal(rows[0].n, 0);
    const status = await store.consumerStatus('hangs');
    assert.equal(status.state, 'failed');
    assert.equal(status.position, 1n);
  });

  test('abort while a handler hangs: run() resolves within about handlerTimeoutMs and the lease is free for another instance', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append([event('M', [], { k: 'hang' }), event('M', [], { k: 'b' })]);
    let hung = false;
    const controller = new AbortController();
    const stuck = store.consumer<{ k: string }>('hang-stop', {
      query: M,
      handlerTimeoutMs: 300,
      retryDelayMs: 50,
      handle: async (delivered) => {
        if (delivered.data.k === 'hang' && !hung) {
          hung = true;
          await new Promise(() => undefined); // never settles, ignores the signal
        }
      },
    }).run({ signal: controller.signal });
    for (let waited = 0; !hung; waited += 10) {
      assert.ok(waited < 5000);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const stopping = Date.now();
    controller.abort();
    assert.equal((await settleWithin(stuck, 3000)).state, 'resolved');
    assert.ok(Date.now() - stopping < 2000, `run() took ${Date.now() - stopping} ms to stop`);
    const next = new AbortController();
    const taking = store.consumer('hang-stop', { query: M, handle: () => undefined }).run({ signal: next.signal });
    await caughtUp(store, 'hang-stop', 2n);
    next.abort();
    await taking;
  });
});

describe('crashes and lost sessions', () => {
  // Bugs: the effects of a batch committed apart from its checkpoint (applied twice after the
  // crash: the standby's insert hits the primary key), the checkpoint committed before the effects
  // (skipped), the lease not tied to the session (a standby running while the child holds it, or
  // never taking over).
  test('the process running a consumer is SIGKILLed mid-batch: a standby takes over; the killed batch rolled back, nothing applied twice, nothing skipped; the standby did nothing while the child held the lease', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    await store.append(range(60).map((n) => event(n % 3 === 2 ? 'N' : 'M', [], { n })));
    const matching = await positionsOf(store, M);
    assert.equal(matching.length, 40);
    const batchSize = 8;
    // The child commits pages [0..7] and [8..15], then blocks at the fifth event of the third page.
    const blockAt = matching[20]!;
    const childCheckpoint = matching[15]!;

    const child: ChildProcessByStdio<null, Readable, Readable> = spawn(process.execPath, ['--import', 'tsx', childScript], {
      cwd: root,
      env: {
        ...process.env,
        DATABASE_URL: connectionStringFor(uniqueApplicationName('con-child')),
        CONSUMER_SCHEMA: schema,
        CONSUMER_NAME: 'crash',
        CONSUMER_TABLE: 'read_model',
        CONSUMER_TYPES: 'M',
        CONSUMER_BATCH_SIZE: String(batchSize),
        CONSUMER_BLOCK_AT: String(blockAt),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exit = new Promise<void>((resolve) => child.on('exit', (code, signal) => ((exited = { code, signal }), resolve())));
    cleanups.push(async () => {
      if (!exited) child.kill('SIGKILL');
      await exit;
    });
    const output = (): string => `--- child stdout ---\n${stdout}\n--- child stderr ---\n${stderr}`;
    try {
      await waitFor('the child to block mid-batch', () => {
        if (exited) throw new Error(`the child exited (${JSON.stringify(exited)})\n${output()}`);
        return stdout.includes(`BLOCKED ${blockAt}\n`);
      }, 15_000);

      // The child's open batch is invisible; what it committed is there.
      const during = await store.consumerStatus('crash');
      assert.equal(during.owner, 'child');
      assert.equal(during.state, 'running');
      assert.equal(during.position, childCheckpoint);
      assertAppliedExactly(await rowsOf(model), matching.slice(0, 16), 'committed by the child before it blocked');

      // The standby: started while the child holds the lease; it must not process anything.
      const standbyCalls: Call[] = [];
      const standbyStore = await otherStore(schema);
      const standby = start(standbyStore.consumer('crash', { query: M, batchSize, instanceId: 'standby', takeoverIntervalMs: 100, pollIntervalMs: 200, handle: applying(model, 'standby', standbyCalls) }));
      await sleep(500); // about 5 takeover attempts
      assert.equal(standbyCalls.length, 0, 'the standby handled nothing while the child held the lease');
      assert.equal((await store.consumerStatus('crash')).owner, 'child');
      assert.equal(standby.settled, false);

      const killedAt = Date.now();
      child.kill('SIGKILL');
      await exit;
      assert.equal(exited?.signal, 'SIGKILL', output());
      // More events after the crash: the standby must process them too.
      await store.append(range(6).map((n) => event(n % 2 === 0 ? 'M' : 'N')));
      const expected = await positionsOf(store, M);
      await caughtUp(store, 'crash', expected.at(-1)!, standby);
      const takeover = standbyCalls[0]!.at - killedAt;
      assert.ok(takeover < 3000, `took over ${takeover} ms after the kill`);

      const rows = await rowsOf(model);
      assertAppliedExactly(rows, expected, 'after the takeover');
      assert.deepEqual(rows.filter((row) => row.instance === 'child').map((row) => row.position), matching.slice(0, 16), "the child's killed batch left nothing behind");
      assert.equal(standbyCalls[0]!.position, matching[16], 'the standby resumed at the first event of the killed batch');
      assert.ok(rows.filter((row) => row.instance === 'standby').every((row) => row.position > childCheckpoint));
      const status = await store.consumerStatus('crash');
      assert.equal(status.owner, 'standby');
      assert.equal(status.state, 'running');
      await standby.stop();
    } finally {
      if (!exited) child.kill('SIGKILL');
    }
  });

  // Bug: a consumer that treats its lost session as fatal (run() rejects), or keeps using it, or
  // does not retake the lease; a batch half-applied by the dead session kept.
  test("the lease holder's backend terminated mid-handler (again while idle, again while its checkpoint update waits): the instance reconnects, takes the lease again, and the read model ends exact", { timeout: LIMIT }, async () => {
    const { store, schema, app } = await freshStore();
    const model = await createModel(schema);
    await store.append(range(50).map((n) => event(n % 5 === 4 ? 'N' : 'M', [], { n })));
    const matching = await positionsOf(store, M);
    const blockAt = matching[14]!; // fifth event of the second page of 10
    const reached = deferred();
    const gate = deferred();
    let blocked = false;
    const calls: Call[] = [];
    const workerStore = await otherStore(schema, app);
    const consumer = workerStore.consumer('killed', {
      query: M,
      batchSize: 10,
      pollIntervalMs: 200,
      instanceId: 'worker',
      handle: async (e, context) => {
        calls.push({ instance: 'worker', position: e.position, attempt: context.attempt, at: Date.now() });
        await model.apply(context.transaction, e, 'worker', context.attempt);
        if (e.position === blockAt && !blocked) {
          blocked = true;
          reached.resolve();
          await gate.promise;
        }
      },
    });
    const running = start(consumer);
    await reached.promise;
    const holders = await leaseHolders(schema, 'killed');
    assert.equal(holders.length, 1, 'one session holds the lease');
    assert.equal(holders[0]!.application_name, app, "the lease holder is the worker's session");
    assert.equal((await store.consumerStatus('killed')).position, matching[9], 'the first page is committed');
    await withClient((client) => client.query('SELECT pg_terminate_backend($1)', [holders[0]!.pid]));
    gate.resolve(); // the handler returns; the next statement on the dead session fails

    await caughtUp(store, 'killed', matching.at(-1)!, running);
    assertAppliedExactly(await rowsOf(model), matching, 'after the first kill');
    assert.equal(calls.filter((call) => call.position === blockAt).length, 2, 'the interrupted event was handled again');
    const secondHolders = await leaseHolders(schema, 'killed');
    assert.equal(secondHolders.length, 1);
    assert.notEqual(secondHolders[0]!.pid, holders[0]!.pid, 'a new session holds the lease');

    // Again while it waits for events: then events arrive.
    await withClient((client) => client.query('SELECT pg_terminate_backend($1)', [secondHolders[0]!.pid]));
    await store.append(range(12).map((n) => event(n % 3 === 0 ? 'N' : 'M')));
    const expected = await positionsOf(store, M);
    await caughtUp(store, 'killed', expected.at(-1)!, running);
    assertAppliedExactly(await rowsOf(model), expected, 'after the second kill');

    // A third time after the handlers of a batch ran, while its checkpoint update waits for a row
    // lock the test holds: effects committed apart from the checkpoint would be applied again.
    await waitFor('the checkpoint at the head (no idle move pending)', async () => (await store.consumerStatus('killed')).position === (await store.head()), 5000);
    await withClient(async (locker) => {
      await locker.query('BEGIN');
      await locker.query(`SELECT 1 FROM "${schema}".consumers WHERE name = 'killed' FOR UPDATE`);
      try {
        const callsBefore = calls.length;
        await store.append(range(5).map(() => event('M')));
        let waiting: number | undefined;
        await waitFor('the batch to wait on its checkpoint update', async () => {
          const { rows } = await withClient((observer) =>
            observer.query<{ pid: number }>(
              `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE 'UPDATE%failed_position = NULL%'`,
              [app],
            ),
          );
          waiting = rows[0]?.pid;
          return waiting !== undefined;
        }, 5000);
        assert.equal(calls.length - callsBefore, 5, 'the handlers of the batch ran');
        await withClient((client) => client.query('SELECT pg_terminate_backend($1)', [waiting]));
      } finally {
        await locker.query('ROLLBACK');
      }
    });
    const final = await positionsOf(store, M);
    await caughtUp(store, 'killed', final.at(-1)!, running);
    assertAppliedExactly(await rowsOf(model), final, 'after the third kill');

    await waitFor('the lease to be held again', async () => (await leaseHolders(schema, 'killed')).length === 1, 5000);
    const status = await store.consumerStatus('killed');
    assert.equal(status.state, 'running');
    assert.equal(status.owner, 'worker');
    assert.equal(running.settled, false, 'run() survived the kills');
    await running.stop();
  });
});

describe('one instance at a time', () => {
  // Bug: two instances processing at once (the lease not exclusive, or not held for the whole
  // run), a standby that never takes over, or one that takes over from somewhere other than the
  // checkpoint.
  test('three instances with one name: only the lease holder processes; abort it and another takes over within the takeover interval from the checkpoint, twice; no interleaving', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    const takeoverIntervalMs = 150;
    const calls: Call[] = [];
    const instances = await Promise.all(['A', 'B', 'C'].map(async (id) => ({ id, store: await otherStore(schema) })));
    const make = (id: string, instanceStore: EventStore): Consumer =>
      instanceStore.consumer('single', { query: M, batchSize: 5, pollIntervalMs: 200, takeoverIntervalMs, instanceId: id, handle: applying(model, id, calls) });

    let writing = true;
    const writer = (async () => {
      let n = 0;
      while (writing) {
        await store.append([event(n % 3 === 2 ? 'N' : 'M', [], { n })]);
        n += 1;
        await sleep(10);
      }
    })();

    const runs = new Map<string, Running>();
    runs.set('A', start(make('A', instances[0]!.store)));
    await waitFor('A to process', () => calls.some((call) => call.instance === 'A'));
    runs.set('B', start(make('B', instances[1]!.store)));
    runs.set('C', start(make('C', instances[2]!.store)));
    await sleep(600);
    assert.ok(calls.every((call) => call.instance === 'A'), 'only A processed while it held the lease');
    const statusA = await store.consumerStatus('single');
    assert.equal(statusA.owner, 'A');
    assert.equal(statusA.state, 'running');

    let holder = 'A';
    const waiting = new Set(['B', 'C']);
    for (let handoff = 0; handoff < 2; handoff++) {
      const callsBefore = calls.length;
      await runs.get(holder)!.stop();
      const stoppedAt = Date.now();
      const successorCalls = (): Call[] => calls.slice(callsBefore).filter((call) => call.instance !== holder);
      await waitFor(`a successor of ${holder}`, () => successorCalls().length > 0, 5000);
      const first = successorCalls()[0]!;
      const successor = first.instance;
      assert.ok(waiting.has(successor), `the successor ${successor} is one of the waiting instances`);
      const latency = first.at - stoppedAt;
      assert.ok(latency < takeoverIntervalMs + 700, `${successor} took over ${latency} ms after ${holder} stopped`);
      // The holder's batches all committed (an abort lets the batch in flight commit), and the
      // checkpoint only ever moves past non-matching events beyond them: the successor must start
      // at the first matching event after the holder's last one.
      const lastOfHolder = calls.filter((call) => call.instance === holder).at(-1)!.position;
      const [next] = (await store.read(M, { after: lastOfHolder, limit: 1 })).events;
      assert.equal(first.position, next!.position, `${successor} resumed at the first matching event after ${holder}'s last one (${lastOfHolder})`);
      assert.ok(calls.indexOf(first) === calls.length - successorCalls().length, `${holder} handled nothing after ${successor} began`);
      await sleep(400);
      const since = calls.slice(calls.indexOf(first));
      assert.ok(since.every((call) => call.instance === successor), `only ${successor} processed after the handoff: ${[...new Set(since.map((call) => call.instance))].join(', ')}`);
      assert.equal((await store.consumerStatus('single')).owner, successor);
      waiting.delete(successor);
      holder = successor;
    }

    writing = false;
    await writer;
    const expected = await positionsOf(store, M);
    await caughtUp(store, 'single', expected.at(-1)!, runs.get(holder));
    const rows = await rowsOf(model);
    assertAppliedExactly(rows, expected, 'across the handoffs');
    // No interleaving: the handler calls, in time order, form one run per instance: A, then the first successor, then the second.
    const order: string[] = [];
    for (const call of [...calls].sort((a, b) => a.at - b.at)) if (order.at(-1) !== call.instance) order.push(call.instance);
    assert.equal(order.length, 3, `calls by instance in time order: ${order.join(' -> ')}`);
    assert.equal(new Set(order).size, 3);
    assert.equal(calls.length, expected.length, 'every event handled once (no retries, no overlaps)');
    for (const run of runs.values()) await run.stop();
  });
});

describe('checkpoint and reset', () => {
  // Bug: a checkpoint beyond the head (store restored from an older backup) silently accepted:
  // the consumer would wait for positions that will be given to other events, skipping them.
  test('a checkpoint ahead of the head: run() rejects with CheckpointAheadError without calling the handler; status failed; resetConsumer lets it rebuild', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    await store.append(range(10).map((n) => event('M', [], { n })));
    const calls: Call[] = [];
    const make = (): Consumer => store.consumer('ahead', { query: M, pollIntervalMs: 200, handle: applying(model, 'i', calls) });
    const first = start(make());
    await caughtUp(store, 'ahead', 10n, first);
    await first.stop();
    calls.length = 0;

    await withClient((client) => client.query(`UPDATE "${schema}".consumers SET position = 20 WHERE name = 'ahead'`));
    const outcome = await settleWithin(make().run(), 5000);
    assert.equal(outcome.state, 'rejected', 'run() rejects at once (does not wait for the log to catch up)');
    const error = outcome.error;
    assert.ok(error instanceof CheckpointAheadError, `got ${String(error)}`);
    assert.equal(error.consumer, 'ahead');
    assert.equal(error.checkpoint, 20n);
    assert.equal(error.head, 10n);
    assert.equal(calls.length, 0, 'the handler was never called');
    const status = await store.consumerStatus('ahead');
    assert.equal(status.state, 'failed');
    assert.equal(status.position, 20n);
    assert.equal(status.lag, 0n);
    assert.match(status.lastError ?? '', /CheckpointAheadError/);

    await store.resetConsumer('ahead', { onReset: (transaction) => model.truncate(transaction) });
    assert.equal((await store.consumerStatus('ahead')).state, 'idle');
    const rebuilt = start(make());
    await caughtUp(store, 'ahead', 10n, rebuilt);
    assertAppliedExactly(await rowsOf(model), await positionsOf(store, M), 'rebuilt');
    await rebuilt.stop();
  });

  // Bugs: a reset racing a running instance (its next commit would overwrite the reset, or the
  // two would apply events twice), a reset to a position beyond the head accepted, the read
  // model emptied without the checkpoint (or the reverse), a reset to a middle position
  // re-processing events before it.
  // Bug caught: a consumer that compares its checkpoint with the head only. After a restore from
  // an older backup and new appends past the checkpoint, other events sit at the positions it
  // "processed", and it would silently skip them.
  test('another event at the checkpoint position (restored store, appended to since): run() rejects with CheckpointAheadError without calling the handler', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    await store.append(range(6).map((n) => event('M', [], { n })));
    const calls: Call[] = [];
    const make = (): Consumer => store.consumer('rewritten', { query: M, pollIntervalMs: 200, handle: applying(model, 'i', calls) });
    const first = start(make());
    await caughtUp(store, 'rewritten', 6n, first);
    await first.stop();
    calls.length = 0;
    await store.append(range(4).map((n) => event('M', [], { n })));

    // Events cannot be deleted (a trigger forbids it), so stand in for the restore by making the
    // recorded checkpoint event differ from the event stored at that position.
    await withClient((client) => client.query(`UPDATE "${schema}".consumers SET checkpoint_event_id = gen_random_uuid() WHERE name = 'rewritten'`));
    const outcome = await settleWithin(make().run(), 5000);
    assert.equal(outcome.state, 'rejected');
    assert.ok(outcome.error instanceof CheckpointAheadError, `got ${String(outcome.error)}`);
    assert.match(outcome.error.message, /another event is at that position/);
    assert.equal(calls.length, 0, 'the handler was never called');
    assert.equal((await store.consumerStatus('rewritten')).state, 'failed');

    await store.resetConsumer('rewritten', { position: 6n });
    const resumed = start(make());
    await caughtUp(store, 'rewritten', 10n, resumed);
    assert.equal(calls.length, 4, 'after the reset it processes the 4 later events');
    await resumed.stop();
  });

  test('resetConsumer: refused while an instance runs; beyond the head refused; onReset in the same transaction (a throwing onReset changes nothing); rebuild from 0 and from a middle position give the same read model', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const model = await createModel(schema);
    await store.append(range(30).map((n) => event(n % 3 === 0 ? 'N' : 'M', [], { n })));
    const matching = await positionsOf(store, M);
    const calls: Call[] = [];
    const make = (): Consumer => store.consumer('rebuild', { query: M, batchSize: 4, pollIntervalMs: 200, handle: applying(model, 'i', calls) });

    const running = start(make());
    await caughtUp(store, 'rebuild', 30n, running);
    const original = (await rowsOf(model)).map((row) => row.position);
    assert.deepEqual(original, matching);
    await assert.rejects(store.resetConsumer('rebuild', { onReset: (transaction) => model.truncate(transaction) }), (error: unknown) => {
      assert.ok(error instanceof ConsumerRunningError, `got ${String(error)}`);
      assert.equal(error.consumer, 'rebuild');
      return true;
    });
    assert.equal((await rowsOf(model)).length, matching.length, 'onReset did not run');
    assert.equal((await store.consumerStatus('rebuild')).position, 30n);
    await running.stop();

    await assert.rejects(store.resetConsumer('rebuild', { position: 31n }), InvalidInputError);
    await assert.rejects(store.resetConsumer('rebuild', { position: -1n }), InvalidInputError);
    await assert.rejects(
      store.resetConsumer('rebuild', {
        onReset: async (transaction) => {
          await model.truncate(transaction);
          throw new Error('onReset failed');
        },
      }),
      /onReset failed/,
    );
    assert.equal((await store.consumerStatus('rebuild')).position, 30n, 'a failed reset leaves the checkpoint');
    assert.equal((await rowsOf(model)).length, matching.length, "a failed reset leaves the read model (onReset's writes rolled back)");

    // From scratch.
    await store.resetConsumer('rebuild', { onReset: (transaction) => model.truncate(transaction) });
    const reset = await store.consumerStatus('rebuild');
    assert.equal(reset.position, 0n);
    assert.equal(reset.lag, 30n);
    assert.deepEqual(await rowsOf(model), [], 'emptied with the reset');
    calls.length = 0;
    const fromScratch = start(make());
    await caughtUp(store, 'rebuild', 30n, fromScratch);
    await fromScratch.stop();
    assertAppliedExactly(await rowsOf(model), matching, 'rebuilt from 0');
    assert.deepEqual(calls.map((call) => call.position), matching);

    // From the middle: only later events are processed again.
    const middle = 15n;
    await store.resetConsumer('rebuild', { position: middle, onReset: (transaction) => model.truncate(transaction, middle) });
    assert.equal((await store.consumerStatus('rebuild')).position, middle);
    calls.length = 0;
    const fromMiddle = start(make());
    await caughtUp(store, 'rebuild', 30n, fromMiddle);
    await fromMiddle.stop();
    assert.deepEqual(calls.map((call) => call.position), matching.filter((p) => p > middle), 'only the events after the reset position');
    assertAppliedExactly(await rowsOf(model), matching, 'rebuilt from the middle');
  });
});

describe('status', () => {
  // Bugs: lag or position not following appends and processing; state not reflecting the lease;
  // an idle consumer's checkpoint never moving past events it does not match (its lag grows
  // forever and a restart re-reads them), or moved on every append (a write per append).
  test('lag and position follow appends and processing; running while run() is active (the lease), idle after or when its holder died; an unknown consumer reads as idle at 0', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    const unknown = await store.consumerStatus('never-ran');
    assert.deepEqual(unknown, { name: 'never-ran', position: 0n, head: 0n, lag: 0n, state: 'idle', owner: null, failedPosition: null, lastError: null, lastErrorAt: null, updatedAt: null });

    await store.append(range(5).map(() => event('M')));
    let gate = deferred();
    let paused = true;
    const handled: bigint[] = [];
    const running = start(
      store.consumer('watched', {
        query: M,
        pollIntervalMs: 200,
        instanceId: 'watcher',
        handle: async (e) => {
          if (paused) await gate.promise;
          handled.push(e.position);
        },
      }),
    );
    // (The lease is taken a moment before the row names its owner.)
    await waitFor('the lease', async () => {
      const status = await store.consumerStatus('watched');
      return status.state === 'running' && status.owner === 'watcher';
    });
    const blockedStatus = await store.consumerStatus('watched');
    assert.deepEqual([blockedStatus.position, blockedStatus.head, blockedStatus.lag, blockedStatus.owner], [0n, 5n, 5n, 'watcher']);
    paused = false;
    gate.resolve();
    await caughtUp(store, 'watched', 5n, running);
    const first = await store.consumerStatus('watched');
    assert.deepEqual([first.position, first.head, first.lag, first.state], [5n, 5n, 0n, 'running']);

    // Appends while it is held up: the head and the lag grow; then it catches up.
    gate = deferred();
    paused = true;
    await store.append(range(3).map(() => event('M')));
    await store.append(event('N'));
    await waitFor('the head to show', async () => (await store.consumerStatus('watched')).head === 9n);
    const behind = await store.consumerStatus('watched');
    assert.deepEqual([behind.position, behind.head, behind.lag], [5n, 9n, 4n]);
    paused = false;
    gate.resolve();
    await waitFor('the checkpoint to reach the head', async () => (await store.consumerStatus('watched')).position === 9n, 5000);
    const done = await store.consumerStatus('watched');
    assert.deepEqual([done.lag, done.state], [0n, 'running']);
    assert.ok(done.updatedAt instanceof Date && done.updatedAt.getTime() >= first.updatedAt!.getTime());
    assert.deepEqual(handled, [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);

    await running.stop();
    const stopped = await store.consumerStatus('watched');
    assert.deepEqual([stopped.state, stopped.position, stopped.owner], ['idle', 9n, 'watcher']);

    // A holder that died cannot update its row: the state comes from the lease, not from the row.
    await withClient((client) => client.query(`UPDATE "${schema}".consumers SET status = 'running', owner = 'crashed' WHERE name = 'watched'`));
    const stale = await store.consumerStatus('watched');
    assert.deepEqual([stale.state, stale.owner], ['idle', 'crashed'], 'no lease, no running');
  });

  test('a consumer whose query matches nothing moves its checkpoint to the head, at most once per pollIntervalMs', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    // Every change of a checkpoint, logged by a trigger on the consumers table.
    await withClient((client) =>
      client.query(`
        CREATE TABLE "${schema}".checkpoint_log (name text, position bigint, at timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE FUNCTION "${schema}".log_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO "${schema}".checkpoint_log (name, position) VALUES (NEW.name, NEW.position); RETURN NULL; END $$;
        CREATE TRIGGER log_checkpoint AFTER UPDATE ON "${schema}".consumers
          FOR EACH ROW WHEN (NEW.position IS DISTINCT FROM OLD.position) EXECUTE FUNCTION "${schema}".log_checkpoint();`),
    );
    await store.append(range(10).map(() => event('N')));
    const pollIntervalMs = 250;
    let called = 0;
    const running = start(
      store.consumer('nothing', {
        query: Query.of(QueryItem.types('Nope')),
        pollIntervalMs,
        handle: () => {
          called += 1;
        },
      }),
    );
    await waitFor('the checkpoint to reach the head', async () => (await store.consumerStatus('nothing')).position === 10n, 3000);

    // Appends every ~15 ms for 1.5 s.
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      await store.append(event('N'));
      await sleep(15);
    }
    const head = await store.head();
    await waitFor('the checkpoint to reach the head again', async () => (await store.consumerStatus('nothing')).position === head, 3 * pollIntervalMs + 1000);
    const status = await store.consumerStatus('nothing');
    assert.equal(status.lag, 0n);
    assert.equal(called, 0);
    await running.stop();

    const { rows } = await withClient((client) =>
      client.query<{ position: string; ms: number }>(`SELECT position, extract(epoch FROM at) * 1000 AS ms FROM "${schema}".checkpoint_log WHERE name = 'nothing' ORDER BY at`),
    );
    const moves = rows.map((row) => ({ position: BigInt(row.position), ms: Number(row.ms) }));
    assert.ok(moves.length >= 4, `it moved while events arrived: ${moves.length} moves for ${head - 10n} appends`);
    assert.ok(moves.length <= 1 + Math.ceil(1500 / pollIntervalMs) + 2, `at most one move per ${pollIntervalMs} ms: ${moves.length} moves for ${head - 10n} appends`);
    for (let index = 1; index < moves.length; index++) {
      assert.ok(moves[index]!.position > moves[index - 1]!.position);
      const gap = moves[index]!.ms - moves[index - 1]!.ms;
      assert.ok(gap >= pollIntervalMs - 5, `moves ${gap.toFixed(0)} ms apart (pollIntervalMs ${pollIntervalMs})`);
    }
  });
});

describe('input and lifecycle', () => {
  // Bug: bad names or options accepted (a consumer that fails later, in the background, or
  // never), or a Consumer object running twice at once in one process (two loops on one name
  // would each take and release the lease).
  test('bad names and options throw InvalidInputError synchronously from store.consumer(); run() twice at once on one Consumer rejects', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    const handle = (): void => undefined;
    const ok: ConsumerOptions = { query: M, handle };
    const bad: Array<[string, () => unknown]> = [
      ['name empty', () => store.consumer('', ok)],
      ['name 256 characters', () => store.consumer('x'.repeat(256), ok)],
      ['name a number', () => store.consumer(42 as unknown as string, ok)],
      ['name undefined', () => store.consumer(undefined as unknown as string, ok)],
      ['name with \\u0000', () => store.consumer('a\u0000b', ok)],
      ['name with an unpaired surrogate (stored as U+FFFD, it would share a row with another name)', () => store.consumer('a\ud800b', ok)],
      ['options null', () => store.consumer('c', null as unknown as ConsumerOptions)],
      ['query missing', () => store.consumer('c', { handle } as unknown as ConsumerOptions)],
      ['query a plain object', () => store.consumer('c', { query: { items: [] } as unknown as Query, handle })],
      ['handle missing', () => store.consumer('c', { query: M } as unknown as ConsumerOptions)],
      ['handle not a function', () => store.consumer('c', { query: M, handle: 'handle' as unknown as ConsumerOptions['handle'] })],
      ['batchSize 0', () => store.consumer('c', { ...ok, batchSize: 0 })],
      ['batchSize 2.5', () => store.consumer('c', { ...ok, batchSize: 2.5 })],
      ['batchSize a string', () => store.consumer('c', { ...ok, batchSize: '10' as unknown as number })],
      ['maxAttempts -1', () => store.consumer('c', { ...ok, maxAttempts: -1 })],
      ['maxAttempts 0', () => store.consumer('c', { ...ok, maxAttempts: 0 })],
      ['retryDelayMs -1', () => store.consumer('c', { ...ok, retryDelayMs: -1 })],
      ['retryDelayMs NaN', () => store.consumer('c', { ...ok, retryDelayMs: Number.NaN })],
      ['pollIntervalMs 0', () => store.consumer('c', { ...ok, pollIntervalMs: 0 })],
      ['takeoverIntervalMs Infinity', () => store.consumer('c', { ...ok, takeoverIntervalMs: Number.POSITIVE_INFINITY })],
      ['instanceId empty', () => store.consumer('c', { ...ok, instanceId: '' })],
    ];
    for (const [label, call] of bad) {
      let result: unknown;
      assert.throws(() => (result = call()), InvalidInputError, `${label}: must throw InvalidInputError synchronously`);
      assert.equal(result, undefined, label);
    }
    // The limits themselves are fine.
    store.consumer('x'.repeat(255), { ...ok, batchSize: 1, maxAttempts: 1, retryDelayMs: 0 });
    await assert.rejects(store.consumerStatus(''), InvalidInputError);
    await assert.rejects(store.resetConsumer('x'.repeat(256)), InvalidInputError);

    const consumer = store.consumer('twice', { query: M, pollIntervalMs: 60_000, handle });
    const first = start(consumer);
    await assert.rejects(consumer.run(), InvalidInputError, 'a second run() while the first runs');
    await waitFor('the lease', async () => (await store.consumerStatus('twice')).state === 'running');
    assert.equal(first.settled, false, 'the first run() goes on');
    await first.stop();
    // Once it ended, the same object can run again.
    const again = start(consumer);
    await waitFor('the lease again', async () => (await store.consumerStatus('twice')).state === 'running');
    await again.stop();
  });

  // Bug: close() leaves a consumer running (its own session is not in the pool) or makes run()
  // reject instead of resolving; the events processed before the close lost instead of committed.
  test('store.close() while a consumer waits for events, or is in a batch: run() resolves, the events processed so far commit, the lease is released', { timeout: LIMIT }, async () => {
    const { schema, store: owner } = await freshStore();
    const model = await createModel(schema);
    await owner.append(range(6).map(() => event('M')));

    // Waiting for events (poll interval 60 s): close() wakes it.
    const idleStore = await otherStore(schema);
    const idle = start(idleStore.consumer('closing', { query: M, pollIntervalMs: 60_000, handle: applying(model, 'idle', []) }));
    await caughtUp(owner, 'closing', 6n, idle);
    await sleep(100);
    const closedAt = Date.now();
    await idleStore.close();
    await idle.done;
    assert.ok(Date.now() - closedAt < 1000, `run() resolved ${Date.now() - closedAt} ms after close()`);
    assert.equal((await owner.consumerStatus('closing')).state, 'idle', 'the lease was released');
    assert.throws(() => idleStore.consumer('closing', { query: M, handle: () => undefined }), EventStoreClosedError);

    // In a batch: the batch still commits.
    await owner.append(range(4).map(() => event('M')));
    const busyStore = await otherStore(schema);
    const inHandler = deferred();
    const busy = start(
      busyStore.consumer('closing', {
        query: M,
        pollIntervalMs: 60_000,
        handle: applying(model, 'busy', [], async (e) => {
          if (e.position === 8n) {
            inHandler.resolve();
            await sleep(200);
          }
        }),
      }),
    );
    await inHandler.promise;
    await busyStore.close();
    await busy.done;
    // It stops between events: the running call (at 8) finishes and commits with 7, 9 and 10 wait.
    assert.equal((await owner.consumerStatus('closing')).position, 8n, 'the events processed before the stop committed, up to the running call');
    assertAppliedExactly(await rowsOf(model), positionsOfRange(1n, 8n), 'after the close in a batch');
    const resumed = start(owner.consumer('closing', { query: M, pollIntervalMs: 60_000, handle: applying(model, 'resumed', []) }));
    await caughtUp(owner, 'closing', 10n, resumed);
    await resumed.stop();
    assertAppliedExactly(await rowsOf(model), positionsOfRange(1n, 10n), 'resumed after the close in a batch');

    // A standby (another instance holds the lease): close() ends it too.
    const holder = start(owner.consumer('held', { query: M, pollIntervalMs: 60_000, handle: () => undefined }));
    await waitFor('the holder', async () => (await owner.consumerStatus('held')).state === 'running');
    const standbyStore = await otherStore(schema);
    const standby = start(standbyStore.consumer('held', { query: M, takeoverIntervalMs: 300, handle: () => undefined }));
    await sleep(100);
    const standbyClosedAt = Date.now();
    await standbyStore.close();
    await standby.done;
    assert.ok(Date.now() - standbyClosedAt < 1000, `the standby's run() resolved ${Date.now() - standbyClosedAt} ms after close()`);
    await holder.stop();
    // A Consumer made before its store closed: run() now rejects at once.
    const lateStore = await otherStore(schema);
    const late = lateStore.consumer('late', { query: M, handle: () => undefined });
    await lateStore.close();
    await assert.rejects(late.run(), EventStoreClosedError);
  });

  // Bug: close() during the consumer's start (after the lease, before the first read) makes
  // run() reject with EventStoreClosedError instead of resolving.
  test('store.close() right after run() starts: run() resolves', { timeout: LIMIT }, async () => {
    const { schema } = await freshStore();
    const outcomes: string[] = [];
    for (let round = 0; round < 6; round++) {
      const store = await otherStore(schema);
      const running = start(store.consumer('starting', { query: M, pollIntervalMs: 60_000, handle: () => undefined }));
      await sleep(round * 4);
      await store.close();
      await running.done.catch(() => undefined);
      outcomes.push(running.error === undefined ? 'resolved' : `rejected with ${String(running.error)}`);
    }
    assert.deepEqual(outcomes, outcomes.map(() => 'resolved'), 'close() 0, 4, 8, ... ms after run()');
  });

  // Bug: close() not stopping a consumer that waits to retry a failing event: it keeps retrying
  // after the application shut the store down, and run() then rejects with ConsumerFailedError
  // (recording a failure) instead of resolving as it does on abort.
  test('store.close() or abort while a failing event waits for its retry: run() resolves promptly, no failure recorded', { timeout: LIMIT }, async () => {
    const { schema, store: owner } = await freshStore();
    await owner.append(event('M'));
    for (const how of ['abort', 'close'] as const) {
      const store = await otherStore(schema);
      const attempts: number[] = [];
      const failing = start(
        store.consumer(`retrying-${how}`, {
          query: M,
          maxAttempts: 4,
          retryDelayMs: 300, // 300 + 600 + 1200 ms before giving up
          handle: (_e, { attempt }) => {
            attempts.push(attempt);
            throw new Error('not yet');
          },
        }),
      );
      await waitFor('the first attempt', () => attempts.length === 1);
      const stoppedAt = Date.now();
      if (how === 'abort') failing.controller.abort();
      else await store.close();
      await failing.done.catch(() => undefined);
      assert.equal(failing.error, undefined, `${how}: run() resolves (got ${String(failing.error)})`);
      assert.ok(Date.now() - stoppedAt < 1000, `${how}: run() ended ${Date.now() - stoppedAt} ms after it`);
      const status = await owner.consumerStatus(`retrying-${how}`);
      assert.notEqual(status.state, 'failed', `${how}: no failure recorded (attempts made: ${attempts.join(', ')})`);
      assert.equal(status.position, 0n);
    }
  });
});

function positionsOfRange(from: bigint, to: bigint): bigint[] {
  const out: bigint[] = [];
  for (let position = from; position <= to; position++) out.push(position);
  return out;
}

