// OpenTelemetry traces and metrics. `@opentelemetry/api` is an optional peer dependency: it is
// imported here only, at connect time, and a store without it (or with `telemetry: false`) has no
// Telemetry object at all, so every instrumented call site is one `undefined` check.
//
// Only types are imported statically; the API module itself arrives through loadTelemetry.
import type * as Api from '@opentelemetry/api';
import { ATTRIBUTE, METRIC, SPAN, TRACEPARENT_KEY, TRACER_NAME, type AppendOutcome } from './names.ts';
import type { TelemetryOptions } from './options.ts';
import type { TraceFields } from './log.ts';

type OtelApi = typeof Api;

/** What every span of a store carries: the database conventions and the schema. */
export interface StoreIdentity {
  schema: string;
  /** The database name (`db.namespace`), when the connection string tells it. */
  database: string | undefined;
  host: string | undefined;
  port: number | undefined;
}

/** A pool's connections by state, for `eventstore.pool.connections`. */
export interface PoolState {
  pool: string;
  idle: number;
  used: number;
  waiting: number;
}

/** Where the observable gauges read from. */
export interface TelemetrySources {
  pools(): PoolState[];
  replicaLags(): { replica: string; lag: number }[];
  /** The highest head this store knows of (appends, reads, notifications). */
  knownHead(): bigint;
}

/** How a read reached its answer, for the span and the metrics. */
export interface ReadTarget {
  /** A replica's `host:port`, or undefined for the primary. */
  replica: string | undefined;
  host: string | undefined;
  port: number | undefined;
}

export type ConsistencyValue = 'strong' | 'eventual' | { atLeast: bigint };

/** Explicit bucket boundaries: the SDK's defaults are for milliseconds, ours are seconds. */
export const DURATION_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Appends per database call: 1 (no sharing) gets a bucket of its own. */
export const COMMAND_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000];
/** Attempts of one execute: 1 (no conflict) gets a bucket of its own. */
export const ATTEMPT_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10, 15, 20];

/**
 * The store's telemetry, or undefined when there is none: `telemetry: false`, or
 * `@opentelemetry/api` not installed. An API that is present but broken is an error (a silent
 * "no telemetry" would hide it).
 */
export async function loadTelemetry(option: TelemetryOptions | undefined, identity: StoreIdentity, sources: TelemetrySources): Promise<Telemetry | undefined> {
  if (option === false) return undefined;
  let api: OtelApi;
  try {
    api = await import('@opentelemetry/api');
  } catch (error) {
    if (isMissingApi(error)) return undefined;
    throw error;
  }
  return new Telemetry(api, option ?? {}, identity, sources);
}

function isMissingApi(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /@opentelemetry\/api/.test((error as Error).message);
}

/** The instruments of one meter. */
interface Instruments {
  provider: Api.MeterProvider;
  appendDuration: Api.Histogram;
  appendEvents: Api.Counter;
  batchCommands: Api.Histogram;
  readDuration: Api.Histogram;
  readEvents: Api.Counter;
  executeAttempts: Api.Histogram;
  replicaFallbacks: Api.Counter;
  gauges: SharedGauges;
}

/** What one store reports to the observable gauges. */
interface GaugeSource {
  pools(): { attributes: Api.Attributes; value: number }[];
  replicaLags(): { attributes: Api.Attributes; value: number }[];
  consumerLags(): { attributes: Api.Attributes; value: number }[];
}

/**
 * The observable gauges of one meter, shared by every store of the process that uses it. Two
 * stores on the same schema observe the same attribute sets: an SDK keeps one value per set, so
 * the values are combined here (pool connections summed, lags the largest) and observed once.
 */
class SharedGauges {
  readonly sources = new Set<GaugeSource>();
  readonly #registrations: { instrument: Api.ObservableGauge; callback: Api.ObservableCallback }[] = [];

  constructor(meter: Api.Meter) {
    this.#register(meter, METRIC.poolConnections, 'Connections of the store\'s pools by state (waiting: callers waiting for one)', (source) => source.pools(), (a, b) => a + b);
    this.#register(meter, METRIC.replicaLag, 'Positions a replica is behind the primary (primary head minus replica head)', (source) => source.replicaLags(), Math.max);
    this.#register(meter, METRIC.consumerLag, 'Positions a running consumer\'s checkpoint is behind the head', (source) => source.consumerLags(), Math.max);
  }

  #register(meter: Api.Meter, metric: { name: string; unit: string }, description: string, read: (source: GaugeSource) => { attributes: Api.Attributes; value: number }[], combine: (a: number, b: number) => number): void {
    const instrument = meter.createObservableGauge(metric.name, { unit: metric.unit, description });
    const callback: Api.ObservableCallback = (result) => {
      const combined = new Map<string, { attributes: Api.Attributes; value: number }>();
      for (const source of this.sources) {
        for (const point of read(source)) {
          const key = JSON.stringify(point.attributes);
          const seen = combined.get(key);
          if (seen) seen.value = combine(seen.value, point.value);
          else combined.set(key, { ...point });
        }
      }
      for (const { attributes, value } of combined.values()) result.observe(value, attributes);
    };
    instrument.addCallback(callback);
    this.#registrations.push({ instrument, callback });
  }
}

const sharedGauges = new WeakMap<Api.Meter, SharedGauges>();

export class Telemetry {
  readonly #api: OtelApi;
  readonly #tracer: Api.Tracer;
  /** Undefined: the global meter provider, looked up again on use (see #metrics). */
  readonly #meterProvider: Api.MeterProvider | undefined;
  #instruments: Instruments | undefined;
  #closed = false;
  /** On every span of the store. */
  readonly #spanBase: Api.Attributes;
  /** On every metric point (low cardinality). */
  readonly #metricBase: Api.Attributes;
  readonly #gaugeSource: GaugeSource;
  /** Running consumers of this store: name -> checkpoint. */
  readonly #consumers = new Map<object, { name: string; checkpoint: () => bigint | undefined }>();

  constructor(api: OtelApi, option: Exclude<TelemetryOptions, false>, identity: StoreIdentity, sources: TelemetrySources) {
    this.#api = api;
    // The global tracer provider is a proxy that picks up an SDK registered later; the global
    // meter provider is not, so it is looked up again when metrics are recorded.
    const tracerProvider = (option.tracerProvider as Api.TracerProvider | undefined) ?? api.trace.getTracerProvider();
    this.#tracer = tracerProvider.getTracer(TRACER_NAME);
    this.#meterProvider = option.meterProvider as Api.MeterProvider | undefined;
    this.#spanBase = {
      [ATTRIBUTE.dbSystemName]: 'postgresql',
      // PostgreSQL's semantic conventions: the schema qualified by the database name.
      [ATTRIBUTE.dbNamespace]: identity.database === undefined ? identity.schema : `${identity.database}.${identity.schema}`,
      ...(identity.host !== undefined && { [ATTRIBUTE.serverAddress]: identity.host }),
      ...(identity.port !== undefined && { [ATTRIBUTE.serverPort]: identity.port }),
      [ATTRIBUTE.schema]: identity.schema,
    };
    const base = { [ATTRIBUTE.schema]: identity.schema };
    this.#metricBase = base;
    this.#gaugeSource = {
      pools: () =>
        sources.pools().flatMap((pool) =>
          (['idle', 'used', 'waiting'] as const).map((state) => ({ attributes: { [ATTRIBUTE.poolName]: pool.pool, [ATTRIBUTE.poolState]: state, ...base }, value: pool[state] })),
        ),
      replicaLags: () => sources.replicaLags().map(({ replica, lag }) => ({ attributes: { [ATTRIBUTE.replica]: replica, ...base }, value: lag })),
      consumerLags: () => {
        const head = sources.knownHead();
        const lags: { attributes: Api.Attributes; value: number }[] = [];
        for (const { name, checkpoint } of this.#consumers.values()) {
          const at = checkpoint();
          if (at !== undefined) lags.push({ attributes: { [ATTRIBUTE.consumerName]: name, ...base }, value: head > at ? Number(head - at) : 0 });
        }
        return lags;
      },
    };
    this.#metrics();
  }

  /** The instruments of the meter provider in use now (made again when the global one changed). */
  #metrics(): Instruments {
    const provider = this.#meterProvider ?? this.#api.metrics.getMeterProvider();
    const current = this.#instruments;
    if (current !== undefined && current.provider === provider) return current;
    current?.gauges.sources.delete(this.#gaugeSource);
    const meter = provider.getMeter(TRACER_NAME);
    const histogram = (metric: { name: string; unit: string }, description: string, buckets: number[]): Api.Histogram =>
      meter.createHistogram(metric.name, { unit: metric.unit, description, advice: { explicitBucketBoundaries: buckets } });
    let gauges = sharedGauges.get(meter);
    if (gauges === undefined) sharedGauges.set(meter, (gauges = new SharedGauges(meter)));
    if (!this.#closed) gauges.sources.add(this.#gaugeSource);
    this.#instruments = {
      provider,
      appendDuration: histogram(METRIC.appendDuration, 'Duration of appends, from the call to the answer', DURATION_BUCKETS_S),
      appendEvents: meter.createCounter(METRIC.appendEvents.name, { unit: METRIC.appendEvents.unit, description: 'Events written by appends' }),
      batchCommands: histogram(METRIC.appendBatchCommands, 'Appends that shared one database call', COMMAND_BUCKETS),
      readDuration: histogram(METRIC.readDuration, 'Duration of reads (each page of a stream, subscription or consumer counts as one)', DURATION_BUCKETS_S),
      readEvents: meter.createCounter(METRIC.readEvents.name, { unit: METRIC.readEvents.unit, description: 'Events returned by reads' }),
      executeAttempts: histogram(METRIC.executeAttempts, 'Attempts one execute took (1: no conflict)', ATTEMPT_BUCKETS),
      replicaFallbacks: meter.createCounter(METRIC.replicaFallbacks.name, { unit: METRIC.replicaFallbacks.unit, description: 'Reads that could have gone to a replica and went to the primary' }),
      gauges,
    };
    return this.#instruments;
  }

  /** Stops observing this store (it is closed). */
  close(): void {
    this.#closed = true;
    this.#instruments?.gauges.sources.delete(this.#gaugeSource);
    this.#consumers.clear();
  }

  /**
   * Runs `run` outside any caller's context: work shared by many callers (an append batch) must
   * not become part of the first caller's trace (nor its log records carry that trace's ids).
   */
  detached<T>(run: () => T): T {
    return this.#api.context.with(this.#api.ROOT_CONTEXT, run);
  }

  /** For StoreLog: the active span's ids. */
  readonly traceFields: TraceFields = () => {
    const context = this.#api.trace.getActiveSpan()?.spanContext();
    if (context === undefined || !this.#api.isSpanContextValid(context)) return undefined;
    return { trace_id: context.traceId, span_id: context.spanId };
  };

  /** `commands`: appendCommands' number of commands (undefined for append). */
  startAppend(eventCount: number, condition: boolean, commands?: number): AppendSpan {
    const span = this.#tracer.startSpan(SPAN.append, {
      kind: this.#api.SpanKind.CLIENT,
      attributes: { [ATTRIBUTE.dbOperationName]: 'append', [ATTRIBUTE.eventCount]: eventCount, [ATTRIBUTE.appendCondition]: condition, ...(commands !== undefined && { [ATTRIBUTE.appendCommands]: commands }), ...this.#spanBase },
    });
    return new AppendSpan(this.#api, span, this, eventCount);
  }

  /** Metric attributes of each outcome, made once (an append's end allocates none). */
  readonly #outcomeAttributes = new Map<AppendOutcome, Api.Attributes>();

  /** Called by AppendSpan.end. */
  appendEnded(outcome: AppendOutcome, seconds: number, eventCount: number): void {
    let attributes = this.#outcomeAttributes.get(outcome);
    if (attributes === undefined) this.#outcomeAttributes.set(outcome, (attributes = { ...this.#metricBase, [ATTRIBUTE.appendOutcome]: outcome }));
    const metrics = this.#metrics();
    metrics.appendDuration.record(seconds, attributes);
    if (outcome === 'appended') metrics.appendEvents.add(eventCount, this.#metricBase);
  }

  /** Metric attributes of reads by operation and target, made once. */
  readonly #readAttributes = new Map<string, Api.Attributes>();

  /** Called by ReadSpan. */
  readEnded(operation: string, replica: boolean, seconds: number, eventCount: number, error: unknown): void {
    const key = `${operation}:${replica}${error === undefined ? '' : `:${errorType(error)}`}`;
    let attributes = this.#readAttributes.get(key);
    if (attributes === undefined) {
      attributes = { ...this.#metricBase, [ATTRIBUTE.dbOperationName]: operation, [ATTRIBUTE.readReplica]: replica, ...(error !== undefined && { 'error.type': errorType(error) }) };
      // Error types are few (the library's codes), but bound the map all the same.
      if (this.#readAttributes.size < 64) this.#readAttributes.set(key, attributes);
    }
    const metrics = this.#metrics();
    metrics.readDuration.record(seconds, attributes);
    if (eventCount > 0) metrics.readEvents.add(eventCount, attributes);
  }

  /** One database call of the append batcher carried this many appends. */
  batchSent(commands: number): void {
    this.#metrics().batchCommands.record(commands, this.#metricBase);
  }

  /**
   * A read: a span (CLIENT) when `traced`, the metrics always. Reads of subscriptions and
   * consumers are not traced (an idle follower would start a trace every poll); stream pages
   * belong to the stream's span.
   */
  startRead(operation: 'read' | 'stream' | 'subscribe', consistency: ConsistencyValue, traced: boolean): ReadSpan {
    const span = traced
      ? this.#tracer.startSpan(SPAN.read, {
          kind: this.#api.SpanKind.CLIENT,
          attributes: { [ATTRIBUTE.dbOperationName]: 'read', [ATTRIBUTE.readConsistency]: consistencyName(consistency), ...this.#spanBase },
        })
      : undefined;
    return new ReadSpan(this.#api, span, operation, this);
  }

  /** The span of a whole stream iteration; its pages are read inside its context. */
  startStream(consistency: ConsistencyValue): StreamSpan {
    const span = this.#tracer.startSpan(SPAN.stream, {
      kind: this.#api.SpanKind.CLIENT,
      attributes: { [ATTRIBUTE.dbOperationName]: 'stream', [ATTRIBUTE.readConsistency]: consistencyName(consistency), ...this.#spanBase },
    });
    return new StreamSpan(this.#api, span);
  }

  /** Runs an execute inside its span (INTERNAL), so that its reads and appends are children. */
  async execute<T extends { attempts: number; position: bigint | undefined; events: readonly unknown[] }>(run: () => Promise<T>, attemptsOf: (error: unknown) => number | undefined): Promise<T> {
    const api = this.#api;
    const span = this.#tracer.startSpan(SPAN.execute, { kind: api.SpanKind.INTERNAL, attributes: { ...this.#metricBase } }); // not a database call: no db.* (service graphs would count it as one)
    try {
      const result = await api.context.with(api.trace.setSpan(api.context.active(), span), run);
      span.setAttribute(ATTRIBUTE.executeAttempts, result.attempts);
      span.setAttribute(ATTRIBUTE.eventCount, result.events.length);
      if (result.position !== undefined) span.setAttribute(ATTRIBUTE.position, result.position.toString());
      this.#metrics().executeAttempts.record(result.attempts, this.#metricBase);
      return result;
    } catch (error) {
      const attempts = attemptsOf(error);
      if (attempts !== undefined) {
        span.setAttribute(ATTRIBUTE.executeAttempts, attempts);
        this.#metrics().executeAttempts.record(attempts, this.#metricBase);
      }
      failSpan(api, span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  /**
   * A durable consumer handling one event (CONSUMER): a child of the span that appended it (its
   * `traceparent`), linked to it as well, so that one trace shows the command, its append and
   * every consumer that handled the event. The handler runs inside the span's context.
   */
  async handle<T>(consumer: string, position: bigint, metadata: Record<string, unknown> | undefined, run: () => Promise<T>): Promise<T> {
    const api = this.#api;
    const producer = parseTraceparent(api, metadata?.[TRACEPARENT_KEY]);
    // Without trace context the event starts a trace of its own: as a child of whatever was
    // active when consumer.run() was called (a startup span), every event the consumer handles,
    // for as long as the process runs, would land in that one trace.
    const parent = producer ? api.trace.setSpanContext(api.ROOT_CONTEXT, producer) : api.ROOT_CONTEXT;
    const span = this.#tracer.startSpan(
      SPAN.consumerHandle,
      {
        kind: api.SpanKind.CONSUMER,
        attributes: { [ATTRIBUTE.consumerName]: consumer, [ATTRIBUTE.position]: position.toString(), ...this.#metricBase },
        ...(producer && { links: [{ context: producer }] }),
      },
      parent,
    );
    try {
      return await api.context.with(api.trace.setSpan(parent, span), run);
    } catch (error) {
      failSpan(api, span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  /** The W3C traceparent of the active span (an automation's handle span), for the events it appends. */
  activeTraceparent(): string | undefined {
    const context = this.#api.trace.getActiveSpan()?.spanContext();
    return context === undefined ? undefined : traceparentOf(this.#api, context);
  }

  /** Reports a running consumer's checkpoint for `eventstore.consumer.lag`; returns the unregister function. */
  trackConsumer(name: string, checkpoint: () => bigint | undefined): () => void {
    const key = {};
    this.#consumers.set(key, { name, checkpoint });
    return () => void this.#consumers.delete(key);
  }

  replicaFellBack(reason: string): void {
    this.#metrics().replicaFallbacks.add(1, { [ATTRIBUTE.fallbackReason]: reason, ...this.#metricBase });
  }
}

function traceparentOf(api: OtelApi, context: Api.SpanContext): string | undefined {
  if (!api.isSpanContextValid(context)) return undefined;
  return `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

export class AppendSpan {
  readonly #api: OtelApi;
  readonly #span: Api.Span;
  readonly #telemetry: Telemetry;
  readonly #eventCount: number;
  readonly #startedAt = performance.now();

  constructor(api: OtelApi, span: Api.Span, telemetry: Telemetry, eventCount: number) {
    this.#api = api;
    this.#span = span;
    this.#telemetry = telemetry;
    this.#eventCount = eventCount;
  }

  /** The W3C traceparent of this append's span, when there is a trace to continue. */
  traceparent(): string | undefined {
    return traceparentOf(this.#api, this.#span.spanContext());
  }

  /**
   * The append's answer. `appended`, `idempotent`, `condition_failed` and `duplicate_id` are
   * answers (status UNSET); `aborted` (nothing written: aborted, timed out before sending,
   * overloaded, closed, refused by the server) and `unknown` are failures (status ERROR, the
   * exception recorded).
   */
  end(outcome: AppendOutcome, details: { position?: bigint | undefined; batchCommands?: number | undefined; error?: unknown }): void {
    const span = this.#span;
    span.setAttribute(ATTRIBUTE.appendOutcome, outcome);
    if (details.position !== undefined) span.setAttribute(ATTRIBUTE.position, details.position.toString());
    if (details.batchCommands !== undefined) span.setAttribute(ATTRIBUTE.batchCommands, details.batchCommands);
    if (outcome === 'aborted' || outcome === 'unknown') failSpan(this.#api, span, details.error);
    span.end();
    this.#telemetry.appendEnded(outcome, (performance.now() - this.#startedAt) / 1000, this.#eventCount);
  }
}

export class ReadSpan {
  readonly #api: OtelApi;
  readonly #span: Api.Span | undefined;
  readonly #operation: string;
  readonly #telemetry: Telemetry;
  readonly #startedAt = performance.now();

  constructor(api: OtelApi, span: Api.Span | undefined, operation: string, telemetry: Telemetry) {
    this.#api = api;
    this.#span = span;
    this.#operation = operation;
    this.#telemetry = telemetry;
  }

  end(eventCount: number, head: bigint, target: ReadTarget): void {
    const replica = target.replica !== undefined;
    const span = this.#span;
    if (span) {
      span.setAttribute(ATTRIBUTE.eventCount, eventCount);
      span.setAttribute(ATTRIBUTE.position, head.toString());
      span.setAttribute(ATTRIBUTE.readReplica, replica);
      if (replica) {
        if (target.host !== undefined) span.setAttribute(ATTRIBUTE.serverAddress, target.host);
        if (target.port !== undefined) span.setAttribute(ATTRIBUTE.serverPort, target.port);
      }
      span.end();
    }
    this.#telemetry.readEnded(this.#operation, replica, (performance.now() - this.#startedAt) / 1000, eventCount, undefined);
  }

  fail(error: unknown): void {
    if (this.#span) {
      failSpan(this.#api, this.#span, error);
      this.#span.end();
    }
    this.#telemetry.readEnded(this.#operation, false, (performance.now() - this.#startedAt) / 1000, 0, error);
  }
}

export class StreamSpan {
  readonly #api: OtelApi;
  readonly #span: Api.Span;
  #events = 0;

  constructor(api: OtelApi, span: Api.Span) {
    this.#api = api;
    this.#span = span;
  }

  /** Runs the fetch of the next events inside the stream's context. */
  page<T>(run: () => Promise<T>): Promise<T> {
    const api = this.#api;
    return api.context.with(api.trace.setSpan(api.context.active(), this.#span), run);
  }

  yielded(): void {
    this.#events += 1;
  }

  /** `head`: where the stream ends (the first page's head), when a page was read. */
  end(error: unknown, head: bigint | undefined): void {
    const span = this.#span;
    span.setAttribute(ATTRIBUTE.eventCount, this.#events);
    if (head !== undefined) span.setAttribute(ATTRIBUTE.position, head.toString());
    if (error !== undefined) failSpan(this.#api, span, error);
    span.end();
  }
}

function failSpan(api: OtelApi, span: Api.Span, error: unknown): void {
  if (error instanceof Error) span.recordException(error);
  else if (error !== undefined) span.recordException(String(error));
  span.setAttribute('error.type', errorType(error));
  span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/** The error's code (the library's EventStoreErrorCode) or its class name: low cardinality. */
function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return error instanceof Error ? error.name : '_OTHER';
}

function consistencyName(consistency: ConsistencyValue): string {
  return typeof consistency === 'string' ? consistency : 'at_least';
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** A W3C traceparent as a remote span context; undefined for anything that is not a valid one. */
export function parseTraceparent(api: OtelApi, value: unknown): Api.SpanContext | undefined {
  if (typeof value !== 'string') return undefined;
  const match = TRACEPARENT.exec(value.trim());
  if (!match || match[1] === 'ff' || (match[1] === '00' && match[5] !== undefined)) return undefined;
  const context: Api.SpanContext = { traceId: match[2]!, spanId: match[3]!, traceFlags: parseInt(match[4]!, 16), isRemote: true };
  return api.isSpanContextValid(context) ? context : undefined;
}
