/**
 * One measured W1 run in one telemetry mode, in a process of its own: the OpenTelemetry globals
 * (context manager, tracer and meter providers) can be set once per process and never taken
 * back, so every mode needs a fresh process. bench/telemetry.ts forks it (execArgv
 * ['--import', 'tsx']) and talks over IPC: parent -> `start`, child -> `result` or `error`, exit.
 *
 * W1 is the main benchmark's own code (decisionLoopClients through bench/adapters/ours.ts, the
 * store's public read and conditional append); each loop runs inside a parent span, as a request
 * span of a service would, in every mode alike (a no-op span without the SDK).
 */
import { writeFile } from 'node:fs/promises';
import { context, metrics, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { EventStore, Query, type EventStoreOptions } from '../src/index.ts';
import createAdapter from './adapters/ours.ts';
import { cpuByGroup, startProfiling, type CpuProfile } from './cpu-profile.ts';
import type { Percentiles } from './results-schema.ts';
import { percentiles } from './stats.ts';
import { decisionLoopClients, measure, type ClientIteration } from './workloads.ts';

/**
 * off: `telemetry: false`. api: @opentelemetry/api present, nothing registered (the global no-op
 * providers), the default option. sdk: what @opentelemetry/sdk-node sets up, recording into
 * memory, registered globally; the default option. sdk-store-off (not run by default): the same
 * SDK, recording the request spans, but the store on `telemetry: false`: what the service's own
 * tracing costs, so that sdk against it is the store's share.
 */
export const TELEMETRY_MODES = ['off', 'api', 'sdk', 'sdk-store-off'] as const;
export type TelemetryMode = (typeof TELEMETRY_MODES)[number];
export const DEFAULT_MODES: readonly TelemetryMode[] = ['off', 'api', 'sdk'];

export interface TelemetryRunRequest {
  type: 'start';
  mode: TelemetryMode;
  connectionString: string;
  clients: number;
  warmupMs: number;
  durationMs: number;
  /** Where to write a CPU profile of the measured run (no profiling without). */
  profileFile?: string;
}

export interface TelemetryRunResult {
  mode: TelemetryMode;
  loops: number;
  elapsedMs: number;
  loopsPerSecond: number;
  /** CPU time (user + system, all threads) of this process per loop during the measured run. */
  cpuMicrosPerLoop: number;
  /** Latency of one loop (read + append), ms. */
  loop: Percentiles;
  falseConflicts: number;
  /** sdk: spans and metric exports that reached the in-memory exporters during the measured run. */
  spansPerLoop?: number;
  metricExports?: number;
  /** Whether the last event written carries a traceparent in its metadata. */
  traceparentStored: boolean;
  peakRssMB: number;
  /** With profileFile: µs of CPU per loop by package or file (see bench/cpu-profile.ts). */
  cpuMicrosPerLoopByGroup?: Record<string, number>;
}

export type FromTelemetryWorker = { type: 'result'; result: TelemetryRunResult } | { type: 'error'; message: string };

/** The span that stands for a service's request around each decision. */
const REQUEST_SPAN = 'bench.W1.decision';

interface Recording {
  /** Flushes the span processor, then counts what reached the exporters since the start. */
  exported(): Promise<{ spans: number; metricExports: number }>;
  shutdown(): Promise<void>;
}

/**
 * The SDK as @opentelemetry/sdk-node sets it up (AsyncLocalStorage context manager, batching span
 * processor with its default buffer, periodic metric reader), exporting into memory. The
 * exporters are emptied every second so memory stays bounded; the counts are kept.
 */
function registerSdk(): Recording {
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(spanExporter)] });
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const meterProvider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 1000 })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  let spans = 0;
  let metricExports = 0;
  const drain = (): void => {
    spans += spanExporter.getFinishedSpans().length;
    spanExporter.reset();
    metricExports += metricExporter.getMetrics().length;
    metricExporter.reset();
  };
  const timer = setInterval(drain, 1000);
  timer.unref();
  return {
    async exported() {
      await tracerProvider.forceFlush();
      drain();
      return { spans, metricExports };
    },
    async shutdown() {
      clearInterval(timer);
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}

function inRequestSpan(iteration: ClientIteration): ClientIteration {
  const tracer = trace.getTracer('dynamic-streams-eventstore-bench');
  return (recorder) => tracer.startActiveSpan(REQUEST_SPAN, { kind: SpanKind.SERVER }, (span) => iteration(recorder).finally(() => span.end()));
}

async function lastEventHasTraceparent(connectionString: string): Promise<boolean> {
  const store = await EventStore.connect({ connectionString, telemetry: false, migrate: false, poolSize: 1 });
  try {
    const { events } = await store.read(Query.all(), { backwards: true, limit: 1 });
    return typeof events[0]?.metadata?.traceparent === 'string';
  } finally {
    await store.close();
  }
}

async function run(request: TelemetryRunRequest): Promise<TelemetryRunResult> {
  const recording = request.mode === 'sdk' || request.mode === 'sdk-store-off' ? registerSdk() : undefined;
  const options: Omit<EventStoreOptions, 'connectionString'> = request.mode === 'off' || request.mode === 'sdk-store-off' ? { telemetry: false } : {};
  const adapter = createAdapter(options);
  await adapter.open(request.connectionString);
  let cpuAtStart = process.cpuUsage();
  let exportedAtStart = { spans: 0, metricExports: 0 };
  let beforeRepeats = 0;
  let stopProfiling: (() => Promise<CpuProfile>) | undefined;
  let profile: CpuProfile | undefined;
  let measurement;
  let cpu: NodeJS.CpuUsage | undefined;
  try {
    const makeClients = decisionLoopClients(adapter, request.clients, 1_000_000_000);
    [measurement] = await measure(
      {
        warmupMs: request.warmupMs,
        durationMs: request.durationMs,
        repeats: 1,
        // Called before the warm-up and before the measured run: the second call starts the counts.
        beforeRepeat: async () => {
          if (++beforeRepeats < 2) return;
          if (recording) exportedAtStart = await recording.exported();
          if (request.profileFile !== undefined) stopProfiling = await startProfiling();
          cpuAtStart = process.cpuUsage();
        },
      },
      () => makeClients().map(inRequestSpan),
    );
    cpu = process.cpuUsage(cpuAtStart);
    profile = await stopProfiling?.();
  } finally {
    await adapter.close();
  }
  const exportedAtEnd = recording ? await recording.exported() : undefined;
  await recording?.shutdown();
  if (!measurement || !cpu) throw new Error('measure() returned no measurement');
  const loops = measurement.ops;
  const result: TelemetryRunResult = {
    mode: request.mode,
    loops,
    elapsedMs: measurement.elapsedMs,
    loopsPerSecond: loops / (measurement.elapsedMs / 1000),
    cpuMicrosPerLoop: loops > 0 ? (cpu.user + cpu.system) / loops : 0,
    loop: percentiles(measurement.samples.loop ?? []) ?? { p50: 0, p95: 0, p99: 0, mean: 0 },
    falseConflicts: measurement.counters.falseConflicts ?? 0,
    traceparentStored: await lastEventHasTraceparent(request.connectionString),
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  };
  if (profile && request.profileFile !== undefined) {
    await writeFile(request.profileFile, JSON.stringify(profile));
    result.cpuMicrosPerLoopByGroup = {};
    for (const [group, micros] of cpuByGroup(profile)) result.cpuMicrosPerLoopByGroup[group] = loops > 0 ? micros / loops : 0;
  }
  if (exportedAtEnd) {
    result.spansPerLoop = loops > 0 ? (exportedAtEnd.spans - exportedAtStart.spans) / loops : 0;
    result.metricExports = exportedAtEnd.metricExports - exportedAtStart.metricExports;
  }
  return result;
}

function send(message: FromTelemetryWorker): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())));
}

if (process.send) {
  process.once('message', (request: TelemetryRunRequest) => {
    run(request).then(
      async (result) => {
        await send({ type: 'result', result });
        process.exit(0);
      },
      async (error: unknown) => {
        await send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }).catch(() => undefined);
        process.exit(1);
      },
    );
  });
}
