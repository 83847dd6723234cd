// Reads on a streaming replica: routing by consistency, fallbacks, lag, decisions that read on a
// paused replica, and subscriptions/consumers that follow a replica. Two real PostgreSQL 17
// servers (a primary and a hot standby made from a base backup of it), started by this file.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  defineCommandHandler,
  defineProjection,
  EventStore,
  InvalidInputError,
  Query,
  QueryItem,
  type EventStoreOptions,
  type SequencedEvent,
} from '../../src/index.ts';
import { InMemoryEventStore } from '../../src/testing/index.ts';
import { keepEventLoopAliveDuringTests, uniqueSchemaName } from '../helpers.ts';
import { recordingLogger, startReplication, type Replication } from './fixtures/replication.ts';
import { recordTelemetry } from './fixtures/otel.ts';
import { ATTRIBUTE, METRIC, SPAN } from '../../src/telemetry/names.ts';

keepEventLoopAliveDuringTests();
const SUITE = { timeout: 180_000 };

let replication: Replication;
before(async () => {
  replication = await startReplication();
});
after(async () => {
  await replication.stop();
});

/** A store on the primary with the standby as its replica, in a schema the standby has replayed. */
async function replicatedStore(options: EventStoreOptions = {}): Promise<{ store: EventStore; schema: string; close: () => Promise<void> }> {
  const schema = options.schema ?? uniqueSchemaName('rr');
  const creator = await EventStore.connect({ connectionString: replication.primary.connectionString, schema });
  await creator.close();
  await replication.standby.waitForReplay();
  const store = await EventStore.connect({
    connectionString: replication.primary.connectionString,
    readReplicas: [replication.standby.connectionString],
    replicaWaitMs: 100,
    replicaCheckIntervalMs: 100,
    ...options,
    schema,
  });
  return { store, schema, close: () => store.close() };
}

const all = Query.all();
const happened = (n: number) => ({ type: 'Happened', tags: ['thing:1'], data: { n } });

describe('read replicas', SUITE, () => {
  test('strong reads the primary, eventual the replica (stale while replay is paused), appends never go to the replica', async () => {
    const log = recordingLogger();
    const { store, close } = await replicatedStore({ logger: log });
    try {
      await store.append(happened(1));
      await replication.standby.waitForReplay();
      assert.equal((await store.read(all, { consistency: 'eventual' })).events.length, 1);
      await replication.pauseReplay();
      try {
        // Appends work with a replica configured (a standby refuses writes: they went to the primary).
        const { position } = await store.append(happened(2));
        const strong = await store.read(all);
        const eventual = await store.read(all, { consistency: 'eventual' });
        assert.equal(strong.head, position);
        assert.deepEqual(strong.events.map((event) => event.position), [1n, 2n]);
        // The replica's snapshot: stale, and a prefix (every event up to its head).
        assert.equal(eventual.head, 1n);
        assert.deepEqual(eventual.events.map((event) => event.position), [1n]);
        // stream() and subscribe() with 'eventual' read the replica too.
        const streamed: bigint[] = [];
        for await (const event of store.stream(all, { consistency: 'eventual', batchSize: 1 })) streamed.push(event.position);
        assert.deepEqual(streamed, [1n]);
      } finally {
        await replication.resumeReplay();
      }
      assert.equal(log.records.filter((record) => record.message.includes('instead of a replica')).length, 0, JSON.stringify(log.records));
    } finally {
      await close();
    }
  });

  test('{ atLeast: position } reads your own writes: the replica once it has them, else the primary after replicaWaitMs', async () => {
    const log = recordingLogger();
    const { store, close } = await replicatedStore({ logger: log, replicaWaitMs: 150 });
    try {
      const { position: first } = await store.append(happened(1));
      // Served by the replica once it caught up.
      await replication.standby.waitForReplay();
      const caughtUp = await store.read(all, { consistency: { atLeast: first } });
      assert.ok(caughtUp.head >= first);
      assert.equal(log.records.filter((record) => record.fields.reason === 'behind').length, 0, JSON.stringify(log.records));

      await replication.pauseReplay();
      try {
        const { position } = await store.append(happened(2));
        const startedAt = Date.now();
        const result = await store.read(all, { consistency: { atLeast: position } });
        const waited = Date.now() - startedAt;
        assert.equal(result.head, position, 'the primary answered');
        assert.ok(waited >= 140, `waited ${waited} ms for the replica first`);
        const fallback = log.records.find((record) => record.fields.reason === 'behind');
        assert.ok(fallback, JSON.stringify(log.records));
        assert.equal(fallback.level, 'debug');
        assert.equal(fallback.fields.schema, store.schema);
      } finally {
        await replication.resumeReplay();
      }
    } finally {
      await close();
    }
  });

  test('telemetry: read spans say whether a replica answered (and which), the replica lag gauge and the fallbacks counter by reason', async () => {
    const otel = recordTelemetry({ global: false });
    const { store, close } = await replicatedStore({ telemetry: { tracerProvider: otel.tracerProvider, meterProvider: otel.meterProvider }, maxReplicaLag: 2 });
    const standby = new URL(replication.standby.connectionString);
    const primary = new URL(replication.primary.connectionString);
    try {
      await store.append(happened(1));
      await replication.standby.waitForReplay();
      otel.reset();
      await store.read(all, { consistency: 'eventual' });
      await store.read(all);
      const [onReplica, onPrimary] = otel.spans().filter((span) => span.name === SPAN.read);
      assert.equal(onReplica!.attributes[ATTRIBUTE.readReplica], true);
      assert.equal(onReplica!.attributes[ATTRIBUTE.readConsistency], 'eventual');
      assert.equal(onReplica!.attributes[ATTRIBUTE.serverPort], Number(standby.port));
      assert.equal(onPrimary!.attributes[ATTRIBUTE.readReplica], false);
      assert.equal(onPrimary!.attributes[ATTRIBUTE.serverPort], Number(primary.port));

      await replication.pauseReplay();
      try {
        await store.append([happened(2), happened(3), happened(4)]);
        const lagging = await store.read(all, { consistency: 'eventual' });
        assert.equal(lagging.head, 4n, 'the primary answered');
        const fallback = otel.spans().filter((span) => span.name === SPAN.read).at(-1)!;
        assert.equal(fallback.attributes[ATTRIBUTE.readReplica], false);
        const metrics = await otel.collect();
        const lag = metrics.find((metric) => metric.descriptor.name === METRIC.replicaLag.name);
        assert.ok(lag, 'eventstore.replica.lag is reported');
        assert.equal(lag.descriptor.unit, METRIC.replicaLag.unit);
        assert.deepEqual(lag.dataPoints.map((point) => [point.attributes[ATTRIBUTE.replica], point.value]), [[`${standby.hostname}:${standby.port}`, 3]]);
        const fallbacks = metrics.find((metric) => metric.descriptor.name === METRIC.replicaFallbacks.name);
        assert.ok(fallbacks, 'eventstore.replica.fallbacks is reported');
        assert.deepEqual(fallbacks.dataPoints.map((point) => [point.attributes[ATTRIBUTE.fallbackReason], point.value]), [['lagging', 1]]);
        const pools = metrics.find((metric) => metric.descriptor.name === METRIC.poolConnections.name)!;
        assert.deepEqual([...new Set(pools.dataPoints.map((point) => point.attributes[ATTRIBUTE.poolName]))].sort(), [`${standby.hostname}:${standby.port}`, 'primary'].sort());
      } finally {
        await replication.resumeReplay();
      }
    } finally {
      await close();
      await otel.shutdown();
    }
  });

  test('a replica lagging more than maxReplicaLag is skipped for the primary (logged, never an error)', async () => {
    const log = recordingLogger();
    const { store, close } = await replicatedStore({ logger: log, maxReplicaLag: 2 });
    try {
      await replication.pauseReplay();
      try {
        await store.append([happened(1), happened(2), happened(3), happened(4)]);
        // The append told the store the primary's head: the replica is 4 behind now.
        const result = await store.read(all, { consistency: 'eventual' });
        assert.equal(result.head, 4n);
        assert.ok(log.records.some((record) => record.fields.reason === 'lagging' && record.level === 'warn'), JSON.stringify(log.records));
      } finally {
        await replication.resumeReplay();
      }
      // Caught up (the next check sees it): the replica is used again.
      await replication.standby.waitForReplay();
      await sleep(300);
      const count = log.records.length;
      await replication.pauseReplay();
      try {
        await store.append(happened(5));
        const stale = await store.read(all, { consistency: 'eventual' });
        assert.equal(stale.head, 4n, 'read on the replica (1 behind, within maxReplicaLag)');
        assert.equal(log.records.slice(count).filter((record) => record.fields.reason === 'lagging').length, 0);
      } finally {
        await replication.resumeReplay();
      }
    } finally {
      await close();
    }
  });

  test('a decision may read on a paused replica: stale reads lose with a conflict, execute retries where the conflict is visible, and no condition is ever violated', async () => {
    const { store, close } = await replicatedStore({ replicaWaitMs: 50 });
    const capacity = 10;
    const seats = defineProjection<number>({ initialState: 0, handlers: { SeatTaken: (count) => count + 1 }, tags: ['course:c1'] });
    const takeSeat = defineCommandHandler({
      projections: () => ({ seats }),
      decide: (state, student: string) => (state.seats >= capacity ? [] : [{ type: 'SeatTaken', tags: ['course:c1', `student:${student}`], data: { student } }]),
    });
    try {
      await store.append({ type: 'SeatTaken', tags: ['course:c1', 'student:s0'], data: { student: 's0' } });
      await replication.standby.waitForReplay();
      await replication.pauseReplay();
      let conflicts = 0;
      try {
        const results = await Promise.all(
          Array.from({ length: 25 }, (_, index) => store.execute(takeSeat, `s${index + 1}`, { consistency: 'eventual', maxAttempts: 50, onConflict: () => void (conflicts += 1) })),
        );
        const appended = results.filter((result) => result.position !== undefined).length;
        assert.equal(appended, capacity - 1, 'exactly the free seats were taken');
        assert.ok(results.some((result) => result.attempts > 1), 'some decisions read stale and retried');
      } finally {
        await replication.resumeReplay();
      }
      assert.ok(conflicts > 0);
      const taken = await store.read(Query.of(QueryItem.types('SeatTaken').tags('course:c1')));
      assert.equal(taken.events.length, capacity, 'the capacity held: no condition was violated');
    } finally {
      await close();
    }
  });

  test('a replica that is down is skipped: eventual reads, streams and decisions go to the primary without an error', async () => {
    // A second standby, stopped under the store.
    const { startEmbeddedPostgres } = await import('../../src/index.ts');
    const { mkdtempSync, chmodSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const directory = mkdtempSync(join(tmpdir(), 'dses-standby2-'));
    chmodSync(directory, 0o755);
    const log = recordingLogger();
    const schema = uniqueSchemaName('rr');
    const creator = await EventStore.connect({ connectionString: replication.primary.connectionString, schema });
    await creator.append(happened(1));
    await creator.close();
    const second = await startEmbeddedPostgres({ replicaOf: replication.primary, dataDir: join(directory, 'data'), port: 0, ephemeral: true });
    const store = await EventStore.connect({ connectionString: replication.primary.connectionString, schema, readReplicas: [second.connectionString], replicaCheckIntervalMs: 100, connectTimeoutMs: 1000, logger: log });
    try {
      assert.equal((await store.read(all, { consistency: 'eventual' })).head, 1n);
      await second.stop();
      await store.append(happened(2));
      // The read in flight to the stopped replica, or the next check, finds it gone: the primary answers.
      for (let round = 0; round < 5; round++) {
        const result = await store.read(all, { consistency: 'eventual' });
        assert.equal(result.head, 2n);
      }
      const streamed: bigint[] = [];
      for await (const event of store.stream(all, { consistency: 'eventual' })) streamed.push(event.position);
      assert.deepEqual(streamed, [1n, 2n]);
      assert.ok(log.records.some((record) => record.level === 'warn' && /not answering/.test(record.message)), JSON.stringify(log.records));
      assert.ok(log.records.some((record) => record.fields.reason === 'down' || record.fields.reason === 'failed'));
    } finally {
      await store.close();
    }
  });

  test("subscriptions and consumers with consistency 'eventual' follow the replica: woken by the primary, nothing skipped, nothing repeated", async () => {
    const { store, schema, close } = await replicatedStore({ replicaCheckIntervalMs: 100 });
    const total = 120;
    try {
      const controller = new AbortController();
      const seen: SequencedEvent[] = [];
      const following = (async () => {
        for await (const event of store.subscribe(all, { consistency: 'eventual', signal: controller.signal, pollIntervalMs: 60_000, batchSize: 7 })) {
          seen.push(event);
          if (seen.length === total) controller.abort();
        }
      })();
      const consumed: bigint[] = [];
      const consumerController = new AbortController();
      const consumer = store.consumer('replica-follower', {
        query: all,
        consistency: 'eventual',
        batchSize: 5,
        pollIntervalMs: 60_000,
        handle: (event) => {
          consumed.push(event.position);
          if (consumed.length === total) consumerController.abort();
        },
      });
      const running = consumer.run({ signal: consumerController.signal });
      for (let index = 0; index < total; index++) {
        // Replay paused for the last third: the followers read a stale replica while the primary
        // announces heads it does not have; after the last append nothing is announced any more,
        // so they must notice the replica catching up on their own.
        if (index === 80) await replication.pauseReplay();
        await store.append(happened(index));
      }
      await sleep(300);
      await replication.resumeReplay();
      const deadline = AbortSignal.timeout(20_000);
      await Promise.race([Promise.all([following, running]), new Promise((_, reject) => deadline.addEventListener('abort', () => reject(new Error(`followers stuck: ${seen.length} seen, ${consumed.length} consumed`))))]);
      assert.deepEqual(seen.map((event) => event.position), Array.from({ length: total }, (_, index) => BigInt(index + 1)));
      assert.deepEqual(consumed, Array.from({ length: total }, (_, index) => BigInt(index + 1)));
      assert.equal((await store.consumerStatus('replica-follower')).position, BigInt(total));
      assert.ok(schema);
    } finally {
      await replication.resumeReplay().catch(() => undefined);
      await close();
    }
  });

  test('bad consistency or replica options: a typed error, nothing read or connected', async () => {
    const { store, close } = await replicatedStore();
    try {
      for (const consistency of ['bogus', { atLeast: -1n }, { atLeast: 1n, extra: true }, null, 42]) {
        await assert.rejects(store.read(all, { consistency: consistency as never }), InvalidInputError);
        await assert.rejects(async () => {
          for await (const _ of store.stream(all, { consistency: consistency as never })) break;
        }, InvalidInputError);
        assert.throws(() => store.subscribe(all, { consistency: consistency as never }), InvalidInputError);
        assert.throws(() => store.consumer('x', { query: all, handle: () => undefined, consistency: consistency as never }), InvalidInputError);
        await assert.rejects(store.execute(defineCommandHandler({ projections: () => ({ p: defineProjection<number>({ initialState: 0, handlers: {} , query: all }) }), decide: () => [] }), {}, { consistency: consistency as never }), InvalidInputError);
        const memory = new InMemoryEventStore();
        await assert.rejects(memory.read(all, { consistency: consistency as never }), InvalidInputError);
      }
    } finally {
      await close();
    }
    for (const readReplicas of [[''], 'postgres://x', [42]]) {
      await assert.rejects(EventStore.connect({ connectionString: replication.primary.connectionString, schema: uniqueSchemaName('rr'), readReplicas: readReplicas as never }), InvalidInputError);
    }
    await assert.rejects(EventStore.connect({ connectionString: replication.primary.connectionString, schema: uniqueSchemaName('rr'), maxReplicaLag: -1 }), InvalidInputError);
    await assert.rejects(EventStore.connect({ connectionString: replication.primary.connectionString, schema: uniqueSchemaName('rr'), logger: {} as never }), InvalidInputError);
    // The in-memory store reads its one copy for every valid consistency.
    const memory = new InMemoryEventStore();
    await memory.append(happened(1));
    assert.equal((await memory.read(all, { consistency: 'eventual' })).head, 1n);
    assert.equal((await memory.read(all, { consistency: { atLeast: 1n } })).head, 1n);
  });
});
