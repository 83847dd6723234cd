// What OpenTelemetry costs the store, measured in one run: W1 (decision read, decide, conditional
// append, on disjoint entities) from C clients in one process, in each mode
//
//   off   telemetry: false
//   api   @opentelemetry/api installed, no SDK registered (the global no-op providers)
//   sdk   the SDK as @opentelemetry/sdk-node sets it up, recording into in-memory exporters
//   sdk-store-off (only when asked for) the same SDK with the store on telemetry: false: what the
//         service's own tracing (context manager, request spans) costs without the store's
//
// Every run is a process of its own (the OpenTelemetry globals stick to a process) on a fresh
// database of the same server, and runs alternate off, api, sdk, sdk, api, off, ... so that the
// drift of this shared machine falls on every mode alike. Only the ratios to `off` are
// comparable across machines. Targets: sdk/off >= 0.90, api/off >= 0.97 at 16 clients.
//
// npm run bench:telemetry [-- --clients 16 --duration 8 --warmup 2 --repeats 3 --modes off,api,sdk]
//                         [--tcp] [--out bench/results/] [--cpu-prof]
// --cpu-prof profiles each measured run (node:inspector) and prints the CPU per loop by package.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createFreshDatabase, describeServer, dropDatabase, startBenchServer, type ServerDescription } from './server.ts';
import { medianIndex, round } from './stats.ts';
import { DEFAULT_MODES, TELEMETRY_MODES, type FromTelemetryWorker, type TelemetryMode, type TelemetryRunRequest, type TelemetryRunResult } from './telemetry-worker.ts';

const WORKER = fileURLToPath(new URL('./telemetry-worker.ts', import.meta.url));
/** Most a mode may lose against `off` (the targets). */
const TARGET_LOSS: Partial<Record<TelemetryMode, number>> = { api: 0.03, sdk: 0.1 };

function positiveNumber(text: string, name: string, allowZero = false): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) throw new Error(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${JSON.stringify(text)}`);
  return value;
}

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    modes: { type: 'string', default: DEFAULT_MODES.join(',') },
    tcp: { type: 'boolean', default: false },
    out: { type: 'string', default: fileURLToPath(new URL('./results/', import.meta.url)) },
    'cpu-prof': { type: 'boolean', default: false },
  },
  strict: true,
});
const CLIENTS = Math.round(positiveNumber(values.clients, 'clients'));
const DURATION_MS = 1000 * positiveNumber(values.duration, 'duration');
const WARMUP_MS = 1000 * positiveNumber(values.warmup, 'warmup', true);
const REPEATS = Math.round(positiveNumber(values.repeats, 'repeats'));
const MODES = values.modes.split(',').map((name) => {
  const mode = name.trim();
  if (!(TELEMETRY_MODES as readonly string[]).includes(mode)) throw new Error(`unknown mode ${JSON.stringify(mode)}: choose from ${TELEMETRY_MODES.join(', ')}`);
  return mode as TelemetryMode;
});
if (new Set(MODES).size !== MODES.length) throw new Error(`--modes names a mode twice: ${values.modes}`);

/** off, api, sdk, sdk, api, off, off, api, sdk, ...: each mode as often early as late. */
function schedule(): TelemetryMode[] {
  const order: TelemetryMode[] = [];
  for (let repeat = 0; repeat < REPEATS; repeat++) order.push(...(repeat % 2 === 0 ? MODES : [...MODES].reverse()));
  return order;
}

let current: ChildProcess | undefined;

function runWorker(request: TelemetryRunRequest): Promise<TelemetryRunResult> {
  const child = fork(WORKER, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  current = child;
  return new Promise((resolve, reject) => {
    let result: TelemetryRunResult | undefined;
    let failure: string | undefined;
    child.on('message', (message: FromTelemetryWorker) => {
      if (message.type === 'result') result = message.result;
      else failure = message.message;
    });
    child.on('exit', (code, signal) => {
      current = undefined;
      if (code === 0 && result) resolve(result);
      else reject(new Error(`${request.mode} worker failed (exit ${code ?? signal}): ${failure ?? 'no error message'}`));
    });
    child.send(request);
  });
}

interface ModeSummary {
  mode: TelemetryMode;
  runs: number;
  /** Of the runs' loops/s: the median (lower middle for an even count), min and max. */
  medianLoopsPerSecond: number;
  minLoopsPerSecond: number;
  maxLoopsPerSecond: number;
  /** Median over the runs of each figure. */
  cpuMicrosPerLoop: number;
  loopP50Ms: number;
  loopP99Ms: number;
  spansPerLoop?: number;
  /** medianLoopsPerSecond / off's, when off was measured. */
  ratioToOff?: number;
}

const median = (list: number[]): number => list[medianIndex(list)]!;

function summarize(mode: TelemetryMode, runs: TelemetryRunResult[]): ModeSummary {
  const rates = runs.map((run) => run.loopsPerSecond);
  const summary: ModeSummary = {
    mode,
    runs: runs.length,
    medianLoopsPerSecond: round(median(rates), 1),
    minLoopsPerSecond: round(Math.min(...rates), 1),
    maxLoopsPerSecond: round(Math.max(...rates), 1),
    cpuMicrosPerLoop: round(median(runs.map((run) => run.cpuMicrosPerLoop)), 1),
    loopP50Ms: median(runs.map((run) => run.loop.p50)),
    loopP99Ms: median(runs.map((run) => run.loop.p99)),
  };
  const spans = runs.flatMap((run) => (run.spansPerLoop === undefined ? [] : [run.spansPerLoop]));
  if (spans.length > 0) summary.spansPerLoop = round(median(spans), 2);
  return summary;
}

const startedAt = new Date().toISOString();
const loadAtStart = os.loadavg();
const server = await startBenchServer(values.tcp);
process.once('SIGINT', () => {
  console.log('\ninterrupted: stopping the worker and the server');
  current?.kill('SIGKILL');
  void server.stop().finally(() => process.exit(130));
});
const profileDirectory = values['cpu-prof'] ? await mkdtemp(join(os.tmpdir(), 'dses-telemetry-prof-')) : undefined;
const results: TelemetryRunResult[] = [];
let description: ServerDescription | undefined;
try {
  description = await describeServer(server.adminUrl);
  const order = schedule();
  console.log(`${description.version}\nW1, ${CLIENTS} clients in one process, warm-up ${WARMUP_MS / 1000} s, ${DURATION_MS / 1000} s measured; ${order.length} runs: ${order.join(', ')}`);
  for (const [index, mode] of order.entries()) {
    const database = `dses_telemetry_${process.pid}_${index}`;
    const connectionString = await createFreshDatabase(server.adminUrl, database);
    try {
      const request: TelemetryRunRequest = { type: 'start', mode, connectionString, clients: CLIENTS, warmupMs: WARMUP_MS, durationMs: DURATION_MS };
      if (profileDirectory) request.profileFile = join(profileDirectory, `${String(index + 1).padStart(2, '0')}-${mode}.cpuprofile`);
      const result = await runWorker(request);
      if (result.falseConflicts > 0) throw new Error(`${mode}: ${result.falseConflicts} false conflicts on disjoint entities`);
      if (result.traceparentStored !== (mode === 'sdk')) throw new Error(`${mode}: traceparent ${result.traceparentStored ? 'stored' : 'missing'} in the events' metadata`);
      results.push(result);
      const spans = result.spansPerLoop === undefined ? '' : `, ${result.spansPerLoop.toFixed(2)} spans/loop`;
      console.log(`  run ${index + 1}/${order.length} ${mode.padEnd(Math.max(...MODES.map((name) => name.length)))}  ${result.loopsPerSecond.toFixed(0).padStart(6)} loops/s  ${result.cpuMicrosPerLoop.toFixed(0)} µs CPU/loop${spans}`);
    } finally {
      await dropDatabase(server.adminUrl, database);
    }
  }
} finally {
  current?.kill('SIGKILL');
  await server.stop();
}

const summaries = MODES.map((mode) => summarize(mode, results.filter((result) => result.mode === mode)));
const off = summaries.find((summary) => summary.mode === 'off');
for (const summary of summaries) if (off) summary.ratioToOff = round(summary.medianLoopsPerSecond / off.medianLoopsPerSecond, 3);

console.log(`\n| mode | loops/s (median) | min–max | vs off | client CPU µs/loop | loop p50 ms | loop p99 ms | spans/loop |\n|---|---|---|---|---|---|---|---|`);
for (const summary of summaries) {
  console.log(
    `| ${summary.mode} | ${summary.medianLoopsPerSecond.toFixed(0)} | ${summary.minLoopsPerSecond.toFixed(0)}–${summary.maxLoopsPerSecond.toFixed(0)} | ${summary.ratioToOff === undefined ? '–' : summary.ratioToOff.toFixed(3)} | ${summary.cpuMicrosPerLoop.toFixed(0)} | ${summary.loopP50Ms.toFixed(2)} | ${summary.loopP99Ms.toFixed(2)} | ${summary.spansPerLoop?.toFixed(2) ?? '–'} |`,
  );
}
const verdicts: string[] = [];
if (off) {
  console.log('');
  for (const summary of summaries) {
    if (summary.mode === 'off' || summary.ratioToOff === undefined) continue;
    const loss = TARGET_LOSS[summary.mode];
    const verdict = loss === undefined ? '' : summary.ratioToOff >= 1 - loss ? `  (target >= ${(1 - loss).toFixed(2)}: met)` : `  (target >= ${(1 - loss).toFixed(2)}: MISSED)`;
    const line = `${summary.mode}/off: ${summary.ratioToOff.toFixed(3)}${verdict}`;
    verdicts.push(line);
    console.log(line);
  }
}
if (profileDirectory) printProfiles(profileDirectory);

/** Where each mode's CPU went, per loop, for the groups whose cost differs most from off's. */
function printProfiles(directory: string): void {
  const byMode = new Map<TelemetryMode, Map<string, number>>();
  for (const mode of MODES) {
    const runs = results.filter((result) => result.mode === mode && result.cpuMicrosPerLoopByGroup);
    const sums = new Map<string, number>();
    for (const run of runs) for (const [group, micros] of Object.entries(run.cpuMicrosPerLoopByGroup!)) sums.set(group, (sums.get(group) ?? 0) + micros / runs.length);
    byMode.set(mode, sums);
  }
  const groups = new Set([...byMode.values()].flatMap((sums) => [...sums.keys()]));
  const baseline = byMode.get(MODES.includes('off') ? 'off' : MODES[0]!)!;
  const spread = (group: string): number => Math.max(...MODES.map((mode) => Math.abs((byMode.get(mode)!.get(group) ?? 0) - (baseline.get(group) ?? 0))));
  const shown = [...groups].sort((a, b) => spread(b) - spread(a) || (baseline.get(b) ?? 0) - (baseline.get(a) ?? 0)).slice(0, 20);
  const cell = (mode: TelemetryMode, group: string): string => (byMode.get(mode)!.get(group) ?? 0).toFixed(1);
  console.log(`
CPU µs per loop by package or file, measured runs only (profiles in ${directory}; the profiler adds its own cost to every mode):`);
  console.log(`| group | ${MODES.join(' | ')} |
|---|${MODES.map(() => '---').join('|')}|`);
  for (const group of shown) console.log(`| ${group} | ${MODES.map((mode) => cell(mode, group)).join(' | ')} |`);
  const total = (mode: TelemetryMode): string => [...byMode.get(mode)!.values()].reduce((sum, micros) => sum + micros, 0).toFixed(1);
  console.log(`| all profiled CPU | ${MODES.map(total).join(' | ')} |`);
}

await mkdir(values.out, { recursive: true });
const file = join(values.out, `telemetry-${startedAt.replace(/[:.]/g, '-')}.json`);
const report = {
  startedAt,
  finishedAt: new Date().toISOString(),
  command: ['npm run bench:telemetry', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
  workload: `W1, ${CLIENTS} clients in one process, each loop inside a parent span`,
  config: { clients: CLIENTS, durationMs: DURATION_MS, warmupMs: WARMUP_MS, repeats: REPEATS, modes: MODES },
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    postgres: description?.version,
    transport: server.transport,
    /** 1, 5 and 15 minute load averages when the run started and ended: the machine is shared. */
    loadAverage: { atStart: loadAtStart.map((load) => round(load, 2)), atEnd: os.loadavg().map((load) => round(load, 2)) },
  },
  summaries,
  verdicts,
  runs: results,
};
await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
console.log(`results: ${file}`);
