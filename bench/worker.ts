/**
 * The child process that runs workload steps for ONE library, so that no library can change
 * another's `pg` type parsers or share its pool. The orchestrator forks it (execArgv
 * ['--import', 'tsx']) and talks over IPC only: libraries may log to the console.
 *
 * Protocol: parent -> `start` (library, database, tasks); the worker opens the adapter, and
 * before every warm-up and repeat sends `ready` and waits for `go` (the barrier that lines up
 * several processes); it answers each task with `result`, then closes the adapter and exits.
 * A `background` task sends `running` after its warm-up and runs until the parent sends `stop`.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BenchAdapter } from './adapter.ts';
import {
  appendOnlyClients,
  backgroundDecisionLoop,
  batchAppendClients,
  contention,
  decisionLoopClients,
  goFigureClient,
  measure,
  preload,
  randomReadClients,
  streamEverything,
  type GoFigure,
  type Measurement,
  type Phases,
} from './workloads.ts';

export interface PhaseSpec {
  warmupMs: number;
  durationMs: number;
  repeats: number;
}

export type Task =
  | { kind: 'W1'; clients: number; entityBase: number; phases: PhaseSpec }
  | { kind: 'W1a'; clients: number; entityBase: number; phases: PhaseSpec }
  | { kind: 'W2'; clients: number; entityBase: number; phases: PhaseSpec }
  | { kind: 'W3'; batchSize: number; conditional: boolean; entityBase: number; phases: PhaseSpec }
  | { kind: 'load'; from: number; to: number; concurrency: number }
  | { kind: 'W4'; clients: number; seed: number; phases: PhaseSpec }
  | { kind: 'W5'; repeats: number }
  | { kind: 'W6'; figure: GoFigure; seed: number; phases: PhaseSpec }
  | { kind: 'background'; clients: number; entityBase: number; warmupMs: number };

export type ToWorker = { type: 'start'; library: string; connectionString: string; tasks: Task[] } | { type: 'go' } | { type: 'stop' };

export type FromWorker =
  | { type: 'opened'; adapterName: string }
  | { type: 'ready' }
  | { type: 'running' }
  | { type: 'result'; task: number; measurements: Measurement[] }
  | { type: 'error'; message: string }
  | { type: 'done' };

export const LIBRARY_NAME = /^[a-z][a-z0-9-]*$/;

/** The adapter module of a library, bench/adapters/<name>.ts. */
export function adapterPath(library: string): string {
  if (!LIBRARY_NAME.test(library)) throw new Error(`invalid library name ${JSON.stringify(library)}`);
  return fileURLToPath(new URL(`./adapters/${library}.ts`, import.meta.url));
}

export function adapterExists(library: string): boolean {
  return existsSync(adapterPath(library));
}

async function loadAdapter(library: string): Promise<BenchAdapter> {
  const module = (await import(adapterPath(library))) as { default?: () => BenchAdapter };
  if (typeof module.default !== 'function') throw new Error(`${adapterPath(library)} has no default export createAdapter()`);
  return module.default();
}

function send(message: FromWorker): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())));
}

/** Messages from the parent, as awaitable events. */
class Inbox {
  #waiting = new Map<string, Array<() => void>>();
  #arrived = new Map<string, number>();

  constructor() {
    process.on('message', (message: ToWorker) => {
      if (message.type === 'start') return;
      const waiter = this.#waiting.get(message.type)?.shift();
      if (waiter) waiter();
      else this.#arrived.set(message.type, (this.#arrived.get(message.type) ?? 0) + 1);
    });
  }

  next(type: 'go' | 'stop'): Promise<void> {
    const arrived = this.#arrived.get(type) ?? 0;
    if (arrived > 0) {
      this.#arrived.set(type, arrived - 1);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const list = this.#waiting.get(type) ?? [];
      list.push(resolve);
      this.#waiting.set(type, list);
    });
  }
}

async function runTask(adapter: BenchAdapter, task: Task, inbox: Inbox): Promise<Measurement[]> {
  const phases = (spec: PhaseSpec): Phases => ({
    ...spec,
    beforeRepeat: async () => {
      await send({ type: 'ready' });
      await inbox.next('go');
    },
  });
  switch (task.kind) {
    case 'W1':
      return measure(phases(task.phases), decisionLoopClients(adapter, task.clients, task.entityBase));
    case 'W1a':
      return measure(phases(task.phases), await appendOnlyClients(adapter, task.clients, task.entityBase));
    case 'W2':
      return contention(adapter, task.clients, task.entityBase, phases(task.phases));
    case 'W3':
      return measure(phases(task.phases), await batchAppendClients(adapter, task.batchSize, task.conditional, task.entityBase));
    case 'load':
      return [await preload(adapter, task.from, task.to, task.concurrency)];
    case 'W4':
      return measure(phases(task.phases), randomReadClients(adapter, task.clients, task.seed));
    case 'W5':
      return streamEverything(adapter, task.repeats);
    case 'W6':
      return measure(phases(task.phases), goFigureClient(adapter, task.figure, task.seed));
    case 'background':
      return [await backgroundDecisionLoop(adapter, task.clients, task.entityBase, task.warmupMs, () => void send({ type: 'running' }), inbox.next('stop'))];
  }
}

/** Keeps 3 decimals of each latency: enough for µs, and a smaller IPC message. */
function compact(measurement: Measurement): Measurement {
  const samples: Record<string, number[]> = {};
  for (const [name, values] of Object.entries(measurement.samples)) samples[name] = values.map((value) => Math.round(value * 1000) / 1000);
  return { ...measurement, samples };
}

async function main(): Promise<void> {
  const inbox = new Inbox();
  const start = await new Promise<Extract<ToWorker, { type: 'start' }>>((resolve) => {
    const onMessage = (message: ToWorker): void => {
      if (message.type !== 'start') return;
      process.off('message', onMessage);
      resolve(message);
    };
    process.on('message', onMessage);
  });
  const adapter = await loadAdapter(start.library);
  await adapter.open(start.connectionString);
  try {
    await send({ type: 'opened', adapterName: adapter.name });
    for (const [index, task] of start.tasks.entries()) {
      const measurements = await runTask(adapter, task, inbox);
      await send({ type: 'result', task: index, measurements: measurements.map(compact) });
    }
  } finally {
    await adapter.close();
  }
  await send({ type: 'done' });
}

if (process.send) {
  main().then(
    () => process.exit(0),
    async (error: unknown) => {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      await send({ type: 'error', message }).catch(() => undefined);
      process.exit(1);
    },
  );
}
