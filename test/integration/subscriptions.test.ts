// Live subscriptions (store.subscribe) against a real PostgreSQL: every committed event matching
// the query reaches every subscriber in position order, once, never skipped — under concurrent,
// jittered writers on several instances, across lost notifications and lost connections — and a
// subscription ends promptly and quietly when asked to.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import {
  AppendConditionFailedError,
  EventStoreClosedError,
  InvalidInputError,
  Query,
  QueryItem,
  type EventInput,
  type EventStore,
  type SequencedEvent,
  type SubscribeOptions,
} from '../../src/index.ts';
import { connectToSchema, createTestStore, keepEventLoopAliveDuringTests, seededRandom, withClient } from '../helpers.ts';
import { backendsOf, connectNamed, connectionStringFor, positions, terminateBackends, uniqueApplicationName, waitFor } from './fixtures/backends.ts';

keepEventLoopAliveDuringTests();

/** Per test: a subscription that stops delivering fails its test instead of hanging the file. */
const LIMIT = 20_000;

// ---------------------------------------------------------------------------------------------
// Fixtures

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

/** A store in a fresh schema (dropped by the file's `after` hook), its connections named `app`. */
async function freshStore(app = uniqueApplicationName('sub'), poolSize = 4): Promise<{ store: EventStore; schema: string; app: string }> {
  const created = await createTestStore({ connectionString: connectionStringFor(app), poolSize });
  cleanups.push(created.dispose);
  return { store: created.store, schema: created.schema, app };
}

/** Another instance on the schema (as another process), closed by the file's `after` hook. */
async function otherStore(schema: string, app?: string, poolSize = 3): Promise<EventStore> {
  const store = app === undefined ? await connectToSchema(schema, { poolSize }) : await connectNamed(schema, app, { poolSize });
  cleanups.push(() => store.close());
  return store;
}

interface Follower {
  label: string;
  query: Query;
  after: bigint;
  seen: SequencedEvent[];
  /** Settles when the for-await loop ends; rejects if the subscription threw. */
  done: Promise<void>;
  endedAt: number | undefined;
  controller: AbortController;
  stop(): Promise<void>;
}

/** Runs a subscription in the background, recording every event it yields. */
function startFollower(
  store: EventStore,
  label: string,
  query: Query,
  options: Omit<SubscribeOptions, 'signal'> = {},
  body?: (event: SequencedEvent, index: number) => Promise<void> | void,
): Follower {
  const controller = new AbortController();
  const follower: Follower = {
    label,
    query,
    after: options.after ?? 0n,
    seen: [],
    endedAt: undefined,
    controller,
    done: Promise.resolve(),
    stop: async () => {
      controller.abort();
      await follower.done;
    },
  };
  const subscription = store.subscribe(query, { ...options, signal: controller.signal });
  follower.done = (async () => {
    try {
      for await (const event of subscription) {
        follower.seen.push(event);
        await body?.(event, follower.seen.length - 1);
      }
    } finally {
      follower.endedAt = Date.now();
    }
  })();
  follower.done.catch(() => undefined); // awaited by the test; no unhandled rejection meanwhile
  return follower;
}

/**
 * `actual` must be exactly `expected`: same positions, same order. On a mismatch, says what kind
 * (duplicate, out of order, skipped, extra) and where, instead of dumping thousands of numbers.
 */
function assertSamePositions(actual: readonly bigint[], expected: readonly bigint[], context: string): void {
  const problems: string[] = [];
  const counts = new Map<bigint, number>();
  for (const position of actual) counts.set(position, (counts.get(position) ?? 0) + 1);
  const duplicates = [...counts].filter(([, count]) => count > 1).map(([position]) => position);
  if (duplicates.length > 0) problems.push(`duplicates: ${duplicates.slice(0, 10).join(', ')}${duplicates.length > 10 ? ', ...' : ''} (${duplicates.length})`);
  for (let index = 1; index < actual.length; index++) {
    if (actual[index]! <= actual[index - 1]!) {
      problems.push(`not increasing at index ${index}: ${actual[index - 1]} then ${actual[index]}`);
      break;
    }
  }
  const expectedSet = new Set(expected);
  const missing = expected.filter((position) => !counts.has(position));
  if (missing.length > 0) problems.push(`skipped: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''} (${missing.length} of ${expected.length})`);
  const extra = [...counts.keys()].filter((position) => !expectedSet.has(position));
  if (extra.length > 0) problems.push(`not expected: ${extra.slice(0, 10).join(', ')}${extra.length > 10 ? ', ...' : ''} (${extra.length})`);
  assert.deepEqual(problems, [], `${context}: saw ${actual.length} events, expected ${expected.length}`);
  assert.deepEqual(actual, expected, context);
}

/** What a subscriber of `query` after `after` must have seen by now: the store's own read. */
async function expectedPositions(store: EventStore, query: Query, after: bigint): Promise<bigint[]> {
  return (await store.read(query, { after })).events.map((event) => event.position);
}

/** Waits until the follower saw everything a read returns now, then a little longer (to catch extras), then stops it and compares. */
async function settleAndCheck(store: EventStore, follower: Follower, context = follower.label): Promise<bigint[]> {
  const expected = await expectedPositions(store, follower.query, follower.after);
  const last = expected.at(-1);
  await waitFor(`${context} to reach position ${last}`, () => last === undefined || follower.seen.some((event) => event.position >= last), 10_000).catch((error: unknown) => {
    assertSamePositions(follower.seen.map((event) => event.position), expected, `${context} (stalled)`);
    throw error;
  });
  await sleep(150);
  await follower.stop();
  assertSamePositions(follower.seen.map((event) => event.position), expected, context);
  return expected;
}

const event = (type: string, tags: string[], data: Record<string, unknown> = {}): EventInput => ({ type, tags, data });

function range(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}

// ---------------------------------------------------------------------------------------------

describe('subscriptions under concurrent writers', () => {
  test('jittered writers on 4 instances, 10 subscribers (batch sizes, filters, mid-log starts): each sees exactly the matching positions, in order, once', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    // Every append sleeps 0-10 ms after inserting its events and before committing, with the
    // append lock held: positions given out earlier would commit later if they were not
    // assigned under the lock, and readers run while appends are in flight all the time.
    await withClient((client) =>
      client.query(`
        CREATE FUNCTION "${schema}".test_jitter() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(random() * 0.01); RETURN NULL; END $$;
        CREATE TRIGGER test_jitter AFTER INSERT ON "${schema}".events FOR EACH STATEMENT EXECUTE FUNCTION "${schema}".test_jitter();`),
    );
    const writers = await Promise.all(range(4).map(() => otherStore(schema, undefined, 2)));
    const readers = await Promise.all(range(2).map(() => otherStore(schema, undefined, 4)));
    await store.append(range(30).map((n) => event(['A', 'B', 'C'][n % 3]!, [`w:seed`, `k:${n % 5}`], { n })));

    const random = seededRandom(20260412);
    const slowBody = (every: number) => async (_event: SequencedEvent, index: number) => {
      if (index % every === 0) await sleep(3);
    };
    const followers: Follower[] = [
      startFollower(readers[0]!, 'all, batchSize 1', Query.all(), { batchSize: 1 }),
      startFollower(readers[1]!, 'all, batchSize 7', Query.all(), { batchSize: 7 }),
      startFollower(readers[0]!, 'all, default batchSize, slow body', Query.all(), {}, slowBody(25)),
      startFollower(readers[1]!, 'type A, batchSize 5', Query.of(QueryItem.types('A')), { batchSize: 5 }),
      startFollower(readers[0]!, 'tag k:2, batchSize 3', Query.of(QueryItem.tags('k:2')), { batchSize: 3 }),
      startFollower(readers[1]!, 'type B or tag k:1, batchSize 4, slow body', Query.of(QueryItem.types('B'), QueryItem.tags('k:1')), { batchSize: 4 }, slowBody(10)),
      startFollower(store, 'type C with tag w:1, batchSize 2', Query.of(QueryItem.types('C').tags('w:1')), { batchSize: 2 }),
      startFollower(store, 'all, after 12, batchSize 1000', Query.all(), { after: 12n, batchSize: 1000 }),
    ];

    const duration = 3000;
    const deadline = Date.now() + duration;
    let appends = 0;
    let conflicts = 0;
    const loops = writers.flatMap((writer, w) =>
      range(3).map(async (loop) => {
        let n = 0;
        while (Date.now() < deadline) {
          n += 1;
          const count = 1 + Math.floor(random() * 3);
          const events = range(count).map(() => event(['A', 'B', 'C'][Math.floor(random() * 3)]!, [`w:${w}`, `k:${Math.floor(random() * 5)}`], { w, loop, n }));
          if (n % 7 === 0) {
            // Some conditional appends too (a command per batch is then checked on its own).
            const guard = Query.of(QueryItem.tags(`k:${n % 5}`).types('A'));
            const { head } = await writer.read(guard, { limit: 1, backwards: true });
            try {
              await writer.append(events, { failIfEventsMatch: guard, after: head });
              appends += 1;
            } catch (error) {
              if (!(error instanceof AppendConditionFailedError)) throw error;
              conflicts += 1;
            }
          } else {
            await writer.append(events);
            appends += 1;
          }
          if (random() < 0.3) await sleep(Math.floor(random() * 3));
        }
      }),
    );

    // Two more subscribers join in the middle of the run, starting in the middle of the log.
    await sleep(duration / 3);
    const middle = (await store.head()) / 2n;
    assert.ok(middle > 30n, `the writers got going (head ${middle * 2n})`);
    followers.push(
      startFollower(readers[0]!, `all, after ${middle} (joined late), batchSize 10`, Query.all(), { after: middle, batchSize: 10 }),
      startFollower(readers[1]!, `type B or C with tag k:3, after ${middle} (joined late), batchSize 1`, Query.of(QueryItem.types('B', 'C').tags('k:3')), { after: middle, batchSize: 1 }),
    );

    await Promise.all(loops);
    const seenWhileWriting = followers.map((follower) => follower.seen.length);
    const final = await store.read(Query.all());
    assertSamePositions(
      final.events.map((event) => event.position),
      positions(1n, final.head),
      'the log itself is gap-free',
    );
    assert.ok(final.head > 300n, `enough events to matter: ${final.head} (${appends} appends, ${conflicts} conflicts)`);

    for (const [index, follower] of followers.entries()) {
      assert.ok(seenWhileWriting[index]! > 0, `${follower.label}: saw events while the writers were still writing`);
      await settleAndCheck(store, follower);
    }
    for (const follower of followers) assert.equal(await follower.done, undefined);
    // Reads and events agree on content too, not just on positions.
    const lateAll = followers[8]!;
    assert.deepEqual(
      lateAll.seen.map((event) => [event.position, event.id, event.type]),
      final.events.filter((event) => event.position > lateAll.after).map((event) => [event.position, event.id, event.type]),
    );
  });
});

describe('catch-up and live', () => {
  test('from `after`: the backlog in pages, then live appends, in order; a filter sees only its events', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append(range(40).map((n) => event(n % 2 === 0 ? 'Ev' : 'Other', [`n:${n % 3}`], { n })));

    const all = startFollower(store, 'all after 15', Query.all(), { after: 15n, batchSize: 7, pollIntervalMs: 60_000 });
    const filtered = startFollower(store, 'Ev with n:1', Query.of(QueryItem.types('Ev').tags('n:1')), { batchSize: 2, pollIntervalMs: 60_000 });
    await waitFor('the backlog', () => all.seen.length === 25);
    assert.deepEqual(all.seen.map((event) => event.position), positions(16n, 40n), 'the backlog after 15, in order');
    assert.deepEqual(all.seen.map((event) => (event.data as { n: number }).n), range(25).map((n) => n + 15), 'with their data');
    const filteredBacklog = await expectedPositions(store, filtered.query, 0n);
    assert.ok(filteredBacklog.length >= 5);
    await waitFor('the filtered backlog', () => filtered.seen.length === filteredBacklog.length);
    assert.ok(filtered.seen.every((event) => event.type === 'Ev' && event.tags.includes('n:1')));

    // Live: single appends and a multi-event append, with matching and non-matching events.
    for (let round = 0; round < 5; round++) {
      await store.append(event('Ev', ['n:1'], { live: round }));
      await store.append([event('Other', ['n:1'], { live: round }), event('Ev', ['n:2'], { live: round })]);
      await sleep(20);
    }
    await waitFor('the live events', () => all.seen.length === 40);
    assert.deepEqual(all.seen.map((event) => event.position), positions(16n, 55n));
    await settleAndCheck(store, filtered);
    assert.deepEqual(filtered.seen.slice(-5).map((event) => (event.data as { live: number }).live), [0, 1, 2, 3, 4]);
    await settleAndCheck(store, all);
  });

  test('after = head: only later events; after beyond the head: waits for the log to get there', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append(range(5).map((n) => event('E', [], { n })));
    const fromHead = startFollower(store, 'after head', Query.all(), { after: 5n, pollIntervalMs: 60_000 });
    const ahead = startFollower(store, 'after 8', Query.all(), { after: 8n, pollIntervalMs: 60_000 });
    await sleep(150);
    assert.equal(fromHead.seen.length, 0);
    for (let n = 0; n < 5; n++) await store.append(event('E', [], { n: 5 + n }));
    await waitFor('events after the head', () => fromHead.seen.length === 5 && ahead.seen.length === 2);
    assert.deepEqual(fromHead.seen.map((e) => e.position), positions(6n, 10n));
    assert.deepEqual(ahead.seen.map((e) => e.position), [9n, 10n]);
    await Promise.all([fromHead.stop(), ahead.stop()]);
  });
});

describe('waking up: notifications, polling, a lost listener', () => {
  test('with notifications an append arrives at once although the poll interval is 60 s; without them (trigger disabled) it does not', { timeout: LIMIT }, async () => {
    const { store, schema, app } = await freshStore();
    await store.append(event('E', []));
    const follower = startFollower(store, 'poll 60 s', Query.all(), { pollIntervalMs: 60_000 });
    await waitFor('the first event', () => follower.seen.length === 1);
    await waitFor('the LISTEN connection', async () => (await backendsOf(app)).some((backend) => backend.query.startsWith('LISTEN')));
    await sleep(50); // waiting for an append now

    const latencies: number[] = [];
    for (let round = 0; round < 5; round++) {
      const started = Date.now();
      await store.append(event('E', [], { round }));
      await waitFor(`event ${round + 2}`, () => follower.seen.length === round + 2, 2000);
      latencies.push(Date.now() - started);
      await sleep(30);
    }
    assert.ok(Math.max(...latencies) < 1000, `latencies ${latencies.join(', ')} ms`);

    // The control: without the notification, the same subscriber sleeps through an append.
    await withClient((client) => client.query(`ALTER TABLE "${schema}".head DISABLE TRIGGER head_moved`));
    await store.append(event('E', [], { silent: true }));
    await sleep(1200);
    assert.equal(follower.seen.length, 6, 'no notification, no wake-up before the poll interval');
    // The next notification wakes it, and the read picks up both events.
    await withClient((client) => client.query(`ALTER TABLE "${schema}".head ENABLE TRIGGER head_moved`));
    await store.append(event('E', [], { loud: true }));
    await waitFor('both events', () => follower.seen.length === 8, 2000);
    await settleAndCheck(store, follower);
  });

  test('without notifications, events arrive by polling within the poll interval', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    await withClient((client) => client.query(`ALTER TABLE "${schema}".head DISABLE TRIGGER head_moved`));
    const polling = startFollower(store, 'poll 150 ms', Query.all(), { pollIntervalMs: 150 });
    const filtered = startFollower(store, 'poll 150 ms, type P', Query.of(QueryItem.types('P')), { pollIntervalMs: 150, batchSize: 1 });
    await sleep(100);
    const latencies: number[] = [];
    for (let round = 0; round < 6; round++) {
      const started = Date.now();
      await store.append([event('P', [], { round }), event('Q', [], { round })]);
      await waitFor(`round ${round}`, () => polling.seen.length === 2 * (round + 1) && filtered.seen.length === round + 1, 3000);
      latencies.push(Date.now() - started);
    }
    assert.ok(Math.max(...latencies) < 1000, `latencies ${latencies.join(', ')} ms with a 150 ms poll`);
    await settleAndCheck(store, polling);
    await settleAndCheck(store, filtered);
  });

  test('the LISTEN connection killed again and again while appending: nothing lost or repeated, and the listener comes back', { timeout: LIMIT }, async () => {
    const { store, app } = await freshStore();
    await store.append(event('E', []));
    const slowPoll = startFollower(store, 'poll 60 s', Query.all(), { pollIntervalMs: 60_000 });
    const fastPoll = startFollower(store, 'poll 250 ms, batchSize 1', Query.all(), { pollIntervalMs: 250, batchSize: 1 });
    await waitFor('the first event', () => slowPoll.seen.length === 1 && fastPoll.seen.length === 1);
    const listeners = async (): Promise<number[]> => (await backendsOf(app)).filter((backend) => backend.query.startsWith('LISTEN')).map((backend) => backend.pid);
    await waitFor('the LISTEN connection', async () => (await listeners()).length === 1);
    const [firstListener] = await listeners();

    let kills = 0;
    const killing = (async () => {
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        kills += await terminateBackends(app, `query LIKE 'LISTEN%'`);
        await sleep(25);
      }
    })();
    let appended = 1;
    while (kills === 0 || appended < 25) {
      await store.append(event('E', [], { n: appended }));
      appended += 1;
      await sleep(40);
    }
    await killing;
    assert.ok(kills >= 3, `the listener was killed ${kills} times`);

    // Everything arrives (by polling, or by the wake-up every reconnect gives).
    await waitFor('every event', () => slowPoll.seen.length === appended && fastPoll.seen.length === appended, 5000);
    // The listener is back (a new backend), and notifications work again.
    await waitFor('a new LISTEN connection', async () => {
      const now = await listeners();
      return now.length === 1 && now[0] !== firstListener;
    });
    await sleep(50);
    const started = Date.now();
    await store.append(event('E', [], { after: 'reconnect' }));
    await waitFor('the event after the reconnect', () => slowPoll.seen.length === appended + 1, 2000);
    assert.ok(Date.now() - started < 1000, `woken by a notification again (${Date.now() - started} ms with a 60 s poll)`);
    await settleAndCheck(store, slowPoll);
    await settleAndCheck(store, fastPoll);
  });
});

describe('stray notifications', () => {
  // Bug caught: a notifier that remembers the highest head it ever heard and wakes every waiter
  // below it at once. A head that went down (a restore) or a stray numeric notification on the
  // channel then makes idle subscriptions re-read in a tight loop.
  test('a notification announcing a head far beyond the store does not make an idle subscription spin', { timeout: LIMIT }, async () => {
    const { store, schema } = await freshStore();
    await store.append(event('A', []));
    let reads = 0;
    const read = store.read.bind(store);
    (store as unknown as { read: typeof store.read }).read = (query, options) => {
      reads += 1;
      return read(query, options);
    };
    const controller = new AbortController();
    const seen: bigint[] = [];
    const following = (async () => {
      for await (const delivered of store.subscribe(Query.all(), { signal: controller.signal, pollIntervalMs: 1000 })) seen.push(delivered.position);
    })();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await withClient((client) => client.query('SELECT pg_notify($1, $2)', [schema, '1000000']));
    const before = reads;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const during = reads - before;
    controller.abort();
    await following;
    assert.deepEqual(seen, [1n]);
    assert.ok(during <= 4, `an idle subscription read ${during} times in 1 s after a stray notification (poll interval 1 s)`);
  });
});

describe('lost connections', () => {
  test('every backend of the store and of the writers terminated 3 times while following: each subscriber resumes and sees every event exactly once', { timeout: LIMIT }, async () => {
    const { store, schema, app } = await freshStore();
    const writers = await Promise.all(range(2).map(() => otherStore(schema, app, 2)));
    await store.append(range(10).map((n) => event('Seed', ['seed'], { n })));
    const followers = [
      startFollower(store, 'all, batchSize 1', Query.all(), { batchSize: 1, pollIntervalMs: 200 }),
      startFollower(store, 'all, batchSize 50', Query.all(), { batchSize: 50, pollIntervalMs: 200 }),
      startFollower(store, 'type W1, batchSize 3', Query.of(QueryItem.types('W1')), { batchSize: 3, pollIntervalMs: 200 }),
    ];
    const deadline = Date.now() + 2400;
    const writerErrors: string[] = [];
    let appends = 0;
    const loops = writers.flatMap((writer, w) =>
      range(2).map(async () => {
        while (Date.now() < deadline) {
          try {
            await writer.append([event(`W${w}`, [`w:${w}`]), event('X', [])]);
            appends += 1;
          } catch (error) {
            // An append cut off by the kill may have failed (or, ambiguously, committed): the
            // final read says which; the subscribers must agree with it either way.
            writerErrors.push((error as Error).name);
            await sleep(20);
          }
          await sleep(5);
        }
      }),
    );
    const killed: number[] = [];
    const seenAtKill: number[] = [];
    for (let round = 0; round < 3; round++) {
      await sleep(550);
      seenAtKill.push(followers[0]!.seen.length);
      killed.push(await terminateBackends(app));
    }
    await Promise.all(loops);
    assert.ok(killed.every((count) => count >= 3), `backends terminated per round: ${killed.join(', ')}`);

    const checker = await otherStore(schema);
    const final = await checker.read(Query.all());
    assertSamePositions(final.events.map((e) => e.position), positions(1n, final.head), 'the log is gap-free');
    assert.ok(final.head > BigInt(seenAtKill.at(-1)!) + 20n, `the writers went on after the kills (head ${final.head}, ${appends} appends, errors: ${writerErrors.join(', ') || 'none'})`);
    for (const follower of followers) {
      assert.equal(follower.endedAt, undefined, `${follower.label} is still following`);
      await settleAndCheck(checker, follower);
      await follower.done; // ended without an error
    }
    assert.ok(followers[0]!.seen.length > seenAtKill.at(-1)!, 'resumed after the last kill');
  });
});

describe('ending a subscription', () => {
  test('abort while waiting for events: the loop ends within 500 ms, without an error', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append(range(3).map(() => event('E', [])));
    const follower = startFollower(store, 'waiting', Query.all(), { pollIntervalMs: 60_000 });
    await waitFor('the backlog', () => follower.seen.length === 3);
    await sleep(200);
    const aborted = Date.now();
    follower.controller.abort();
    await follower.done;
    assert.ok(follower.endedAt! - aborted < 500, `ended ${follower.endedAt! - aborted} ms after the abort`);
    await store.append(event('E', []));
    await sleep(100);
    assert.equal(follower.seen.length, 3, 'nothing after the abort');
  });

  test('abort while a read is blocked (events table locked): the read is cancelled, the loop ends within 500 ms', { timeout: LIMIT }, async () => {
    const { store, schema, app } = await freshStore();
    await store.append(range(3).map(() => event('E', [])));
    await withClient(async (client) => {
      await client.query('BEGIN');
      await client.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
      try {
        const follower = startFollower(store, 'blocked', Query.all());
        await waitFor('the subscription read to wait on the lock', async () => {
          const { rows } = await withClient((observer) =>
            observer.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [app]),
          );
          return rows[0]!.n > 0;
        });
        const aborted = Date.now();
        follower.controller.abort();
        await follower.done;
        assert.ok(follower.endedAt! - aborted < 500, `ended ${follower.endedAt! - aborted} ms after the abort`);
        assert.equal(follower.seen.length, 0);
      } finally {
        await client.query('ROLLBACK');
      }
    });
    // The cancelled read's connection is healthy again: the store still reads.
    assert.equal((await store.read(Query.all())).events.length, 3);
  });

  test('abort inside the loop body ends the loop at the next event; an aborted signal yields nothing', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append(range(10).map(() => event('E', [])));
    const controller = new AbortController();
    const seen: bigint[] = [];
    for await (const e of store.subscribe(Query.all(), { signal: controller.signal, batchSize: 3 })) {
      seen.push(e.position);
      if (seen.length === 2) controller.abort();
    }
    assert.deepEqual(seen, [1n, 2n]);

    const aborted = new AbortController();
    aborted.abort();
    const started = Date.now();
    for await (const e of store.subscribe(Query.all(), { signal: aborted.signal })) assert.fail(`yielded ${e.position} on an aborted signal`);
    assert.ok(Date.now() - started < 500);
  });

  test('break ends the subscription at once; the store then closes promptly', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append(range(10).map(() => event('E', [])));
    const seen: bigint[] = [];
    const started = Date.now();
    for await (const e of store.subscribe(Query.all(), { batchSize: 4, pollIntervalMs: 60_000 })) {
      seen.push(e.position);
      if (seen.length === 6) break;
    }
    assert.deepEqual(seen, positions(1n, 6n));
    assert.ok(Date.now() - started < 500, `the loop ended ${Date.now() - started} ms after it started`);
    // Appends after the break reach nobody; a new subscription from where the loop stopped sees them.
    await store.append(event('E', []));
    const resumed: bigint[] = [];
    for await (const e of store.subscribe(Query.all(), { after: 6n, pollIntervalMs: 60_000 })) {
      resumed.push(e.position);
      if (e.position === 11n) break;
    }
    assert.deepEqual(resumed, positions(7n, 11n));
    assert.deepEqual(seen, positions(1n, 6n));
    const closing = Date.now();
    await store.close();
    assert.ok(Date.now() - closing < 1000, 'close() is not held up by the ended subscriptions');
  });

  test('store.close() ends live subscriptions without an error; subscribe on a closed store throws at once', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    await store.append(range(3).map(() => event('E', [])));
    const followers = [
      startFollower(store, 'waiting 1', Query.all(), { pollIntervalMs: 60_000 }),
      startFollower(store, 'waiting 2', Query.of(QueryItem.types('Nope')), { pollIntervalMs: 60_000 }),
    ];
    await waitFor('the backlog', () => followers[0]!.seen.length === 3);
    await sleep(200);
    const closing = Date.now();
    await store.close();
    await Promise.all(followers.map((follower) => follower.done));
    for (const follower of followers) assert.ok(follower.endedAt! - closing < 500, `${follower.label} ended ${follower.endedAt! - closing} ms after close()`);
    assert.throws(() => store.subscribe(Query.all()), EventStoreClosedError);
  });

  test('bad arguments throw InvalidInputError synchronously (subscribe returns the iterator directly, not a promise)', { timeout: LIMIT }, async () => {
    const { store } = await freshStore();
    const subscription = store.subscribe(Query.all(), { pollIntervalMs: 60_000 });
    assert.ok(!(subscription instanceof Promise));
    assert.equal(typeof subscription[Symbol.asyncIterator], 'function');
    await subscription.return(undefined);

    const bad: Array<[string, () => unknown]> = [
      ['query undefined', () => store.subscribe(undefined as unknown as Query)],
      ['query a plain object', () => store.subscribe({ items: [] } as unknown as Query)],
      ['options null', () => store.subscribe(Query.all(), null as unknown as SubscribeOptions)],
      ['after negative', () => store.subscribe(Query.all(), { after: -1n })],
      ['after a string', () => store.subscribe(Query.all(), { after: '5' as unknown as bigint })],
      ['after a fraction', () => store.subscribe(Query.all(), { after: 1.5 as unknown as bigint })],
      ['batchSize 0', () => store.subscribe(Query.all(), { batchSize: 0 })],
      ['batchSize negative', () => store.subscribe(Query.all(), { batchSize: -3 })],
      ['batchSize a fraction', () => store.subscribe(Query.all(), { batchSize: 2.5 })],
      ['batchSize a string', () => store.subscribe(Query.all(), { batchSize: '10' as unknown as number })],
      ['pollIntervalMs 0', () => store.subscribe(Query.all(), { pollIntervalMs: 0 })],
      ['pollIntervalMs NaN', () => store.subscribe(Query.all(), { pollIntervalMs: Number.NaN })],
      ['pollIntervalMs Infinity', () => store.subscribe(Query.all(), { pollIntervalMs: Number.POSITIVE_INFINITY })],
      ['pollIntervalMs a string', () => store.subscribe(Query.all(), { pollIntervalMs: '100' as unknown as number })],
      ['signal not an AbortSignal', () => store.subscribe(Query.all(), { signal: { aborted: false } as unknown as AbortSignal })],
    ];
    for (const [label, call] of bad) {
      let result: unknown;
      assert.throws(() => (result = call()), InvalidInputError, `${label}: must throw synchronously`);
      assert.equal(result, undefined, label);
    }
  });
});
