// OpenTelemetry on a real PostgreSQL, recorded by the SDK's in-memory span exporter and metric
// reader, registered as the global providers (as @opentelemetry/sdk-node does): every span name,
// kind, attribute and status rule, each append outcome, the trace from a command through its
// append to the consumer that handled the event, the metrics with their units and buckets, and
// the trace ids in log records.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { DataPointType, type MetricData } from '@opentelemetry/sdk-metrics';
import {
  AppendConditionFailedError,
  AppendOutcomeUnknownError,
  DuplicateEventIdError,
  EventStore,
  InvalidInputError,
  OperationAbortedError,
  Query,
  QueryItem,
  defineCommandHandler,
  defineProjection,
  type EventStoreOptions,
} from '../../src/index.ts';
import { ATTRIBUTE, METRIC, SPAN, TRACEPARENT_KEY } from '../../src/telemetry/names.ts';
import { ATTEMPT_BUCKETS, COMMAND_BUCKETS, DURATION_BUCKETS_S } from '../../src/telemetry/otel.ts';
import { databaseUrl, dropSchema, holdAppendLock, uniqueSchemaName } from '../helpers.ts';
import { recordTelemetry, traceparentOf } from './fixtures/otel.ts';
import { recordingLogger } from './fixtures/replication.ts';

const otel = recordTelemetry({ global: true });
const tracer = trace.getTracer('test');
const schema = uniqueSchemaName('otel');
let store: EventStore;
const url = new URL(databaseUrl());

async function connect(options: EventStoreOptions = {}): Promise<EventStore> {
  return EventStore.connect({ connectionString: databaseUrl(), schema, ...options });
}

before(async () => {
  store = await connect();
});
after(async () => {
  await store.close();
  await dropSchema(schema);
  await otel.shutdown();
});

/** Runs `body` inside a parent span and returns the spans it produced (the parent included). */
async function traced<T>(body: () => Promise<T>): Promise<{ result: T; parent: ReadableSpan; spans: ReadableSpan[] }> {
  otel.reset();
  const parentSpan = tracer.startSpan('caller');
  let result: T;
  try {
    result = await context.with(trace.setSpan(context.active(), parentSpan), body);
  } finally {
    parentSpan.end();
  }
  const spans = otel.spans();
  const parent = spans.find((span) => span.spanContext().spanId === parentSpan.spanContext().spanId)!;
  return { result, parent, spans };
}

function only(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((span) => span.name === name);
  assert.equal(found.length, 1, `one ${name} span, got ${found.length}: ${spans.map((span) => span.name).join(', ')}`);
  return found[0]!;
}

function childOf(span: ReadableSpan, parent: ReadableSpan): boolean {
  return span.parentSpanContext?.spanId === parent.spanContext().spanId && span.spanContext().traceId === parent.spanContext().traceId;
}

function assertDatabaseAttributes(span: ReadableSpan, operation: string): void {
  assert.equal(span.attributes[ATTRIBUTE.dbSystemName], 'postgresql');
  assert.equal(span.attributes[ATTRIBUTE.dbNamespace], `${url.pathname.slice(1)}.${schema}`, 'the schema qualified by the database');
  assert.equal(span.attributes[ATTRIBUTE.dbOperationName], operation);
  assert.equal(span.attributes[ATTRIBUTE.serverAddress], url.hostname);
  assert.equal(span.attributes[ATTRIBUTE.serverPort], Number(url.port || 5432));
  assert.equal(span.attributes[ATTRIBUTE.schema], schema);
}

function exceptionOf(span: ReadableSpan): Record<string, unknown> | undefined {
  return span.events.find((event) => event.name === 'exception')?.attributes;
}


describe('spans', () => {
  test('append: eventstore.append (CLIENT), child of the active span, with the database conventions and every append attribute', async () => {
    const { result, parent, spans } = await traced(() => store.append([{ type: 'Opened', tags: ['account:a1'], data: {} }, { type: 'Deposited', tags: ['account:a1'], data: { amount: 5 } }]));
    const span = only(spans, SPAN.append);
    assert.equal(span.kind, SpanKind.CLIENT);
    assert.ok(childOf(span, parent), 'a child of the caller\'s span');
    assertDatabaseAttributes(span, 'append');
    assert.equal(span.attributes[ATTRIBUTE.eventCount], 2);
    assert.equal(span.attributes[ATTRIBUTE.appendCondition], false);
    assert.equal(span.attributes[ATTRIBUTE.appendOutcome], 'appended');
    assert.equal(span.attributes[ATTRIBUTE.position], result.position.toString());
    assert.equal(span.attributes[ATTRIBUTE.batchCommands], 1);
    assert.equal(span.status.code, SpanStatusCode.UNSET);
    assert.equal(span.instrumentationScope.name, 'dynamic-streams-eventstore');
  });

  test('append stores the append span\'s traceparent in each event\'s metadata, keeps one the caller set, and not with propagateTraceContext: false', async () => {
    const given = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const { spans } = await traced(() => store.append([{ type: 'Noted', data: 1, metadata: { user: 'u1' } }, { type: 'Noted', data: 2, metadata: { [TRACEPARENT_KEY]: given } }]));
    const span = only(spans, SPAN.append);
    const { events } = await store.read(Query.of(QueryItem.types('Noted')));
    assert.deepEqual(events.map((event) => event.metadata), [{ user: 'u1', [TRACEPARENT_KEY]: traceparentOf(span.spanContext()) }, { [TRACEPARENT_KEY]: given }]);

    const quiet = await connect({ propagateTraceContext: false });
    try {
      const { position } = await traced(() => quiet.append({ type: 'Quiet', data: {}, metadata: { user: 'u2' } })).then(({ result }) => result);
      const stored = await quiet.read(Query.all(), { after: position - 1n });
      assert.deepEqual(stored.events[0]!.metadata, { user: 'u2' });
    } finally {
      await quiet.close();
    }
  });

  test('a condition that fails: outcome condition_failed, status UNSET (an expected answer)', async () => {
    const query = Query.of(QueryItem.types('Opened').tags('account:a1'));
    const { spans } = await traced(() => store.append({ type: 'Opened', tags: ['account:a1'], data: {} }, { failIfEventsMatch: query, after: 0n }).catch((error: unknown) => error));
    const span = only(spans, SPAN.append);
    assert.equal(span.attributes[ATTRIBUTE.appendCondition], true);
    assert.equal(span.attributes[ATTRIBUTE.appendOutcome], 'condition_failed');
    assert.equal(span.status.code, SpanStatusCode.UNSET);
    assert.equal(exceptionOf(span), undefined);
  });

  test('the same append again from another trace is idempotent (the traceparent differs, the content does not); other content under its id is duplicate_id', async () => {
    const event = { id: '01890a5d-ac96-774b-bcce-b302099a8057', type: 'Retried', data: { n: 1 } };
    const first = await traced(() => store.append(event));
    const again = await traced(() => store.append(event));
    assert.equal(again.result.position, first.result.position, 'the original position');
    assert.notEqual(only(again.spans, SPAN.append).spanContext().traceId, only(first.spans, SPAN.append).spanContext().traceId);
    assert.equal(only(again.spans, SPAN.append).attributes[ATTRIBUTE.appendOutcome], 'idempotent');
    assert.equal(only(again.spans, SPAN.append).attributes[ATTRIBUTE.position], first.result.position.toString());

    const clash = await traced(() => store.append({ ...event, data: { n: 2 } }).catch((error: unknown) => error));
    assert.ok(clash.result instanceof DuplicateEventIdError);
    const span = only(clash.spans, SPAN.append);
    assert.equal(span.attributes[ATTRIBUTE.appendOutcome], 'duplicate_id');
    assert.equal(span.status.code, SpanStatusCode.UNSET);
  });

  test('an append aborted while it waits for the lock: outcome aborted, status ERROR with the exception', async () => {
    const release = await holdAppendLock(schema);
    try {
      const controller = new AbortController();
      const { result, spans } = await traced(async () => {
        const appending = store.append({ type: 'Aborted', data: {} }, undefined, { signal: controller.signal }).catch((error: unknown) => error);
        setTimeout(() => controller.abort(), 200);
        return appending;
      });
      assert.ok(result instanceof OperationAbortedError, String(result));
      const span = only(spans, SPAN.append);
      assert.equal(span.attributes[ATTRIBUTE.appendOutcome], 'aborted');
      assert.equal(span.status.code, SpanStatusCode.ERROR);
      assert.equal(exceptionOf(span)?.['exception.type'], 'ABORTED', 'the error\'s code');
    } finally {
      await release();
    }
  });

  test('an append whose answer does not come in time: outcome unknown, status ERROR with the exception', async () => {
    const release = await holdAppendLock(schema);
    let result: unknown;
    try {
      ({ result } = await traced(() => store.append({ type: 'Unknown', data: {} }, undefined, { timeoutMs: 1500 }).catch((error: unknown) => error)));
    } finally {
      await release();
    }
    assert.ok(result instanceof AppendOutcomeUnknownError, String(result));
    const span = only(otel.spans(), SPAN.append);
    assert.equal(span.attributes[ATTRIBUTE.appendOutcome], 'unknown');
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(exceptionOf(span)?.['exception.type'], 'APPEND_OUTCOME_UNKNOWN', 'the error\'s code');
    assert.match(String(exceptionOf(span)?.['exception.message']), /outcome unknown|no answer/);
  });

  test('concurrent appends that share one database call say so in eventstore.batch.commands', async () => {
    const release = await holdAppendLock(schema);
    let appending: Promise<unknown>;
    const { spans } = await traced(async () => {
      // The first waits for the lock in flight; the next 5 queue behind it and go as one batch.
      const first = store.append({ type: 'Batched', data: 0 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const rest = Array.from({ length: 5 }, (_, index) => store.append({ type: 'Batched', data: index + 1 }));
      appending = Promise.all([first, ...rest]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await release();
      return appending;
    });
    const counts = spans.filter((span) => span.name === SPAN.append).map((span) => span.attributes[ATTRIBUTE.batchCommands]);
    assert.deepEqual(counts.sort(), [1, 5, 5, 5, 5, 5]);
  });

  test('read: eventstore.read (CLIENT) with consistency, replica, event count and head', async () => {
    const { result, parent, spans } = await traced(() => store.read(Query.of(QueryItem.types('Deposited'))));
    const span = only(spans, SPAN.read);
    assert.equal(span.kind, SpanKind.CLIENT);
    assert.ok(childOf(span, parent));
    assertDatabaseAttributes(span, 'read');
    assert.equal(span.attributes[ATTRIBUTE.readConsistency], 'strong');
    assert.equal(span.attributes[ATTRIBUTE.readReplica], false);
    assert.equal(span.attributes[ATTRIBUTE.eventCount], result.events.length);
    assert.equal(span.attributes[ATTRIBUTE.position], result.head.toString());
    assert.equal(span.status.code, SpanStatusCode.UNSET);

    // No replica configured: an eventual read is answered by the primary, and says so.
    const eventual = await traced(() => store.read(Query.all(), { consistency: 'eventual', limit: 1 }));
    assert.equal(only(eventual.spans, SPAN.read).attributes[ATTRIBUTE.readConsistency], 'eventual');
    assert.equal(only(eventual.spans, SPAN.read).attributes[ATTRIBUTE.readReplica], false);
    const atLeast = await traced(() => store.read(Query.all(), { consistency: { atLeast: 1n }, limit: 1 }));
    assert.equal(only(atLeast.spans, SPAN.read).attributes[ATTRIBUTE.readConsistency], 'at_least');
  });

  test('a read that fails: status ERROR with the exception', async () => {
    const controller = new AbortController();
    controller.abort();
    const { spans } = await traced(() => store.read(Query.all(), { signal: controller.signal }).catch((error: unknown) => error));
    const span = only(spans, SPAN.read);
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(exceptionOf(span)?.['exception.type'], 'ABORTED', 'the error\'s code');
  });

  test('stream: one eventstore.stream span (CLIENT) for the whole iteration, however many pages', async () => {
    await store.append(Array.from({ length: 25 }, (_, index) => ({ type: 'Paged', data: index })));
    const { result, parent, spans } = await traced(async () => {
      let count = 0;
      for await (const _event of store.stream(Query.of(QueryItem.types('Paged')), { batchSize: 4 })) count++;
      return count;
    });
    assert.equal(result, 25);
    const span = only(spans, SPAN.stream);
    assert.equal(span.kind, SpanKind.CLIENT);
    assert.ok(childOf(span, parent));
    assertDatabaseAttributes(span, 'stream');
    assert.equal(span.attributes[ATTRIBUTE.eventCount], 25);
    assert.equal(span.attributes[ATTRIBUTE.readConsistency], 'strong');
    assert.ok(Number(span.attributes[ATTRIBUTE.position]) >= 25);
    assert.equal(spans.filter((each) => each.name === SPAN.read).length, 0, 'pages are not spans of their own');
  });

  test('a stream left early still ends its span, with the events it gave', async () => {
    const { spans } = await traced(async () => {
      for await (const _event of store.stream(Query.of(QueryItem.types('Paged')), { batchSize: 4 })) break;
    });
    assert.equal(only(spans, SPAN.stream).attributes[ATTRIBUTE.eventCount], 1);
  });

  test('execute: eventstore.execute (INTERNAL) is the parent of its reads and appends, with the attempts it took', async () => {
    const balance = (account: string) =>
      defineProjection<number, { Deposited: { amount: number } }>({ initialState: 0, handlers: { Deposited: (state, event) => state + event.data.amount }, tags: [`account:${account}`] });
    let interfered = false;
    const deposit = defineCommandHandler({
      projections: (command: { account: string }) => ({ balance: balance(command.account) }),
      decide: (state, command: { account: string }) => {
        if (!interfered) {
          // Another writer gets in between this decision's read and its append (it queues first).
          interfered = true;
          void store.append({ type: 'Deposited', tags: [`account:${command.account}`], data: { amount: 1 } });
        }
        return { type: 'Deposited', tags: [`account:${command.account}`], data: { amount: state.balance + 10 } };
      },
    });
    const { result, parent, spans } = await traced(() => store.execute(deposit, { account: 'x1' }));
    assert.equal(result.attempts, 2);
    const span = only(spans, SPAN.execute);
    assert.equal(span.kind, SpanKind.INTERNAL);
    assert.ok(childOf(span, parent));
    assert.equal(span.attributes[ATTRIBUTE.executeAttempts], 2);
    assert.equal(span.attributes[ATTRIBUTE.dbSystemName], undefined, 'not a database call: no db.* attributes');
    assert.equal(span.attributes[ATTRIBUTE.schema], schema);
    assert.equal(span.attributes[ATTRIBUTE.position], result.position!.toString());
    const reads = spans.filter((each) => each.name === SPAN.read);
    const appends = spans.filter((each) => each.name === SPAN.append && each.attributes[ATTRIBUTE.appendCondition] === true);
    assert.equal(reads.length, 2, 'one decision read per attempt');
    assert.deepEqual(appends.map((each) => each.attributes[ATTRIBUTE.appendOutcome]).sort(), ['appended', 'condition_failed']);
    for (const child of [...reads, ...appends]) assert.ok(childOf(child, span), `${child.name} is a child of execute`);
  });

  test('a consumer\'s eventstore.consumer.handle (CONSUMER) continues the trace of the append that wrote the event, and links to it', async () => {
    const consumerSchema = uniqueSchemaName('otelc');
    const own = await connect({ schema: consumerSchema });
    try {
      const { spans: written } = await traced(() => own.append({ type: 'Ordered', tags: ['order:o1'], data: {} }));
      const append = only(written, SPAN.append);
      otel.reset();
      let attempts = 0;
      const controller = new AbortController();
      const handled = new Promise<void>((resolve) => {
        const consumer = own.consumer('mailer', {
          query: Query.of(QueryItem.types('Ordered')),
          retryDelayMs: 1,
          handle: async () => {
            attempts++;
            if (attempts === 1) throw new Error('smtp down');
            // The handler runs inside its span: its own spans are children.
            tracer.startSpan('send mail').end();
            resolve();
          },
        });
        void consumer.run({ signal: controller.signal });
      });
      await handled;
      controller.abort();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const handles = otel.spans().filter((span) => span.name === SPAN.consumerHandle);
      assert.equal(handles.length, 2, 'one span per handler call');
      for (const span of handles) {
        assert.equal(span.kind, SpanKind.CONSUMER);
        assert.equal(span.spanContext().traceId, append.spanContext().traceId, 'the same trace as the append');
        assert.equal(span.parentSpanContext?.spanId, append.spanContext().spanId, 'a child of the append span');
        assert.deepEqual(span.links.map((link) => link.context.spanId), [append.spanContext().spanId], 'linked to the append span');
        assert.equal(span.attributes[ATTRIBUTE.consumerName], 'mailer');
        assert.equal(span.attributes[ATTRIBUTE.dbSystemName], undefined, 'not a database call: no db.* attributes');
        assert.equal(span.attributes[ATTRIBUTE.position], append.attributes[ATTRIBUTE.position]);
      }
      assert.equal(handles[0]!.status.code, SpanStatusCode.ERROR);
      assert.equal(exceptionOf(handles[0]!)?.['exception.message'], 'smtp down');
      assert.equal(handles[1]!.status.code, SpanStatusCode.UNSET);
      const mail = only(otel.spans(), 'send mail');
      assert.ok(childOf(mail, handles[1]!), 'the handler\'s spans are children of its handle span');
    } finally {
      await own.close();
      await dropSchema(consumerSchema);
    }
  });

  test('subscriptions expose the traceparent in the event\'s metadata', async () => {
    const { spans } = await traced(() => store.append({ type: 'Subscribed', data: {} }));
    const controller = new AbortController();
    for await (const event of store.subscribe(Query.of(QueryItem.types('Subscribed')), { signal: controller.signal })) {
      assert.equal(event.metadata[TRACEPARENT_KEY], traceparentOf(only(spans, SPAN.append).spanContext()));
      controller.abort();
    }
  });
});

describe('metrics', () => {
  function metric(all: MetricData[], name: string): MetricData {
    const found = all.find((each) => each.descriptor.name === name);
    assert.ok(found, `metric ${name} was recorded (have: ${all.map((each) => each.descriptor.name).join(', ')})`);
    return found;
  }

  test('every metric under its name and unit, histograms with their bucket boundaries, outcomes as attributes', async () => {
    // A consumer running (for its lag) while appends and reads happen.
    const controller = new AbortController();
    const consumer = store.consumer('lagging', { query: Query.of(QueryItem.types('Slow')), handle: () => new Promise((resolve) => setTimeout(resolve, 5)) });
    const running = consumer.run({ signal: controller.signal });
    await store.append(Array.from({ length: 3 }, () => ({ type: 'Slow', data: {} })));
    await store.read(Query.all(), { limit: 2 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const all = await otel.collect();
    controller.abort();
    await running;

    for (const definition of Object.values(METRIC)) {
      if (definition.name === METRIC.replicaLag.name || definition.name === METRIC.replicaFallbacks.name) continue; // test/integration/read-replicas.test.ts
      const found = metric(all, definition.name);
      assert.equal(found.descriptor.unit, definition.unit, `unit of ${definition.name}`);
      const expectedType = { histogram: DataPointType.HISTOGRAM, counter: DataPointType.SUM, gauge: DataPointType.GAUGE }[definition.kind];
      assert.equal(found.dataPointType, expectedType, `kind of ${definition.name}`);
    }
    const boundaries = (name: string): number[] => (metric(all, name).dataPoints[0]!.value as { buckets: { boundaries: number[] } }).buckets.boundaries;
    assert.deepEqual(boundaries(METRIC.appendDuration.name), DURATION_BUCKETS_S);
    assert.deepEqual(boundaries(METRIC.readDuration.name), DURATION_BUCKETS_S);
    assert.deepEqual(boundaries(METRIC.appendBatchCommands.name), COMMAND_BUCKETS);
    assert.deepEqual(boundaries(METRIC.executeAttempts.name), ATTEMPT_BUCKETS);

    const outcomes = new Set(metric(all, METRIC.appendDuration.name).dataPoints.map((point) => point.attributes[ATTRIBUTE.appendOutcome]));
    for (const outcome of ['appended', 'condition_failed', 'idempotent', 'duplicate_id', 'aborted', 'unknown']) assert.ok(outcomes.has(outcome), `append.duration has outcome ${outcome}`);
    const durations = metric(all, METRIC.appendDuration.name).dataPoints.map((point) => point.value as { min?: number; max?: number });
    assert.ok(durations.every((value) => value.max! < 60), 'seconds, not milliseconds');

    const lag = metric(all, METRIC.consumerLag.name).dataPoints.find((point) => point.attributes[ATTRIBUTE.consumerName] === 'lagging');
    assert.ok(lag, 'the running consumer reports its lag');
    assert.equal(typeof lag.value, 'number');

    const pool = metric(all, METRIC.poolConnections.name).dataPoints.filter((point) => point.attributes[ATTRIBUTE.poolName] === 'primary');
    assert.deepEqual(pool.map((point) => point.attributes[ATTRIBUTE.poolState]).sort(), ['idle', 'used', 'waiting']);

    const events = metric(all, METRIC.appendEvents.name).dataPoints.reduce((sum, point) => sum + (point.value as number), 0);
    assert.ok(events >= 3);
  });
});

describe('logs, options, off', () => {
  test('log records carry trace_id and span_id of the active span', async () => {
    const logger = recordingLogger();
    const logged = await connect({ logger });
    try {
      const controller = new AbortController();
      const span = tracer.startSpan('worker');
      const consumer = logged.consumer('logging', { query: Query.of(QueryItem.types('Nothing')), handle: () => undefined });
      const running = context.with(trace.setSpan(context.active(), span), () => consumer.run({ signal: controller.signal }));
      for (let waited = 0; !logger.records.some((record) => record.fields.consumer === 'logging') && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
      controller.abort();
      await running;
      span.end();
      const record = logger.records.find((each) => each.fields.consumer === 'logging');
      assert.ok(record, 'the lease record');
      assert.equal(record.fields.trace_id, span.spanContext().traceId);
      assert.equal(record.fields.span_id, span.spanContext().spanId);
    } finally {
      await logged.close();
    }
  });

  test('explicit providers are used instead of the global ones', async () => {
    const own = recordTelemetry({ global: false });
    const explicit = await connect({ telemetry: { tracerProvider: own.tracerProvider, meterProvider: own.meterProvider } });
    try {
      otel.reset();
      await explicit.append({ type: 'Explicit', data: {} });
      assert.equal(only(own.spans(), SPAN.append).attributes[ATTRIBUTE.appendOutcome], 'appended');
      assert.equal(otel.spans().length, 0, 'nothing went to the global provider');
      assert.ok((await own.collect()).some((each) => each.descriptor.name === METRIC.appendDuration.name));
    } finally {
      await explicit.close();
      await own.shutdown();
    }
  });

  test('telemetry: false records nothing and stores no traceparent', async () => {
    const off = await connect({ telemetry: false });
    try {
      const { result, spans } = await traced(() => off.append({ type: 'Off', data: {} }));
      assert.deepEqual(spans.map((span) => span.name), ['caller']);
      const { events } = await off.read(Query.all(), { after: result.position - 1n });
      assert.deepEqual(events[0]!.metadata, {});
    } finally {
      await off.close();
    }
  });

  test('a bad telemetry option is an InvalidInputError and opens nothing', async () => {
    for (const [telemetry, path] of [[true, 'telemetry'], ['yes', 'telemetry'], [{ tracerProvider: {} }, 'telemetry.tracerProvider'], [{ meterProvider: 42 }, 'telemetry.meterProvider']] as const) {
      await assert.rejects(connect({ telemetry: telemetry as never }), (error: unknown) => error instanceof InvalidInputError && error.path === path, `telemetry: ${JSON.stringify(telemetry)}`);
    }
    await assert.rejects(connect({ propagateTraceContext: 'no' as never }), (error: unknown) => error instanceof InvalidInputError && error.path === 'propagateTraceContext');
  });

  test('a failed condition is an AppendConditionFailedError to the caller whatever the telemetry', async () => {
    const query = Query.of(QueryItem.types('Opened'));
    await assert.rejects(store.append({ type: 'Opened', data: {} }, { failIfEventsMatch: query, after: 0n }), AppendConditionFailedError);
  });
});
