// Runs fault scenarios against a real PostgreSQL through the fault proxy, with real writer
// processes, a subscriber and a durable consumer, and checks every reported outcome against the
// final log. One FaultHarness holds the cluster and the child processes for many scenarios (a
// scenario gets its own schema; killed or stuck children are replaced).
//
// A scenario: warm up (clean load), inject the fault for a while (load continues), heal,
// recover (load continues), stop the writers (each settles its unknown outcomes by repeating
// them with the same ids), settle what killed writers left (the parent repeats those), read the
// final log directly, wait for the subscriber and the consumer to reach its head, check.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { AppendConditionFailedError, AppendOutcomeUnknownError, EventStore, EventStoreError, Query, type EventStoreOptions } from '../../src/index.ts';
import {
  analyzeHistory,
  checkDeadlines,
  checkReadModel,
  checkSubscription,
  checkUniqueClaims,
  type AttemptRecord,
  type LoggedEvent,
  type SettledOutcome,
  type TimedCall,
  type Violation,
} from '../integration/history-checker.ts';
import { seededRandom } from '../seeded-random.ts';
import { FaultCluster } from './cluster.ts';
import { readModelSql } from './observer.ts';
import {
  readRecords,
  type ChildMessage,
  type Deadlines,
  type ObserverConfig,
  type ObserverRecord,
  type ParentMessage,
  type WireOutcome,
  type WriterConfig,
  type WriterRecord,
} from './protocol.ts';
import type { FaultProxy } from './proxy.ts';

export interface RunProfile {
  name: string;
  warmupMs: number;
  /** How long a fault lasts unless the scenario says otherwise. */
  faultMs: number;
  /** A stall must outlast the deadlines, so that they are what ends the waiting. */
  stallMs: number;
  recoveryMs: number;
  writers: number;
  loops: number;
  thinkMs: number;
  accounts: number;
  usernames: number;
  deadlines: Deadlines;
  /** Added to each deadline before a wait counts as an overrun (timers, a busy 2-core machine). */
  slackMs: number;
  catchUpTimeoutMs: number;
}

export const SHORT_PROFILE: RunProfile = {
  name: 'short',
  warmupMs: 300,
  faultMs: 1500,
  stallMs: 7000,
  recoveryMs: 1000,
  writers: 4,
  loops: 3,
  thinkMs: 8,
  accounts: 4,
  usernames: 40,
  deadlines: { appendTimeoutMs: 4000, readTimeoutMs: 2500, connectTimeoutMs: 1500 },
  slackMs: 2000,
  catchUpTimeoutMs: 30_000,
};

export const FULL_PROFILE: RunProfile = {
  ...SHORT_PROFILE,
  name: 'full',
  warmupMs: 1000,
  faultMs: 8000,
  stallMs: 12_000,
  recoveryMs: 3000,
  deadlines: { appendTimeoutMs: 5000, readTimeoutMs: 3000, connectTimeoutMs: 2000 },
  slackMs: 2500,
  writers: 5,
  accounts: 6,
  usernames: 120,
};

export interface FaultContext {
  cluster: FaultCluster;
  proxy: FaultProxy;
  profile: RunProfile;
  random: () => number;
  /** When the fault phase should end (the scenario may overrun it, e.g. waiting for a restart). */
  until: number;
  /** Kills a writer process with SIGKILL while it has an append in flight; starts a replacement. */
  killWriterMidAppend(): Promise<string | undefined>;
  /** Counts one injected fault. */
  injected(count?: number): void;
  note(text: string): void;
  /** A statement on a direct (unproxied) connection. */
  adminQuery<Row extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<Row[]>;
}

export interface Scenario {
  name: string;
  /** One line: what the fault is (for the README and the table). */
  summary: string;
  /** Length of the fault phase (default profile.faultMs). */
  faultMs?: (profile: RunProfile) => number;
  /** Share of the writers' appends and reads on AbortSignal.timeout of a few ms, during the fault. */
  abortShare?: number;
  /** Abort timeouts, ms (default [1, 15]). */
  abortAfterMs?: [number, number];
  /** Share of operations appending a 'Poison' event (fails in the database, breaking its batch), during the fault. */
  poisonShare?: number;
  /** Concurrent loops per writer process (default profile.loops): more makes bigger append batches. */
  loops?: number;
  /** Callers without an abort signal must never fail (only append or hit their condition), reads must succeed. */
  innocentMustSucceed?: boolean;
  inject(context: FaultContext): Promise<void>;
}

export interface ScenarioResult {
  scenario: string;
  operations: number;
  acknowledged: number;
  failed: number;
  unknown: number;
  settled: number;
  lost: number;
  duplicated: number;
  falseFailures: number;
  /** Longest append or read call, ms. */
  longestWaitMs: number;
  /** From the fault's end to the first acknowledged append after it; undefined when none came. */
  recoveryMs: number | undefined;
  faultsInjected: number;
  subscriptionErrors: number;
  consumerErrors: number;
  /** Every violation (history, subscription, read model, uniqueness, deadlines, liveness). */
  violations: Violation[];
  notes: string[];
  durationMs: number;
  /** Records of this scenario (kept only when it has violations). */
  recordDir: string | undefined;
}

const KNOWN_CODES = new Set([
  'INVALID_INPUT',
  'APPEND_CONDITION_FAILED',
  'DUPLICATE_EVENT_ID',
  'STORE_CLOSED',
  'ABORTED',
  'DATABASE_ERROR',
  'APPEND_OUTCOME_UNKNOWN',
  'OVERLOADED',
  'TIMEOUT',
]);

const WRITER_ENTRY = fileURLToPath(new URL('./writer.ts', import.meta.url));
const OBSERVER_ENTRY = fileURLToPath(new URL('./observer.ts', import.meta.url));

/** A child process of the suite (writer or observer) and what it told us. */
class Child {
  readonly name: string;
  readonly process: ChildProcess;
  exited = false;
  killedAt: number | undefined;
  readonly fatal: string[] = [];
  progress: Extract<ChildMessage, { type: 'progress' }> | undefined;
  readonly #waiting = new Map<ChildMessage['type'], (() => void)[]>();
  readonly #received = new Set<ChildMessage['type']>();

  constructor(name: string, entry: string) {
    this.name = name;
    this.process = fork(entry, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.process.on('message', (message: ChildMessage) => {
      if (message.type === 'progress') this.progress = message;
      if (message.type === 'fatal') this.fatal.push(message.message);
      this.#received.add(message.type);
      for (const resolve of this.#waiting.get(message.type) ?? []) resolve();
      this.#waiting.delete(message.type);
    });
    this.process.on('exit', () => {
      this.exited = true;
      for (const resolvers of this.#waiting.values()) for (const resolve of resolvers) resolve();
      this.#waiting.clear();
    });
  }

  send(message: ParentMessage): void {
    if (!this.exited && this.process.connected) this.process.send(message);
  }

  /** Resolves true when `type` arrives (or arrived since the last forget), false on exit or timeout. */
  async waitFor(type: ChildMessage['type'], timeoutMs: number): Promise<boolean> {
    if (this.#received.has(type)) return true;
    if (this.exited) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#waiting.set(type, [...(this.#waiting.get(type) ?? []), resolve])),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    return this.#received.has(type);
  }

  forget(...types: ChildMessage['type'][]): void {
    for (const type of types) this.#received.delete(type);
  }

  kill(): void {
    if (this.exited) return;
    this.killedAt ??= Date.now();
    this.process.kill('SIGKILL');
  }

  async exit(): Promise<void> {
    if (this.exited) return;
    this.send({ type: 'exit' });
    const gone = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
    await Promise.race([gone, sleep(3000)]);
    this.kill();
  }
}

/** A writer slot: its current process and the names it ran under in this scenario. */
interface WriterSlot {
  index: number;
  generation: number;
  child: Child | undefined;
  /** Processes of this scenario (several after kills), with their record files. */
  runs: { name: string; child: Child; recordFile: string }[];
}

export class FaultHarness {
  readonly cluster: FaultCluster;
  readonly profile: RunProfile;
  readonly #slots: WriterSlot[];
  #observer: Child | undefined;
  #closed = false;

  private constructor(cluster: FaultCluster, profile: RunProfile) {
    this.cluster = cluster;
    this.profile = profile;
    this.#slots = Array.from({ length: profile.writers }, (_, index) => ({ index, generation: 0, child: undefined, runs: [] }));
  }

  static async start(profile: RunProfile, postgresFlags: string[] = []): Promise<FaultHarness> {
    const cluster = await FaultCluster.start(postgresFlags);
    const harness = new FaultHarness(cluster, profile);
    await harness.#spawnMissing();
    return harness;
  }

  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#slots.map((slot) => slot.child?.exit()), this.#observer?.exit()]);
    await this.cluster.stop();
  }

  async #spawnMissing(): Promise<void> {
    const spawned: Child[] = [];
    for (const slot of this.#slots) {
      if (!slot.child || slot.child.exited) {
        slot.child = new Child(`w${slot.index}`, WRITER_ENTRY);
        spawned.push(slot.child);
      }
    }
    if (!this.#observer || this.#observer.exited) {
      this.#observer = new Child('observer', OBSERVER_ENTRY);
      spawned.push(this.#observer);
    }
    const ready = await Promise.all(spawned.map((child) => child.waitFor('ready', 30_000)));
    if (ready.some((ok) => !ok)) throw new Error('a child process of the fault suite did not start');
  }

  /** Runs one scenario; never throws (a harness failure is a violation of the result). */
  async runScenario(scenario: Scenario, seed: number): Promise<ScenarioResult> {
    const started = Date.now();
    try {
      return await this.#runScenario(scenario, seed);
    } catch (error) {
      // Children may be mid-run: start fresh ones for the next scenario.
      for (const slot of this.#slots) slot.child?.kill();
      this.#observer?.kill();
      this.cluster.proxy.heal();
      return {
        scenario: scenario.name,
        operations: 0,
        acknowledged: 0,
        failed: 0,
        unknown: 0,
        settled: 0,
        lost: 0,
        duplicated: 0,
        falseFailures: 0,
        longestWaitMs: 0,
        recoveryMs: undefined,
        faultsInjected: 0,
        subscriptionErrors: 0,
        consumerErrors: 0,
        violations: [{ kind: 'other', message: `the scenario could not complete: ${(error as Error)?.stack ?? String(error)}` }],
        notes: [],
        durationMs: Date.now() - started,
        recordDir: undefined,
      };
    }
  }

  async #runScenario(scenario: Scenario, seed: number): Promise<ScenarioResult> {
    const started = Date.now();
    const { profile, cluster } = this;
    const { proxy } = cluster;
    const random = seededRandom(seed);
    const schema = `faults_${scenario.name.replace(/[^a-z0-9]/g, '_')}_${randomBytes(3).toString('hex')}`;
    const recordDir = mkdtempSync(join(tmpdir(), `dses-faults-${scenario.name}-`));
    const violations: Violation[] = [];
    const violation = (message: string, kind: Violation['kind'] = 'other'): void => void violations.push({ kind, message });
    const notes: string[] = [];
    let faultsInjected = 0;

    proxy.heal();
    if (!cluster.running) await cluster.restart();
    await this.#spawnMissing();
    const admin = new pg.Pool({ connectionString: cluster.directUrl, max: 3 });
    admin.on('error', () => undefined);
    const adminQuery = async <Row extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<Row[]> => (await admin.query<Row>(text, values)).rows;
    const adminStoreOptions: EventStoreOptions & Record<string, unknown> = { connectionString: cluster.directUrl, schema, ...profile.deadlines };
    const phases: string[] = [];
    let phaseStart = Date.now();
    const phase = (name: string): void => {
      const now = Date.now();
      phases.push(`${name} ${now - phaseStart}`);
      phaseStart = now;
    };
    let adminStore = await EventStore.connect(adminStoreOptions);
    await adminQuery(readModelSql(schema));
    await adminQuery(
      // 'Poison' fails in the database (its batch rolls back); 'Slow' holds the append lock for
      // 40 ms (a slow disk, a big batch), so that others wait on it, as cancels and aborts land.
      `CREATE FUNCTION ${schema}.fault_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` +
        `IF NEW.type = 'Poison' THEN RAISE EXCEPTION 'poison event (fault suite)'; END IF; ` +
        `IF NEW.type = 'Slow' THEN PERFORM pg_sleep(0.04); END IF; RETURN NEW; END $$;` +
        `CREATE TRIGGER fault_trigger BEFORE INSERT ON ${schema}.events FOR EACH ROW WHEN (NEW.type IN ('Poison', 'Slow')) EXECUTE FUNCTION ${schema}.fault_trigger();`,
    );

    // Start the workload.
    const accounts = Array.from({ length: profile.accounts }, (_, index) => `account:a${index}`);
    const writerConfig = (slot: WriterSlot, name: string, recordFile: string): WriterConfig => ({
      writer: name,
      connectionString: cluster.proxiedUrl(`faults-${name}`),
      schema,
      seed: seed * 1000 + slot.index * 37 + slot.generation,
      // One writer lets the store generate ids (it can only settle with the ids an unknown outcome reports).
      ids: slot.index === 0 ? 'generated' : 'client',
      loops: scenario.loops ?? profile.loops,
      accounts,
      usernames: profile.usernames,
      claimShare: 0.12,
      thinkMs: profile.thinkMs,
      abortShare: 0,
      abortAfterMs: scenario.abortAfterMs ?? [1, 15],
      poisonShare: 0,
      recordFile,
      ...profile.deadlines,
    });
    const startWriter = (slot: WriterSlot): Child => {
      const child = slot.child!;
      const name = slot.generation === 0 ? `w${slot.index}` : `w${slot.index}g${slot.generation}`;
      const recordFile = join(recordDir, `${name}.ndjson`);
      child.forget('running', 'done');
      slot.runs.push({ name, child, recordFile });
      child.send({ type: 'run', config: writerConfig(slot, name, recordFile) });
      return child;
    };
    for (const slot of this.#slots) {
      slot.runs = [];
      startWriter(slot);
    }
    const observer = this.#observer!;
    observer.forget('running', 'done');
    observer.progress = undefined;
    const observerConfig: ObserverConfig = {
      connectionString: cluster.proxiedUrl('faults-observer'),
      schema,
      consumerName: 'fault-read-model',
      recordFile: join(recordDir, 'observer.ndjson'),
      ...profile.deadlines,
    };
    observer.send({ type: 'run', config: observerConfig });
    const runningOk = await Promise.all([...this.#slots.map((slot) => slot.child!.waitFor('running', 20_000)), observer.waitFor('running', 20_000)]);
    if (runningOk.some((ok) => !ok)) violation('a writer or the observer did not start running within 20 s');

    phase('setup');
    await sleep(profile.warmupMs);

    // The fault.
    const faultStart = Date.now();
    const faultMs = scenario.faultMs?.(profile) ?? profile.faultMs;
    const replacements: Promise<void>[] = [];
    const storm = { type: 'set', abortShare: scenario.abortShare ?? 0, poisonShare: scenario.poisonShare ?? 0 } as const;
    if (storm.abortShare || storm.poisonShare) for (const slot of this.#slots) slot.child?.send(storm);
    const context: FaultContext = {
      cluster,
      proxy,
      profile,
      random,
      until: faultStart + faultMs,
      injected: (count = 1) => void (faultsInjected += count),
      note: (text) => void notes.push(text),
      adminQuery,
      killWriterMidAppend: async () => {
        const live = this.#slots.filter((slot) => slot.child && !slot.child.exited);
        const slot = live[Math.floor(random() * live.length)];
        if (!slot) return undefined;
        const child = slot.child!;
        const name = slot.runs.at(-1)!.name;
        const armed = proxy.arm({
          direction: 'to-server',
          match: (chunk) => chunk.connection.applicationName === `faults-${name}` && chunk.statements.some(isAppendSql),
          action: { kind: 'delay', ms: 0 },
          deliver: true,
          // SIGKILL the moment its append reaches the server: the batch is in flight.
          onFire: () => child.kill(),
        });
        await Promise.race([armed.fired, sleep(1000)]);
        armed.disarm();
        child.kill();
        faultsInjected++;
        // A replacement under a new name (its attempts must not collide with the dead one's),
        // started in the background: the next kill need not wait for it.
        slot.generation++;
        const replacement = new Child(`w${slot.index}g${slot.generation}`, WRITER_ENTRY);
        slot.child = replacement;
        replacements.push(
          replacement.waitFor('ready', 20_000).then(async (ready) => {
            if (!ready || slot.child !== replacement) return;
            startWriter(slot);
            await replacement.waitFor('running', 20_000);
          }),
        );
        return name;
      },
    };
    try {
      await scenario.inject(context);
    } catch (error) {
      violation(`the fault injection failed: ${(error as Error)?.stack ?? String(error)}`);
    }
    proxy.heal();
    if (!cluster.running) await cluster.restart();
    if (storm.abortShare || storm.poisonShare) for (const slot of this.#slots) slot.child?.send({ type: 'set', abortShare: 0, poisonShare: 0 });
    const faultEnd = Date.now();

    await sleep(profile.recoveryMs);
    await Promise.all(replacements);

    phase('fault+recovery');
    // Stop the writers; each settles its unknown outcomes, then reports done.
    const stopTimeoutMs = profile.deadlines.appendTimeoutMs * 6 + 5000;
    for (const slot of this.#slots) slot.child?.send({ type: 'stop' });
    await Promise.all(
      this.#slots.map(async (slot) => {
        const child = slot.child;
        if (!child || child.exited) return;
        if (!(await child.waitFor('done', stopTimeoutMs))) {
          if (!child.exited) {
            violation(`writer ${slot.runs.at(-1)?.name} did not stop (finish its calls, settle, close the store) within ${stopTimeoutMs} ms: killed`, 'other');
            child.kill();
          }
        }
      }),
    );

    // Read every writer's records.
    const runs = this.#slots.flatMap((slot) => slot.runs);
    const attempts = new Map<string, { start: Extract<WriterRecord, { k: 'start' }>; end?: Extract<WriterRecord, { k: 'end' }>; repeats: { start: Extract<WriterRecord, { k: 'start' }>; end?: Extract<WriterRecord, { k: 'end' }> }[]; abandonedAt?: number }>();
    const calls: TimedCall[] = [];
    for (const run of runs) {
      const records = readRecords<WriterRecord>(run.recordFile);
      const abandonedAt = run.child.killedAt;
      const reads = new Map<string, number>();
      for (const record of records) {
        if (record.k === 'start') {
          if (record.settle === 0) attempts.set(record.attempt, { start: record, repeats: [], ...(abandonedAt !== undefined && { abandonedAt }) });
          else attempts.get(record.attempt)?.repeats.push({ start: record });
        } else if (record.k === 'end') {
          const entry = attempts.get(record.attempt);
          if (!entry) continue;
          if (record.settle === 0) entry.end = record;
          else {
            const repeat = entry.repeats.find((candidate) => candidate.start.settle === record.settle);
            if (repeat) repeat.end = record;
          }
        } else if (record.k === 'read-start') reads.set(record.read, record.t);
        else if (record.k === 'read-end') {
          const startedAt = reads.get(record.read);
          reads.delete(record.read);
          if (startedAt !== undefined) {
            calls.push({ label: `${record.read} (${record.code ?? 'ok'})`, kind: 'read', startedAt, endedAt: record.t });
            if (record.code !== null && !KNOWN_CODES.has(record.code)) violation(`read ${record.read} failed with an untyped error: ${record.code}`);
          }
        } else if (record.k === 'note') notes.push(`${run.name}: ${record.text}`);
      }
      for (const [read, startedAt] of reads) calls.push({ label: `${read} (never returned)`, kind: 'read', startedAt, endedAt: undefined, ...(abandonedAt !== undefined && { abandonedAt }) });
    }

    // What killed writers left unknown: the parent repeats those it knows the ids of.
    let parentSettles = 0;
    const parentSettled = new Map<string, SettledOutcome>();
    for (const [attempt, entry] of attempts) {
      if (entry.end || !entry.start.events.every((event) => event.id !== undefined)) continue;
      const events = entry.start.events.map((event) => ({ id: event.id!, type: event.type, tags: event.tags, data: event.data, occurredAt: new Date(event.occurredAt) }));
      const condition = entry.start.condition
        ? { failIfEventsMatch: Query.fromJSON(entry.start.condition.query), ...(entry.start.condition.after !== null && { after: BigInt(entry.start.condition.after) }) }
        : undefined;
      for (let round = 0; round < 3; round++) {
        parentSettles++;
        try {
          const { position } = await adminStore.append(events, condition);
          parentSettled.set(attempt, { status: 'appended', position });
          break;
        } catch (error) {
          if (error instanceof AppendConditionFailedError) {
            parentSettled.set(attempt, { status: 'condition-failed', conflictingPosition: error.conflictingPosition });
            break;
          }
          if (error instanceof EventStoreError && error.code === 'STORE_CLOSED') adminStore = await EventStore.connect(adminStoreOptions);
          if (!(error instanceof AppendOutcomeUnknownError) && !(error instanceof EventStoreError && ['TIMEOUT', 'DATABASE_ERROR', 'STORE_CLOSED'].includes(error.code))) {
            notes.push(`parent settle of ${attempt}: ${(error as Error).message}`);
            break;
          }
          await sleep(300);
        }
      }
    }
    if (scenario.abortShare) faultsInjected += [...attempts.values()].filter((entry) => entry.start.abortMs !== null).length;
    if (parentSettles > 0) notes.push(`the parent repeated ${parentSettled.size} append(s) left unknown by killed writers`);

    phase('stop+settle');
    // The final log, read directly.
    const final = await adminStore.read(Query.all());
    const log: LoggedEvent[] = final.events.map((event) => ({ position: event.position, id: event.id, type: event.type, tags: event.tags, data: event.data, occurredAt: event.occurredAt, recordedAt: event.recordedAt }));
    const head = final.head;

    // Attempt records for the checker.
    const attemptRecords: AttemptRecord[] = [];
    let acknowledged = 0;
    let failed = 0;
    let unknown = 0;
    let settled = 0;
    let recoveryAt: number | undefined;
    const outcomeCodes: string[] = [];
    for (const [attempt, entry] of attempts) {
      const { start, end } = entry;
      const outcome = toOutcome(end?.outcome, entry.abandonedAt !== undefined ? 'KILLED' : 'NEVER_RETURNED');
      outcomeCodes.push(outcome.status === 'nothing-written' || outcome.status === 'unknown' ? `${outcome.status} ${outcome.code}` : outcome.status);
      if (outcome.status === 'appended') acknowledged++;
      else if (outcome.status === 'unknown') unknown++;
      else failed++;
      if (outcome.status === 'nothing-written' && !KNOWN_CODES.has(outcome.code)) violation(`attempt ${attempt} failed with an untyped error: ${end?.outcome.status === 'nothing-written' ? end.outcome.message : outcome.code}`);
      if (outcome.status === 'appended' && end && end.t >= faultEnd && (recoveryAt === undefined || end.t < recoveryAt)) recoveryAt = end.t;
      const poisoned = start.events.some((event) => event.type === 'Poison');
      if (poisoned && outcome.status === 'appended') violation(`attempt ${attempt} (a Poison event, which the database refuses) was acknowledged at ${outcome.position}`, 'lost');
      if (scenario.innocentMustSucceed && !poisoned && start.abortMs === null && start.t >= faultStart && start.t <= faultEnd && outcome.status !== 'appended' && outcome.status !== 'condition-failed') {
        violation(`attempt ${attempt} had no abort signal, yet failed during the abort storm: ${end ? JSON.stringify(end.outcome) : 'never returned'}`, 'other');
      }
      let settledOutcome: SettledOutcome | undefined = parentSettled.get(attempt);
      for (const repeat of entry.repeats) {
        const repeatOutcome = repeat.end?.outcome;
        if (repeatOutcome?.status === 'appended') settledOutcome = { status: 'appended', position: BigInt(repeatOutcome.position) };
        else if (repeatOutcome?.status === 'condition-failed') settledOutcome = { status: 'condition-failed', conflictingPosition: repeatOutcome.conflictingPosition === null ? undefined : BigInt(repeatOutcome.conflictingPosition) };
        calls.push({ label: `${attempt} repeat ${repeat.start.settle}`, kind: 'append', startedAt: repeat.start.t, endedAt: repeat.end?.t, ...(entry.abandonedAt !== undefined && { abandonedAt: entry.abandonedAt }) });
      }
      if (outcome.status === 'unknown' && settledOutcome) settled++;
      calls.push({ label: `${attempt} (${end ? describeOutcome(end.outcome) : 'never returned'})`, kind: 'append', startedAt: start.t, endedAt: end?.t, ...(entry.abandonedAt !== undefined && { abandonedAt: entry.abandonedAt }) });
      attemptRecords.push({
        attempt,
        eventCount: start.events.length,
        condition: start.condition && { query: start.condition.query, after: start.condition.after === null ? undefined : BigInt(start.condition.after) },
        outcome,
        ...(outcome.status === 'unknown' && settledOutcome && { settled: settledOutcome }),
      });
    }
    notes.unshift(`outcomes: ${summarizeCodes(outcomeCodes)}`);

    phase('final read');
    // The observer must reach the head: the subscriber and the consumer.
    const catchUpDeadline = Date.now() + profile.catchUpTimeoutMs;
    let consumerAt = 0n;
    for (;;) {
      const seen = BigInt(progressOf(observer)?.seen ?? '0');
      try {
        consumerAt = BigInt((await adminQuery<{ at: string }>(`SELECT coalesce(max(position), 0) AS at FROM ${schema}.fault_applied`))[0]!.at);
      } catch (error) {
        violation(`reading the read model failed: ${(error as Error).message}`);
        break;
      }
      if ((seen >= head && consumerAt >= head) || observer.exited) break;
      if (Date.now() > catchUpDeadline) {
        violation(`the observer did not catch up within ${profile.catchUpTimeoutMs} ms after the writers stopped: subscriber at ${seen}, consumer at ${consumerAt}, head ${head}`);
        // What the observer's sessions are doing, for the report.
        const sessions = await adminQuery<{ pid: number; state: string; wait: string | null; query: string; since: string; locks: string | null }>(
          `SELECT a.pid, a.state, a.wait_event_type || ':' || a.wait_event AS wait, left(a.query, 100) AS query, round(extract(epoch FROM now() - a.state_change)::numeric, 1)::text AS since,
                  (SELECT string_agg(l.locktype || CASE WHEN l.granted THEN '' ELSE ' (waiting)' END, ',') FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory') AS locks
             FROM pg_stat_activity a WHERE a.application_name = 'faults-observer'`,
        ).catch(() => []);
        for (const session of sessions) notes.push(`observer backend ${session.pid}: ${session.state}, ${session.since} s, wait ${session.wait ?? '-'}, advisory ${session.locks ?? '-'}: ${session.query}`);
        for (const connection of proxy.connections((candidate) => candidate.applicationName === 'faults-observer')) {
          notes.push(`observer connection ${connection.id}: open ${Date.now() - connection.openedAt} ms, in flight ${JSON.stringify(connection.pendingStatements.map((sql) => sql.slice(0, 60)))}, held ${JSON.stringify(connection.held)}`);
        }
        break;
      }
      await sleep(50);
    }
    observer.send({ type: 'stop' });
    if (!(await observer.waitFor('done', 20_000))) {
      violation('the observer did not stop (subscription, consumer, store.close) within 20 s: killed');
      observer.kill();
    }
    const observerRecords = readRecords<ObserverRecord>(observerConfig.recordFile);
    // The observer's own notes matter when something went wrong there.
    const observerTroubled = observerRecords.some((record) => record.k === 'consumer-error' || record.k === 'subscription-error') || violations.length > 0;
    for (const record of observerRecords) if (record.k === 'note' && observerTroubled) notes.push(`observer at +${record.t - faultStart} ms: ${record.text}`);
    const seen = observerRecords.flatMap((record) => (record.k === 'seen' ? [{ position: BigInt(record.p), attempt: record.a ?? undefined }] : []));
    type ErrorRecord = Extract<ObserverRecord, { k: 'subscription-error' | 'consumer-error' }>;
    const subscriptionErrors = observerRecords.filter((record): record is ErrorRecord => record.k === 'subscription-error');
    const consumerErrors = observerRecords.filter((record): record is ErrorRecord => record.k === 'consumer-error');
    for (const record of [...subscriptionErrors, ...consumerErrors]) {
      if (!KNOWN_CODES.has(record.code) && record.code !== 'CONSUMER_FAILED') violation(`${record.k}: untyped error ${record.code}: ${record.message}`);
    }
    if (subscriptionErrors.length > 0) notes.push(`the subscription ended with an error ${subscriptionErrors.length} time(s) and was restarted: ${summarizeCodes(subscriptionErrors.map((record) => record.code))}`);
    if (consumerErrors.length > 0) notes.push(`the consumer stopped with an error ${consumerErrors.length} time(s) and was restarted: ${summarizeCodes(consumerErrors.map((record) => record.code))}`);

    phase('catch-up+observer stop');
    // The checks.
    violations.push(...analyzeHistory(log, attemptRecords));
    const wrap = (messages: string[]): void => void violations.push(...messages.map((message) => ({ kind: 'other' as const, message })));
    wrap(checkSubscription(log, seen));
    const appliedRows = await adminQuery<{ position: string; times: number }>(`SELECT position, times FROM ${schema}.fault_applied`).catch(() => []);
    const tagRows = await adminQuery<{ tag: string; events: string; last_position: string }>(`SELECT tag, events, last_position FROM ${schema}.fault_tag_counts`).catch(() => []);
    wrap(
      checkReadModel(log, {
        applied: new Map(appliedRows.map((row) => [BigInt(row.position), row.times])),
        tags: new Map(tagRows.map((row) => [row.tag, { events: BigInt(row.events), lastPosition: BigInt(row.last_position) }])),
      }),
    );
    wrap(checkUniqueClaims(log, 'UsernameClaimed', 'username:'));
    const limits = {
      append: profile.deadlines.appendTimeoutMs + profile.slackMs,
      read: profile.deadlines.readTimeoutMs + profile.deadlines.connectTimeoutMs + profile.slackMs,
    };
    wrap(checkDeadlines(calls, limits));
    if (recoveryAt === undefined) violation(`no append was acknowledged in the ${profile.recoveryMs} ms after the fault ended (the store did not recover)`);
    for (const child of [...runs.map((run) => run.child), observer]) for (const message of child.fatal) violation(`${child.name} crashed: ${message}`);
    if (scenario.innocentMustSucceed) {
      for (const run of runs) {
        const readStarts = new Map<string, Extract<WriterRecord, { k: 'read-start' }>>();
        for (const record of readRecords<WriterRecord>(run.recordFile)) {
          if (record.k === 'read-start') readStarts.set(record.read, record);
          else if (record.k === 'read-end' && record.code !== null) {
            const readStart = readStarts.get(record.read);
            if (readStart && readStart.abortMs === null && readStart.t >= faultStart && readStart.t <= faultEnd) violation(`read ${record.read} had no abort signal, yet failed during the abort storm: ${record.code}`);
          }
        }
      }
    }

    const count = (kind: Violation['kind']): number => violations.filter((entry) => entry.kind === kind).length;
    const longestWaitMs = Math.max(0, ...calls.map((call) => (call.endedAt ?? call.abandonedAt ?? Date.now()) - call.startedAt));
    phase('checks');
    notes.push(`phases (ms): ${phases.join(', ')}`);
    const result: ScenarioResult = {
      scenario: scenario.name,
      operations: attempts.size,
      acknowledged,
      failed,
      unknown,
      settled,
      lost: count('lost'),
      duplicated: count('duplicated'),
      falseFailures: count('false-failure'),
      longestWaitMs,
      recoveryMs: recoveryAt === undefined ? undefined : recoveryAt - faultEnd,
      faultsInjected,
      subscriptionErrors: subscriptionErrors.length,
      consumerErrors: consumerErrors.length,
      violations,
      notes,
      durationMs: Date.now() - started,
      recordDir: violations.length > 0 ? recordDir : undefined,
    };

    // Writers whose store did not close exit on their own; any still running are reused.
    await adminStore.close().catch(() => undefined);
    await adminQuery(`DROP SCHEMA ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
    if (violations.length === 0) rmSync(recordDir, { recursive: true, force: true });
    return result;
  }
}

/** The SQL of an append (the store's append function). */
export function isAppendSql(sql: string): boolean {
  return sql.includes('append_batch');
}

/** The SQL of a read: the events, or the head. */
export function isReadSql(sql: string): boolean {
  return !sql.includes('append_batch') && /\bFROM\s+\S+\.(events|head)\b/i.test(sql);
}

export function isCommitSql(sql: string): boolean {
  return /^\s*COMMIT\b/i.test(sql);
}

function progressOf(child: Child): Child['progress'] {
  return child.progress;
}

function toOutcome(outcome: WireOutcome | undefined, missing: string): AttemptRecord['outcome'] {
  if (!outcome) return { status: 'unknown', code: missing };
  switch (outcome.status) {
    case 'appended':
      return { status: 'appended', position: BigInt(outcome.position) };
    case 'condition-failed':
      return { status: 'condition-failed', conflictingPosition: outcome.conflictingPosition === null ? undefined : BigInt(outcome.conflictingPosition) };
    case 'nothing-written':
      return { status: 'nothing-written', code: outcome.code };
    case 'unknown':
      return { status: 'unknown', code: outcome.code };
  }
}

function describeOutcome(outcome: WireOutcome): string {
  return outcome.status === 'appended' ? `appended at ${outcome.position}` : outcome.status === 'condition-failed' ? 'condition failed' : `${outcome.status} ${outcome.code}`;
}

function summarizeCodes(codes: string[]): string {
  const counts = new Map<string, number>();
  for (const code of codes) counts.set(code, (counts.get(code) ?? 0) + 1);
  return [...counts].map(([code, count]) => `${code} x${count}`).join(', ');
}
