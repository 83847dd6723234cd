// What a durable consumer is to its users: options, context, status. Apart from the
// implementation (consumer.ts) so that the published types do not need pg's.
import type { SequencedEvent } from '../events.ts';
import type { Query } from '../query.ts';

/**
 * A named, durable consumer of the log: processes every matching event once, in position order,
 * and stores its checkpoint in `<schema>.consumers`. Create it with `store.consumer(name, ...)`.
 *
 * Guarantees:
 * - At-least-once delivery; exactly-once effects for writes made through `context.transaction`,
 *   which also moves the checkpoint.
 * - One instance at a time per name: the lease is a PostgreSQL advisory lock held by the session
 *   that runs the transactions, so it ends with that session (process death, lost connection)
 *   and a standby takes over within `takeoverIntervalMs`.
 * - A failing event is retried `maxAttempts` times, then the consumer stops with the error in its
 *   status; the checkpoint stays before the event, which is never skipped.
 */
export interface Consumer<Data = unknown> {
  readonly name: string;
  /**
   * Runs until `signal` aborts or the store closes (then resolves), or until the consumer fails
   * (then rejects with ConsumerFailedError, CheckpointAheadError or a database error that is not
   * a lost connection). While another instance holds the lease, waits as a standby. Lost
   * connections are retried forever, with backoff.
   *
   * A stop takes effect between events: the handler call running then finishes (at most
   * handlerTimeoutMs), the events processed so far commit with the checkpoint at the last of
   * them, the lease is released and run() resolves. `store.close()` waits for that.
   *
   * @example
   * const controller = new AbortController();
   * const consumer = store.consumer('course-list', {
   *   query: Query.of(QueryItem.types('CourseDefined', 'CourseRenamed')),
   *   handle: async (event, { transaction }) => {
   *     await transaction.query('INSERT INTO course_list (id, title) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET title = $2',
   *       [event.data.courseId, event.data.title]);
   *   },
   * });
   * const running = consumer.run({ signal: controller.signal });
   */
  run(options?: { signal?: AbortSignal }): Promise<void>;
  /** The checkpoint, lag, lease and last error. */
  status(options?: { signal?: AbortSignal }): Promise<ConsumerStatus>;
}

/** What a statement in the consumer's transaction returns (a pg QueryResult has these and more). */
export interface ConsumerQueryResult<Row> {
  rows: Row[];
  /** Rows the statement returned or changed; null for statements that report none. */
  rowCount: number | null;
  /** The command tag: INSERT, UPDATE, ... */
  command: string;
}

/** The consumer's transaction: run the read model's writes here to apply them exactly once. */
export interface ConsumerTransaction {
  /** One statement, values bound as $1, $2, ... (pg's `client.query`). */
  query<Row extends Record<string, any> = Record<string, any>>(text: string, values?: unknown[]): Promise<ConsumerQueryResult<Row>>;
}

export interface ConsumerContext {
  /**
   * The open transaction that also moves the checkpoint past this event. Writes made through it
   * commit together with the checkpoint, or not at all. Do not COMMIT or ROLLBACK it yourself.
   */
  transaction: ConsumerTransaction;
  /** Which attempt at this event this is: 1, then 2, ... up to `maxAttempts`. */
  attempt: number;
  /**
   * Aborted when the consumer is asked to stop (the run's signal, or `store.close()`). The call
   * may still finish: its writes then commit with the events before it. A call that throws after
   * the signal fired rolls back its batch's uncommitted events, which the next run delivers again;
   * no failure is recorded. The transaction stays usable either way.
   */
  signal: AbortSignal;
}

export interface ConsumerOptions<Data = unknown> {
  /** The events to process. */
  query: Query;
  /** Processes one event. Throw to retry it (see `maxAttempts`). */
  handle: (event: SequencedEvent<Data>, context: ConsumerContext) => Promise<void> | void;
  /** Events per transaction. Default 100. */
  batchSize?: number;
  /** Attempts at one failing event before the consumer stops with ConsumerFailedError. Default 5. */
  maxAttempts?: number;
  /** Wait before the second attempt; doubles each time, up to 30 s. Default 100 ms. */
  retryDelayMs?: number;
  /** Longest wait for new events without a wake-up notification. Default 1000 ms. */
  pollIntervalMs?: number;
  /** How often a standby instance tries to take the lease over. Default 1000 ms. */
  takeoverIntervalMs?: number;
  /**
   * Longest time one handler call may take. When it passes, the call counts as a failed attempt:
   * the statement it runs is cancelled, its transaction rolled back and closed to it (a late
   * query fails instead of running outside the transaction), and the event is retried as for any
   * error. Default 60000 ms.
   */
  handlerTimeoutMs?: number;
  /** Shown in the status as the lease holder. Default `<hostname>:<pid>:<random>`. */
  instanceId?: string;
}

export interface ConsumerStatus {
  name: string;
  /** Every matching event up to here is processed. */
  position: bigint;
  head: bigint;
  /** Positions between the checkpoint and the head (an upper bound on the unprocessed matching events). */
  lag: bigint;
  /** `running`: an instance holds the lease now. `failed`: it stopped on `lastError`. `idle`: neither. */
  state: 'idle' | 'running' | 'failed';
  /** The lease holder's `instanceId` (or the last one's). */
  owner: string | null;
  /** Position of the event the handler failed on, while `failed`. */
  failedPosition: bigint | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  updatedAt: Date | null;
}

export interface ResetConsumerOptions {
  /** The new checkpoint: processing restarts after it. Default 0n (rebuild from the first event). */
  position?: bigint;
  /** Runs in the same transaction as the reset, e.g. to empty the read model. */
  onReset?: (transaction: ConsumerTransaction) => unknown;
}
