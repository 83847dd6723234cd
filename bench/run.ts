/**
 * The benchmark orchestrator: `npm run bench [-- --quick] [--libraries ours,dcb-es,rico]
 * [--workloads W1,W4] [--sizes 100k,1M,10M] [--duration 8] [--warmup 1.5] [--repeats 3]
 * [--peer-max-size 1M] [--w6-size 2.5M] [--clients 1,4,16,64] [--keep-databases] [--tcp]`.
 *
 * Starts the server, measures the pgbench baselines, then runs every workload for each library in
 * its own worker processes on its own fresh databases, printing each figure next to its baseline
 * as it is measured, and writes the results to bench/results/.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Barrier, killAllWorkers, launchWorker } from './children.ts';
import * as pgbench from './pgbench.ts';
import type { BenchResults, ResultRow } from './results-schema.ts';
import { createFreshDatabase, describeServer, dropDatabase, startBenchServer, vacuumAnalyze, type BenchServer } from './server.ts';
import { combine, medianIndex, percentiles, round } from './stats.ts';
import { adapterExists, type PhaseSpec, type Task } from './worker.ts';
import type { GoFigure } from './workloads.ts';

const WORKLOADS = ['W1', 'W1a', 'W2', 'W3', 'W4', 'W5', 'W6'] as const;
type WorkloadName = (typeof WORKLOADS)[number];
const OURS = 'ours';

interface Config {
  quick: boolean;
  libraries: string[];
  workloads: Set<WorkloadName>;
  sizes: number[];
  w6Size: number;
  peerMaxSize: number;
  clients: number[];
  readClients: number[];
  phases: PhaseSpec;
  pgbenchSeconds: number;
  keepDatabases: boolean;
  tcp: boolean;
  outDir: string;
}

// ---------------------------------------------------------------------------------------------
// Arguments

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (!match) throw new Error(`invalid size ${JSON.stringify(text)}: use e.g. 20k, 1M, 2.5M, 10000000`);
  const factor = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[match[2]!]!;
  return Math.round(Number(match[1]) * factor);
}

export function formatSize(size: number): string {
  if (size >= 1e6 && size % 1e5 === 0) return `${size / 1e6}M`;
  if (size >= 1e3 && size % 1e3 === 0) return `${size / 1e3}k`;
  return String(size);
}

function list(text: string): string[] {
  return text.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

function positiveNumber(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got ${JSON.stringify(text)}`);
  return value;
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      libraries: { type: 'string', default: 'ours,dcb-es,rico' },
      workloads: { type: 'string', default: WORKLOADS.join(',') },
      sizes: { type: 'string' },
      'w6-size': { type: 'string' },
      'peer-max-size': { type: 'string', default: '1M' },
      clients: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      repeats: { type: 'string' },
      'keep-databases': { type: 'boolean', default: false },
      tcp: { type: 'boolean', default: false },
      out: { type: 'string', default: fileURLToPath(new URL('./results/', import.meta.url)) },
    },
    strict: true,
  });
  const quick = values.quick;
  const workloads = list(values.workloads).map((name) => {
    if (!(WORKLOADS as readonly string[]).includes(name)) throw new Error(`unknown workload ${name}: choose from ${WORKLOADS.join(', ')}`);
    return name as WorkloadName;
  });
  const sizes = list(values.sizes ?? (quick ? '20k' : '100k,1M,10M')).map(parseSize).sort((a, b) => a - b);
  const durationSeconds = positiveNumber(values.duration ?? (quick ? '1.5' : '8'), 'duration');
  const libraries = list(values.libraries);
  if (libraries.includes(OURS)) libraries.sort((a, b) => (a === OURS ? -1 : b === OURS ? 1 : 0)); // its tables give the SELECT baseline
  return {
    quick,
    libraries,
    workloads: new Set(workloads),
    sizes,
    w6Size: parseSize(values['w6-size'] ?? (quick ? formatSize(sizes.at(-1)!) : '2.5M')),
    peerMaxSize: parseSize(values['peer-max-size']),
    clients: list(values.clients ?? (quick ? '1,16' : '1,4,16,64')).map((text) => Math.round(positiveNumber(text, 'clients'))),
    readClients: [1, 4],
    phases: {
      warmupMs: 1000 * Number(values.warmup ?? (quick ? '0.3' : '1.5')),
      durationMs: 1000 * durationSeconds,
      repeats: Math.round(positiveNumber(values.repeats ?? (quick ? '1' : '3'), 'repeats')),
    },
    pgbenchSeconds: Math.max(1, Math.floor(durationSeconds)),
    keepDatabases: values['keep-databases'],
    tcp: values.tcp,
    outDir: values.out,
  };
}

// ---------------------------------------------------------------------------------------------
// Rows, baselines and printing

interface Baseline {
  label: string;
  value: number;
  meanMs: number;
}

type Combined = ReturnType<typeof combine>;

function formatNumber(value: number): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: value < 10 ? 3 : value < 100 ? 1 : 0 });
}

class Recorder {
  readonly rows: ResultRow[] = [];
  readonly notes: string[] = [];
  readonly baselines = new Map<string, Baseline>();
  #entitySequence = 0;

  /** A range of entity numbers no other launch uses (each client takes a million of it). */
  nextEntityBase(): number {
    return 1_000_000_000 + this.#entitySequence++ * 100_000_000;
  }

  add(row: ResultRow, shortName: string): void {
    this.rows.push(row);
    console.log(describeRow(row, shortName));
  }
}

function describeRow(row: ResultRow, shortName: string): string {
  const parts = [`${row.workload} ${shortName} ${row.variant}: ${formatNumber(row.throughput)} ${row.unit}`];
  const details: string[] = [];
  const latency = (name: string, value: ResultRow['latencyMs']): void => {
    if (value) details.push(`${name} p50 ${formatNumber(value.p50)} p99 ${formatNumber(value.p99)} ms`);
  };
  if (row.readLatencyMs || row.appendLatencyMs) {
    latency('read', row.readLatencyMs);
    latency('append', row.appendLatencyMs);
  } else latency('latency', row.latencyMs);
  for (const key of ['falseConflicts', 'conflicts', 'violations'] as const) if (row[key] !== undefined) details.push(`${key} ${row[key]}`);
  if (row.peakRssMB !== undefined) details.push(`peak RSS ${formatNumber(row.peakRssMB)} MB`);
  if (details.length > 0) parts.push(` (${details.join(', ')})`);
  if (row.baseline) parts.push(` = ${row.baseline.ratio.toFixed(2)}x ${row.baseline.label}`);
  if (row.notes) parts.push(` [${row.notes}]`);
  return parts.join('');
}

/** Rate figures compare as ours/baseline; ms/op as baseline/ours: above 1 is faster either way. */
function withBaseline(row: ResultRow, baseline: Baseline | undefined): ResultRow {
  if (!baseline) return row;
  if (row.unit === 'ms/op') return { ...row, baseline: { label: `${baseline.label} (ms/op)`, value: round(baseline.meanMs), ratio: round(baseline.meanMs / row.throughput) } };
  return { ...row, baseline: { label: baseline.label, value: round(baseline.value, 1), ratio: round(row.throughput / baseline.value) } };
}

interface RowSpec {
  workload: ResultRow['workload'];
  library: string;
  variant: string;
  unit: ResultRow['unit'];
  figure: (repeat: Combined) => number;
  baseline?: Baseline | undefined;
  fields?: Partial<ResultRow>;
}

const perOp = (repeat: Combined): number => repeat.rate;
const perEvent = (repeat: Combined): number => repeat.eventRate;
const meanOpMs = (repeat: Combined): number => percentiles(repeat.samples.op ?? [])?.mean ?? NaN;

/** A row from the repeats of a point (each the combination of its processes): the median repeat. */
function buildRow(repeats: Combined[], spec: RowSpec): ResultRow {
  const figures = repeats.map(spec.figure);
  const chosen = repeats[medianIndex(figures)]!;
  const mainSamples = chosen.samples.loop ?? chosen.samples.op ?? chosen.samples.append ?? chosen.samples.read ?? [];
  const row: ResultRow = { workload: spec.workload, library: spec.library, variant: spec.variant, throughput: round(figures[medianIndex(figures)]!, 3), unit: spec.unit, ...spec.fields };
  const latency = percentiles(mainSamples);
  if (latency) row.latencyMs = latency;
  const read = chosen.samples.read && percentiles(chosen.samples.read);
  const append = chosen.samples.append && percentiles(chosen.samples.append);
  if (read && (chosen.samples.loop || chosen.samples.append)) row.readLatencyMs = read;
  if (append && (chosen.samples.loop || chosen.samples.read)) row.appendLatencyMs = append;
  const counters = chosen.counters;
  if (counters.falseConflicts !== undefined || spec.workload === 'W1' || spec.workload === 'W1a') row.falseConflicts = counters.falseConflicts ?? 0;
  if (counters.conflicts !== undefined || spec.workload === 'W2') row.conflicts = counters.conflicts ?? 0;
  if (spec.workload === 'W2') row.violations = (counters.violations ?? 0) + (counters.countMismatch ?? 0);
  if (chosen.peakRssMB !== undefined) row.peakRssMB = round(chosen.peakRssMB, 1);
  if (repeats.length > 1) row.repeats = figures.map((figure) => round(figure, 3));
  return withBaseline(row, spec.baseline);
}

// ---------------------------------------------------------------------------------------------
// Running workers

interface Context {
  config: Config;
  server: BenchServer;
  recorder: Recorder;
}

function databaseName(library: string, family: string): string {
  return `bench_${library.replace(/-/g, '_')}_${family}`;
}

/** Runs tasks in one worker; returns, per task, its repeats. */
async function runTasks(library: string, url: string, tasks: Task[]): Promise<{ adapterName: string; repeats: Combined[][] }> {
  const run = launchWorker(library, url, tasks);
  const results = await run.results;
  return { adapterName: await run.adapterName, repeats: results.map((measurements) => measurements.map((measurement) => combine([measurement]))) };
}

/** Runs one task in `processes` workers at once, lined up by a barrier; per repeat, their combination. */
async function runTogether(library: string, url: string, processes: number, makeTask: () => Task): Promise<{ adapterName: string; repeats: Combined[] }> {
  const barrier = new Barrier(processes);
  const runs = Array.from({ length: processes }, () => launchWorker(library, url, [makeTask()], barrier));
  const results = await Promise.all(runs.map((run) => run.results));
  const perProcess = results.map((tasks) => tasks[0]!);
  const repeats = perProcess[0]!.map((_, repeat) => combine(perProcess.map((measurements) => measurements[repeat]!)));
  return { adapterName: await runs[0]!.adapterName, repeats };
}

async function withDatabase(context: Context, library: string, family: string, work: (url: string) => Promise<void>): Promise<void> {
  const name = databaseName(library, family);
  const url = await createFreshDatabase(context.server.adminUrl, name);
  try {
    await work(url);
  } finally {
    if (!context.config.keepDatabases) await dropDatabase(context.server.adminUrl, name);
  }
}

// ---------------------------------------------------------------------------------------------
// Baselines

async function baselineRuns(config: Config, measureOnce: () => Promise<pgbench.PgbenchRun>): Promise<{ chosen: pgbench.PgbenchRun; tps: number[] }> {
  const runs: pgbench.PgbenchRun[] = [];
  for (let repeat = 0; repeat < config.phases.repeats; repeat++) runs.push(await measureOnce());
  const tps = runs.map((run) => run.tps);
  return { chosen: runs[medianIndex(tps)]!, tps };
}

async function recordBaseline(
  context: Context,
  key: string,
  label: string,
  unit: 'tps' | 'rows/s',
  rowsPerTransaction: number,
  fields: Partial<ResultRow>,
  measureOnce: () => Promise<pgbench.PgbenchRun>,
): Promise<void> {
  const { chosen, tps } = await baselineRuns(context.config, measureOnce);
  const value = chosen.tps * rowsPerTransaction;
  context.recorder.baselines.set(key, { label, value, meanMs: chosen.latencyMeanMs });
  const row: ResultRow = { workload: 'baseline', library: 'pgbench', variant: label.replace(/^pgbench /, ''), throughput: round(value, 1), unit, ...fields };
  const latency = percentiles(chosen.latenciesMs);
  if (latency) row.latencyMs = latency;
  if (tps.length > 1) row.repeats = tps.map((value) => round(value * rowsPerTransaction, 1));
  context.recorder.add(row, '');
}

async function writeBaselines(context: Context): Promise<void> {
  const { config } = context;
  const wantsAppends = ['W1', 'W1a', 'W3', 'W4', 'W6'].some((name) => config.workloads.has(name as WorkloadName));
  if (!wantsAppends) return;
  await withDatabase(context, 'pgbench', 'baseline', async (url) => {
    await pgbench.createBaselineTable(url);
    const insertClients = [...new Set([...config.clients, 16])].sort((a, b) => a - b);
    for (const clients of insertClients) {
      await recordBaseline(context, `insert@${clients}`, `pgbench INSERT C=${clients}`, 'tps', 1, { clients }, () => pgbench.insertOne(url, clients, config.pgbenchSeconds));
    }
    for (const rows of [100, 1000]) {
      await recordBaseline(context, `series@${rows}`, `pgbench INSERT..generate_series(${rows})`, 'rows/s', rows, { clients: 1, batchSize: rows }, () =>
        pgbench.insertSeries(url, rows, config.pgbenchSeconds),
      );
    }
  });
}

async function readBaselines(context: Context, url: string, size: number, clientCounts: number[]): Promise<void> {
  for (const clients of clientCounts) {
    await recordBaseline(context, `select@${size}@${clients}`, `pgbench SELECT size=${formatSize(size)} C=${clients}`, 'tps', 1, { clients, storeSize: size }, () =>
      pgbench.decisionRead(url, clients, context.config.pgbenchSeconds),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Workload families

async function decisionLoops(context: Context, library: string): Promise<void> {
  const { config, recorder } = context;
  await withDatabase(context, library, 'w1', async (url) => {
    const tasks: Task[] = config.clients.map((clients) => ({ kind: 'W1', clients, entityBase: recorder.nextEntityBase(), phases: config.phases }));
    const { adapterName, repeats } = await runTasks(library, url, tasks);
    config.clients.forEach((clients, index) => {
      const row = buildRow(repeats[index]!, { workload: 'W1', library: adapterName, variant: `C=${clients}`, unit: 'loops/s', figure: perOp, baseline: recorder.baselines.get(`insert@${clients}`), fields: { clients, processes: 1 } });
      recorder.add(row, library);
    });
    const together = await runTogether(library, url, 4, () => ({ kind: 'W1', clients: 4, entityBase: recorder.nextEntityBase(), phases: config.phases }));
    recorder.add(
      buildRow(together.repeats, { workload: 'W1', library: together.adapterName, variant: '4 processes x 4 clients', unit: 'loops/s', figure: perOp, baseline: recorder.baselines.get('insert@16'), fields: { clients: 16, processes: 4 } }),
      library,
    );
  });
}

async function appendOnly(context: Context, library: string): Promise<void> {
  const { config, recorder } = context;
  await withDatabase(context, library, 'w1a', async (url) => {
    const tasks: Task[] = config.clients.map((clients) => ({ kind: 'W1a', clients, entityBase: recorder.nextEntityBase(), phases: config.phases }));
    const { adapterName, repeats } = await runTasks(library, url, tasks);
    config.clients.forEach((clients, index) => {
      recorder.add(
        buildRow(repeats[index]!, { workload: 'W1a', library: adapterName, variant: `C=${clients}`, unit: 'appends/s', figure: perOp, baseline: recorder.baselines.get(`insert@${clients}`), fields: { clients, processes: 1, conditional: true } }),
        library,
      );
    });
  });
}

async function contention(context: Context, library: string): Promise<void> {
  const { config, recorder } = context;
  await withDatabase(context, library, 'w2', async (url) => {
    const { adapterName, repeats } = await runTasks(library, url, [{ kind: 'W2', clients: 8, entityBase: recorder.nextEntityBase(), phases: config.phases }]);
    const row = buildRow(repeats[0]!, { workload: 'W2', library: adapterName, variant: 'C=8 on one boundary', unit: 'successes/s', figure: perOp, fields: { clients: 8 } });
    const chosen = repeats[0]![medianIndex(repeats[0]!.map(perOp))]!;
    row.notes = `violations = successes sharing a read position (${chosen.counters.violations ?? 0}) + |events in the boundary - successes| (${chosen.counters.countMismatch ?? 0})`;
    recorder.add(row, library);
  });
}

async function batchAppends(context: Context, library: string): Promise<void> {
  const { config, recorder } = context;
  const points = [100, 1000].flatMap((batchSize) => [false, true].map((conditional) => ({ batchSize, conditional })));
  await withDatabase(context, library, 'w3', async (url) => {
    const tasks: Task[] = points.map((point) => ({ kind: 'W3', ...point, entityBase: recorder.nextEntityBase(), phases: config.phases }));
    const { adapterName, repeats } = await runTasks(library, url, tasks);
    points.forEach(({ batchSize, conditional }, index) => {
      const variant = `batch=${batchSize} ${conditional ? 'conditional' : 'unconditional'}`;
      recorder.add(
        buildRow(repeats[index]!, { workload: 'W3', library: adapterName, variant, unit: 'events/s', figure: perEvent, baseline: recorder.baselines.get(`series@${batchSize}`), fields: { clients: 1, batchSize, conditional } }),
        library,
      );
    });
  });
}

/** The sizes the scale family visits for a library: the W4 sizes and the W6 size, within its limit. */
function scaleStops(config: Config, library: string): { stops: number[]; w6Stop: number | undefined; skipped: number[] } {
  const limit = library === OURS ? Infinity : config.peerMaxSize;
  const wanted = new Set<number>();
  if (config.workloads.has('W4') || config.workloads.has('W5')) for (const size of config.sizes) wanted.add(size);
  if (config.workloads.has('W6')) wanted.add(config.w6Size);
  const all = [...wanted].sort((a, b) => a - b);
  const stops = all.filter((size) => size <= limit);
  const skipped = all.filter((size) => size > limit);
  const w6Stop = !config.workloads.has('W6') ? undefined : config.w6Size <= limit ? config.w6Size : stops.at(-1);
  return { stops, w6Stop, skipped };
}

/** A task of the scale family and how its repeats become a row. */
interface PlannedTask {
  task: Task;
  record: (adapterName: string, repeats: Combined[]) => void;
}

/**
 * The store is grown once per size (then VACUUM ANALYZE, as after any bulk load, for every library
 * alike); one worker runs the W4 reads, W6 and W5 that belong to that size (pgbench SELECT runs after it, on ours, and the rows are built then, so
 * their baselines exist); the read under load needs two workers at once and comes last.
 */
async function scale(context: Context, library: string): Promise<void> {
  const { config, recorder } = context;
  const { stops, w6Stop, skipped } = scaleStops(config, library);
  if (skipped.length > 0) recorder.notes.push(`${library}: sizes ${skipped.map(formatSize).join(', ')} skipped (above --peer-max-size ${formatSize(config.peerMaxSize)}: loading them takes too long).`);
  if (stops.length === 0) return;
  await withDatabase(context, library, 'scale', async (url) => {
    let loaded = 0;
    for (const size of stops) {
      const isReadSize = config.sizes.includes(size) && config.workloads.has('W4');
      const load = loadTask(context, library, loaded, size);
      const loadRun = await runTasks(library, url, [load.task]);
      load.record(loadRun.adapterName, loadRun.repeats[0]!);
      await vacuumAnalyze(url);
      const planned = [
        ...(isReadSize ? decisionReadTasks(context, library, size) : []),
        ...(size === w6Stop ? goFigureTasks(context, library, size) : []),
        ...(config.workloads.has('W5') && size === stops.at(-1) ? [streamTask(context, library, size)] : []),
      ];
      const { adapterName, repeats } = planned.length > 0 ? await runTasks(library, url, planned.map((plan) => plan.task)) : { adapterName: loadRun.adapterName, repeats: [] };
      if (library === OURS && (isReadSize || size === w6Stop)) await readBaselines(context, url, size, isReadSize ? config.readClients : [1]);
      planned.forEach((plan, index) => plan.record(adapterName, repeats[index]!));
      if (isReadSize) await readUnderLoad(context, library, url, size);
      loaded = size;
    }
  });
}

function loadTask(context: Context, library: string, from: number, to: number): PlannedTask {
  return {
    task: { kind: 'load', from, to, concurrency: 2 },
    record: (adapterName, repeats) => {
      const row = buildRow(repeats, { workload: 'W4-load', library: adapterName, variant: `size=${formatSize(to)} (+${formatSize(to - from)})`, unit: 'events/s', figure: perEvent, baseline: context.recorder.baselines.get('series@1000'), fields: { storeSize: to, clients: 2 } });
      row.notes = 'latency is per append call of maxPreloadBatch events; 2 loaders at once';
      context.recorder.add(row, library);
    },
  };
}

function decisionReadTasks(context: Context, library: string, size: number): PlannedTask[] {
  const { config, recorder } = context;
  return config.readClients.map((clients) => ({
    task: { kind: 'W4', clients, seed: clients * 7 + size, phases: config.phases },
    record: (adapterName, repeats) =>
      recorder.add(
        buildRow(repeats, { workload: 'W4', library: adapterName, variant: `size=${formatSize(size)} C=${clients}`, unit: 'reads/s', figure: perOp, baseline: recorder.baselines.get(`select@${size}@${clients}`), fields: { clients, storeSize: size } }),
        library,
      ),
  }));
}

/** One reader while W1 runs at 4 clients in another process of the same library. */
async function readUnderLoad(context: Context, library: string, url: string, size: number): Promise<void> {
  const { config, recorder } = context;
  const background = launchWorker(library, url, [{ kind: 'background', clients: 4, entityBase: recorder.nextEntityBase(), warmupMs: config.phases.warmupMs }]);
  await background.running;
  let reads: { adapterName: string; repeats: Combined[][] };
  try {
    reads = await runTasks(library, url, [{ kind: 'W4', clients: 1, seed: 99 + size, phases: { ...config.phases, warmupMs: 0 } }]);
  } finally {
    background.stop();
  }
  const load = combine((await background.results)[0]!);
  const row = buildRow(reads.repeats[0]!, { workload: 'W4', library: reads.adapterName, variant: `size=${formatSize(size)} C=1 under W1 C=4`, unit: 'reads/s', figure: perOp, baseline: recorder.baselines.get(`select@${size}@1`), fields: { clients: 1, storeSize: size } });
  row.notes = `background W1 C=4 in another process: ${formatNumber(load.rate)} loops/s, false conflicts ${load.counters.falseConflicts ?? 0}; the baseline is the unloaded SELECT`;
  recorder.add(row, library);
}

function goFigureTasks(context: Context, library: string, size: number): PlannedTask[] {
  const { config, recorder } = context;
  const figures: Array<{ figure: GoFigure; variant: string; baselineKey: string | undefined }> = [
    { figure: 'append-1', variant: '1-event append', baselineKey: 'insert@1' },
    { figure: 'append-5', variant: '5-event append', baselineKey: undefined },
    { figure: 'decision-query', variant: 'decision query', baselineKey: `select@${size}@1` },
  ];
  return figures.map(({ figure, variant, baselineKey }, index) => ({
    task: { kind: 'W6', figure, seed: 1000 + index, phases: config.phases },
    record: (adapterName, repeats) => {
      const baseline = baselineKey === undefined ? undefined : recorder.baselines.get(baselineKey);
      const row = buildRow(repeats, { workload: 'W6', library: adapterName, variant: `${variant} size=${formatSize(size)}`, unit: 'ms/op', figure: meanOpMs, baseline, fields: { clients: 1, storeSize: size, conditional: figure !== 'decision-query' } });
      if (size !== config.w6Size) row.notes = `measured at ${formatSize(size)}, not ${formatSize(config.w6Size)} (above --peer-max-size)`;
      recorder.add(row, library);
    },
  }));
}

function streamTask(context: Context, library: string, size: number): PlannedTask {
  const { config, recorder } = context;
  return {
    task: { kind: 'W5', repeats: config.phases.repeats },
    record: (adapterName, repeats) => {
      if (repeats.length === 0) {
        recorder.notes.push(`${library}: W5 skipped, the adapter has no streamAll.`);
        return;
      }
      const row = buildRow(repeats, { workload: 'W5', library: adapterName, variant: `size=${formatSize(size)}`, unit: 'events/s', figure: perEvent, fields: { clients: 1, storeSize: size } });
      const chosen = repeats[medianIndex(repeats.map(perEvent))]!;
      row.notes = `${chosen.events} events streamed (the preload plus what W4 under load and W6 appended)${chosen.counters.outOfOrder ? `, ${chosen.counters.outOfOrder} OUT OF ORDER` : ''}`;
      recorder.add(row, library);
    },
  };
}

async function benchLibrary(context: Context, library: string): Promise<void> {
  const { workloads } = context.config;
  if (workloads.has('W1')) await decisionLoops(context, library);
  if (workloads.has('W1a')) await appendOnly(context, library);
  if (workloads.has('W2')) await contention(context, library);
  if (workloads.has('W3')) await batchAppends(context, library);
  if (workloads.has('W4') || workloads.has('W5') || workloads.has('W6')) await scale(context, library);
}

// ---------------------------------------------------------------------------------------------
// Results

interface ReportModule {
  writeReport(results: BenchResults, outDir: string): Promise<string[]>;
}

async function writeResults(results: BenchResults, outDir: string): Promise<string[]> {
  const reportPath = fileURLToPath(new URL('./report.ts', import.meta.url));
  if (existsSync(reportPath)) {
    const module = (await import(reportPath)) as ReportModule;
    return module.writeReport(results, outDir);
  }
  await mkdir(outDir, { recursive: true });
  const file = `${outDir.replace(/\/$/, '')}/${results.startedAt.replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  return [file];
}

function standingNotes(config: Config): string[] {
  return [
    'Each figure is the median of the repeats (all repeats in `repeats`); latencies are percentiles over every operation of that repeat.',
    'baseline.ratio > 1 means faster than the baseline: throughput / baseline throughput, or baseline ms / ms for ms/op rows.',
    'After each W4 load the harness runs VACUUM (ANALYZE) on that database (every library alike), so reads run on fresh statistics as they would after autovacuum.',
    'W4 stores hold the nominal preload size plus the events W4 (under load) and W6 appended on the way.',
    `Peers are loaded up to --peer-max-size (${formatSize(config.peerMaxSize)}): loading 10M events into them takes too long; larger sizes are ours only.`,
    'pgbench baselines: -M prepared, -j min(2, C); INSERT into a table of the same shape and indexes as the store\'s events table (position from a sequence, id gen_random_uuid() v4 where the store writes UUIDv7); SELECT is the store\'s own read statement on its W4 store.',
    'Durability is never weakened: fsync=on, synchronous_commit=on, full_page_writes=on (see machine.settings).',
  ];
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const wallStart = performance.now();
  const startedAt = new Date().toISOString();
  const config = parseConfig(process.argv.slice(2));
  const libraries = config.libraries.filter((library) => {
    if (adapterExists(library)) return true;
    console.log(`note: skipping ${library}: bench/adapters/${library}.ts does not exist`);
    return false;
  });
  const server = await startBenchServer(config.tcp);
  const stopEverything = async (): Promise<void> => {
    killAllWorkers();
    await server.stop();
  };
  process.once('SIGINT', () => {
    console.log('\ninterrupted: stopping workers and the server');
    void stopEverything().finally(() => process.exit(130));
  });
  try {
    const description = await describeServer(server.adminUrl);
    const pgbenchVersion = await pgbench.pgbenchVersion();
    console.log(`${description.version}\n${pgbenchVersion}\nlibraries: ${libraries.join(', ')}; workloads: ${[...config.workloads].join(', ')}; sizes: ${config.sizes.map(formatSize).join(', ')}`);
    const context: Context = { config, server, recorder: new Recorder() };
    context.recorder.notes.push(...standingNotes(config), `Clients connect over: ${server.transport}.`);
    for (const library of config.libraries.filter((library) => !libraries.includes(library))) context.recorder.notes.push(`${library}: skipped, bench/adapters/${library}.ts does not exist.`);
    await writeBaselines(context);
    for (const library of libraries) await benchLibrary(context, library);
    const results: BenchResults = {
      startedAt,
      finishedAt: new Date().toISOString(),
      quick: config.quick,
      command: ['npm run bench --', ...process.argv.slice(2)].join(' '),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        memGiB: round(os.totalmem() / 2 ** 30, 1),
        node: process.version,
        os: `${os.type()} ${os.release()} ${os.arch()}`,
        postgres: description.version,
        pgbench: pgbenchVersion,
        settings: description.settings,
      },
      rows: context.recorder.rows,
      notes: context.recorder.notes,
    };
    const files = await writeResults(results, config.outDir);
    console.log(`results: ${files.join(', ')}`);
  } finally {
    await stopEverything();
    console.log(`total wall time: ${((performance.now() - wallStart) / 1000).toFixed(1)} s`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
