// The store through a real PgBouncer (test/integration/fixtures/pgbouncer.ts) in front of the
// test server:
// - session pooling: everything works as on a direct connection (the whole contract suite, live
//   subscriptions, consumers, cancelled reads and appends, races between store instances);
// - transaction pooling: works with `preparedStatements: false` and a `sessionConnectionString`
//   that reaches PostgreSQL directly for LISTEN and consumer sessions; what breaks without them
//   (named prepared statements, LISTEN, session advisory locks) is pinned down here too;
// - a server whose default_transaction_isolation is serializable, directly and through both modes.
// Skipped when pgbouncer is not installed, except under CI=true (see the fixture).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  AppendConditionFailedError,
  EventStore,
  EventStoreDatabaseError,
  OperationAbortedError,
  Query,
  QueryItem,
  defineCommandHandler,
  defineProjection,
  type AppendResult,
  type EventStoreOptions,
  type SequencedEvent,
} from '../../src/index.ts';
import { defineEventStoreContract } from '../contract/event-store-contract.ts';
import { databaseUrl, dropSchema, keepEventLoopAliveDuringTests, startGate, uniqueSchemaName, withClient } from '../helpers.ts';
import { waitFor } from './fixtures/backends.ts';
import { readModel } from './fixtures/read-model.ts';
import { pgbouncerSkipReason, startPgBouncer, type PgBouncer } from './fixtures/pgbouncer.ts';

keepEventLoopAliveDuringTests();

const root = fileURLToPath(new URL('../../', import.meta.url));
const consumerChild = fileURLToPath(new URL('./fixtures/consumer-child.ts', import.meta.url));

const skip = pgbouncerSkipReason();

type PoolerOptions = EventStoreOptions;

function connect(options: PoolerOptions): Promise<EventStore> {
  return EventStore.connect(options);
}

/** `url` with another database and/or query parameters. */
function withUrl(url: string, database?: string, parameters: Record<string, string> = {}): string {
  const changed = new URL(url);
  if (database !== undefined) changed.pathname = `/${database}`;
  for (const [key, value] of Object.entries(parameters)) changed.searchParams.set(key, value);
  return changed.toString();
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Rejects when `promise` has not settled within `ms` (a generous "does not hang" bound). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `count` store instances on one fresh schema (created through `options.connectionString` by the first). */
async function openStores(count: number, options: PoolerOptions): Promise<{ stores: EventStore[]; schema: string; dispose: () => Promise<void> }> {
  const schema = options.schema ?? uniqueSchemaName('pgb');
  const first = await connect({ ...options, schema });
  const others = await Promise.all(Array.from({ length: count - 1 }, () => connect({ ...options, schema, migrate: false })));
  const stores = [first, ...others];
  return {
    stores,
    schema,
    dispose: async () => {
      await Promise.all(stores.map((store) => store.close()));
      await dropSchema(schema);
    },
  };
}

/**
 * Every racer reads its boundary, all wait at a gate, then all append under the condition of
 * their read: per boundary exactly one must win and the others fail with
 * AppendConditionFailedError; only the winners' events are stored, at gap-free positions.
 */
async function assertOneWinnerPerBoundary(stores: readonly EventStore[], boundaries: number, racersPerBoundary: number): Promise<void> {
  const racers = Array.from({ length: boundaries * racersPerBoundary }, (_, index) => ({
    store: stores[index % stores.length]!,
    boundary: `seat:${index % boundaries}`,
    racer: index,
  }));
  const firstHead = await stores[0]!.head();
  const reads = await Promise.all(racers.map(({ store, boundary }) => store.read(Query.of(QueryItem.types('SeatTaken').tags(boundary)))));
  const gate = startGate();
  const appends = racers.map(async ({ store, boundary, racer }, index): Promise<AppendResult> => {
    await gate.wait();
    return store.append(
      { type: 'SeatTaken', tags: [boundary], data: { racer } },
      { failIfEventsMatch: Query.of(QueryItem.types('SeatTaken').tags(boundary)), after: reads[index]!.head },
    );
  });
  gate.open();
  const results = await Promise.allSettled(appends);
  const winners = new Map<string, number>();
  for (const [index, result] of results.entries()) {
    const { boundary, racer } = racers[index]!;
    if (result.status === 'fulfilled') {
      assert.equal(winners.has(boundary), false, `${boundary}: a second winner (racer ${racer})`);
      winners.set(boundary, racer);
    } else {
      assert.ok(result.reason instanceof AppendConditionFailedError, `racer ${racer} failed with ${String(result.reason)}`);
    }
  }
  assert.equal(winners.size, boundaries, 'every boundary has exactly one winner');
  const { events, head } = await stores[0]!.read(Query.of(QueryItem.types('SeatTaken')), { after: firstHead });
  assert.equal(head, firstHead + BigInt(boundaries));
  assert.deepEqual(events.map((event) => event.position), Array.from({ length: boundaries }, (_, index) => firstHead + BigInt(index + 1)));
  assert.deepEqual(
    new Map(events.map((event) => [event.tags[0]!, (event.data as { racer: number }).racer])),
    winners,
    'only the winners\' events are stored',
  );
}

/** Waits until a backend (seen directly on the server) ran the LISTEN on `schema` last. */
function listenerBackend(schema: string): () => Promise<void> {
  return () =>
    waitFor('the LISTEN of the subscription', async () =>
      withClient(async (client) => (await client.query('SELECT 1 FROM pg_stat_activity WHERE query = $1', [`LISTEN "${schema}"`])).rows.length > 0), 20_000, 50);
}

/**
 * Through transaction pooling the LISTEN's server connection runs other clients' statements
 * next, so pg_stat_activity does not show it; instead, notify the channel directly (payload 0:
 * wakes no subscription) until PgBouncer logs that it dropped a notification: then the LISTEN is
 * registered on a server connection that no client is linked to.
 */
function droppedNotification(bouncer: PgBouncer, schema: string): () => Promise<void> {
  const dropped = (): number => bouncer.log().match(/got packet 'A' from server when not linked/g)?.length ?? 0;
  return async () => {
    const before = dropped();
    await waitFor('a notification dropped by PgBouncer', async () => {
      await withClient((client) => client.query('SELECT pg_notify($1, $2)', [schema, '0']));
      await sleep(50);
      return dropped() > before;
    }, 20_000, 50);
  };
}

/**
 * Subscribes with a poll interval of 10 minutes, so that only a notification can deliver a live
 * event quickly; catches up on one event, waits until `listening` says its LISTEN ran, then appends `live` events
 * one at a time through `writer` and returns those delivered within `waitMs` each.
 */
async function liveEvents(store: EventStore, writer: EventStore, listening: () => Promise<void>, live: number, waitMs: number): Promise<bigint[]> {
  await writer.append({ type: 'Live', tags: [], data: { n: 0 } });
  const controller = new AbortController();
  const iterator = store.subscribe(Query.of(QueryItem.types('Live')), { signal: controller.signal, pollIntervalMs: 600_000 });
  const delivered: bigint[] = [];
  try {
    const first = await within(iterator.next(), 20_000, 'catching up');
    assert.equal(first.done, false);
    let pending = iterator.next();
    await listening();
    // The listener's (re)connect wakes every subscription to read once more: let that read pass,
    // so that what follows can only be delivered by a notification.
    await sleep(500);
    for (let n = 1; n <= live; n++) {
      const { position } = await writer.append({ type: 'Live', tags: [], data: { n } });
      const next = await Promise.race([pending, sleep(waitMs).then(() => undefined)]);
      if (next === undefined) continue; // not delivered in time; `pending` stays the same
      assert.equal(next.done, false);
      assert.equal((next.value as SequencedEvent).position, position);
      delivered.push(position);
      pending = iterator.next();
    }
  } finally {
    controller.abort();
    await iterator.return(undefined);
  }
  return delivered;
}

/** Backends running a statement on `schema` that waits for a lock (seen directly on the server). */
async function lockWaiters(schema: string, statement: string): Promise<number> {
  return withClient(async (client) => {
    const { rows } = await client.query(
      `SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()`,
      [`%"${schema}".${statement}%`],
    );
    return rows.length;
  });
}

/**
 * A read blocked on a lock, then aborted: it must reject with OperationAbortedError while the lock
 * is still held, and its statement must stop on the server, which only a cancel request that
 * reached the right backend (through the pooler) can do.
 */
async function assertBlockedReadIsCancelled(store: EventStore, schema: string): Promise<void> {
  await store.append({ type: 'A', tags: [], data: {} });
  const blocker = new pg.Client({ connectionString: databaseUrl() });
  await blocker.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
    const controller = new AbortController();
    const reading = store.read(Query.all(), { signal: controller.signal });
    reading.catch(() => undefined);
    await waitFor('the read to wait for the lock', async () => (await lockWaiters(schema, 'events')) === 1, 20_000, 20);
    controller.abort();
    await assert.rejects(within(reading, 10_000, 'the aborted read'), OperationAbortedError);
    await waitFor('the cancelled read to stop on the server', async () => (await lockWaiters(schema, 'events')) === 0, 10_000, 20);
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    await blocker.end();
  }
  // The connection is usable afterwards (the cancel did not hit a later statement).
  assert.equal((await store.read(Query.all())).events.length, 1);
}

/** An append waiting for the head row's lock, then aborted: OperationAbortedError, nothing written. */
async function assertBlockedAppendIsCancelled(store: EventStore, schema: string): Promise<void> {
  const blocker = new pg.Client({ connectionString: databaseUrl() });
  await blocker.connect();
  const headBefore = await store.head();
  try {
    await blocker.query('BEGIN');
    await blocker.query(`SELECT * FROM "${schema}".head FOR UPDATE`);
    const controller = new AbortController();
    const appending = store.append({ type: 'Aborted', tags: [], data: {} }, undefined, { signal: controller.signal });
    appending.catch(() => undefined);
    await waitFor('the append to wait for the head lock', async () => (await lockWaiters(schema, 'append_batch')) === 1, 20_000, 20);
    controller.abort();
    await assert.rejects(within(appending, 10_000, 'the aborted append'), OperationAbortedError);
    await waitFor('the cancelled append to stop on the server', async () => (await lockWaiters(schema, 'append_batch')) === 0, 10_000, 20);
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    await blocker.end();
  }
  assert.equal(await store.head(), headBefore, 'the aborted append wrote nothing');
  assert.equal((await store.read(Query.of(QueryItem.types('Aborted')))).events.length, 0);
  const { position } = await store.append({ type: 'After', tags: [], data: {} });
  assert.equal(position, headBefore + 1n);
}

/**
 * A client of `bouncer` takes a session advisory lock and dies without a word (its socket just
 * closes, as when its process is killed while idle). Then: can a direct session take the lock,
 * and does the next client of the bouncer (given the same server connection) get it too?
 */
async function lockAfterClientDeath(bouncer: PgBouncer): Promise<{ direct: boolean; nextClient: boolean }> {
  const key = Math.floor(Math.random() * 1_000_000);
  const dying = new pg.Client({ connectionString: bouncer.url() });
  dying.on('error', () => undefined);
  await dying.connect();
  assert.equal((await dying.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(4343, $1) AS taken', [key])).rows[0]!.taken, true);
  (dying as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await waitFor('PgBouncer to see the client gone', async () => {
    const pools = await bouncer.admin<{ database: string; cl_active: number; sv_idle: number }>('SHOW POOLS');
    const pool = pools.find((row) => row.database === 'postgres');
    return pool !== undefined && Number(pool.cl_active) === 0 && Number(pool.sv_idle) === 1;
  }, 10_000, 20);
  const direct = await withClient(async (client) => {
    const taken = (await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(4343, $1) AS taken', [key])).rows[0]!.taken;
    if (taken) await client.query('SELECT pg_advisory_unlock(4343, $1)', [key]);
    return taken;
  });
  const next = new pg.Client({ connectionString: bouncer.url() });
  await next.connect();
  try {
    const nextClient = (await next.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(4343, $1) AS taken', [key])).rows[0]!.taken;
    await next.query('SELECT pg_advisory_unlock_all()');
    return { direct, nextClient };
  } finally {
    await next.end();
  }
}

interface ConsumerRun {
  handled: bigint[];
  controller: AbortController;
  running: Promise<void>;
}

/**
 * Two instances of one durable consumer, each on its own store (as two processes): one holds the
 * lease and processes everything, writing a read model in its transaction; the other waits. When
 * the first stops, the second takes over at the checkpoint. Every event is written to the read
 * model exactly once (its primary key would reject a second time).
 */
async function assertConsumerProcessesAndCheckpoints(stores: readonly [EventStore, EventStore], schema: string): Promise<void> {
  const [storeA, storeB] = stores;
  await withClient((client) => client.query(`CREATE TABLE "${schema}".seen (position bigint PRIMARY KEY, instance text NOT NULL)`));
  const start = (store: EventStore, instance: string): ConsumerRun => {
    const handled: bigint[] = [];
    const controller = new AbortController();
    const consumer = store.consumer('projector', {
      query: Query.of(QueryItem.types('Counted')),
      instanceId: instance,
      takeoverIntervalMs: 100,
      handle: async (event, { transaction }) => {
        handled.push(event.position);
        await transaction.query(`INSERT INTO "${schema}".seen (position, instance) VALUES ($1, $2)`, [event.position.toString(), instance]);
      },
    });
    return { handled, controller, running: consumer.run({ signal: controller.signal }) };
  };
  const seen = async (): Promise<{ position: string; instance: string }[]> =>
    withClient(async (client) => (await client.query(`SELECT position, instance FROM "${schema}".seen ORDER BY position`)).rows);

  const a = start(storeA, 'a');
  await waitFor('instance a to hold the lease', async () => (await storeA.consumerStatus('projector')).owner === 'a', 20_000, 20);
  const b = start(storeB, 'b');
  for (let batch = 0; batch < 4; batch++) {
    await storeB.append(Array.from({ length: 5 }, (_, n) => ({ type: 'Counted', tags: [], data: { batch, n } })));
  }
  await waitFor('20 events processed', async () => (await storeA.consumerStatus('projector')).position === 20n, 20_000, 20);
  assert.deepEqual(await seen(), Array.from({ length: 20 }, (_, index) => ({ position: String(index + 1), instance: 'a' })));
  assert.deepEqual(b.handled, [], 'the standby processed nothing while the lease was held');
  const status = await storeB.consumerStatus('projector');
  assert.equal(status.state, 'running');
  assert.equal(status.owner, 'a');
  assert.equal(status.lag, 0n);

  a.controller.abort();
  await within(a.running, 20_000, 'stopping instance a');
  await waitFor('instance b to take over', async () => (await storeA.consumerStatus('projector')).owner === 'b', 20_000, 20);
  await storeA.append(Array.from({ length: 5 }, (_, n) => ({ type: 'Counted', tags: [], data: { batch: 4, n } })));
  await waitFor('25 events processed', async () => (await storeA.consumerStatus('projector')).position === 25n, 20_000, 20);
  assert.deepEqual(b.handled, [21n, 22n, 23n, 24n, 25n], 'b resumed at the checkpoint a left');
  assert.equal((await seen()).length, 25);
  b.controller.abort();
  await within(b.running, 20_000, 'stopping instance b');
  assert.equal((await storeA.consumerStatus('projector')).state, 'idle');
}

/** Appends, reads of several shapes, streams, head and execute, all at once on one store. */
async function assertEverydayOperations(store: EventStore): Promise<void> {
  const kinds = ['A', 'B', 'C', 'D', 'E'];
  const appended = await Promise.all(
    Array.from({ length: 40 }, (_, n) => store.append({ type: kinds[n % kinds.length]!, tags: [`n:${n}`, `kind:${kinds[n % kinds.length]}`], data: { n } })),
  );
  assert.deepEqual(appended.map((result) => result.position).sort((x, y) => (x < y ? -1 : 1)), Array.from({ length: 40 }, (_, index) => BigInt(index + 1)));
  assert.equal(await store.head(), 40n);
  // Many query shapes, each read concurrently on several pooled connections.
  const shapes = [
    Query.all(),
    Query.of(QueryItem.types('A')),
    Query.of(QueryItem.types('A', 'B').tags('kind:B')),
    Query.of(QueryItem.tags('n:7')),
    Query.of(QueryItem.types('C'), QueryItem.types('D').tags('kind:D')),
    Query.of(QueryItem.anyPredicateOf({ n: 3 }, { n: 4 })),
  ];
  const expected = [40, 8, 8, 1, 16, 2];
  const reads = await Promise.all(shapes.flatMap((query) => [query, query, query].map((q) => store.read(q))));
  assert.deepEqual(reads.map((read) => read.events.length), expected.flatMap((count) => [count, count, count]));
  const backwards = await store.read(Query.of(QueryItem.types('E')), { backwards: true, limit: 2 });
  assert.deepEqual(backwards.events.map((event) => event.position), [40n, 35n]);
  const streamed: bigint[] = [];
  for await (const event of store.stream(Query.all(), { batchSize: 7 })) streamed.push(event.position);
  assert.deepEqual(streamed, Array.from({ length: 40 }, (_, index) => BigInt(index + 1)));
  // execute: ten concurrent increments of one counter conflict and retry; all ten land.
  const counter = defineProjection<number>({ initialState: 0, handlers: { Counted: (count) => count + 1 }, tags: ['counter:1'] });
  const increment = defineCommandHandler({
    projections: () => ({ count: counter }),
    decide: (state) => ({ type: 'Counted', tags: ['counter:1'], data: { after: state.count } }),
  });
  const results = await Promise.all(Array.from({ length: 10 }, () => store.execute(increment, {}, { maxAttempts: 50, initialDelayMs: 1, maxDelayMs: 20 })));
  assert.deepEqual(results.map((result) => result.state.count).sort((x, y) => x - y), Array.from({ length: 10 }, (_, index) => index));
  assert.equal(await store.head(), 50n);
}

// ---------------------------------------------------------------------------------------------

describe('PgBouncer, session pooling', { skip, timeout: 240_000 }, () => {
  let bouncer: PgBouncer;
  before(async () => {
    bouncer = await startPgBouncer({ poolMode: 'session', defaultPoolSize: 40 });
  });
  after(async () => {
    await bouncer?.stop();
  });

  defineEventStoreContract('PostgreSQL EventStore through PgBouncer (session pooling)', async () => {
    const schema = uniqueSchemaName('pgbs');
    const store = await connect({ connectionString: bouncer.url(), schema });
    return {
      store,
      dispose: async () => {
        await store.close();
        await dropSchema(schema);
      },
    };
  });

  test('a subscription gets live events by notification', async () => {
    const { stores, schema, dispose } = await openStores(2, { connectionString: bouncer.url(), poolSize: 3 });
    try {
      assert.deepEqual(await liveEvents(stores[0]!, stores[1]!, listenerBackend(schema), 3, 20_000), [2n, 3n, 4n]);
    } finally {
      await dispose();
    }
  });

  test('a durable consumer processes, checkpoints, and hands over to its standby', async () => {
    const { stores, schema, dispose } = await openStores(2, { connectionString: bouncer.url(), poolSize: 3 });
    try {
      await assertConsumerProcessesAndCheckpoints([stores[0]!, stores[1]!], schema);
    } finally {
      await dispose();
    }
  });

  test('an aborted read is cancelled on the server (the cancel request passes through PgBouncer)', async () => {
    const { stores, schema, dispose } = await openStores(1, { connectionString: bouncer.url(), poolSize: 2 });
    try {
      await assertBlockedReadIsCancelled(stores[0]!, schema);
    } finally {
      await dispose();
    }
  });

  test('an aborted in-flight append is cancelled on the server and writes nothing', async () => {
    const { stores, schema, dispose } = await openStores(1, { connectionString: bouncer.url(), poolSize: 2 });
    try {
      await assertBlockedAppendIsCancelled(stores[0]!, schema);
    } finally {
      await dispose();
    }
  });

  test('a consumer process killed while it holds the lease: PgBouncer gives the lease back, the standby takes over', async () => {
    const { stores, schema, dispose } = await openStores(1, { connectionString: bouncer.url(), poolSize: 3 });
    const store = stores[0]!;
    const model = readModel(schema, 'read_model');
    await withClient((client) => model.create(client));
    await store.append(Array.from({ length: 10 }, (_, n) => ({ type: 'M', tags: [], data: { n } })));
    const child = spawn(process.execPath, ['--import', 'tsx', consumerChild], {
      cwd: root,
      env: {
        ...process.env,
        DATABASE_URL: bouncer.url(), // the child's store and consumer session go through PgBouncer
        CONSUMER_SCHEMA: schema,
        CONSUMER_NAME: 'crash',
        CONSUMER_TABLE: 'read_model',
        CONSUMER_TYPES: 'M',
        CONSUMER_BATCH_SIZE: '4',
        CONSUMER_BLOCK_AT: '1000000', // never: the child idles, holding the lease, when killed
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const standbyCalls: bigint[] = [];
    const controller = new AbortController();
    let running: Promise<void> | undefined;
    try {
      await waitFor('the child to process all 10 events', async () => {
        if (child.exitCode !== null) throw new Error(`the child exited:\n${output}`);
        return (await store.consumerStatus('crash')).position === 10n;
      }, 30_000, 50);
      running = store
        .consumer('crash', {
          query: Query.of(QueryItem.types('M')),
          instanceId: 'standby',
          takeoverIntervalMs: 100,
          handle: async (event, { transaction, attempt }) => {
            standbyCalls.push(event.position);
            await model.apply(transaction, event, 'standby', attempt);
          },
        })
        .run({ signal: controller.signal });
      await sleep(500);
      assert.deepEqual(standbyCalls, [], 'the standby waited while the child held the lease');
      assert.equal((await store.consumerStatus('crash')).owner, 'child');
      child.kill('SIGKILL');
      await exited;
      await store.append(Array.from({ length: 3 }, (_, n) => ({ type: 'M', tags: [], data: { n } })));
      await waitFor('the standby to take over and catch up', async () => (await store.consumerStatus('crash')).position === 13n, 20_000, 50);
      assert.deepEqual(standbyCalls, [11n, 12n, 13n]);
      assert.equal((await store.consumerStatus('crash')).owner, 'standby');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      controller.abort();
      await running?.catch(() => undefined);
      await dispose();
    }
  });

  test('a client that dies holding a session advisory lock loses it: PgBouncer\'s server_reset_query (DISCARD ALL) releases it', async () => {
    const single = await startPgBouncer({ poolMode: 'session', defaultPoolSize: 1 });
    try {
      assert.deepEqual(await lockAfterClientDeath(single), { direct: true, nextClient: true });
    } finally {
      await single.stop();
    }
  });

  test('with server_reset_query empty, the dead client\'s lock stays on the pooled server connection and passes to the next client', async () => {
    const leaky = await startPgBouncer({ poolMode: 'session', defaultPoolSize: 1, settings: { server_reset_query: '' } });
    try {
      assert.deepEqual(await lockAfterClientDeath(leaky), { direct: false, nextClient: true });
    } finally {
      await leaky.stop();
    }
  });

  test('conditional appends racing from four store instances: exactly one winner per boundary', async () => {
    const { stores, dispose } = await openStores(4, { connectionString: bouncer.url(), poolSize: 3 });
    try {
      for (let round = 0; round < 3; round++) await assertOneWinnerPerBoundary(stores, 5, 8);
    } finally {
      await dispose();
    }
  });
});

describe('PgBouncer, transaction pooling with preparedStatements: false and a direct sessionConnectionString', { skip, timeout: 240_000 }, () => {
  let bouncer: PgBouncer;
  // Two server connections for all clients: statements of different client connections share
  // server connections all the time, which is what breaks session state.
  before(async () => {
    bouncer = await startPgBouncer({ poolMode: 'transaction', defaultPoolSize: 2 });
  });
  after(async () => {
    await bouncer?.stop();
  });
  const options = (): PoolerOptions => ({ connectionString: bouncer.url(), preparedStatements: false, sessionConnectionString: databaseUrl() });

  defineEventStoreContract('PostgreSQL EventStore through PgBouncer (transaction pooling)', async () => {
    const schema = uniqueSchemaName('pgbt');
    const store = await connect({ ...options(), schema });
    return {
      store,
      dispose: async () => {
        await store.close();
        await dropSchema(schema);
      },
    };
  });

  test('append, read, stream, head and execute, concurrently on many pooled connections', async () => {
    const { stores, dispose } = await openStores(1, { ...options(), poolSize: 8 });
    try {
      await assertEverydayOperations(stores[0]!);
    } finally {
      await dispose();
    }
  });

  test('conditional appends racing from four store instances: exactly one winner per boundary', async () => {
    const { stores, dispose } = await openStores(4, { ...options(), poolSize: 3 });
    try {
      for (let round = 0; round < 3; round++) await assertOneWinnerPerBoundary(stores, 5, 8);
    } finally {
      await dispose();
    }
  });

  test('a subscription gets live events by notification (LISTEN on the session connection)', async () => {
    const { stores, schema, dispose } = await openStores(2, { ...options(), poolSize: 3 });
    try {
      assert.deepEqual(await liveEvents(stores[0]!, stores[1]!, listenerBackend(schema), 3, 20_000), [2n, 3n, 4n]);
    } finally {
      await dispose();
    }
  });

  test('a durable consumer processes, checkpoints, and hands over to its standby (sessions on the session connection)', async () => {
    const { stores, schema, dispose } = await openStores(2, { ...options(), poolSize: 3 });
    try {
      await assertConsumerProcessesAndCheckpoints([stores[0]!, stores[1]!], schema);
    } finally {
      await dispose();
    }
  });

  test('an aborted read is cancelled on the server (the cancel request passes through PgBouncer)', async () => {
    const { stores, schema, dispose } = await openStores(1, { ...options(), poolSize: 2 });
    try {
      await assertBlockedReadIsCancelled(stores[0]!, schema);
    } finally {
      await dispose();
    }
  });

  test('an aborted in-flight append is cancelled on the server and writes nothing', async () => {
    const { stores, schema, dispose } = await openStores(1, { ...options(), poolSize: 2 });
    try {
      await assertBlockedAppendIsCancelled(stores[0]!, schema);
    } finally {
      await dispose();
    }
  });
});

describe('PgBouncer, transaction pooling: what breaks without the options', { skip, timeout: 240_000 }, () => {
  let bouncer: PgBouncer;
  // One server connection: every client's statements run on it, which makes the failures
  // deterministic (with more, they happen whenever two clients meet on one server connection).
  before(async () => {
    bouncer = await startPgBouncer({ poolMode: 'transaction', defaultPoolSize: 1 });
  });
  after(async () => {
    await bouncer?.stop();
  });

  test('PgBouncer refuses the startup parameter `options` (why the store must not send one)', async () => {
    const client = new pg.Client({ connectionString: withUrl(bouncer.url(), undefined, { options: '-c default_transaction_isolation=read\\ committed' }) });
    client.on('error', () => undefined);
    await assert.rejects(client.connect(), /unsupported startup parameter: options/);
    await client.end().catch(() => undefined);
  });

  test('named prepared statements (preparedStatements: true) fail once two client connections share a server connection', async () => {
    const schema = uniqueSchemaName('pgbf');
    const store = await connect({ connectionString: bouncer.url(), schema, poolSize: 4, sessionConnectionString: databaseUrl() });
    try {
      await store.append({ type: 'A', tags: [], data: {} });
      const reads = await Promise.allSettled(Array.from({ length: 8 }, () => store.read(Query.of(QueryItem.types('A')))));
      const failures = reads.filter((read): read is PromiseRejectedResult => read.status === 'rejected');
      assert.ok(failures.length > 0, 'some reads fail');
      for (const { reason } of failures) {
        assert.ok(reason instanceof EventStoreDatabaseError, String(reason));
        // 42P05: "prepared statement ... already exists" (another client prepared it on this
        // server connection); 26000: "... does not exist" (it was prepared on another one).
        assert.ok(['42P05', '26000'].includes(reason.sqlState ?? ''), `${reason.sqlState}: ${reason.message}`);
        assert.match(reason.message, /preparedStatements: false/, 'the error says what to do');
      }
    } finally {
      await store.close();
      await dropSchema(schema);
    }
  });

  test('LISTEN through transaction pooling receives nothing: live events arrive only by polling', async () => {
    const schema = uniqueSchemaName('pgbf');
    // No sessionConnectionString: the LISTEN connection goes through the transaction pooler too.
    const store = await connect({ connectionString: bouncer.url(), schema, poolSize: 2, preparedStatements: false });
    const writer = await connect({ connectionString: databaseUrl(), schema, migrate: false, poolSize: 1 });
    try {
      assert.deepEqual(await liveEvents(store, writer, droppedNotification(bouncer, schema), 2, 3_000), [], 'no live event by notification');
      // Polling still delivers: a subscription with a short poll interval sees all of them.
      const seen: bigint[] = [];
      const controller = new AbortController();
      for await (const event of store.subscribe(Query.of(QueryItem.types('Live')), { signal: controller.signal, pollIntervalMs: 100 })) {
        seen.push(event.position);
        if (seen.length === 3) controller.abort();
      }
      assert.deepEqual(seen, [1n, 2n, 3n]);
    } finally {
      await writer.close();
      await store.close();
      await dropSchema(schema);
    }
  });

  test('session advisory locks through transaction pooling: a raw pg_try_advisory_lock succeeds for two clients at once', async () => {
    const clients = [new pg.Client({ connectionString: bouncer.url() }), new pg.Client({ connectionString: bouncer.url() })];
    try {
      for (const client of clients) await client.connect();
      const key = Math.floor(Math.random() * 1_000_000);
      const taken = [];
      for (const client of clients) taken.push((await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(4242, $1) AS taken', [key])).rows[0]!.taken);
      // Both statements ran on the one server connection, where the lock is re-entrant.
      assert.deepEqual(taken, [true, true]);
    } finally {
      for (const client of clients) await client.end().catch(() => undefined);
    }
  });

  test('consumer sessions through transaction pooling: two instances of one consumer run at once', async () => {
    const schema = uniqueSchemaName('pgbf');
    // The sessions go through the transaction pooler (as without a direct sessionConnectionString).
    const stores = [
      await connect({ connectionString: bouncer.url(), schema, poolSize: 2, preparedStatements: false, sessionConnectionString: bouncer.url() }),
      await connect({ connectionString: bouncer.url(), schema, poolSize: 2, preparedStatements: false, sessionConnectionString: bouncer.url(), migrate: false }),
    ];
    const runs = stores.map((store, index) => {
      const handled: bigint[] = [];
      const controller = new AbortController();
      const consumer = store.consumer('projector', {
        query: Query.all(),
        instanceId: `instance-${index}`,
        takeoverIntervalMs: 100,
        pollIntervalMs: 100,
        handle: (event) => void handled.push(event.position),
      });
      const running = consumer.run({ signal: controller.signal });
      running.catch(() => undefined);
      return { handled, controller, running };
    });
    try {
      // In session pooling (above) the standby never handles an event; here both do.
      const deadline = Date.now() + 30_000;
      while (runs.some((run) => run.handled.length === 0) && Date.now() < deadline) {
        await stores[0]!.append({ type: 'Tick', tags: [], data: {} });
        await sleep(50);
      }
      assert.deepEqual(runs.map((run) => run.handled.length > 0), [true, true], 'both instances held the lease and processed events');
    } finally {
      for (const run of runs) run.controller.abort();
      await Promise.allSettled(runs.map((run) => within(run.running, 20_000, 'stopping a consumer')));
      for (const store of stores) await store.close();
      await dropSchema(schema);
    }
  });
});

// Not skipped as a whole: the direct case needs no PgBouncer.
describe('a server whose default_transaction_isolation is serializable', { timeout: 240_000 }, () => {
  const database = `dses_serializable_${randomBytes(4).toString('hex')}`;
  const direct = withUrl(databaseUrl(), database);
  let session: PgBouncer;
  let transaction: PgBouncer;
  before(async () => {
    await withClient(async (client) => {
      await client.query(`CREATE DATABASE ${database}`);
      await client.query(`ALTER DATABASE ${database} SET default_transaction_isolation = 'serializable'`);
    });
    if (skip !== false) return;
    session = await startPgBouncer({ poolMode: 'session' });
    transaction = await startPgBouncer({ poolMode: 'transaction', defaultPoolSize: 2 });
  });
  after(async () => {
    await session?.stop();
    await transaction?.stop();
    await withClient((client) => client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
  });

  /** Concurrent plain appends, then races with one winner per boundary, at gap-free positions. */
  const assertCorrectAppends = async (options: PoolerOptions): Promise<void> => {
    const probe = new pg.Client({ connectionString: options.connectionString! });
    await probe.connect();
    try {
      const { rows } = await probe.query<{ level: string }>('SELECT current_setting($1) AS level', ['default_transaction_isolation']);
      assert.equal(rows[0]!.level, 'serializable', 'the scenario: a plain connection gets SERIALIZABLE');
    } finally {
      await probe.end();
    }
    const schema = uniqueSchemaName('pgbz');
    const stores = [await connect({ ...options, schema, poolSize: 3 })];
    for (let index = 1; index < 3; index++) stores.push(await connect({ ...options, schema, poolSize: 3, migrate: false }));
    try {
      const results = await Promise.all(Array.from({ length: 12 }, (_, n) => stores[n % 3]!.append({ type: 'Plain', tags: [], data: { n } })));
      assert.deepEqual(results.map((result) => result.position).sort((x, y) => (x < y ? -1 : 1)), Array.from({ length: 12 }, (_, index) => BigInt(index + 1)));
      for (let round = 0; round < 3; round++) await assertOneWinnerPerBoundary(stores, 4, 6);
      assert.equal(await stores[0]!.head(), 24n);
    } finally {
      // The scratch database, and the schema with it, is dropped at the end.
      for (const store of stores) await store.close();
    }
  };

  test('directly', async () => {
    await assertCorrectAppends({ connectionString: direct });
  });

  test('through PgBouncer, session pooling', { skip }, async () => {
    await assertCorrectAppends({ connectionString: session.url(database) });
  });

  test('through PgBouncer, transaction pooling (preparedStatements: false, direct sessionConnectionString)', { skip }, async () => {
    await assertCorrectAppends({ connectionString: transaction.url(database), preparedStatements: false, sessionConnectionString: direct });
  });
});
