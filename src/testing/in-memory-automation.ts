// The in-memory store's automation: the PostgreSQL one's semantics (checkpoint per name that
// survives stop and resume, one running instance per name, retries, status) without a database.
// Reactions and checkpoint are trivially atomic here: the checkpoint moves in the same
// synchronous step that sees the append succeed, and a crash loses the whole store anyway.
import { ConsumerFailedError, DuplicateEventIdError, EventStoreClosedError, InvalidInputError, OperationAbortedError } from '../errors.ts';
import type { AppendCondition } from '../append-condition.ts';
import type { EventInput, SequencedEvent } from '../events.ts';
import type { AppendOptions, AppendResult } from '../store.ts';
import type { DecisionModelSource } from '../decisions/decision-model.ts';
import { AUTOMATION_DEFAULTS, decideReactions, validateAutomationOptions, withinTimeout, type Automation, type AutomationOptions, type AutomationStatus } from '../decisions/automation.ts';
import { describe } from '../validation.ts';
import { MAX_TIMER_MS, pause } from '../util/wait.ts';

/** An automation's record in the in-memory store (what the `consumers` table holds in PostgreSQL). */
export interface AutomationRecord {
  position: bigint;
  failed: { position: bigint; error: string; at: Date } | undefined;
  owner: string | null;
  /** An instance runs now (the lease). */
  leased: boolean;
  updatedAt: Date | null;
}

export interface InMemoryAutomationHost extends DecisionModelSource {
  append(events: EventInput | readonly EventInput[], condition?: AppendCondition, options?: AppendOptions): Promise<AppendResult>;
  head(): bigint;
  record(name: string): AutomationRecord;
  waitForAppend(position: bigint, timeoutMs: number, signal: AbortSignal): Promise<void>;
  readonly closedSignal: AbortSignal;
}

let instances = 0;

export class InMemoryAutomation<Data = unknown> implements Automation {
  readonly name: string;
  readonly #host: InMemoryAutomationHost;
  readonly #options: AutomationOptions<Data, any>;
  readonly #batchSize: number;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: number;
  readonly #pollIntervalMs: number;
  readonly #takeoverIntervalMs: number;
  readonly #handlerTimeoutMs: number;
  readonly #instanceId: string;
  #running = false;

  constructor(host: InMemoryAutomationHost, name: string, options: AutomationOptions<Data, any>) {
    validateAutomationOptions(name, options);
    this.name = name;
    this.#host = host;
    this.#options = options;
    this.#batchSize = positiveInteger(options.batchSize, 100, 'options.batchSize');
    this.#maxAttempts = positiveInteger(options.maxAttempts, AUTOMATION_DEFAULTS.maxAttempts, 'options.maxAttempts');
    const retryDelayMs = options.retryDelayMs ?? AUTOMATION_DEFAULTS.retryDelayMs;
    if (typeof retryDelayMs !== 'number' || !Number.isFinite(retryDelayMs) || retryDelayMs < 0 || retryDelayMs > MAX_TIMER_MS) {
      throw new InvalidInputError('options.retryDelayMs', `must be a number from 0 to ${MAX_TIMER_MS}, got ${describe(retryDelayMs)}`);
    }
    this.#retryDelayMs = retryDelayMs;
    this.#pollIntervalMs = positiveInteger(options.pollIntervalMs, 1000, 'options.pollIntervalMs', MAX_TIMER_MS);
    this.#takeoverIntervalMs = positiveInteger(options.takeoverIntervalMs, 1000, 'options.takeoverIntervalMs', MAX_TIMER_MS);
    this.#handlerTimeoutMs = positiveInteger(options.handlerTimeoutMs, 60_000, 'options.handlerTimeoutMs', MAX_TIMER_MS);
    if (options.instanceId !== undefined && (typeof options.instanceId !== 'string' || options.instanceId.length === 0)) {
      throw new InvalidInputError('options.instanceId', `must be a non-empty string, got ${describe(options.instanceId)}`);
    }
    this.#instanceId = options.instanceId ?? `in-memory:${++instances}`;
  }

  run(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#running) return Promise.reject(new InvalidInputError('run', `automation "${this.name}" is already running in this Automation object`));
    if (this.#host.closedSignal.aborted) return Promise.reject(new EventStoreClosedError());
    this.#running = true;
    const signal = options.signal ? AbortSignal.any([options.signal, this.#host.closedSignal]) : this.#host.closedSignal;
    return this.#runUntilStopped(signal).finally(() => (this.#running = false));
  }

  async status(options: { signal?: AbortSignal } = {}): Promise<AutomationStatus> {
    if (this.#host.closedSignal.aborted) throw new EventStoreClosedError();
    if (options.signal?.aborted) throw new OperationAbortedError('status', options.signal.reason);
    const record = this.#host.record(this.name);
    const head = this.#host.head();
    return {
      name: this.name,
      position: record.position,
      head,
      lag: head > record.position ? head - record.position : 0n,
      state: record.failed ? 'failed' : record.leased ? 'running' : 'idle',
      owner: record.owner,
      failedPosition: record.failed?.position ?? null,
      lastError: record.failed?.error ?? null,
      lastErrorAt: record.failed?.at ?? null,
      updatedAt: record.updatedAt,
    };
  }

  async #runUntilStopped(signal: AbortSignal): Promise<void> {
    const record = this.#host.record(this.name);
    // A standby: asks for the lease every takeoverIntervalMs.
    while (record.leased) {
      if (signal.aborted) return;
      await pause(this.#takeoverIntervalMs, signal);
    }
    if (signal.aborted) return;
    record.leased = true;
    record.owner = this.#instanceId;
    try {
      while (!signal.aborted) {
        let events: SequencedEvent<Data>[];
        let head: bigint;
        try {
          ({ events, head } = await this.#host.read<Data>(this.#options.query, { after: record.position, limit: this.#batchSize }));
        } catch (error) {
          if (error instanceof EventStoreClosedError) return;
          throw error;
        }
        for (const event of events) {
          if (signal.aborted) return;
          if (!(await this.#react(record, event, signal))) return;
        }
        if (events.length === this.#batchSize) continue;
        // Nothing more matching up to the head: the checkpoint moves there.
        if (events.length === 0 && head > record.position) this.#moveCheckpoint(record, head);
        await this.#host.waitForAppend(record.position, this.#pollIntervalMs, signal);
      }
    } finally {
      record.leased = false;
    }
  }

  /** Decides and appends the reactions to one event, with retries; false when asked to stop first. */
  async #react(record: AutomationRecord, event: SequencedEvent<Data>, signal: AbortSignal): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        const reaction = await withinTimeout(
          decideReactions(this.#host, this.name, this.#options, event, attempt, signal),
          this.#handlerTimeoutMs,
          () => `the decision of automation "${this.name}" did not finish within ${this.#handlerTimeoutMs} ms (event at position ${event.position})`,
        );
        if (reaction) {
          try {
            await this.#host.append(reaction.events, reaction.condition);
          } catch (error) {
            // Derived ids stored with other content: an earlier reaction to this very event.
            if (!(error instanceof DuplicateEventIdError && reaction.derivedIds === reaction.events.length)) throw error;
          }
        }
        // In the same synchronous step as the append's success: nothing can come in between.
        this.#moveCheckpoint(record, event.position);
        return true;
      } catch (error) {
        if (signal.aborted || error instanceof EventStoreClosedError) return false;
        if (attempt >= this.#maxAttempts) {
          const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
          record.failed = { position: event.position, error: message, at: new Date() };
          record.updatedAt = new Date();
          throw new ConsumerFailedError(this.name, event.position, this.#maxAttempts, error);
        }
        // A lost race (AppendConditionFailedError) is decided again on fresh state, like any failure.
        await pause(Math.min(30_000, this.#retryDelayMs * 2 ** (attempt - 1)), signal);
        if (signal.aborted) return false;
      }
    }
  }

  #moveCheckpoint(record: AutomationRecord, position: bigint): void {
    record.position = position;
    record.failed = undefined;
    record.owner = this.#instanceId;
    record.updatedAt = new Date();
  }
}

function positiveInteger(value: unknown, fallback: number, path: string, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) throw new InvalidInputError(path, `must be an integer from 1 to ${max}, got ${describe(value)}`);
  return value;
}
