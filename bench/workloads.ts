/**
 * The workloads, generic over BenchAdapter: each runs the same code against every library and
 * returns raw measurements (every operation's latency, taken with performance.now()); the
 * orchestrator turns them into result rows.
 */
import { performance } from 'node:perf_hooks';
import type { BenchAdapter, BenchPosition } from './adapter.ts';
import { decisionEvent, decisionQuery, freshEntities, PRELOAD_ENTITIES, preloadEvents, randomInt, seededRandom } from './data.ts';

/** One measured run (a repeat) of a workload in one process. */
export interface Measurement {
  elapsedMs: number;
  /** Completed operations: loops, appends, reads, successes or calls, as the workload defines. */
  ops: number;
  /** Events written or read, for the workloads that count events. */
  events: number;
  /** Latency samples in ms, by operation name ('read', 'append', 'loop'). */
  samples: Record<string, number[]>;
  counters: Record<string, number>;
  peakRssMB?: number;
}

export interface Phases {
  warmupMs: number;
  durationMs: number;
  repeats: number;
  /** Called before the warm-up and before each repeat: the barrier that lines processes up. */
  beforeRepeat: () => Promise<void>;
}

export class Recorder {
  readonly samples: Record<string, number[]> = {};
  readonly counters: Record<string, number> = {};
  ops = 0;
  events = 0;

  async time<T>(name: string, operation: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const result = await operation();
    this.sample(name, performance.now() - start);
    return result;
  }

  sample(name: string, ms: number): void {
    (this.samples[name] ??= []).push(ms);
  }

  count(name: string, by = 1): void {
    this.counters[name] = (this.counters[name] ?? 0) + by;
  }

  finish(elapsedMs: number): Measurement {
    return { elapsedMs, ops: this.ops, events: this.events, samples: this.samples, counters: this.counters };
  }
}

/** One iteration of one client; the state a client keeps lives in the closure. */
export type ClientIteration = (recorder: Recorder) => Promise<void>;

/** Runs every client's iteration in a loop until `shouldStop()`; a started iteration completes. */
export async function runClients(clients: ClientIteration[], shouldStop: () => boolean, recorder = new Recorder()): Promise<Measurement> {
  const start = performance.now();
  await Promise.all(
    clients.map(async (iteration) => {
      while (!shouldStop()) await iteration(recorder);
    }),
  );
  return recorder.finish(performance.now() - start);
}

function forMs(durationMs: number): () => boolean {
  const deadline = performance.now() + durationMs;
  return () => performance.now() >= deadline;
}

/** Warm-up once, then `repeats` measured runs of the same clients; `afterRepeat` may add checks. */
export async function measure(
  phases: Phases,
  makeClients: () => ClientIteration[],
  afterRepeat: (measurement: Measurement) => Promise<void> = async () => undefined,
): Promise<Measurement[]> {
  await phases.beforeRepeat();
  if (phases.warmupMs > 0) await runClients(makeClients(), forMs(phases.warmupMs));
  const measurements: Measurement[] = [];
  for (let repeat = 0; repeat < phases.repeats; repeat++) {
    await phases.beforeRepeat();
    const measurement = await runClients(makeClients(), forMs(phases.durationMs));
    await afterRepeat(measurement);
    measurements.push(measurement);
  }
  return measurements;
}

function times<T>(count: number, make: (index: number) => T): T[] {
  return Array.from({ length: count }, (_, index) => make(index));
}

/**
 * W1: read the entity's boundary, append one event conditioned on exactly that read; a fresh
 * entity every 10 appends. Entities are disjoint, so every conflict is a false one.
 */
export function decisionLoopClients(adapter: BenchAdapter, clients: number, entityBase: number): () => ClientIteration[] {
  const states = times(clients, (client) => ({ nextEntity: freshEntities(entityBase, client), random: seededRandom(entityBase + client) }));
  return () =>
    states.map((state) => {
      let entity = state.nextEntity();
      let appends = 0;
      return async (recorder) => {
        const query = decisionQuery(entity);
        const loopStart = performance.now();
        const read = await recorder.time('read', () => adapter.read(query));
        const outcome = await recorder.time('append', () => adapter.append([decisionEvent(entity, state.random)], { query, position: read.position }));
        recorder.sample('loop', performance.now() - loopStart);
        recorder.ops++;
        if (outcome === 'conflict') recorder.count('falseConflicts');
        if (++appends >= 10) {
          entity = state.nextEntity();
          appends = 0;
        }
      };
    });
}

/** A position to condition on for boundaries nobody wrote: any works, since nothing matches them. */
async function anyPosition(adapter: BenchAdapter, entity: number): Promise<BenchPosition> {
  return (await adapter.read(decisionQuery(entity))).position;
}

/**
 * W1a: the append path alone. Every append goes to a boundary never written before, conditioned
 * on it; the client re-reads only after a conflict (which would be a false one).
 */
export async function appendOnlyClients(adapter: BenchAdapter, clients: number, entityBase: number): Promise<() => ClientIteration[]> {
  const states = await Promise.all(
    times(clients, async (client) => {
      const nextEntity = freshEntities(entityBase, client);
      return { nextEntity, random: seededRandom(entityBase + client), position: await anyPosition(adapter, nextEntity()) };
    }),
  );
  return () =>
    states.map((state) => async (recorder) => {
      const entity = state.nextEntity();
      const query = decisionQuery(entity);
      const outcome = await recorder.time('append', () => adapter.append([decisionEvent(entity, state.random)], { query, position: state.position }));
      recorder.ops++;
      if (outcome === 'conflict') {
        recorder.count('falseConflicts');
        state.position = (await adapter.read(query)).position;
      }
    });
}

/**
 * W2: every client on ONE boundary (a new one per repeat), read-decide-append. Two successes
 * conditioned on the same read position would be a lost update; afterwards the boundary must hold
 * exactly as many events as there were successes.
 */
export async function contention(adapter: BenchAdapter, clients: number, entityBase: number, phases: Phases): Promise<Measurement[]> {
  const nextEntity = freshEntities(entityBase, 0);
  const random = seededRandom(entityBase);
  let successKeys = new Set<string>();
  let query = decisionQuery(nextEntity());
  const makeClients = (): ClientIteration[] => {
    const entity = nextEntity();
    query = decisionQuery(entity);
    successKeys = new Set<string>();
    return times(clients, () => async (recorder) => {
      const loopStart = performance.now();
      const read = await recorder.time('read', () => adapter.read(query));
      const outcome = await recorder.time('append', () => adapter.append([decisionEvent(entity, random)], { query, position: read.position }));
      recorder.sample('loop', performance.now() - loopStart);
      if (outcome === 'conflict') return recorder.count('conflicts');
      recorder.ops++;
      const key = adapter.positionKey(read.position);
      if (successKeys.has(key)) recorder.count('violations');
      successKeys.add(key);
    });
  };
  return measure(phases, makeClients, async (measurement) => {
    const stored = (await adapter.read(query)).count;
    measurement.counters.boundaryEvents = stored;
    measurement.counters.countMismatch = Math.abs(stored - measurement.ops);
  });
}

/** W3: one client appending `batchSize` events per call, each event on a fresh entity. */
export async function batchAppendClients(adapter: BenchAdapter, batchSize: number, conditional: boolean, entityBase: number): Promise<() => ClientIteration[]> {
  const nextEntity = freshEntities(entityBase, 0);
  const random = seededRandom(entityBase);
  const position = await anyPosition(adapter, nextEntity());
  return () => [
    async (recorder) => {
      const events = times(batchSize, () => decisionEvent(nextEntity(), random));
      const condition = conditional ? { query: decisionQuery(nextEntity()), position } : undefined;
      const outcome = await recorder.time('append', () => adapter.append(events, condition));
      if (outcome === 'conflict') recorder.count('falseConflicts');
      recorder.ops++;
      recorder.events += batchSize;
    },
  ];
}

/** W4 load: grows the store from `from` to `to` preload events, in the library's largest batches. */
export async function preload(adapter: BenchAdapter, from: number, to: number, concurrency: number): Promise<Measurement> {
  let next = from;
  const recorder = new Recorder();
  const loader = async (): Promise<void> => {
    while (next < to) {
      const start = next;
      const end = Math.min(to, start + adapter.maxPreloadBatch);
      next = end;
      const events = preloadEvents(start, end);
      const outcome = await recorder.time('append', () => adapter.append(events));
      if (outcome !== 'appended') throw new Error(`preload batch ${start}..${end} was not appended: ${outcome}`);
      recorder.ops++;
      recorder.events += events.length;
    }
  };
  const startTime = performance.now();
  await Promise.all(times(concurrency, loader));
  return recorder.finish(performance.now() - startTime);
}

/** W4: decision reads of random preloaded entities. */
export function randomReadClients(adapter: BenchAdapter, clients: number, seed: number): () => ClientIteration[] {
  const randoms = times(clients, (client) => seededRandom(seed * 1000 + client));
  return () =>
    randoms.map((random) => async (recorder) => {
      const read = await recorder.time('read', () => adapter.read(decisionQuery(randomInt(random, PRELOAD_ENTITIES))));
      recorder.ops++;
      recorder.events += read.count;
    });
}

/** W5: every event of the store through streamAll, with the process's peak RSS; nothing without streamAll. */
export async function streamEverything(adapter: BenchAdapter, repeats: number): Promise<Measurement[]> {
  const streamAll = adapter.streamAll?.bind(adapter);
  if (!streamAll) return [];
  const measurements: Measurement[] = [];
  for (let repeat = 0; repeat < repeats; repeat++) {
    let peakRss = process.memoryUsage().rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
    const recorder = new Recorder();
    let last = 0n;
    let outOfOrder = 0;
    const start = performance.now();
    try {
      recorder.events = await streamAll((position) => {
        if (position <= last) outOfOrder++;
        last = position;
      });
    } finally {
      clearInterval(sampler);
    }
    const measurement = recorder.finish(performance.now() - start);
    measurement.ops = recorder.events;
    measurement.counters.outOfOrder = outOfOrder;
    measurement.peakRssMB = Math.max(peakRss / 2 ** 20, process.resourceUsage().maxRSS / 1024);
    measurements.push(measurement);
  }
  return measurements;
}

export type GoFigure = 'append-1' | 'append-5' | 'decision-query';

/**
 * W6, the Go original's three figures, sequential from one client: a conditional append of 1 or 5
 * events (after an untimed decision read of a random preloaded entity), or the decision read itself.
 */
export function goFigureClient(adapter: BenchAdapter, figure: GoFigure, seed: number): () => ClientIteration[] {
  const random = seededRandom(seed);
  return () => [
    async (recorder) => {
      const entity = randomInt(random, PRELOAD_ENTITIES);
      const query = decisionQuery(entity);
      if (figure === 'decision-query') {
        await recorder.time('op', () => adapter.read(query));
      } else {
        const read = await adapter.read(query);
        const events = times(figure === 'append-1' ? 1 : 5, () => decisionEvent(entity, random));
        const outcome = await recorder.time('op', () => adapter.append(events, { query, position: read.position }));
        if (outcome === 'conflict') recorder.count('conflicts');
      }
      recorder.ops++;
    },
  ];
}

/** Runs W1 clients until `stop` resolves (the load under which W4 measures a read), after a warm-up. */
export async function backgroundDecisionLoop(adapter: BenchAdapter, clients: number, entityBase: number, warmupMs: number, onRunning: () => void, stop: Promise<void>): Promise<Measurement> {
  const makeClients = decisionLoopClients(adapter, clients, entityBase);
  if (warmupMs > 0) await runClients(makeClients(), forMs(warmupMs));
  let stopped = false;
  void stop.then(() => (stopped = true));
  onRunning();
  return runClients(makeClients(), () => stopped);
}
