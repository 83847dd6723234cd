/**
 * Worker processes as the orchestrator sees them: forked with tsx, driven over IPC, lined up by
 * a barrier, and all killed (by the handles we keep, never by name) if the run is interrupted.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FromWorker, Task, ToWorker } from './worker.ts';
import type { Measurement } from './workloads.ts';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const live = new Set<ChildProcess>();

export function killAllWorkers(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

/** Releases everyone at once when all `parties` have sent `ready`. */
export class Barrier {
  #waiting: ChildProcess[] = [];
  constructor(readonly parties: number) {}

  arrive(child: ChildProcess): void {
    this.#waiting.push(child);
    if (this.#waiting.length < this.parties) return;
    const released = this.#waiting;
    this.#waiting = [];
    for (const waiter of released) waiter.send({ type: 'go' } satisfies ToWorker);
  }
}

export interface WorkerRun {
  /** The adapter's own name, once it opened. */
  adapterName: Promise<string>;
  /** Resolves after a `background` task's warm-up. */
  running: Promise<void>;
  /** One entry per task: the measurements of its repeats. */
  results: Promise<Measurement[][]>;
  stop(): void;
}

export function launchWorker(library: string, connectionString: string, tasks: Task[], barrier = new Barrier(1)): WorkerRun {
  const child = fork(WORKER, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  live.add(child);
  let opened!: (name: string) => void;
  let running!: () => void;
  const adapterName = new Promise<string>((resolve) => (opened = resolve));
  const runningPromise = new Promise<void>((resolve) => (running = resolve));
  const results = new Promise<Measurement[][]>((resolve, reject) => {
    const collected: Measurement[][] = [];
    let failure: string | undefined;
    child.on('message', (message: FromWorker) => {
      if (message.type === 'opened') opened(message.adapterName);
      else if (message.type === 'ready') barrier.arrive(child);
      else if (message.type === 'running') running();
      else if (message.type === 'result') collected[message.task] = message.measurements;
      else if (message.type === 'error') failure = message.message;
    });
    child.on('exit', (code, signal) => {
      live.delete(child);
      if (code === 0 && collected.length === tasks.length) resolve(collected);
      else reject(new Error(`worker for ${library} failed (exit ${code ?? signal}): ${failure ?? 'no error message'}`));
    });
  });
  // A failure before `running`/`opened` must not leave those awaiting forever.
  results.catch(() => {
    running();
    opened(library);
  });
  child.send({ type: 'start', library, connectionString, tasks } satisfies ToWorker);
  return { adapterName, running: runningPromise, results, stop: () => child.send({ type: 'stop' } satisfies ToWorker) };
}
