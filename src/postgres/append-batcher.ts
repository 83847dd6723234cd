import { AppendConditionFailedError } from '../append-condition.ts';
import { AppendOutcomeUnknownError, DuplicateEventIdError, EventStoreClosedError, EventStoreError, EventStoreOverloadedError, OperationAbortedError, OperationTimeoutError } from '../errors.ts';
import type { AppendCondition } from '../append-condition.ts';
import type { NormalizedEvent } from '../events.ts';
import type { InternalQuery } from '../query.ts';
import { backoffDelay, type BackoffOptions } from '../util/backoff.ts';
import { errorFields, type StoreLog } from '../telemetry/log.ts';

/** One command of an append call: its events and its condition. */
export interface AppendPart {
  events: NormalizedEvent[];
  condition: { query: InternalQuery; after: string | null } | null;
  /** As the caller gave it, for the error. */
  callerCondition: AppendCondition | undefined;
}

/** One append call waiting for, or riding in, a batch. */
export interface PendingAppend {
  /** `append`: one part. `appendCommands`: one per command, written all together or not at all. */
  parts: AppendPart[];
  /** Every event of every part, in order. */
  events: NormalizedEvent[];
  /** Called as appendCommands: errors name the command (`commandIndex`). */
  commands: boolean;
  signal: AbortSignal | undefined;
  /** This append's deadline; default the store's appendTimeoutMs. */
  timeoutMs?: number | undefined;
  /** Filled in with how the answer came about, for telemetry. */
  report?: AppendReport | undefined;
}

/** How an append's answer came about. */
export interface AppendReport {
  /** How many appends shared the database call that answered it. */
  batchCommands?: number;
  /** Its events were stored already by an identical earlier call. */
  idempotent?: boolean;
}

/** The batcher's record of a pending append. */
interface Command extends PendingAppend {
  /** The position of each part's last event. */
  resolve: (positions: bigint[]) => void;
  reject: (error: unknown) => void;
  state: 'queued' | 'in-flight' | 'settled';
  /**
   * It was part of an attempt whose outcome is unknown (the connection was lost after sending).
   * That attempt may still commit later (bytes stuck in the network can reach the server after
   * we gave up on them), so from then on only the server's answer for this very command
   * (appended, condition failed, id clash: each of them stays true) or "unknown" is the truth;
   * never "nothing was written".
   */
  ambiguous: boolean;
  /** Its batch failed as a whole (one bad command rolls back all): it now goes in a batch of its own. */
  alone: boolean;
  abortRequested: boolean;
  cleanup: () => void;
  /** The last error of an attempt that did not reach the server, for the timeout's message. */
  lastError: unknown;
  /** Date.now() by which the caller gets an answer (appendTimeoutMs after the call). */
  deadline: number;
}

/** What the append function answered for one part (a row per part, in order). */
export type CommandResult =
  | { status: 'appended' | 'already-appended'; position: bigint }
  /** `conflictingPart`: the condition matched an event of this earlier part of the same call (then no `conflict`). */
  | { status: 'condition-failed'; conflict: bigint | undefined; conflictingPart?: number }
  | { status: 'duplicate-id'; conflict: bigint | undefined }
  /** Another part of the same call failed. */
  | { status: 'not-written' }
  | { status: 'unknown'; code: number };

/** A connection that runs append batches. */
export interface AppendConnection {
  /** One call of the append function for these commands, in this order: a result per part. */
  send(commands: readonly PendingAppend[], checkIds: boolean): Promise<CommandResult[]>;
  /**
   * Asks the server to cancel the running statement (its whole transaction then rolls back).
   * Resolves once the request was delivered; rejects when that cannot be confirmed.
   */
  cancel(): Promise<void>;
  /** Closes the socket at once; a running send rejects. */
  destroy(): void;
  /** Whether the server still works on this connection's statement (asked on another connection). */
  serverIsWorking(timeoutMs: number): Promise<boolean>;
  /** Gives the connection back (dropping it if it is broken or a cancel may still be on its way). */
  release(): void;
}

export interface BatchExecution {
  /** A connection from the pool; rejects after `timeoutMs`. Nothing is sent by this. */
  connect(timeoutMs: number): Promise<AppendConnection>;
  /** Connection refused or lost, server restarting, unreachable: a failed connect worth trying again (after sending, see isRefusal). */
  isConnectionError(error: unknown): boolean;
  /** The error a cancelled statement raises. */
  isCancelled(error: unknown): boolean;
  /**
   * The server answered the statement with an error, which rolled it back. Anything else after
   * sending (a lost connection, an unexpected socket error, a client-side timeout) leaves the
   * outcome unknown: "nothing written" needs this positive evidence.
   */
  isRefusal(error: unknown): boolean;
  /** Turns a driver error into the error a caller sees. */
  toError(error: unknown): EventStoreError;
  /** A database call answered for this many commands (telemetry). */
  answered?(commands: number): void;
  /** Runs a batch outside the context of the caller whose append started it (telemetry). */
  detached?<T>(run: () => T): T;
}

export interface BatcherLimits {
  /** Most commands in one batch. */
  maxCommands: number;
  /** Most events in one batch (a single larger command still goes alone). */
  maxEvents: number;
  /** Most appends waiting for a batch; past it, appends fail at once with EventStoreOverloadedError. */
  maxQueued: number;
  /** An append's whole life: queue, attempts, resends. */
  appendTimeoutMs: number;
  /** Longest wait for a pooled connection. */
  connectTimeoutMs: number;
}

/** How long an aborting caller of a batch of one waits for the cancel to give a definite answer. */
export const ABORT_GRACE_MS = 1_000;
/** Shortest time an attempt is given before it is abandoned and resent. */
const MIN_ATTEMPT_TIMEOUT_MS = 1_000;
/** A command with less time than this left is not sent any more (TIMEOUT, nothing written, instead of a likely "unknown"). */
const MIN_SEND_MS = 250;
/** Backoff between resends after a lost connection: full jitter on 50 ms doubling up to 2 s. */
/** Resends after a lost connection: from 50 ms, doubling up to 2 s, full jitter. */
const RESEND_BACKOFF: BackoffOptions = { baseMs: 50, capMs: 2_000, jitter: 'full' };

interface Attempt {
  commands: Command[];
  connection: AppendConnection;
  /** We cancelled this attempt's statement (every caller in it aborted). */
  cancelRequested: boolean;
}

/**
 * Keeps at most one append batch in flight per store. While it runs, new appends queue; the next
 * batch carries all of them (up to the limits), so one round trip and one commit (one fsync)
 * serve many concurrent appends. The database checks the commands in queue order.
 *
 * The outcome rules (see the README's Guarantees):
 * - resolve only with the server's answer that the command is stored (appended, or stored
 *   already by an identical earlier call);
 * - reject with a "nothing written" error (condition failed, id clash, aborted, timed out while
 *   queued, closed, overloaded, a database error that rolled the attempt back) only when that is
 *   known for every attempt that carried the command;
 * - otherwise, when the connection is lost after sending, resend the same commands (their ids
 *   make that idempotent) with backoff until the deadline; then AppendOutcomeUnknownError.
 * An abort never rolls back or fails another caller's append: the statement is cancelled only
 * when every caller in the batch has aborted; otherwise the aborting caller is detached.
 */
export class AppendBatcher {
  readonly #execution: BatchExecution;
  readonly #limits: BatcherLimits;
  #queue: Command[] = [];
  #inFlight: Promise<void> | undefined;
  #attempt: Attempt | undefined;
  /** The batch being run (connecting, sending, or waiting to resend). */
  #batch: Command[] = [];
  #idle: Array<() => void> = [];
  /** Set by forceClose(): stop waiting, settle everything now. */
  #forced = false;
  #wakeBackoff: (() => void) | undefined;

  readonly #log: StoreLog | undefined;

  constructor(execution: BatchExecution, limits: BatcherLimits, log?: StoreLog) {
    this.#execution = execution;
    this.#limits = limits;
    this.#log = log;
  }

  /** Resolves with the position of each part's last event. */
  submit(append: PendingAppend): Promise<bigint[]> {
    if (this.#queue.length >= this.#limits.maxQueued) {
      return Promise.reject(new EventStoreOverloadedError(`${this.#queue.length} appends are queued already`, this.#limits.maxQueued));
    }
    return new Promise<bigint[]>((resolve, reject) => {
      const command: Command = { ...append, resolve, reject, state: 'queued', ambiguous: false, alone: false, abortRequested: false, cleanup: () => undefined, lastError: undefined, deadline: Date.now() + (append.timeoutMs ?? this.#limits.appendTimeoutMs) };
      const timer = setTimeout(() => this.#expire(command), append.timeoutMs ?? this.#limits.appendTimeoutMs);
      const signal = append.signal;
      const onAbort = (): void => this.#abort(command);
      signal?.addEventListener('abort', onAbort, { once: true });
      command.cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#queue.push(command);
      this.#pump();
    });
  }

  /** Resolves when nothing is queued or in flight. */
  drained(): Promise<void> {
    if (!this.#inFlight && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * For close() after its timeout: queued appends (never sent) fail with EventStoreClosedError,
   * the others get the truth as far as it is known (unknown, unless never sent), and the running
   * attempt's connection is closed.
   */
  forceClose(): void {
    this.#forced = true;
    for (const command of this.#queue) this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'the store was closed before the outcome was known') : new EventStoreClosedError()));
    this.#queue = [];
    const attempt = this.#attempt;
    for (const command of this.#batch) {
      const onTheWire = attempt?.commands.includes(command) ?? false;
      this.#settle(command, () => command.reject(onTheWire || command.ambiguous ? this.#unknown(command, 'the store was closed while it was in flight') : new EventStoreClosedError()));
    }
    attempt?.connection.destroy();
    this.#wakeBackoff?.();
    this.#notifyIdle();
  }

  #unknown(command: Command, reason: string, cause?: unknown): AppendOutcomeUnknownError {
    const ids = command.events.map((event) => event.id);
    this.#log?.warn({ event_ids: ids, reason, ...(cause !== undefined && errorFields(cause)) }, `append outcome unknown: ${reason}`);
    return new AppendOutcomeUnknownError(ids, reason, cause);
  }

  #abort(command: Command): void {
    const reason = command.signal?.reason;
    if (command.state === 'queued') {
      this.#queue = this.#queue.filter((other) => other !== command);
      this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'aborted; an earlier attempt may have committed', reason) : new OperationAbortedError('append', reason)));
      this.#notifyIdle();
      return;
    }
    if (command.state !== 'in-flight') return;
    const attempt = this.#attempt;
    if (!attempt || !attempt.commands.includes(command)) {
      // Between attempts (connecting, or waiting to resend): nothing of it is on the wire now.
      this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'aborted while waiting to resend after a lost connection', reason) : new OperationAbortedError('append', reason)));
      return;
    }
    command.abortRequested = true;
    const othersWaiting = attempt.commands.some((other) => other.state !== 'settled' && !other.abortRequested);
    if (othersWaiting) {
      // Cancelling would roll back the other callers' appends too: detach this caller instead.
      // Its command may still commit with the batch.
      this.#settle(command, () => command.reject(this.#unknown(command, 'aborted while its batch was in flight', reason)));
      return;
    }
    // Everyone in this attempt has aborted: cancelling cannot hurt anyone. A cancelled statement
    // rolls back and then each caller learns "nothing written"; if it commits first, they get
    // their positions. Whoever has no answer after the grace period is told "unknown".
    if (!attempt.cancelRequested) {
      attempt.cancelRequested = true;
      attempt.connection.cancel().catch(() => undefined);
    }
    setTimeout(() => this.#settle(command, () => command.reject(this.#unknown(command, 'aborted while in flight; the cancel brought no answer in time', reason))), ABORT_GRACE_MS).unref();
  }

  #expire(command: Command): void {
    if (command.state === 'settled') return;
    const timeoutMs = command.timeoutMs ?? this.#limits.appendTimeoutMs;
    if (command.state === 'queued') {
      this.#queue = this.#queue.filter((other) => other !== command);
      this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, `no answer within appendTimeoutMs (${timeoutMs} ms)`) : new OperationTimeoutError('append', timeoutMs, 'it was still queued (nothing was written)')));
      this.#notifyIdle();
      return;
    }
    const onTheWire = this.#attempt?.commands.includes(command) ?? false;
    this.#settle(command, () =>
      command.reject(
        command.ambiguous || onTheWire
          ? this.#unknown(command, `no answer within appendTimeoutMs (${timeoutMs} ms)`, command.lastError)
          : new OperationTimeoutError('append', timeoutMs, `the database could not be reached (nothing was written)${command.lastError instanceof Error ? `: ${command.lastError.message}` : ''}`),
      ),
    );
  }

  #pump(): void {
    if (this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#takeBatch();
    this.#batch = batch;
    const run = (): Promise<void> => this.#run(batch);
    this.#inFlight = (this.#execution.detached ? this.#execution.detached(run) : run())
      .catch((error: unknown) => {
        // A bug of ours must not leave callers hanging: whoever is still waiting gets the truth.
        for (const command of batch) this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'internal error', error) : error));
      })
      .finally(() => {
        this.#inFlight = undefined;
        this.#batch = [];
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

  #takeBatch(): Command[] {
    const batch: Command[] = [];
    let events = 0;
    while (this.#queue.length > 0 && batch.length < this.#limits.maxCommands) {
      const next = this.#queue[0]!;
      if (batch.length > 0 && (next.alone || events + next.events.length > this.#limits.maxEvents)) break;
      this.#queue.shift();
      batch.push(next);
      events += next.events.length;
      if (next.alone) break;
    }
    for (const command of batch) command.state = 'in-flight';
    return batch;
  }

  async #run(batch: Command[]): Promise<void> {
    let failures = 0;
    for (;;) {
      let live = batch.filter((command) => command.state !== 'settled');
      if (live.length === 0 || this.#forced) return;
      const remaining = Math.max(...live.map((command) => command.deadline)) - Date.now();
      if (remaining <= 0) {
        for (const command of live) this.#expire(command);
        return;
      }

      let connection: AppendConnection;
      try {
        connection = await this.#execution.connect(Math.min(remaining, this.#limits.connectTimeoutMs));
      } catch (error) {
        // Nothing was sent. A server that is down or restarting: wait and try again.
        if (!this.#execution.isConnectionError(error) && !(error instanceof OperationTimeoutError)) {
          for (const command of live) this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'connecting to resend failed', error) : this.#execution.toError(error)));
          return;
        }
        for (const command of live) command.lastError = error;
        this.#log?.warn({ commands: live.length, failures: failures + 1, ...errorFields(error) }, 'no connection for an append batch; retrying');
        await this.#backoff(++failures, live);
        continue;
      }
      for (const command of batch) if (command.state !== 'settled' && command.deadline - Date.now() < MIN_SEND_MS) this.#expire(command);
      // Aborted or expired while we waited for the connection: those are not sent.
      live = batch.filter((command) => command.state !== 'settled');
      if (live.length === 0 || this.#forced) {
        connection.release();
        return;
      }

      const attempt: Attempt = { commands: live, connection, cancelRequested: false };
      this.#attempt = attempt;
      // An attempt without an answer is given up (and resent on a new connection) before the
      // deadline, so that one dead connection (peer gone without a FIN or RST) does not use up
      // the whole appendTimeoutMs. Its connection is closed, not its statement cancelled: a
      // statement that is merely slow (a lock wait, a big batch) goes on and commits on the
      // server, and the resend, which waits for the append lock behind it, then finds its ids
      // stored and answers with their positions. Cancelling would make an append that takes
      // longer than the attempt timeout fail on every attempt.
      const deadline = Math.max(...live.map((command) => command.deadline));
      const attemptTimeoutMs = Math.max(Math.min(MIN_ATTEMPT_TIMEOUT_MS, deadline - Date.now()), Math.min(deadline - Date.now(), this.#limits.appendTimeoutMs / 4));
      // Before giving up, ask on another connection whether the server still works on it: a
      // statement waiting for a lock or writing a big batch is alive, and abandoning it would
      // leave its backend waiting behind the lock as well as the resend's.
      let destroyed = false;
      let sendDone = false;
      let attemptTimer: NodeJS.Timeout | undefined;
      const giveUp = (): void => {
        if (sendDone) return;
        destroyed = true;
        // Only reached when the server is not working on it (idle, gone, unreachable) or the
        // deadline has passed (its callers are told "unknown" already): a cancel cannot hurt
        // then, and it frees a backend that still waits for a lock instead of leaving it there
        // (it would not notice the closed socket) to hold a connection slot.
        const destroy = (): void => {
          // The send may have ended meanwhile: its connection is released (perhaps to a new user) then.
          if (!sendDone) attempt.connection.destroy();
        };
        const grace = setTimeout(destroy, 500);
        attempt.connection.cancel().then(() => undefined, () => undefined).finally(() => {
          clearTimeout(grace);
          destroy();
        });
      };
      const onAttemptTimeout = (): void => {
        attempt.connection.serverIsWorking(Math.max(1, Math.min(MIN_ATTEMPT_TIMEOUT_MS, deadline - Date.now()))).then(
          (working) => {
            if (sendDone) return;
            if (working && deadline - Date.now() > 0) attemptTimer = setTimeout(onAttemptTimeout, Math.min(attemptTimeoutMs, deadline - Date.now()));
            else giveUp();
          },
          giveUp,
        );
      };
      attemptTimer = setTimeout(onAttemptTimeout, attemptTimeoutMs);
      let results: CommandResult[] | undefined;
      let failure: unknown;
      try {
        results = await connection.send(live, hasRepeatedIds(live));
      } catch (error) {
        failure = error;
      } finally {
        sendDone = true;
        clearTimeout(attemptTimer);
        this.#attempt = undefined;
        connection.release();
      }

      if (results) {
        this.#execution.answered?.(live.length);
        for (const command of live) if (command.report) command.report.batchCommands = live.length;
        let row = 0;
        for (const command of live) {
          this.#deliver(command, results.slice(row, row + command.parts.length));
          row += command.parts.length;
        }
        return;
      }
      if (this.#execution.isCancelled(failure) && attempt.cancelRequested && !destroyed) {
        // Every caller of this attempt had aborted; it rolled back.
        this.#settleAborted(live);
        const rest = live.filter((command) => command.state !== 'settled');
        for (const command of rest) command.state = 'queued';
        this.#queue.unshift(...rest);
        return;
      }
      if (destroyed || !this.#execution.isRefusal(failure)) {
        // Sent, and then the connection was lost: it may or may not have committed.
        for (const command of live) {
          command.ambiguous = true;
          command.lastError = failure;
          // Its caller has given up; a resend would only answer a question nobody asks.
          if (command.abortRequested) this.#settle(command, () => command.reject(this.#unknown(command, 'aborted while in flight, and the connection was lost', failure)));
        }
        if (this.#forced) {
          for (const command of live) this.#settle(command, () => command.reject(this.#unknown(command, 'the store was closed before the outcome was known', failure)));
          return;
        }
        this.#log?.warn({ commands: live.length, failures: failures + 1, ...errorFields(failure) }, 'connection lost with an append batch in flight; resending the same events (ids make it idempotent)');
        await this.#backoff(++failures, live);
        continue;
      }
      // The server refused the statement: the attempt rolled back. One bad command breaks the
      // whole batch; run each alone (at the front of the queue, in order) to find it.
      // Decided by what the attempt carried: if the culprit's caller aborted (or its deadline
      // passed) meanwhile, the innocent commands must still be tried alone, never be given its error.
      this.#settleAborted(live);
      const carried = live.length;
      live = live.filter((command) => command.state !== 'settled');
      if (live.length === 0) return;
      if (carried > 1) {
        for (const command of live) {
          command.alone = true;
          command.state = 'queued';
        }
        this.#queue.unshift(...live);
        return;
      }
      const command = live[0]!;
      this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'a resend was refused by the server; an earlier attempt may have committed', failure) : this.#execution.toError(failure)));
      return;
    }
  }

  /** After an attempt that rolled back: callers who aborted meanwhile learn that (or "unknown"). */
  #settleAborted(commands: readonly Command[]): void {
    for (const command of commands) {
      if (!command.abortRequested) continue;
      this.#settle(command, () => command.reject(command.ambiguous ? this.#unknown(command, 'aborted; an earlier attempt may have committed', command.signal?.reason) : new OperationAbortedError('append', command.signal?.reason)));
    }
  }

  /** Waits before resending; ends early when every command of the batch is settled, or on forceClose. */
  async #backoff(failures: number, live: readonly Command[]): Promise<void> {
    const deadline = Math.max(...live.map((command) => command.deadline));
    const delay = Math.min(deadline - Date.now(), backoffDelay(failures, RESEND_BACKOFF));
    if (delay <= 0 || this.#forced) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, delay);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeBackoff = done;
    });
    this.#wakeBackoff = undefined;
  }

  #deliver(command: Command, results: readonly CommandResult[]): void {
    this.#settle(command, () => {
      if (results.length < command.parts.length) {
        command.reject(this.#unknown(command, 'the append function returned fewer results than commands'));
        return;
      }
      if (results.every((result) => result.status === 'appended' || result.status === 'already-appended')) {
        // Stored already, and not by an attempt of this very call (a resend finds its own first attempt's events).
        if (command.report && !command.ambiguous && results.every((result) => result.status === 'already-appended')) command.report.idempotent = true;
        command.resolve(results.map((result) => (result as { position: bigint }).position));
        return;
      }
      const unknown = results.find((result) => result.status === 'unknown');
      if (unknown) {
        // A newer schema than this library knows: the batch committed, but what became of this
        // command is not something we can tell.
        command.reject(this.#unknown(command, `the append function answered with status ${unknown.code}, which this version does not know (is the schema newer than the library?)`));
        return;
      }
      // Nothing of the call was written: the first part that failed says why.
      const index = results.findIndex((result) => result.status === 'condition-failed' || result.status === 'duplicate-id');
      const result = results[index];
      const commandIndex = command.commands ? index : undefined;
      if (result?.status === 'condition-failed') {
        const part = command.parts[index]!;
        command.reject(new AppendConditionFailedError(part.callerCondition!, result.conflict, commandIndex === undefined ? undefined : { commandIndex, conflictingCommandIndex: result.conflictingPart }));
      } else if (result?.status === 'duplicate-id') {
        command.reject(new DuplicateEventIdError(command.parts[index]!.events.map((event) => event.id), result.conflict, commandIndex));
      } else {
        command.reject(this.#unknown(command, 'the append function answered "not written" for every command of the call without naming the one that failed'));
      }
    });
  }

  #settle(command: Command, settle: () => void): void {
    if (command.state === 'settled') return;
    command.state = 'settled';
    command.cleanup();
    settle();
  }
}

function hasRepeatedIds(batch: readonly PendingAppend[]): boolean {
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
