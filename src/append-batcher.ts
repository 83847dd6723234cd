import { AppendConditionFailedError, DuplicateEventIdError, EventStoreError, OperationAbortedError } from './errors.ts';
import type { AppendCondition, NormalizedEvent } from './events.ts';
import type { InternalQuery } from './query.ts';

/** One append call waiting for, or riding in, a batch. */
export interface PendingAppend {
  events: NormalizedEvent[];
  condition: { query: InternalQuery; after: string | null } | null;
  /** As the caller gave it, for the error. */
  callerCondition: AppendCondition | undefined;
  signal: AbortSignal | undefined;
  resolve: (position: bigint) => void;
  reject: (error: unknown) => void;
  state: 'queued' | 'in-flight' | 'settled';
  abortRequested: boolean;
  detachAbort: (() => void) | undefined;
}

/** What the append function answered for one command. */
export type CommandResult =
  | { status: 'appended' | 'already-appended'; position: bigint }
  | { status: 'condition-failed'; conflict: bigint | undefined }
  | { status: 'duplicate-id'; conflict: bigint | undefined };

export interface BatchExecution {
  /**
   * Runs the commands in one call of the append function. `onCancellable` receives a function
   * that cancels the running statement (the whole batch then rolls back).
   */
  execute(commands: PendingAppend[], checkIds: boolean, onCancellable: (cancel: () => Promise<void>) => void): Promise<CommandResult[]>;
  /** True for errors after which the batch may or may not have committed (connection lost). */
  isAmbiguous(error: unknown): boolean;
  /** True for the error a cancelled statement raises. */
  isCancelled(error: unknown): boolean;
  /** Turns a driver error into the error a caller sees. */
  toError(error: unknown): EventStoreError;
}

export interface BatcherLimits {
  /** Most commands in one batch. */
  maxCommands: number;
  /** Most events in one batch (a single larger command still goes alone). */
  maxEvents: number;
  /** Retries of a batch whose outcome is unknown (connection lost); safe because ids make retries idempotent. */
  ambiguousRetries: number;
}

/**
 * Keeps at most one append batch in flight per store. While it runs, new appends queue; the next
 * batch carries all of them (up to the limits), so one round trip and one commit (one fsync)
 * serve many concurrent appends. The database checks the commands in queue order.
 */
export class AppendBatcher {
  readonly #execution: BatchExecution;
  readonly #limits: BatcherLimits;
  #queue: PendingAppend[] = [];
  #inFlight: Promise<void> | undefined;
  #cancelInFlight: (() => Promise<void>) | undefined;
  #idle: Array<() => void> = [];

  constructor(execution: BatchExecution, limits: BatcherLimits) {
    this.#execution = execution;
    this.#limits = limits;
  }

  submit(append: Omit<PendingAppend, 'resolve' | 'reject' | 'state' | 'abortRequested' | 'detachAbort'>): Promise<bigint> {
    return new Promise<bigint>((resolve, reject) => {
      const pending: PendingAppend = { ...append, resolve, reject, state: 'queued', abortRequested: false, detachAbort: undefined };
      if (append.signal) {
        const signal = append.signal;
        const onAbort = (): void => this.#abort(pending);
        signal.addEventListener('abort', onAbort, { once: true });
        pending.detachAbort = () => signal.removeEventListener('abort', onAbort);
      }
      this.#queue.push(pending);
      this.#pump();
    });
  }

  /** Resolves when nothing is queued or in flight. */
  drained(): Promise<void> {
    if (!this.#inFlight && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #abort(pending: PendingAppend): void {
    if (pending.state === 'queued') {
      this.#queue = this.#queue.filter((other) => other !== pending);
      this.#settle(pending, () => pending.reject(new OperationAbortedError('append', pending.signal?.reason)));
      this.#notifyIdle();
    } else if (pending.state === 'in-flight' && !pending.abortRequested) {
      // The batch may already be committing; cancel it and let the outcome decide. If the cancel
      // wins, nothing of the batch was written and the other commands go again in the next batch.
      pending.abortRequested = true;
      void this.#cancelInFlight?.().catch(() => undefined);
    }
  }

  #pump(): void {
    if (this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#takeBatch();
    this.#inFlight = this.#run(batch).finally(() => {
      this.#inFlight = undefined;
      this.#cancelInFlight = undefined;
      this.#pump();
      this.#notifyIdle();
    });
  }

  #notifyIdle(): void {
    if (this.#inFlight || this.#queue.length > 0) return;
    const waiting = this.#idle;
    this.#idle = [];
    for (const resolve of waiting) resolve();
  }

  #takeBatch(): PendingAppend[] {
    const batch: PendingAppend[] = [];
    let events = 0;
    while (this.#queue.length > 0 && batch.length < this.#limits.maxCommands) {
      const next = this.#queue[0]!;
      if (batch.length > 0 && events + next.events.length > this.#limits.maxEvents) break;
      this.#queue.shift();
      batch.push(next);
      events += next.events.length;
    }
    for (const pending of batch) pending.state = 'in-flight';
    return batch;
  }

  async #run(batch: PendingAppend[]): Promise<void> {
    let attempt = 0;
    for (;;) {
      try {
        const results = await this.#execution.execute(batch, hasRepeatedIds(batch), (cancel) => {
          this.#cancelInFlight = cancel;
          // An abort that came while the batch was being sent.
          if (batch.some((pending) => pending.abortRequested)) void cancel().catch(() => undefined);
        });
        batch.forEach((pending, index) => this.#deliver(pending, results[index]));
        return;
      } catch (error) {
        this.#cancelInFlight = undefined;
        if (this.#execution.isCancelled(error) && batch.some((pending) => pending.abortRequested)) {
          // Rolled back: the aborted appends end here, the others go first in the next batch.
          const requeue: PendingAppend[] = [];
          for (const pending of batch) {
            if (pending.abortRequested) this.#settle(pending, () => pending.reject(new OperationAbortedError('append', pending.signal?.reason)));
            else {
              pending.state = 'queued';
              requeue.push(pending);
            }
          }
          this.#queue.unshift(...requeue);
          return;
        }
        if (this.#execution.isAmbiguous(error) && attempt < this.#limits.ambiguousRetries) {
          // The commit may or may not have happened. Sending the same commands again is safe:
          // events whose ids are stored with the same content report their original position.
          attempt++;
          continue;
        }
        if (batch.length > 1 && !this.#execution.isAmbiguous(error)) {
          // One command broke the whole batch (rolled back). Isolate it: run each alone.
          for (const pending of batch) await this.#run([pending]);
          return;
        }
        const failure = this.#execution.toError(error);
        for (const pending of batch) this.#settle(pending, () => pending.reject(failure));
        return;
      }
    }
  }

  #deliver(pending: PendingAppend, result: CommandResult | undefined): void {
    this.#settle(pending, () => {
      if (!result) {
        pending.reject(new EventStoreError('DATABASE_ERROR', 'the append function returned fewer results than commands'));
      } else if (result.status === 'appended' || result.status === 'already-appended') {
        pending.resolve(result.position);
      } else if (result.status === 'condition-failed') {
        pending.reject(new AppendConditionFailedError(pending.callerCondition!, result.conflict));
      } else if (result.status === 'duplicate-id') {
        pending.reject(new DuplicateEventIdError(pending.events.map((event) => event.id), result.conflict));
      }
    });
  }

  #settle(pending: PendingAppend, settle: () => void): void {
    if (pending.state === 'settled') return;
    pending.state = 'settled';
    pending.detachAbort?.();
    settle();
  }
}

function hasRepeatedIds(batch: PendingAppend[]): boolean {
  if (batch.length < 2) return false;
  const seen = new Set<string>();
  for (const pending of batch) {
    for (const event of pending.events) {
      if (seen.has(event.id)) return true;
      seen.add(event.id);
    }
  }
  return false;
}
