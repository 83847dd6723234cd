import pg from 'pg';
import { commandsAreIndependent } from './batch-independence.ts';
import { AppendBatcher, type BatchExecution, type CommandResult, type PendingAppend } from './append-batcher.ts';
import {
  DuplicateEventIdError,
  EventStoreClosedError,
  EventStoreDatabaseError,
  EventStoreError,
  InvalidInputError,
  OperationAbortedError,
} from './errors.ts';
import { describe, type AppendCondition, type EventInput, type SequencedEvent } from './events.ts';
import { Query } from './query.ts';
import { quoteSchemaName } from './postgres/identifiers.ts';
import { ensurePayloadIndex, migrate, schemaSql } from './postgres/migrate.ts';
import { prepareAppend, streamPages, validateRead } from './operation-input.ts';
import { buildReadStatement } from './postgres/read-sql.ts';
import { PostgresSnapshotStore } from './postgres/snapshot-store.ts';
import { executeCommand, type CommandHandler, type ExecuteOptions, type ExecuteResult } from './decisions/command-handler.ts';
import type { StatesOf } from './decisions/decision-model.ts';
import type { Projection } from './decisions/projection.ts';
import type { SnapshotStore } from './decisions/snapshots.ts';
import { HeadNotifier } from './postgres/notifier.ts';
import { sendCancelRequest } from './postgres/cancel.ts';
import { Consumer, consumerStatus, resetConsumer, type ConsumerHost, type ConsumerOptions, type ConsumerStatus, type ResetConsumerOptions } from './consumers/consumer.ts';
import { follow, validateSubscribeOptions, type SubscribeOptions } from './subscriptions/follow.ts';

export interface EventStoreOptions {
  /** PostgreSQL connection string. Default: the `DATABASE_URL` environment variable. */
  connectionString?: string;
  /** Schema holding all of the store's objects. Default `eventstore`. */
  schema?: string;
  /** Apply missing schema migrations on connect. Default true. */
  migrate?: boolean;
  /**
   * Create the GIN index on event payloads if it is missing (never dropped by the store). Makes
   * queries whose items have payload predicates but no type or tag fast; costs about half of
   * every append's time. Default false.
   */
  payloadIndex?: boolean;
  /** Most connections the store opens. Default 10. */
  poolSize?: number;
  /** Most commands one append batch carries. Default 1000. */
  maxBatchCommands?: number;
  /** Most events one append batch carries (a single larger append still goes alone). Default 10000. */
  maxBatchEvents?: number;
  /**
   * A condition whose `after` is at most this many positions behind the head is checked by walking
   * the events written since; otherwise through the indexes. Default 128. Tuning knob; both
   * paths give the same answer.
   */
  conditionScanLimit?: number;
}

export interface ReadOptions {
  /** Only events with a position greater than this. Default 0. */
  after?: bigint;
  /** At most this many events. Default: all matching events. */
  limit?: number;
  /** Newest first (still only events after `after`). Default false. */
  backwards?: boolean;
  signal?: AbortSignal;
}

export interface ReadResult<Data = unknown> {
  events: SequencedEvent<Data>[];
  /**
   * The highest position in the store when the read ran, from the same snapshot as the events.
   * Pass it as `after` of the append condition.
   */
  head: bigint;
}

export interface StreamOptions {
  /** Only events with a position greater than this. Default 0. */
  after?: bigint;
  /** Events fetched per round trip. Default 1000. */
  batchSize?: number;
  signal?: AbortSignal;
}

export interface AppendOptions {
  /** Abort before the append took effect; if it commits first, the append succeeds normally. */
  signal?: AbortSignal;
}

export interface AppendResult {
  /** Position of the last event written (or, for an idempotent retry, written originally). */
  position: bigint;
}

interface ReadRow {
  head: string;
  position: string | null;
  id: string;
  type: string;
  tags: string[];
  data: unknown;
  metadata: Record<string, unknown>;
  occurred_at: Date;
  recorded_at: Date;
}

interface AppendRow {
  r_status: number;
  r_position: string | null;
  r_conflict: string | null;
}

/**
 * A DCB event store on PostgreSQL. Create it with {@link EventStore.connect}; share one instance
 * per process (it batches concurrent appends); close it with {@link EventStore.close}.
 */
export class EventStore {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #quotedSchema: string;
  readonly #batcher: AppendBatcher;
  readonly #connectionConfig: pg.PoolConfig;
  readonly #conditionScanLimit: number;
  readonly #statementNames = new Map<string, string>();
  readonly #snapshots: PostgresSnapshotStore;
  readonly #notifier: HeadNotifier;
  readonly #closedController = new AbortController();
  /** What subscriptions and consumers read and wait through. */
  readonly #host: ConsumerHost;
  /** Running consumers; close() waits for them. */
  readonly #runs = new Set<Promise<unknown>>();
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(pool: pg.Pool, schema: string, connectionConfig: pg.PoolConfig, options: EventStoreOptions) {
    this.#pool = pool;
    this.#schema = schema;
    this.#quotedSchema = quoteSchemaName(schema);
    this.#connectionConfig = connectionConfig;
    this.#conditionScanLimit = options.conditionScanLimit ?? 128;
    this.#batcher = new AppendBatcher(this.#batchExecution(), {
      maxCommands: options.maxBatchCommands ?? 1000,
      maxEvents: options.maxBatchEvents ?? 10_000,
      ambiguousRetries: 2,
    });
    this.#notifier = new HeadNotifier(connectionConfig, this.#quotedSchema);
    const isClosed = (): boolean => this.#closed;
    this.#host = {
      schema: this.#schema,
      quotedSchema: this.#quotedSchema,
      connectionConfig: this.#connectionConfig,
      read: (query, options) => this.read(query, options),
      head: (options) => this.head(options),
      query: (operation, text, values, signal) => this.#query(operation, text, values, signal),
      mark: () => this.#notifier.mark(),
      waitForAppend: (position, since, timeoutMs, signal) => this.#notifier.waitForAppend(position, since, timeoutMs, signal),
      get closed() {
        return isClosed();
      },
      closedSignal: this.#closedController.signal,
      cancelBackend: (client) => sendCancelRequest(client),
      trackRun: (running) => {
        this.#runs.add(running);
        const forget = (): void => void this.#runs.delete(running);
        running.then(forget, forget);
        return running;
      },
      // Raw errors of a consumer's own session, and the store's errors wrapping them.
      isTransient: (error) => isConnectionError(error) || (error instanceof EventStoreDatabaseError && isConnectionError(error.cause)),
    };
    this.#snapshots = new PostgresSnapshotStore(this.#quotedSchema, (operation, text, values, signal) => this.#query(operation, text, values, signal));
  }

  /**
   * Connects to PostgreSQL and, unless `migrate: false`, creates or upgrades the schema.
   *
   * @example
   * const store = await EventStore.connect({ connectionString: 'postgres://localhost/app', schema: 'eventstore' });
   */
  static async connect(options: EventStoreOptions = {}): Promise<EventStore> {
    const schema = options.schema ?? 'eventstore';
    quoteSchemaName(schema);
    const connectionString = options.connectionString ?? process.env.DATABASE_URL;
    if (connectionString === undefined || connectionString === '') {
      throw new InvalidInputError('connectionString', 'is required (or set DATABASE_URL); startEmbeddedPostgres() gives you one');
    }
    if (options.payloadIndex !== undefined && typeof options.payloadIndex !== 'boolean') {
      throw new InvalidInputError('payloadIndex', `must be a boolean, got ${describe(options.payloadIndex)}`);
    }
    const poolSize = options.poolSize ?? 10;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new InvalidInputError('poolSize', `must be a positive integer, got ${describe(poolSize)}`);
    for (const key of ['maxBatchCommands', 'maxBatchEvents', 'conditionScanLimit'] as const) {
      const value = options[key];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < (key === 'conditionScanLimit' ? 0 : 1))) throw new InvalidInputError(key, `must be a positive integer, got ${describe(value)}`);
    }
    const connectionConfig: pg.PoolConfig = { connectionString: withReadCommitted(connectionString), application_name: 'dynamic-streams-eventstore' };
    const pool = new pg.Pool({ ...connectionConfig, max: poolSize });
    // An idle connection that dies (server restart) must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    // pg-pool takes its own 'error' listener off a client while it is checked out. A server that
    // terminates the connection in the same packet as a query's reply makes the client emit
    // 'error' before we release it; unheard, that would crash the process. The query itself
    // still fails, and the pool drops the broken client on release.
    pool.on('connect', (client) => client.on('error', () => undefined));

    try {
      const migrating = options.migrate ?? true;
      if (migrating || options.payloadIndex === true) {
        const client = await pool.connect();
        try {
          if (migrating) await migrate(client, schema);
          if (options.payloadIndex === true) await ensurePayloadIndex(client, schema);
        } finally {
          client.release();
        }
      } else {
        await pool.query('SELECT 1');
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      if (error instanceof EventStoreError) throw error;
      throw new EventStoreDatabaseError(`connecting to PostgreSQL failed: ${(error as Error).message}`, error);
    }
    return new EventStore(pool, schema, connectionConfig, options);
  }

  /** The schema this store lives in. */
  get schema(): string {
    return this.#schema;
  }

  /**
   * Appends events atomically: all or none. With a condition, only if no event matching
   * `condition.failIfEventsMatch` exists after `condition.after` (or at all, without `after`);
   * otherwise throws {@link AppendConditionFailedError} and writes nothing.
   *
   * @example
   * const { events, head } = await store.read(query);
   * // ... decide ...
   * await store.append({ type: 'BookCopyLentToReader', tags: ['book:b1', 'reader:r1'], data: { BookID: 'b1', ReaderID: 'r1' } },
   *   { failIfEventsMatch: query, after: head });
   */
  async append(events: EventInput | readonly EventInput[], condition?: AppendCondition, options: AppendOptions = {}): Promise<AppendResult> {
    this.#assertOpen();
    const signal = options.signal;
    const prepared = prepareAppend(events, condition, signal);
    const internalCondition: PendingAppend['condition'] = condition === undefined
      ? null
      : { query: condition.failIfEventsMatch.toInternal(), after: prepared.after === undefined ? null : prepared.after.toString() };
    const normalized = prepared.events;
    let position: bigint;
    try {
      position = await this.#batcher.submit({ events: normalized, condition: internalCondition, callerCondition: condition, signal });
    } catch (error) {
      if (error instanceof DuplicateEventIdError) throw await this.#clashingIds(error);
      throw error;
    }
    return { position };
  }

  /** The error with only the ids that are stored already (the batch only says "some are"). */
  async #clashingIds(error: DuplicateEventIdError): Promise<DuplicateEventIdError> {
    try {
      const rows = await this.#query<{ id: string }>('append', `SELECT id FROM ${this.#quotedSchema}.events WHERE id = ANY ($1::uuid[])`, [error.ids], undefined);
      const stored = new Set(rows.map((row) => row.id));
      const ids = error.ids.filter((id) => stored.has(id));
      return ids.length > 0 ? new DuplicateEventIdError(ids, error.existingPosition) : error;
    } catch {
      return error;
    }
  }

  /**
   * Reads the events matching `query`, in position order (newest first with `backwards`), and
   * the store's head from the same snapshot.
   *
   * @example
   * const { events, head } = await store.read(Query.of(QueryItem.types('ReaderRegistered').tags('reader:r1')));
   * const last = (await store.read(query, { backwards: true, limit: 1 })).events[0];
   */
  async read<Data = unknown>(query: Query, options: ReadOptions = {}): Promise<ReadResult<Data>> {
    this.#assertOpen();
    const { after, limit, backwards } = validateRead(query, options);
    const statement = buildReadStatement(this.#quotedSchema, query.toInternal(), { after, limit, backwards });
    const rows = await this.#query<ReadRow>('read', statement.text, statement.values, options.signal, this.#statementName(statement.text));
    const head = BigInt(rows[0]!.head);
    const events: SequencedEvent<Data>[] = [];
    for (const row of rows) {
      if (row.position === null) continue;
      events.push({
        position: BigInt(row.position),
        id: row.id,
        type: row.type,
        tags: row.tags,
        data: row.data as Data,
        metadata: row.metadata,
        occurredAt: row.occurred_at,
        recordedAt: row.recorded_at,
      });
    }
    return { events, head };
  }

  /**
   * Iterates over the events matching `query` in position order, fetching `batchSize` at a time
   * (constant memory; the next batch is fetched while this one is consumed). Ends at the head the
   * first batch saw, so it terminates under load too.
   *
   * @example
   * for await (const event of store.stream(Query.all(), { after: 0n })) project(event);
   */
  async *stream<Data = unknown>(query: Query, options: StreamOptions = {}): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
    this.#assertOpen();
    yield* streamPages<Data>((from, limit, signal) => this.read<Data>(query, { after: from, limit, ...(signal && { signal }) }), query, options);
  }

  /**
   * Follows the log: every event matching `query` after `options.after`, then each one appended
   * later, in position order, never skipping or repeating one. Wakes on a notification from each
   * append (LISTEN/NOTIFY) and polls every `pollIntervalMs` in case one was lost; survives lost
   * connections (it reads again once the server is back). Returned directly (not a promise); it
   * ends when `signal` aborts, the loop breaks, or the store closes.
   *
   * @example
   * const controller = new AbortController();
   * for await (const event of store.subscribe(Query.of(QueryItem.types('OrderPlaced')), { signal: controller.signal })) {
   *   await sendConfirmation(event);
   * }
   */
  subscribe<Data = unknown>(query: Query, options: SubscribeOptions = {}): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
    this.#assertOpen();
    return follow<Data>(this.#host, query, validateSubscribeOptions(query, options));
  }

  /**
   * A durable consumer named `name`: processes every event matching `options.query` in position
   * order, with its checkpoint in `<schema>.consumers`, one running instance per name (others wait
   * as standbys), retrying a failing event and then stopping with the error visible. Start it with
   * `consumer.run({ signal })`.
   *
   * @example
   * const consumer = store.consumer('course-list', {
   *   query: Query.of(QueryItem.types('CourseDefined')),
   *   handle: async (event, { transaction }) => {
   *     await transaction.query('INSERT INTO course_list (id) VALUES ($1)', [event.data.courseId]);
   *   },
   * });
   * await consumer.run({ signal: controller.signal });
   */
  consumer<Data = unknown>(name: string, options: ConsumerOptions<Data>): Consumer<Data> {
    this.#assertOpen();
    return new Consumer<Data>(this.#host, name, options);
  }

  /** Checkpoint, lag, lease and last error of the consumer `name` (running anywhere, or not at all). */
  consumerStatus(name: string, options: { signal?: AbortSignal } = {}): Promise<ConsumerStatus> {
    this.#assertOpen();
    return consumerStatus(this.#host, name, options);
  }

  /**
   * Moves the checkpoint of consumer `name` (default: to 0n, to rebuild its read model; pass
   * `onReset` to empty the read model in the same transaction) and clears its failure. Throws
   * ConsumerRunningError while an instance holds the consumer's lease.
   */
  resetConsumer(name: string, options: ResetConsumerOptions = {}): Promise<void> {
    this.#assertOpen();
    return resetConsumer(this.#host, name, options);
  }

  /**
   * Runs a command handler: builds its decision model, decides, appends with the model's
   * condition, and on a conflict reads and decides again (bounded, jittered backoff), then throws
   * {@link RetriesExhaustedError}. Errors thrown by `decide` reach the caller unchanged.
   *
   * @example
   * const { position } = await store.execute(subscribeStudentToCourse, { studentId: 's1', courseId: 'c1' });
   */
  execute<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput>(
    handler: CommandHandler<Command, Projections, Event>,
    command: Command,
    options?: ExecuteOptions,
  ): Promise<ExecuteResult<StatesOf<Projections>, Event>> {
    this.#assertOpen();
    return executeCommand(this, handler, command, options);
  }

  /** Snapshots of decision-model projections, in `<schema>.snapshots`. */
  get snapshots(): SnapshotStore {
    return this.#snapshots;
  }

  /** The highest position in the store (0n when empty). */
  async head(options: { signal?: AbortSignal } = {}): Promise<bigint> {
    this.#assertOpen();
    const rows = await this.#query<{ position: string }>('head', `SELECT position FROM ${this.#quotedSchema}.head`, [], options.signal);
    return BigInt(rows[0]!.position);
  }

  /** The DDL of this store's schema, for users who apply migrations with their own tool. */
  schemaSql(): string {
    return schemaSql(this.#schema);
  }

  /** Waits for queued appends, then closes all connections. Later calls throw EventStoreClosedError. */
  close(): Promise<void> {
    // Every caller waits for the same drain, so a second close() cannot return early.
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#closedController.abort(new EventStoreClosedError());
      await this.#notifier.close();
      await Promise.allSettled([...this.#runs]);
      await this.#batcher.drained();
      await this.#pool.end();
    })();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closed) throw new EventStoreClosedError();
  }

  /**
   * A prepared-statement name for a read's text, so that each connection parses it once. The text
   * depends only on the query's shape; the first MAX_PREPARED_SHAPES shapes get names (bounding
   * what each connection keeps prepared), later ones run unnamed.
   */
  #statementName(text: string): string | undefined {
    let name = this.#statementNames.get(text);
    if (name === undefined && this.#statementNames.size < MAX_PREPARED_SHAPES) {
      name = `dses_read_${this.#statementNames.size}`;
      this.#statementNames.set(text, name);
    }
    return name;
  }

  async #query<Row extends pg.QueryResultRow>(operation: string, text: string, values: unknown[], signal: AbortSignal | undefined, name?: string): Promise<Row[]> {
    if (signal?.aborted) throw new OperationAbortedError(operation, signal.reason);
    let client: pg.PoolClient;
    try {
      client = await this.#connect(operation, signal);
    } catch (error) {
      throw this.#toError(error);
    }
    if (signal?.aborted) {
      client.release();
      throw new OperationAbortedError(operation, signal.reason);
    }
    let aborted = false;
    let cancelling: Promise<void> | undefined;
    const onAbort = (): void => {
      aborted = true;
      cancelling = this.#cancelBackend(processId(client)).catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await client.query<Row>(name === undefined ? { text, values } : { name, text, values });
      return result.rows;
    } catch (error) {
      if (aborted) throw new OperationAbortedError(operation, signal?.reason);
      throw this.#toError(error);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // Keep the connection out of the pool until a late cancel has landed, so that it cannot hit
      // the next user's statement.
      if (cancelling) await cancelling;
      client.release();
    }
  }

  /** A pooled connection; an abort while waiting for one rejects at once (a late connection goes back to the pool). */
  #connect(operation: string, signal: AbortSignal | undefined): Promise<pg.PoolClient> {
    const connecting = this.#pool.connect();
    if (!signal) return connecting;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        reject(new OperationAbortedError(operation, signal.reason));
        connecting.then((client) => client.release(), () => undefined);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      connecting.then(
        (client) => {
          signal.removeEventListener('abort', onAbort);
          if (signal.aborted) return; // onAbort released it
          resolve(client);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  #batchExecution(): BatchExecution {
    const appendSql = `SELECT r_status, r_position, r_conflict FROM ${this.#quotedSchema}.append_batch($1::jsonb, $2::boolean, $3::bigint, $4::uuid[], $5::boolean)`;
    const scanLimit = String(this.#conditionScanLimit);
    return {
      execute: async (commands, checkIds, onCancellable) => {
        const payload = appendPayload(commands);
        const ids = commands.flatMap((command) => command.events.map((event) => event.id));
        const independent = commandsAreIndependent(commands);
        const client = await this.#pool.connect();
        let cancelling: Promise<void> | undefined;
        onCancellable(() => (cancelling = this.#cancelBackend(processId(client))));
        let broken: unknown;
        try {
          const { rows } = await client.query<AppendRow>({ name: 'dses_append', text: appendSql, values: [payload, checkIds, scanLimit, ids, independent] });
          return rows.map(toCommandResult);
        } catch (error) {
          broken = isConnectionError(error) ? error : undefined;
          throw error;
        } finally {
          if (cancelling) await cancelling.catch(() => undefined);
          client.release(broken instanceof Error ? broken : undefined);
        }
      },
      isAmbiguous: isConnectionError,
      isCancelled: (error) => (error as { code?: unknown } | null)?.code === '57014',
      toError: (error) => this.#toError(error),
    };
  }

  /** Cancels whatever the backend runs now, from a separate short-lived connection. */
  async #cancelBackend(pid: number): Promise<void> {
    const client = new pg.Client(this.#connectionConfig);
    client.on('error', () => undefined);
    await client.connect();
    try {
      await client.query('SELECT pg_cancel_backend($1)', [pid]);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  #toError(error: unknown): EventStoreError {
    if (error instanceof EventStoreError) return error;
    if (this.#closed && /Cannot use a pool after calling end/.test((error as Error)?.message ?? '')) return new EventStoreClosedError();
    const message = (error as Error)?.message ?? String(error);
    if (['42P01', '42883', '3F000'].includes(String((error as { code?: unknown } | null)?.code))) {
      return new EventStoreDatabaseError(
        `the store's tables or functions are missing in schema ${this.#quotedSchema} (connect with migrate: true, or apply store.schemaSql()): ${message}`,
        error,
      );
    }
    return new EventStoreDatabaseError(`PostgreSQL error: ${message}`, error);
  }
}

/** Read shapes prepared per connection; beyond this, reads run as unnamed statements. */
const MAX_PREPARED_SHAPES = 200;

// The append function needs READ COMMITTED (a fresh snapshot per statement after the lock); a
// server whose default is stricter would otherwise reject every append. Set it as a startup
// option, added to any `options` the connection string already has (pg lets the URL's win).
const READ_COMMITTED = '-c default_transaction_isolation=read\\ committed';
function withReadCommitted(connectionString: string): string {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return connectionString; // key=value form: left as given; the function then checks the level itself
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') return connectionString;
  const existing = url.searchParams.get('options');
  url.searchParams.set('options', existing ? `${existing} ${READ_COMMITTED}` : READ_COMMITTED);
  return url.toString();
}

/**
 * The batch as the append function reads it. Each query item also carries its types and tags as
 * PostgreSQL array literals, which the function casts with a plain assignment instead of running
 * a query per item to unpack the JSON arrays. (Data inside a bound parameter, not SQL.)
 */
function appendPayload(commands: readonly PendingAppend[]): string {
  // Events are serialized already (when append() was called); only the conditions are left.
  return `[${commands
    .map(({ events, condition }) => {
      const conditionJson = condition && {
        after: condition.after,
        query: {
          ...condition.query,
          items: condition.query.items.map((item) => ({
            ...item,
            ...(item.types && { types_pg: pgTextArray(item.types) }),
            ...(item.tags && { tags_pg: pgTextArray(item.tags) }),
          })),
        },
      };
      return `{"events":[${events.map((event) => event.json).join(',')}],"condition":${JSON.stringify(conditionJson)}}`;
    })
    .join(',')}]`;
}

/** A text[] literal: every element double-quoted, with `"` and `\` escaped. */
function pgTextArray(values: readonly string[]): string {
  return `{${values.map((value) => `"${value.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}

function toCommandResult(row: AppendRow): CommandResult {
  switch (row.r_status) {
    case 0:
      return { status: 'appended', position: BigInt(row.r_position!) };
    case 3:
      return { status: 'already-appended', position: BigInt(row.r_position!) };
    case 1:
      return { status: 'condition-failed', conflict: row.r_conflict === null ? undefined : BigInt(row.r_conflict) };
    default:
      return { status: 'duplicate-id', conflict: row.r_conflict === null ? undefined : BigInt(row.r_conflict) };
  }
}

function processId(client: pg.PoolClient): number {
  return (client as unknown as { processID: number }).processID;
}

/** Errors after which we cannot know whether a statement sent before committed. */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
    // 53300: too many connections right now; the rest: the network or DNS, for a moment.
    if (code === '53300') return true;
    if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(code)) return true;
  }
  const message = (error as Error | null)?.message ?? '';
  return /Connection terminated|connection is closed|Client has encountered a connection error/i.test(message);
}
