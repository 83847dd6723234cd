// Append outcomes that must be the truth, and the bounds on every wait, tested against a real
// PostgreSQL without a proxy: lock waits, test triggers, roles with connection limits and
// replaced functions stand in for slow and surprising servers. (Lost and dead connections are in
// test/integration/append-faults.test.ts, through a fault-injecting proxy.)
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import {
  AppendConditionFailedError,
  AppendOutcomeUnknownError,
  EventStore,
  EventStoreClosedError,
  EventStoreOverloadedError,
  InvalidInputError,
  OperationAbortedError,
  OperationTimeoutError,
  Query,
  QueryItem,
  defineCommandHandler,
  defineProjection,
} from '../../src/index.ts';
import { createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { installFaultTrigger } from './fixtures/fault-trigger.ts';
import { appendInspection, settleState } from './fixtures/appends.ts';

const SUITE = { timeout: 120_000 };
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

describe('reads are planned for their values', SUITE, () => {
  test('a read shape run 20 times on one connection never switches to a generic plan', async () => {
    // Find the pool's connection: record every client the store's pool hands out.
    const clients = new Set<pg.PoolClient>();
    const connect = pg.Pool.prototype.connect;
    pg.Pool.prototype.connect = function (this: pg.Pool, ...args: unknown[]) {
      const result = (connect as (...a: unknown[]) => unknown).apply(this, args);
      if (result instanceof Promise) void result.then((client: pg.PoolClient) => clients.add(client), () => undefined);
      return result;
    } as typeof connect;
    let single: EventStore;
    try {
      single = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, poolSize: 1 });
    } finally {
      pg.Pool.prototype.connect = connect;
    }
    try {
      await single.append([{ type: 'Planned', tags: ['plan:a'], data: 1 }, { type: 'Planned', tags: ['plan:b'], data: 2 }]);
      const query = Query.of(QueryItem.types('Planned').tags('plan:a'));
      for (let run = 0; run < 20; run++) await single.read(query, { after: BigInt(run % 3) });
      const client = [...clients][0]!;
      const { rows } = await client.query<{ name: string; generic_plans: string; custom_plans: string }>(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE name LIKE 'dses_read_%'",
      );
      assert.ok(rows.length > 0, 'the read ran as a named statement');
      for (const row of rows) {
        assert.equal(Number(row.generic_plans), 0, `statement ${row.name} used a generic plan`);
        assert.ok(Number(row.custom_plans) >= 20, `statement ${row.name}: ${row.custom_plans} custom plans`);
      }
    } finally {
      await single.close();
    }
  });

  test('preparedStatements: false runs reads and appends as unnamed statements; results are the same', async () => {
    const unnamed = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, poolSize: 1, preparedStatements: false });
    try {
      const id = randomUUID();
      const { position } = await unnamed.append({ id, type: 'Unnamed', tags: ['unnamed:1'], data: { n: 1 } });
      const { events } = await unnamed.read(Query.of(QueryItem.types('Unnamed')));
      assert.deepEqual(events.map((event) => event.position), [position]);
      assert.deepEqual((await store.read(Query.of(QueryItem.types('Unnamed')))).events.map((event) => event.id), [id]);
    } finally {
      await unnamed.close();
    }
  });
});

describe('methods of a closed store reject (never throw synchronously)', SUITE, () => {
  test('execute, consumerStatus and resetConsumer return rejected promises after close()', async () => {
    const closing = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false });
    await closing.close();
    const handler = defineCommandHandler({
      projections: () => ({ nothing: defineProjection({ initialState: 0, handlers: { X: (state: number) => state } }) }),
      decide: () => [],
    });
    const calls: Array<() => Promise<unknown>> = [
      () => closing.execute(handler, {}),
      () => closing.consumerStatus('c'),
      () => closing.resetConsumer('c'),
      () => closing.append({ type: 'T', data: 1 }),
      () => closing.read(Query.all()),
      () => closing.head(),
    ];
    for (const call of calls) {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => void (promise = call()), String(call));
      await assert.rejects(promise!, EventStoreClosedError);
    }
  });
});

describe('the append function answering something this version does not know', SUITE, () => {
  test('an unknown status is an unknown outcome, not an id clash', async () => {
    const scratch = await createTestStore();
    try {
      // A newer schema's function, as an older library would meet it.
      await withClient((client) =>
        client.query(`CREATE OR REPLACE FUNCTION "${scratch.schema}".append_batch(p_commands jsonb, p_check_ids boolean, p_scan_limit bigint DEFAULT 128, p_ids uuid[] DEFAULT NULL, p_independent boolean DEFAULT false)
          RETURNS TABLE (r_status smallint, r_position bigint, r_conflict bigint) LANGUAGE sql AS $$ SELECT 7::smallint, NULL::bigint, NULL::bigint $$`),
      );
      const id = randomUUID();
      await assert.rejects(scratch.store.append({ id, type: 'T', data: 1 }), (error: unknown) => {
        assert.ok(error instanceof AppendOutcomeUnknownError, String(error));
        assert.match(error.message, /status 7/);
        assert.deepEqual(error.ids, [id]);
        return true;
      });
    } finally {
      await scratch.dispose();
    }
  });
});

describe('backpressure: a bounded queue', SUITE, () => {
  test('past maxQueuedAppends an append fails at once with OVERLOADED and is never written; the queued ones are', async () => {
    const bounded = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, maxQueuedAppends: 5 });
    const lock = await holdAppendLock();
    try {
      const inFlight = settleState(bounded.append({ type: 'Queue', data: 0 }));
      await delay(100); // in flight, waiting for the lock
      const queuedIds = Array.from({ length: 5 }, () => randomUUID());
      const queued = queuedIds.map((id, index) => settleState(bounded.append({ id, type: 'Queue', data: index + 1 })));
      const refusedId = randomUUID();
      const startedAt = Date.now();
      await assert.rejects(bounded.append({ id: refusedId, type: 'Queue', data: 6 }), (error: unknown) => {
        assert.ok(error instanceof EventStoreOverloadedError, String(error));
        assert.equal(error.code, 'OVERLOADED');
        assert.equal(error.limit, 5);
        return true;
      });
      assert.ok(Date.now() - startedAt < 100, 'refused at once');
      await lock.release();
      assert.equal((await inFlight.outcome).status, 'fulfilled');
      for (const [index, entry] of queued.entries()) {
        const outcome = await entry.outcome;
        assert.equal(outcome.status, 'fulfilled', `queued ${index}`);
        assert.ok(await storedPosition(queuedIds[index]!));
      }
      assert.equal(await storedPosition(refusedId), undefined);
    } finally {
      await bounded.close();
    }
  });
});

describe('deadlines', SUITE, () => {
  test('an append still queued at appendTimeoutMs fails with TIMEOUT and is never written; the one in flight gets its answer', async () => {
    const bounded = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, appendTimeoutMs: 2_000 });
    const lock = await holdAppendLock();
    try {
      const blockedId = randomUUID();
      const blocked = settleState(bounded.append({ id: blockedId, type: 'Queue', data: 2 }));
      await delay(100); // in flight, waiting for the lock
      const lateId = randomUUID();
      const startedAt = Date.now();
      // Its own, shorter deadline passes while the batch ahead still waits for the lock.
      const late = settleState(bounded.append({ id: lateId, type: 'Queue', data: 3 }, undefined, { timeoutMs: 500 }));
      const lateOutcome = await late.outcome;
      const waited = Date.now() - startedAt;
      assert.equal(lateOutcome.status, 'rejected');
      const error = (lateOutcome as PromiseRejectedResult).reason as unknown;
      assert.ok(error instanceof OperationTimeoutError, String(error));
      assert.equal(error.code, 'TIMEOUT');
      assert.ok(waited >= 450 && waited < 1_500, `waited ${waited} ms`);
      // The blocked one was on the wire at its deadline: its outcome is unknown.
      const blockedOutcome = await blocked.outcome;
      assert.equal(blockedOutcome.status, 'rejected');
      const blockedError = (blockedOutcome as PromiseRejectedResult).reason as unknown;
      assert.ok(blockedError instanceof AppendOutcomeUnknownError, String(blockedError));
      assert.deepEqual(blockedError.ids, [blockedId]);
      await lock.release();
      await delay(300);
      assert.equal(await storedPosition(lateId), undefined, 'TIMEOUT means never written');
      // Settling the unknown one: repeat it with the same id; whatever happened, it is then stored once.
      const repeat = await bounded.append({ id: blockedId, type: 'Queue', data: 2 });
      assert.equal(await storedPosition(blockedId), repeat.position);
    } finally {
      await lock.release().catch(() => undefined);
      await bounded.close();
    }
  });

  test('a read blocked past readTimeoutMs is cancelled on the server and fails with TIMEOUT; the connection is reusable', async () => {
    const bounded = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, readTimeoutMs: 500, poolSize: 1 });
    const locker = new pg.Client({ connectionString: databaseUrl() });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
      const startedAt = Date.now();
      await assert.rejects(bounded.read(Query.all()), (error: unknown) => {
        assert.ok(error instanceof OperationTimeoutError, String(error));
        assert.equal(error.operation, 'read');
        return true;
      });
      const waited = Date.now() - startedAt;
      assert.ok(waited >= 450 && waited < 2_000, `waited ${waited} ms`);
      // Cancelled on the server: nothing of ours waits for the lock any more (the caller got its
      // answer at the deadline; the cancel may land a moment later).
      let waiting = '1';
      for (let round = 0; round < 20 && waiting !== '0'; round++) {
        if (round > 0) await delay(50);
        const { rows } = await locker.query<{ count: string }>("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.application_name = 'dynamic-streams-eventstore' AND l.relation = $1::regclass", [`"${schema}".events`]);
        waiting = rows[0]!.count;
      }
      assert.equal(waiting, '0');
      await locker.query('COMMIT');
      assert.ok((await bounded.read(Query.all(), { limit: 1 })).head > 0n, 'the same (single) pooled connection works afterwards');
    } finally {
      await locker.end();
      await bounded.close();
    }
  });

  test('bad timeouts and limits are refused with InvalidInputError', async () => {
    for (const options of [{ appendTimeoutMs: 0 }, { readTimeoutMs: -1 }, { connectTimeoutMs: 1.5 }, { appendTimeoutMs: 2 ** 31 }, { maxQueuedAppends: 0 }, { preparedStatements: 'no' }, { sessionConnectionString: '' }]) {
      await assert.rejects(EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, ...(options as object) }), InvalidInputError, JSON.stringify(options));
    }
    await assert.rejects(store.close({ timeoutMs: 0 }), InvalidInputError);
    await assert.rejects(store.append({ type: 'T', data: 1 }, undefined, { timeoutMs: -5 }), InvalidInputError);
  });
});

describe('aborts', SUITE, () => {
  test('the cancel needs no login: an abort interrupts an append although the role has no connection to spare', async () => {
    const role = `dses_limited_${randomBytes(4).toString('hex')}`;
    await withClient(async (client) => {
      await client.query(`CREATE ROLE ${role} LOGIN PASSWORD 'limited' CONNECTION LIMIT 1`);
      await client.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`);
      await client.query(`GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "${schema}" TO ${role}`);
    });
    const url = new URL(databaseUrl());
    url.username = role;
    url.password = 'limited';
    const limited = await EventStore.connect({ connectionString: url.toString(), schema, migrate: false, poolSize: 1 });
    const lock = await holdAppendLock();
    try {
      const controller = new AbortController();
      const id = randomUUID();
      const appending = settleState(limited.append({ id, type: 'Limited', data: 1 }, undefined, { signal: controller.signal }));
      await delay(200);
      assert.equal(appending.settled(), false, 'the append waits for the lock');
      const abortedAt = Date.now();
      controller.abort();
      const outcome = await appending.outcome;
      assert.ok(Date.now() - abortedAt < 1_000, `settled ${Date.now() - abortedAt} ms after the abort`);
      assert.equal(outcome.status, 'rejected');
      assert.ok((outcome as PromiseRejectedResult).reason instanceof OperationAbortedError, String((outcome as PromiseRejectedResult).reason));
      await lock.release();
      await delay(100);
      assert.equal(await storedPosition(id), undefined);
      // The cancel did not hit the next statement on that (only) connection.
      assert.ok((await limited.append({ type: 'Limited', data: 2 })).position > 0n);
    } finally {
      await lock.release().catch(() => undefined);
      await limited.close();
      await withClient(async (client) => {
        await client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA "${schema}" FROM ${role}`);
        await client.query(`REVOKE ALL ON SCHEMA "${schema}" FROM ${role}`);
        await client.query(`DROP ROLE ${role}`);
      });
    }
  });

  test('aborting a command that waits to be re-run alone (after its batch failed) drops it and does not touch the one running', async () => {
    // A batch of [slow, boom, victim, other] fails as a whole (boom); each is then re-run alone,
    // in order. While slow runs alone, victim waits: aborting it must drop it (ABORTED, never
    // written), not cancel slow.
    const lock = await holdAppendLock();
    const slowId = randomUUID();
    const victimId = randomUUID();
    const otherId = randomUUID();
    const head = settleState(store.append({ type: 'Queue', data: 'ahead' }));
    await delay(100); // in flight, waiting for the lock: the next four form one batch
    const controller = new AbortController();
    const slow = settleState(store.append({ id: slowId, type: 'Slow', data: { sleep: 0.6 } }));
    const boom = settleState(store.append({ type: 'Boom', data: 1 }));
    const victim = settleState(store.append({ id: victimId, type: 'Victim', data: 1 }, undefined, { signal: controller.signal }));
    const other = settleState(store.append({ id: otherId, type: 'Other', data: 1 }));
    await lock.release();
    assert.equal((await head.outcome).status, 'fulfilled');
    // The batch of four runs (slow sleeps 0.6 s, then boom fails it), then slow runs alone (0.6 s).
    await delay(900);
    assert.equal(slow.settled(), false, 'slow runs alone now');
    controller.abort();
    const victimOutcome = await victim.outcome;
    assert.equal(victimOutcome.status, 'rejected');
    assert.ok((victimOutcome as PromiseRejectedResult).reason instanceof OperationAbortedError, String((victimOutcome as PromiseRejectedResult).reason));
    const slowOutcome = await slow.outcome;
    assert.equal(slowOutcome.status, 'fulfilled', `the running append was hit: ${String((slowOutcome as PromiseRejectedResult).reason)}`);
    assert.equal((await boom.outcome).status, 'rejected');
    assert.equal((await other.outcome).status, 'fulfilled');
    assert.ok(await storedPosition(slowId));
    assert.ok(await storedPosition(otherId));
    assert.equal(await storedPosition(victimId), undefined);
  });

  test('abort storm: 10 % of 400 concurrent appends on short timeouts; nobody else fails, every outcome matches the log', async () => {
    const ids = Array.from({ length: 400 }, () => randomUUID());
    const outcomes = await Promise.allSettled(
      ids.map((id, index) =>
        store.append({ id, type: 'Storm', tags: [`storm:${index % 7}`], data: { index } }, index % 2 === 0 ? { failIfEventsMatch: Query.of(QueryItem.types('Storm').tags(`storm-claim:${index}`)) } : undefined, index % 10 === 0 ? { signal: AbortSignal.timeout(1 + (index % 5)) } : {}),
      ),
    );
    const stored = await withClient(async (client) => {
      const { rows } = await client.query<{ id: string; position: string }>(`SELECT id, position FROM "${schema}".events WHERE id = ANY ($1::uuid[])`, [ids]);
      return new Map(rows.map((row) => [row.id, BigInt(row.position)]));
    });
    for (const [index, outcome] of outcomes.entries()) {
      const id = ids[index]!;
      if (outcome.status === 'fulfilled') {
        assert.equal(stored.get(id), outcome.value.position, `#${index} acknowledged at its position`);
        continue;
      }
      const error = outcome.reason as Error;
      assert.equal(index % 10, 0, `#${index} had no timeout but failed: ${String(error)}`);
      if (error instanceof OperationAbortedError) assert.equal(stored.get(id), undefined, `#${index}: ABORTED but written`);
      else assert.ok(error instanceof AppendOutcomeUnknownError, `#${index}: ${String(error)}`);
    }
  });

  test('a conflict stays a conflict: AppendConditionFailedError for a command whose batch was resent', async () => {
    // Regression guard for the outcome rules: conditions are checked again on every attempt.
    const tag = `conflict:${randomUUID()}`;
    await store.append({ type: 'Claim', tags: [tag], data: 1 });
    await assert.rejects(store.append({ type: 'Claim', tags: [tag], data: 2 }, { failIfEventsMatch: Query.of(QueryItem.tags(tag)) }), AppendConditionFailedError);
  });
});
