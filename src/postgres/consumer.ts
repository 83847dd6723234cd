import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { CheckpointAheadError, ConsumerFailedError, ConsumerRunningError, EventStoreClosedError, EventStoreDatabaseError, EventStoreError, InvalidInputError, OperationAbortedError } from '../errors.ts';
import { type SequencedEvent } from '../events.ts';
import { assertStorableString, describe, validateConsistency, validatePosition } from '../validation.ts';
import type { ReadConsistency, ReadResult } from '../store.ts';
import { Query } from '../query.ts';
import type { FollowSource } from '../subscriptions/follow.ts';
import { backoffDelay } from '../util/backoff.ts';
import { MAX_TIMER_MS, pause } from '../util/wait.ts';
import type { Consumer, ConsumerContext, ConsumerOptions, ConsumerStatus, ConsumerTransaction, ResetConsumerOptions } from './consumer-types.ts';
import { destroySocket } from './socket.ts';
import { isConnectionLost } from './classify.ts';
import { errorFields, type StoreLog } from '../telemetry/log.ts';
import type { Telemetry } from '../telemetry/otel.ts';

/** What a consumer needs from its store: what a subscription needs, and more. */
export interface ConsumerHost extends FollowSource {
  schema: string;
  quotedSchema: string;
  connectionConfig: pg.ClientConfig;
  head(options?: { signal?: AbortSignal }): Promise<bigint>;
  /** A statement on a pooled connection, errors mapped to EventStoreErrors. */
  query<Row extends pg.QueryResultRow>(operation: string, text: string, values: unknown[], signal: AbortSignal | undefined): Promise<Row[]>;
  /** Cancels the statement this connection's backend runs (a protocol cancel request). */
  cancelBackend(client: pg.ClientBase): Promise<void>;
  /**
   * Registers a running consumer: `store.close()` waits (bounded by its timeout) until `running`
   * settles, and calls `forceStop` when the timeout passes first. Returns `running`.
   */
  trackRun<T>(running: Promise<T>, forceStop: () => void): Promise<T>;
  log: StoreLog;
  /** Spans of handled events and the lag gauge; undefined without telemetry. */
  readonly telemetry: Telemetry | undefined;
}

/** The lease holder lost its connection (and with it the lease): start over. */
export class LeaseLostError extends Error {}

/** Asked to stop while waiting to retry an event, or while connecting: leave it for the next run. */
class StopRequested extends Error {}

/**
 * How one transaction over a run of events ended: committed through `events[through]` (stopped
 * after it when that is not the last), a handler failed at `index` (rolled back), or stopped
 * before anything could commit (rolled back; nothing recorded).
 */
export type AttemptOutcome = { kind: 'committed'; through: number } | { kind: 'failed'; index: number; error: unknown } | { kind: 'stopped' };

/**
 * One attempt at a run of events, for a consumer that is not driven by a handler per event (an
 * automation): it must move the checkpoint from `checkpoint` with {@link moveCheckpointPast} in
 * the transaction that makes the events' effects, and report as the handler path does.
 * LeaseLostError and transient errors propagate (the session is then replaced).
 */
export type AttemptRunner<Data> = (attempt: { session: pg.Client; events: readonly SequencedEvent<Data>[]; checkpoint: bigint; attempt: number; signal: AbortSignal; instanceId: string }) => Promise<AttemptOutcome>;

/** A consumer's options with its own attempt runner instead of a handler. */
export type RunnerConsumerOptions<Data> = Omit<ConsumerOptions<Data>, 'handle'> & { runAttempt: AttemptRunner<Data> };

/** A handler call took longer than handlerTimeoutMs; a failed attempt like any other. */
class HandlerTimeoutError extends Error {
  override name = 'HandlerTimeoutError';
}

/** The PostgreSQL store's durable consumer (see the Consumer interface for what it guarantees). */
export class PostgresConsumer<Data = unknown> implements Consumer<Data> {
  readonly name: string;
  readonly #host: ConsumerHost;
  readonly #query: Query;
  readonly #handle: ConsumerOptions<Data>['handle'] | undefined;
  readonly #runAttempt: AttemptRunner<Data> | undefined;
  readonly #batchSize: number;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: number;
  readonly #pollIntervalMs: number;
  readonly #takeoverIntervalMs: number;
  readonly #handlerTimeoutMs: number;
  readonly #instanceId: string;
  readonly #consistency: ReadConsistency;
  #running = false;
  /** The session of the current run, for #forceStop. */
  #session: pg.Client | undefined;

  /** @internal use `store.consumer(name, options)` */
  constructor(host: ConsumerHost, name: string, options: ConsumerOptions<Data> | RunnerConsumerOptions<Data>) {
    validateConsumerName(name);
    if (options === null || typeof options !== 'object') throw new InvalidInputError('options', `must be an object, got ${describe(options)}`);
    if (!(options.query instanceof Query)) throw new InvalidInputError('options.query', `must be a Query, got ${describe(options.query)}`);
    const runAttempt = 'runAttempt' in options ? options.runAttempt : undefined;
    const handle = 'handle' in options ? options.handle : undefined;
    if (runAttempt === undefined && typeof handle !== 'function') throw new InvalidInputError('options.handle', `must be a function, got ${describe(handle)}`);
    this.name = name;
    this.#host = host;
    this.#query = options.query;
    this.#handle = handle;
    this.#runAttempt = runAttempt;
    this.#batchSize = positiveInteger(options.batchSize, 100, 'options.batchSize');
    this.#maxAttempts = positiveInteger(options.maxAttempts, 5, 'options.maxAttempts');
    this.#retryDelayMs = nonNegativeNumber(options.retryDelayMs, 100, 'options.retryDelayMs');
    if (this.#retryDelayMs > MAX_TIMER_MS) throw new InvalidInputError('options.retryDelayMs', `must be at most ${MAX_TIMER_MS}, got ${this.#retryDelayMs}`);
    this.#pollIntervalMs = positiveInteger(options.pollIntervalMs, 1000, 'options.pollIntervalMs', MAX_TIMER_MS);
    this.#takeoverIntervalMs = positiveInteger(options.takeoverIntervalMs, 1000, 'options.takeoverIntervalMs', MAX_TIMER_MS);
    this.#handlerTimeoutMs = positiveInteger(options.handlerTimeoutMs, 60_000, 'options.handlerTimeoutMs', MAX_TIMER_MS);
    if (options.instanceId !== undefined && (typeof options.instanceId !== 'string' || options.instanceId.length === 0)) {
      throw new InvalidInputError('options.instanceId', `must be a non-empty string, got ${describe(options.instanceId)}`);
    }
    this.#consistency = validateConsistency(options.consistency, 'options.consistency');
    this.#instanceId = options.instanceId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  run(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#running) return Promise.reject(new InvalidInputError('run', `consumer "${this.name}" is already running in this Consumer object`));
    if (this.#host.closed) return Promise.reject(new EventStoreClosedError());
    this.#running = true;
    // store.close() waits for this run to end (it stops between events).
    return this.#host.trackRun(this.#runUntilStopped(options), () => this.#forceStop());
  }

  /**
   * store.close()'s timeout passed while a handler call still runs (handlerTimeoutMs may be
   * longer): close the session's socket, which ends the transaction (rolled back) and the lease,
   * so that nothing of this consumer outlives the store's close.
   */
  #forceStop(): void {
    const session = this.#session;
    if (!session) return;
    // Cancel first: a backend busy with a statement would not notice the closed socket until it
    // finished, and would hold the lease until then.
    void this.#host.cancelBackend(session).catch(() => undefined).finally(() => destroySocket(session));
  }

  async #runUntilStopped(options: { signal?: AbortSignal }): Promise<void> {
    // Stops on the caller's abort and on store.close(), wherever the consumer waits.
    const signal = options.signal ? AbortSignal.any([options.signal, this.#host.closedSignal]) : this.#host.closedSignal;
    let failures = 0;
    let session: pg.Client | undefined;
    try {
      while (!signal.aborted) {
        try {
          // A standby keeps its session and asks for the lease again every takeoverIntervalMs.
          session ??= await this.#openSession(signal);
          this.#session = session;
          const lease = await tryLease(session, this.#host.quotedSchema, this.#host.schema, this.name);
          failures = 0;
          if (!lease) {
            await pause(this.#takeoverIntervalMs, signal);
            continue;
          }
          this.#host.log.info({ consumer: this.name, instance: this.#instanceId }, `consumer ${this.name}: this instance holds the lease and runs`);
          await this.#runWithLease(session, lease, signal);
          // Returned: asked to stop. Ending the session below gives the lease back.
        } catch (error) {
          if (error instanceof StopRequested) return;
          if (!(error instanceof LeaseLostError) && !this.#host.isTransient(error)) throw asEventStoreError(error, this.name);
          // The session is gone or unusable, and with it the lease: start over on a new one.
          this.#host.log.warn({ consumer: this.name, instance: this.#instanceId, ...errorFields(error) }, `consumer ${this.name}: session lost; reconnecting`);
          await session?.end().catch(() => undefined);
          session = undefined;
          failures += 1;
          await pause(backoffDelay(failures, { baseMs: 50, capMs: this.#pollIntervalMs, jitter: 'equal' }), signal);
        }
      }
    } finally {
      await session?.end().catch(() => undefined);
      this.#running = false;
    }
  }

  status(options: { signal?: AbortSignal } = {}): Promise<ConsumerStatus> {
    return consumerStatus(this.#host, this.name, options);
  }

  async #openSession(signal: AbortSignal): Promise<pg.Client> {
    // A server that does not answer gives up after 10 s (then we try again with backoff), and a
    // stop ends the attempt at once. Keepalives also let this side notice a dead connection.
    const client = new pg.Client({ connectionTimeoutMillis: 10_000, keepAlive: true, keepAliveInitialDelayMillis: 30_000, ...this.#host.connectionConfig });
    client.on('error', () => undefined); // surfaces as a failed query, handled there
    // pg's client.end() during connect() leaves connect() unsettled: instead, stop waiting for it,
    // and end the connection once the attempt settles (bounded by connectionTimeoutMillis).
    const connecting = client.connect();
    let onAbort!: () => void;
    const stopped = new Promise<'stopped'>((resolve) => {
      onAbort = () => resolve('stopped');
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const winner = await Promise.race([connecting.then(() => 'connected' as const), stopped]);
      if (winner === 'stopped') {
        connecting.then(() => client.end(), () => undefined).catch(() => undefined);
        throw new StopRequested();
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    // Let the server notice a vanished lease holder (machine gone, no FIN) within about a minute
    // on TCP connections, so that a standby can take over.
    await client.query('SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3');
    return client;
  }

  async #runWithLease(session: pg.Client, lease: Lease, signal: AbortSignal): Promise<void> {
    const table = `${this.#host.quotedSchema}.consumers`;
    const { rows } = await session.query<{ position: string }>(
      `UPDATE ${table} SET owner = $2, status = CASE WHEN status = 'failed' THEN status ELSE 'running' END, updated_at = now() WHERE name = $1 RETURNING position`,
      [this.name, this.#instanceId],
    );
    let checkpoint = BigInt(rows[0]!.position);
    // The event the checkpoint points at must still be the one processed: a store restored from
    // an older backup has a lower head (or, once new appends passed the checkpoint, other events
    // at the same positions), and continuing would silently skip the events in between.
    const { rows: found } = await session.query<{ head: string; same: boolean | null }>(
      `SELECT h.position AS head, (SELECT e.id = c.checkpoint_event_id FROM ${this.#host.quotedSchema}.events e WHERE e.position = c.position) AS same
         FROM ${this.#host.quotedSchema}.head h, ${this.#host.quotedSchema}.consumers c WHERE c.name = $1`,
      [this.name],
    );
    const head = BigInt(found[0]!.head);
    if (checkpoint > head || found[0]!.same === false) {
      const error = new CheckpointAheadError(this.name, checkpoint, head);
      await this.#recordFailure(session, checkpoint + 1n, error);
      throw error;
    }
    let cursor = checkpoint; // read up to here; checkpoint <= cursor
    let lastIdleSave = 0;
    const untrack = this.#host.telemetry?.trackConsumer(this.name, () => checkpoint);
    try {
      while (!signal.aborted) {
        let result: ReadResult<Data>;
        const mark = this.#host.mark();
        try {
          result = await this.#host.read<Data>(this.#query, { after: cursor, limit: this.#batchSize, signal, ...(this.#consistency !== 'strong' && { consistency: this.#consistency }) });
        } catch (error) {
          if (signal.aborted || error instanceof OperationAbortedError || error instanceof EventStoreClosedError) return;
          throw error;
        }
        if (result.events.length > 0) {
          checkpoint = await this.#processBatch(session, result.events, checkpoint, signal);
          cursor = checkpoint;
          // Only a page read to its end (and fully processed) says nothing more is there up to the head.
          if (result.events.length === this.#batchSize || checkpoint !== result.events.at(-1)!.position) continue;
        }
        if (result.head > cursor) cursor = result.head;
        // Nothing matching up to the head: move the checkpoint there now and then, so that the
        // lag shows the truth and a restart does not re-read what holds nothing for us.
        if (cursor > checkpoint && Date.now() - lastIdleSave >= this.#pollIntervalMs) {
          await this.#moveCheckpoint(session, checkpoint, cursor);
          checkpoint = cursor;
          lastIdleSave = Date.now();
        }
        await this.#host.waitForAppend(cursor, mark, this.#pollIntervalMs, signal, this.#consistency);
      }
    } finally {
      untrack?.();
      // A clean stop: show it and give the lease back (ending the session would also release it).
      await session
        .query(`UPDATE ${table} SET status = CASE WHEN status = 'failed' THEN status ELSE 'idle' END, updated_at = now() WHERE name = $1 AND owner = $2`, [this.name, this.#instanceId])
        .catch(() => undefined);
      await releaseLease(session, lease);
    }
  }

  /**
   * Processes `events` in one transaction with the checkpoint and returns the new checkpoint: the
   * last event's position, or an earlier one when an event needed retries or a stop came between
   * events (the caller then reads on from there, or stops).
   */
  async #processBatch(session: pg.Client, events: readonly SequencedEvent<Data>[], checkpoint: bigint, signal: AbortSignal): Promise<bigint> {
    const outcome = await this.#attempt(session, events, checkpoint, 1, signal);
    if (outcome.kind === 'committed') return events[outcome.through]!.position;
    if (outcome.kind === 'stopped') return checkpoint;
    // The transaction was rolled back. Keep the work before the failing event, then retry that
    // event alone.
    let done = checkpoint;
    if (outcome.index > 0) {
      done = await this.#processBatch(session, events.slice(0, outcome.index), checkpoint, signal);
      if (done !== events[outcome.index - 1]!.position) return done;
    }
    return this.#retryAlone(session, events[outcome.index]!, done, outcome.error, signal);
  }

  /** Retries one failing event until it succeeds or `maxAttempts` is reached. */
  async #retryAlone(session: pg.Client, event: SequencedEvent<Data>, checkpoint: bigint, firstError: unknown, signal: AbortSignal): Promise<bigint> {
    let error = firstError;
    for (let attempt = 2; attempt <= this.#maxAttempts; attempt++) {
      this.#host.log.warn({ consumer: this.name, position: String(event.position), attempt: attempt - 1, max_attempts: this.#maxAttempts, ...errorFields(error) }, `consumer ${this.name}: handler failed at position ${event.position}; retrying`);
      await pause(Math.min(30_000, this.#retryDelayMs * 2 ** (attempt - 2)), signal);
      if (signal.aborted) throw new StopRequested(); // stopping or closing is not a failure: the next run resumes at this event
      const outcome = await this.#attempt(session, [event], checkpoint, attempt, signal);
      if (outcome.kind === 'committed') return event.position;
      if (outcome.kind === 'stopped') return checkpoint;
      error = outcome.error;
    }
    const failure = new ConsumerFailedError(this.name, event.position, this.#maxAttempts, error);
    this.#host.log.error({ consumer: this.name, position: String(event.position), attempts: this.#maxAttempts, ...errorFields(error) }, `consumer ${this.name} stopped: handler failed ${this.#maxAttempts} times at position ${event.position}`);
    await this.#recordFailure(session, event.position, error);
    throw failure;
  }

  /**
   * One transaction: the events in order, then the checkpoint (compare-and-set on the old one).
   * A stop is honoured between events: the handler call running when it comes finishes (bounded
   * by handlerTimeoutMs), and the events processed so far commit with the checkpoint at the last
   * of them. A handler that throws rolls the transaction back: reported as `failed` (or as
   * `stopped` once a stop was asked for: its error may well be the stop itself).
   * Connection errors and a failed compare-and-set propagate: the lease is gone.
   */
  async #attempt(session: pg.Client, events: readonly SequencedEvent<Data>[], checkpoint: bigint, attempt: number, signal: AbortSignal): Promise<AttemptOutcome> {
    if (signal.aborted) return { kind: 'stopped' };
    if (this.#runAttempt) return this.#runAttempt({ session, events, checkpoint, attempt, signal, instanceId: this.#instanceId });
    // Closed to the handler once this attempt ends: a handler that kept a reference (or timed
    // out and carried on) must not run statements outside the transaction.
    let open = true;
    const transaction: ConsumerTransaction = {
      query: (text, values) => (open ? session.query(text, values) : Promise.reject(new Error(`the transaction of consumer "${this.name}" has ended; use the one of the current call`))),
    };
    await session.query('BEGIN');
    let committed = false;
    let rolledBack = false;
    const rollBack = async (): Promise<void> => {
      try {
        await session.query('ROLLBACK');
      } catch {
        throw new LeaseLostError('the consumer\'s session was lost');
      }
      rolledBack = true;
    };
    try {
      let processed = 0;
      for (let index = 0; index < events.length; index++) {
        // Stop between events: what is processed commits below, the rest waits for the next run.
        if (index > 0 && signal.aborted) break;
        try {
          await this.#callHandler(events[index]!, { transaction, attempt, signal }, session, () => (open = false));
        } catch (error) {
          // Judge by our session, not by the error's shape: a handler's own ECONNREFUSED (its
          // HTTP call failed) is a handler failure, counted and recorded like any other.
          if (isConnectionLost(session)) throw new LeaseLostError('the consumer\'s session was lost');
          await rollBack();
          return signal.aborted ? { kind: 'stopped' } : { kind: 'failed', index, error };
        }
        processed = index + 1;
      }
      const last = events[processed - 1]!;
      try {
        await moveCheckpointPast(session, this.#host.quotedSchema, this.name, this.#instanceId, checkpoint, last);
        await session.query('COMMIT');
      } catch (error) {
        if (error instanceof LeaseLostError || isConnectionLost(session) || this.#host.isTransient(error)) throw error;
        // The handlers' work failed as a whole: a deferred constraint at COMMIT, or a handler
        // that swallowed an SQL error and left the transaction aborted. Blame the last event; the
        // caller commits the events before it and retries it alone, which narrows it down.
        await rollBack();
        return signal.aborted ? { kind: 'stopped' } : { kind: 'failed', index: processed - 1, error };
      }
      committed = true;
      return { kind: 'committed', through: processed - 1 };
    } finally {
      open = false;
      if (!committed && !rolledBack) await session.query('ROLLBACK').catch(() => undefined);
    }
  }

  /** The handler, bounded by handlerTimeoutMs (see there); inside its span when telemetry is on. */
  #callHandler(event: SequencedEvent<Data>, context: ConsumerContext, session: pg.Client, close: () => void): Promise<void> {
    const telemetry = this.#host.telemetry;
    const call = (): Promise<void> => this.#callHandlerWithin(event, context, session, close);
    // The span ends when the consumer stops waiting (a timeout fails it), not when a handler that
    // overran its time finally returns.
    return telemetry ? telemetry.handle(this.name, event.position, event.metadata, call) : call();
  }

  async #callHandlerWithin(event: SequencedEvent<Data>, context: ConsumerContext, session: pg.Client, close: () => void): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const running = Promise.resolve().then(() => this.#handle!(event, context));
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HandlerTimeoutError(`handler of consumer "${this.name}" did not finish within ${this.#handlerTimeoutMs} ms (event at position ${event.position})`)), this.#handlerTimeoutMs);
    });
    try {
      await Promise.race([running, timedOut]);
    } catch (error) {
      if (error instanceof HandlerTimeoutError) {
        running.catch(() => undefined); // it may still fail later; nobody waits for it any more
        close();
        // A statement of the handler may hold the session (a lock wait): cancel it so that the
        // rollback can run.
        await this.#host.cancelBackend(session).catch(() => undefined);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async #moveCheckpoint(session: pg.Client, from: bigint, to: bigint): Promise<void> {
    const moved = await session.query(
      `UPDATE ${this.#host.quotedSchema}.consumers
          SET position = $3, checkpoint_event_id = (SELECT e.id FROM ${this.#host.quotedSchema}.events e WHERE e.position = $3), status = 'running', failed_position = NULL, updated_at = now()
        WHERE name = $1 AND position = $2`,
      [this.name, from.toString(), to.toString()],
    );
    if (moved.rowCount !== 1) throw new LeaseLostError(`the checkpoint of consumer "${this.name}" moved under this instance`);
  }

  async #recordFailure(session: pg.Client, position: bigint, error: unknown): Promise<void> {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    await session.query(
      `UPDATE ${this.#host.quotedSchema}.consumers SET status = 'failed', failed_position = $2, last_error = $3, last_error_at = now(), updated_at = now() WHERE name = $1`,
      [this.name, position.toString(), message.replaceAll('\u0000', '')],
    );
  }
}

/**
 * Moves consumer `name`'s checkpoint from `from` to `last` (compare-and-set on `from`), inside
 * the caller's transaction. Another instance having moved it means the lease is gone.
 */
export async function moveCheckpointPast(session: pg.Client, quotedSchema: string, name: string, instanceId: string, from: bigint, last: SequencedEvent<unknown>): Promise<void> {
  const moved = await session.query(
    `UPDATE ${quotedSchema}.consumers SET position = $3, checkpoint_event_id = $5, status = 'running', failed_position = NULL, owner = $4, updated_at = now() WHERE name = $1 AND position = $2`,
    [name, from.toString(), last.position.toString(), instanceId, last.id],
  );
  if (moved.rowCount !== 1) throw new LeaseLostError(`the checkpoint of consumer "${name}" moved under this instance`);
}

/** Reads a consumer's status (also for consumers not running in this process). */
export async function consumerStatus(host: ConsumerHost, name: string, options: { signal?: AbortSignal } = {}): Promise<ConsumerStatus> {
  validateConsumerName(name);
  const rows = await host.query<{
    position: string | null;
    head: string;
    status: 'idle' | 'running' | 'failed' | null;
    owner: string | null;
    failed_position: string | null;
    last_error: string | null;
    last_error_at: Date | null;
    updated_at: Date | null;
    leased: boolean;
  }>(
    'consumer status',
    // The lease is the advisory lock itself: pg_locks tells whether a live session holds it,
    // whatever the table last said (a killed holder cannot update it).
    `SELECT c.position, h.position AS head, c.status, c.owner, c.failed_position, c.last_error, c.last_error_at, c.updated_at,
            EXISTS (SELECT 1 FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = $2) AND l.objid = c.lease_key::oid AND l.objsubid = 2) AS leased
       FROM ${host.quotedSchema}.head h LEFT JOIN ${host.quotedSchema}.consumers c ON c.name = $1`,
    [name, host.schema],
    options.signal,
  );
  const row = rows[0]!;
  const position = BigInt(row.position ?? 0);
  const head = BigInt(row.head);
  return {
    name,
    position,
    head,
    lag: head > position ? head - position : 0n,
    state: row.status === 'failed' ? 'failed' : row.leased ? 'running' : 'idle',
    owner: row.owner,
    failedPosition: row.failed_position === null ? null : BigInt(row.failed_position),
    lastError: row.last_error,
    lastErrorAt: row.last_error_at,
    updatedAt: row.updated_at,
  };
}

/**
 * Moves a consumer's checkpoint (default: back to the start, to rebuild its read model) and
 * clears its failure. Takes the consumer's lease for the duration, so it fails with
 * ConsumerRunningError while an instance runs. An error thrown by `onReset` reaches the caller
 * as it was thrown, and nothing changes (its writes roll back with the reset).
 */
export async function resetConsumer(host: ConsumerHost, name: string, options: ResetConsumerOptions = {}): Promise<void> {
  validateConsumerName(name);
  const position = options.position === undefined ? 0n : validatePosition(options.position, 'position');
  if (options.onReset !== undefined && typeof options.onReset !== 'function') throw new InvalidInputError('onReset', `must be a function, got ${describe(options.onReset)}`);
  const client = new pg.Client({ connectionTimeoutMillis: 10_000, ...host.connectionConfig });
  client.on('error', () => undefined);
  let lease: Lease | undefined;
  /** Set when onReset threw: that error, not ours, is what the caller gets. */
  let fromOnReset: { error: unknown } | undefined;
  try {
    await client.connect();
    lease = await tryLease(client, host.quotedSchema, host.schema, name);
    if (!lease) throw new ConsumerRunningError(name);
    await client.query('BEGIN');
    const head = BigInt((await client.query<{ position: string }>(`SELECT position FROM ${host.quotedSchema}.head`)).rows[0]!.position);
    if (position > head) throw new InvalidInputError('position', `must not be beyond the store's head (${head}), got ${position}`);
    if (options.onReset) {
      // Closed once the reset ends, like a handler's: a late statement must not run outside it.
      let open = true;
      const transaction: ConsumerTransaction = {
        query: (text, values) => (open ? client.query(text, values) : Promise.reject(new Error(`the transaction of the reset of consumer "${name}" has ended`))),
      };
      try {
        await options.onReset(transaction);
      } catch (error) {
        fromOnReset = { error };
        throw error;
      } finally {
        open = false;
      }
    }
    // tryLease made sure the row exists.
    await client.query(
      `UPDATE ${host.quotedSchema}.consumers SET position = $2, checkpoint_event_id = (SELECT e.id FROM ${host.quotedSchema}.events e WHERE e.position = $2),
              status = 'idle', failed_position = NULL, last_error = NULL, last_error_at = NULL, updated_at = now()
        WHERE name = $1`,
      [name, position.toString()],
    );
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (fromOnReset) throw fromOnReset.error;
    if (error instanceof EventStoreError) throw error;
    throw new EventStoreDatabaseError(`resetting consumer "${name}" failed: ${(error as Error).message}`, error);
  } finally {
    if (lease) await releaseLease(client, lease);
    await client.end().catch(() => undefined);
  }
}

/** Errors of our own pass as they are; PostgreSQL's become EventStoreDatabaseErrors. */
function asEventStoreError(error: unknown, name: string): unknown {
  if (error instanceof EventStoreError || !(error instanceof Error)) return error;
  return new EventStoreDatabaseError(`consumer "${name}": ${error.message}`, error);
}

/**
 * A consumer's lease: the session advisory lock on the two int4 keys (the store schema's
 * namespace oid, the consumer row's lease_key). lease_key comes from a sequence and is unique per
 * schema, and the namespace oid is unique per database, so two consumers never share a lock (the
 * earlier (hashtext(schema), hashtext(name)) key let two names collide and block each other).
 * In pg_locks it shows as classid = namespace oid, objid = lease_key, objsubid = 2; the status
 * query looks for exactly that.
 */
interface Lease {
  namespace: number;
  key: number;
}

/** Takes the lease of consumer `name` if it is free, creating the consumer's row (and key) on first use. */
async function tryLease(session: pg.Client, quotedSchema: string, schema: string, name: string): Promise<Lease | undefined> {
  const take = `SELECT n.oid::int4 AS namespace, c.lease_key AS key, pg_try_advisory_lock(n.oid::int4, c.lease_key) AS leased
                  FROM ${quotedSchema}.consumers c, pg_namespace n WHERE c.name = $1 AND n.nspname = $2`;
  let { rows } = await session.query<{ namespace: number; key: number; leased: boolean }>(take, [name, schema]);
  if (rows.length === 0) {
    // Only when missing: an INSERT ... ON CONFLICT DO NOTHING takes a key from the sequence even
    // when the row exists, and standbys ask for the lease every takeoverIntervalMs.
    await session.query(`INSERT INTO ${quotedSchema}.consumers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, [name]);
    ({ rows } = await session.query<{ namespace: number; key: number; leased: boolean }>(take, [name, schema]));
  }
  const row = rows[0];
  if (row === undefined) throw new Error(`the row of consumer "${name}" disappeared while taking its lease`);
  return row.leased ? { namespace: row.namespace, key: row.key } : undefined;
}

async function releaseLease(session: pg.Client, lease: Lease): Promise<void> {
  await session.query('SELECT pg_advisory_unlock($1::int4, $2::int4)', [lease.namespace, lease.key]).catch(() => undefined);
}

function validateConsumerName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) throw new InvalidInputError('name', `must be a string of 1 to 255 characters, got ${describe(name)}`);
  // NUL cannot be stored; an unpaired surrogate would be stored as U+FFFD, merging two names.
  assertStorableString(name, 'name');
}

function positiveInteger(value: unknown, fallback: number, path: string, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) throw new InvalidInputError(path, `must be an integer from 1 to ${max}, got ${describe(value)}`);
  return value;
}

function nonNegativeNumber(value: unknown, fallback: number, path: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new InvalidInputError(path, `must be a non-negative number, got ${describe(value)}`);
  return value;
}


