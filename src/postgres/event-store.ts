import pg from 'pg';
import { commandsAreIndependent } from './batch-independence.ts';
import { AppendBatcher, type AppendConnection, type AppendPart, type AppendReport, type BatchExecution, type PendingAppend } from './append-batcher.ts';
import { AppendOutcomeUnknownError, DuplicateEventIdError, OperationTimeoutError, EventStoreClosedError, EventStoreDatabaseError, EventStoreError, InvalidInputError, OperationAbortedError, SchemaTooOldError } from '../errors.ts';
import type { AppendCondition } from '../append-condition.ts';
import { withMetadataEntry, type EventInput, type NormalizedEvent, type SequencedEvent } from '../events.ts';
import { atLeastConsistency, describe, validateConsistency } from '../validation.ts';
import { Query } from '../query.ts';
import type {
  AppendCommand,
  AppendCommandsResult,
  AppendOptions,
  AppendResult,
  CloseOptions,
  CommandHandler,
  DcbEventStore,
  ExecuteOptions,
  ExecuteResult,
  HeadOptions,
  Projection,
  ReadConsistency,
  ReadOptions,
  ReadResult,
  SnapshotStore,
  StatesOf,
  StreamOptions,
  SubscribeOptions,
} from '../store.ts';
import { prepareAppend, prepareCommands, streamPages, validateRead } from '../operation-input.ts';
import { executeCommand } from '../decisions/command-handler.ts';
import { follow, validateSubscribeOptions } from '../subscriptions/follow.ts';
import { MAX_TIMER_MS, pause, settlesWithin } from '../util/wait.ts';
import { quoteSchemaName } from './identifiers.ts';
import { ensurePayloadIndex, migrate } from './migrate.ts';
import { loadMigrations, schemaSql } from './schema.ts';
import { buildReadStatement, type ReadRow } from './read-sql.ts';
import { PostgresSnapshotStore } from './snapshot-store.ts';
import { HeadNotifier } from './notifier.ts';
import { sendCancelRequest } from './cancel.ts';
import { destroyConnection, destroySocket } from './socket.ts';
import { openPool, serverOf } from './pool.ts';
import { ReplicaSet, type Replica, type ReplicaProbes, type ReplicaSettings } from './replicas.ts';
import { StoreLog, errorFields, isLogger, type Logger } from '../telemetry/log.ts';
import { loadTelemetry, type AppendSpan, type PoolState, type ReadTarget, type Telemetry, type TelemetrySources } from '../telemetry/otel.ts';
import type { TelemetryOptions } from '../telemetry/options.ts';
import { TRACEPARENT_KEY, type AppendOutcome } from '../telemetry/names.ts';
import { AppendConditionFailedError, RetriesExhaustedError } from '../append-condition.ts';
import { appendPayload, appendStatementText, toCommandResult, type AppendRow } from './append-sql.ts';
import { isCancelled, isConnectionError, isRefusal } from './classify.ts';
import { PostgresConsumer, consumerStatus, resetConsumer, type ConsumerHost } from './consumer.ts';
import type { Consumer, ConsumerOptions, ConsumerStatus, ResetConsumerOptions } from './consumer-types.ts';
import { PostgresAutomation } from './automation.ts';
import type { Automation, AutomationOptions } from '../decisions/automation.ts';

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
  /**
   * The longest an append may take, from the call to its answer: waiting in the queue, sending,
   * and resending after a lost connection. When it passes, an append that was never sent fails
   * with OperationTimeoutError (nothing written); one that was sent and got no answer fails with
   * AppendOutcomeUnknownError. Default 30000 ms.
   */
  appendTimeoutMs?: number;
  /** The longest one read round trip may take (read, each page of stream, head, status); then it is cancelled and fails with OperationTimeoutError. Default 30000 ms. */
  readTimeoutMs?: number;
  /** The longest wait for a connection: a pooled one, or a new one to the server. Default 10000 ms. */
  connectTimeoutMs?: number;
  /** Most appends waiting for a batch; past it, appends fail at once with EventStoreOverloadedError (nothing written). Default 5000. */
  maxQueuedAppends?: number;
  /**
   * Use named prepared statements (parsed once per connection). Default true. Set false behind a
   * pooler in transaction mode (PgBouncer before 1.21), which cannot keep them.
   */
  preparedStatements?: boolean;
  /**
   * Where the connections that need a session of their own go: the LISTEN connection that wakes
   * subscriptions, and consumer sessions (their lease is a session advisory lock). Default
   * `connectionString`. Behind a pooler in transaction mode, point this at PostgreSQL directly
   * or at a session-mode pool.
   */
  sessionConnectionString?: string;
  /**
   * Connection strings of streaming read replicas (hot standbys of the primary). Reads with
   * `consistency: 'eventual'` or `{ atLeast }` go to them; appends, and reads with the default
   * `'strong'`, never do. A replica that is down or lags is skipped for the primary, never an
   * error. Default none.
   */
  readReplicas?: readonly string[];
  /** A replica more than this many positions behind the primary is skipped. Default 10000. */
  maxReplicaLag?: number;
  /** How long a `{ atLeast: position }` read waits for a replica to reach `position` before it reads on the primary. Default 500 ms. */
  replicaWaitMs?: number;
  /** How often the replicas' heads (and whether they answer) are checked. Default 1000 ms. */
  replicaCheckIntervalMs?: number;
  /**
   * Receives structured log records (pino's shape: `logger.warn(fields, message)`; `console`
   * works too): migrations, reconnects, resends and unknown outcomes, slow operations, consumer
   * failures and takeovers, replica fallbacks. Default: none (the store never writes to the
   * console itself).
   */
  logger?: Logger;
  /** Operations slower than this are logged (warn). Default 1000 ms; 0 turns it off. */
  slowOperationMs?: number;
  /**
   * OpenTelemetry spans and metrics (see the README's Observability section). Default: the global
   * tracer and meter providers when `@opentelemetry/api` is installed (a service that starts
   * `@opentelemetry/sdk-node` gets everything); `false` turns it off.
   */
  telemetry?: TelemetryOptions;
  /**
   * `append` stores the W3C `traceparent` of its span in each event's metadata (key
   * `traceparent`) unless the event has one already, so that consumers' spans continue the
   * trace. Only when telemetry is on and the span has a valid context (with an SDK: every
   * append), and only on a schema at migration 5 or later. Default true.
   */
  propagateTraceContext?: boolean;
}

/**
 * A DCB event store on PostgreSQL. Create it with {@link EventStore.connect}; share one instance
 * per process (it batches concurrent appends); close it with {@link EventStore.close}.
 */
export class EventStore implements DcbEventStore {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #quotedSchema: string;
  readonly #batcher: AppendBatcher;
  readonly #connectionConfig: pg.PoolConfig;
  readonly #conditionScanLimit: number;
  /** Pooled connections checked out now; close() closes them when its timeout passes. */
  readonly #checkedOut = new Set<pg.PoolClient>();
  readonly #readTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #preparedStatements: boolean;
  /** The server's default isolation is not READ COMMITTED: appends run in an explicit READ COMMITTED transaction. */
  readonly #explicitReadCommitted: boolean;
  /** Every client of the pool, also those still connecting or saying goodbye: close() ends them all. */
  readonly #clients: Set<pg.Client>;
  readonly #appendTimeoutMs: number;
  readonly #schemaVersion: number;
  readonly #statementNames = new Map<string, string>();
  readonly #snapshots: PostgresSnapshotStore;
  readonly #notifier: HeadNotifier;
  readonly #closedController = new AbortController();
  /** What subscriptions and consumers read and wait through. */
  readonly #host: ConsumerHost;
  /** Running consumers; close() waits for them. */
  readonly #runs = new Map<Promise<unknown>, () => void>();
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #replicas: ReplicaSet | undefined;
  readonly #log: StoreLog;
  readonly #slowOperationMs: number;
  /** Undefined without telemetry (off, or @opentelemetry/api not installed). Set by connect(). */
  #telemetry: Telemetry | undefined;
  readonly #propagateTraceContext: boolean;
  readonly #server: { host: string | undefined; port: number | undefined; database: string | undefined };
  /** The highest head seen (appends, reads), for the consumer lag gauge. */
  #knownHead = 0n;

  private constructor(pool: pg.Pool, schema: string, settings: ConnectionSettings, options: EventStoreOptions) {
    this.#pool = pool;
    this.#schema = schema;
    this.#quotedSchema = quoteSchemaName(schema);
    this.#connectionConfig = settings.sessionConfig;
    this.#conditionScanLimit = options.conditionScanLimit ?? 128;
    this.#readTimeoutMs = settings.readTimeoutMs;
    this.#connectTimeoutMs = settings.connectTimeoutMs;
    this.#preparedStatements = settings.preparedStatements;
    this.#explicitReadCommitted = settings.explicitReadCommitted;
    this.#clients = settings.clients;
    this.#appendTimeoutMs = settings.appendTimeoutMs;
    this.#batcher = new AppendBatcher(this.#batchExecution(), {
      maxCommands: options.maxBatchCommands ?? 1000,
      maxEvents: options.maxBatchEvents ?? 10_000,
      maxQueued: options.maxQueuedAppends ?? 5000,
      appendTimeoutMs: settings.appendTimeoutMs,
      connectTimeoutMs: settings.connectTimeoutMs,
    }, settings.log);
    this.#log = settings.log;
    this.#notifier = new HeadNotifier(settings.sessionConfig, this.#quotedSchema, this.#log);
    this.#slowOperationMs = settings.slowOperationMs;
    this.#propagateTraceContext = (options.propagateTraceContext ?? true) && settings.schemaVersion >= TRACE_CONTEXT_MIGRATION;
    this.#schemaVersion = settings.schemaVersion;
    this.#server = settings.server;
    this.#replicas = settings.replicaSettings && new ReplicaSet(settings.replicaSettings, this.#replicaProbes());
    const isClosed = (): boolean => this.#closed;
    const telemetryOf = (): Telemetry | undefined => this.#telemetry;
    this.#host = {
      schema: this.#schema,
      quotedSchema: this.#quotedSchema,
      connectionConfig: this.#connectionConfig,
      read: (query, options) => this.#read(query, options, 'subscribe', false),
      head: (options) => this.head(options),
      query: (operation, text, values, signal) => this.#query(operation, text, values, signal),
      mark: () => this.#notifier.mark(),
      waitForAppend: (position, since, timeoutMs, signal, consistency) => this.#waitForAppend(position, since, timeoutMs, signal, consistency),
      get closed() {
        return isClosed();
      },
      closedSignal: this.#closedController.signal,
      cancelBackend: (client) => sendCancelRequest(client),
      log: settings.log,
      trackRun: (running, forceStop) => {
        this.#runs.set(running, forceStop);
        const forget = (): void => void this.#runs.delete(running);
        running.then(forget, forget);
        return running;
      },
      // Raw errors of a consumer's own session, and the store's errors wrapping them.
      // A read past readTimeoutMs (a silent connection, an overloaded server) is retried like a
      // lost connection: a subscription or consumer must outlast it, not end with it.
      isTransient: (error) => this.#isTransient(error),
      get telemetry() {
        return telemetryOf();
      },
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
    if (options.sessionConnectionString !== undefined && (typeof options.sessionConnectionString !== 'string' || options.sessionConnectionString === '')) {
      throw new InvalidInputError('sessionConnectionString', `must be a non-empty string, got ${describe(options.sessionConnectionString)}`);
    }
    for (const key of ['payloadIndex', 'preparedStatements', 'migrate'] as const) {
      if (options[key] !== undefined && typeof options[key] !== 'boolean') throw new InvalidInputError(key, `must be a boolean, got ${describe(options[key])}`);
    }
    const poolSize = options.poolSize ?? 10;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new InvalidInputError('poolSize', `must be a positive integer, got ${describe(poolSize)}`);
    for (const key of ['maxBatchCommands', 'maxBatchEvents', 'conditionScanLimit', 'maxQueuedAppends'] as const) {
      const value = options[key];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < (key === 'conditionScanLimit' ? 0 : 1))) throw new InvalidInputError(key, `must be a positive integer, got ${describe(value)}`);
    }
    const appendTimeoutMs = timeoutOption(options.appendTimeoutMs, 30_000, 'appendTimeoutMs');
    const readTimeoutMs = timeoutOption(options.readTimeoutMs, 30_000, 'readTimeoutMs');
    const connectTimeoutMs = timeoutOption(options.connectTimeoutMs, 10_000, 'connectTimeoutMs');
    const preparedStatements = options.preparedStatements ?? true;
    const replicaUrls = options.readReplicas ?? [];
    if (!Array.isArray(replicaUrls) || replicaUrls.some((url) => typeof url !== 'string' || url === '')) {
      throw new InvalidInputError('readReplicas', `must be an array of connection strings, got ${describe(options.readReplicas)}`);
    }
    const maxReplicaLag = options.maxReplicaLag ?? 10_000;
    if (!Number.isSafeInteger(maxReplicaLag) || maxReplicaLag < 0) throw new InvalidInputError('maxReplicaLag', `must be a non-negative integer, got ${describe(maxReplicaLag)}`);
    const replicaWaitMs = options.replicaWaitMs === 0 ? 0 : timeoutOption(options.replicaWaitMs, 500, 'replicaWaitMs');
    const replicaCheckIntervalMs = timeoutOption(options.replicaCheckIntervalMs, 1000, 'replicaCheckIntervalMs');
    const slowOperationMs = options.slowOperationMs === 0 ? 0 : timeoutOption(options.slowOperationMs, 1000, 'slowOperationMs');
    if (options.logger !== undefined && !isLogger(options.logger)) throw new InvalidInputError('logger', `must have debug, info, warn and error methods (pino, or console), got ${describe(options.logger)}`);
    validateTelemetryOption(options.telemetry);
    if (options.propagateTraceContext !== undefined && typeof options.propagateTraceContext !== 'boolean') throw new InvalidInputError('propagateTraceContext', `must be a boolean, got ${describe(options.propagateTraceContext)}`);
    const log = new StoreLog(options.logger, { schema });
    const { pool, sessionConfig, clients } = openPool({
      connectionString,
      sessionConnectionString: options.sessionConnectionString ?? connectionString,
      poolSize,
      connectTimeoutMs,
      preparedStatements,
    });

    let explicitReadCommitted: boolean;
    // Migration 0005 makes idempotent retries ignore the stored trace context; before it, a retry
    // from another trace would be an id clash. A schema left at an older version (migrate: false,
    // migrations applied by the user's own tool) gets no trace context until it is upgraded.
    // Likewise, migration 0006 is what writes appendCommands' commands all or nothing.
    let schemaVersion = loadMigrations().length;
    try {
      const migrating = options.migrate ?? true;
      const client = await pool.connect();
      try {
        if (migrating) {
          const { applied } = await migrate(client, schema);
          if (applied.length > 0) log.info({ migrations: applied }, `applied migrations ${applied.join(', ')} to schema ${schema}`);
        }
        else {
          const migrationsTable = `${quoteSchemaName(schema)}.migrations`;
          const { rows: present } = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [migrationsTable]);
          const { rows: found } = present[0]!.present ? await client.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${migrationsTable}`) : { rows: [] };
          const version = found[0]?.version ?? 0;
          schemaVersion = version;
          if (version < TRACE_CONTEXT_MIGRATION) {
            log.warn({ schema_version: version }, `schema ${schema} is at migration ${version}: append stores no trace context until migration ${TRACE_CONTEXT_MIGRATION} is applied`);
          }
        }
        if (options.payloadIndex === true) await ensurePayloadIndex(client, schema);
        // The append function needs READ COMMITTED (a fresh snapshot per statement after the
        // lock). A server whose default is stricter gets each append in an explicit READ
        // COMMITTED transaction, instead of a startup parameter that poolers refuse.
        const { rows } = await client.query<{ level: string }>("SELECT current_setting('default_transaction_isolation') AS level");
        explicitReadCommitted = rows[0]!.level !== 'read committed';
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      if (error instanceof EventStoreError) throw error;
      throw new EventStoreDatabaseError(`connecting to PostgreSQL failed: ${(error as Error).message}`, error);
    }
    const replicaSettings: ReplicaSettings | undefined = replicaUrls.length === 0
      ? undefined
      : { connectionStrings: replicaUrls, poolSize, connectTimeoutMs, preparedStatements, maxLag: maxReplicaLag, waitMs: replicaWaitMs, checkIntervalMs: replicaCheckIntervalMs, clients };
    const server = serverOf(connectionString);
    const store = new EventStore(pool, schema, { sessionConfig, appendTimeoutMs, readTimeoutMs, connectTimeoutMs, preparedStatements, explicitReadCommitted, clients, replicaSettings, log, slowOperationMs, server, schemaVersion }, options);
    try {
      store.#telemetry = await loadTelemetry(options.telemetry, { schema, ...server }, store.#telemetrySources());
    } catch (error) {
      await store.close();
      throw error;
    }
    if (store.#telemetry) log.traceFields = store.#telemetry.traceFields;
    // Knows every replica's head before the first read (one that does not answer starts as down).
    await store.#replicas?.start();
    return store;
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
    const startedAt = Date.now();
    const prepared = prepareAppend(events, condition, signal);
    const internalCondition: AppendPart['condition'] = condition === undefined
      ? null
      : { query: condition.failIfEventsMatch.toInternal(), after: prepared.after === undefined ? null : prepared.after.toString() };
    let normalized = prepared.events;
    const timeoutMs = options.timeoutMs === undefined ? this.#appendTimeoutMs : timeoutOption(options.timeoutMs, 0, 'options.timeoutMs');
    const span = this.#telemetry?.startAppend(normalized.length, condition !== undefined);
    let report: AppendReport | undefined;
    if (span) {
      report = {};
      if (this.#propagateTraceContext) normalized = withTraceparent(normalized, span);
    }
    let position: bigint;
    try {
      [position] = (await this.#batcher.submit({ parts: [{ events: normalized, condition: internalCondition, callerCondition: condition }], events: normalized, commands: false, signal, timeoutMs, report })) as [bigint];
      this.#observeHead(position);
      this.#replicas?.observePrimaryHead(position);
    } catch (caught) {
      let error = caught;
      if (error instanceof DuplicateEventIdError) error = await this.#clashingIds(error, timeoutMs - (Date.now() - startedAt));
      span?.end(appendOutcomeOf(error), { batchCommands: report?.batchCommands, error });
      throw error;
    }
    span?.end(report?.idempotent ? 'idempotent' : 'appended', { position, batchCommands: report?.batchCommands });
    return { position };
  }

  /**
   * Appends several commands atomically: all of them or none. Each command's condition is checked
   * in order, and sees the events of the commands before it in this call as well as the stored
   * ones; if one fails, AppendConditionFailedError says which (`commandIndex`, and
   * `conflictingCommandIndex` when the conflict is with an earlier command of the call) and
   * nothing is written. Rides the same batches as `append`; a retry with the same event ids after
   * an unknown outcome returns the original positions.
   *
   * @example
   * // Register each meter unless it exists: all of them, or none if any one exists already.
   * const { positions } = await store.appendCommands(meters.map((meter) => ({
   *   events: { type: 'MeterRegistered', tags: [`meter:${meter.id}`], data: meter },
   *   condition: { failIfEventsMatch: Query.of(QueryItem.types('MeterRegistered').tags(`meter:${meter.id}`)) },
   * })));
   */
  async appendCommands(commands: readonly AppendCommand[], options: AppendOptions = {}): Promise<AppendCommandsResult> {
    this.#assertOpen();
    const signal = options.signal;
    const startedAt = Date.now();
    const prepared = prepareCommands(commands, signal);
    const timeoutMs = options.timeoutMs === undefined ? this.#appendTimeoutMs : timeoutOption(options.timeoutMs, 0, 'options.timeoutMs');
    if (prepared.length > 1 && this.#schemaVersion < COMMAND_GROUPS_MIGRATION) throw new SchemaTooOldError('appendCommands of several commands', this.#schemaVersion, COMMAND_GROUPS_MIGRATION);
    const eventCount = prepared.reduce((sum, command) => sum + command.events.length, 0);
    const span = this.#telemetry?.startAppend(eventCount, prepared.some((command) => command.condition !== undefined), prepared.length);
    let report: AppendReport | undefined;
    const parts: AppendPart[] = prepared.map((command) => {
      let events = command.events;
      if (span && this.#propagateTraceContext) events = withTraceparent(events, span);
      return {
        events,
        condition: command.condition === undefined ? null : { query: command.condition.failIfEventsMatch.toInternal(), after: command.after === undefined ? null : command.after.toString() },
        callerCondition: command.condition,
      };
    });
    if (span) report = {};
    let positions: bigint[];
    try {
      positions = await this.#batcher.submit({ parts, events: parts.flatMap((part) => part.events), commands: true, signal, timeoutMs, report });
      const position = positions.at(-1)!;
      this.#observeHead(position);
      this.#replicas?.observePrimaryHead(position);
    } catch (caught) {
      let error = caught;
      if (error instanceof DuplicateEventIdError) error = await this.#clashingIds(error, timeoutMs - (Date.now() - startedAt));
      span?.end(appendOutcomeOf(error), { batchCommands: report?.batchCommands, error });
      throw error;
    }
    span?.end(report?.idempotent ? 'idempotent' : 'appended', { position: positions.at(-1)!, batchCommands: report?.batchCommands });
    return { positions, position: positions.at(-1)! };
  }

  #observeHead(head: bigint): void {
    if (head > this.#knownHead) this.#knownHead = head;
  }

  /** The error with only the ids that are stored already (the batch only says "some are"). */
  async #clashingIds(error: DuplicateEventIdError, remainingMs: number): Promise<DuplicateEventIdError> {
    // Within what is left of the append's deadline; without it the batch's error is true enough.
    if (remainingMs < 1) return error;
    try {
      const rows = await this.#query<{ id: string }>('append', `SELECT id FROM ${this.#quotedSchema}.events WHERE id = ANY ($1::uuid[])`, [error.ids], AbortSignal.timeout(remainingMs));
      const stored = new Set(rows.map((row) => row.id));
      const ids = error.ids.filter((id) => stored.has(id));
      return ids.length > 0 ? new DuplicateEventIdError(ids, error.existingPosition, error.commandIndex) : error;
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
   * // Paging back through history, 50 at a time: each page is below the oldest of the one before.
   * let page = await store.read(query, { backwards: true, limit: 50 });
   * while (page.events.length === 50) page = await store.read(query, { backwards: true, limit: 50, before: page.events.at(-1)!.position });
   */
  read<Data = unknown>(query: Query, options: ReadOptions = {}): Promise<ReadResult<Data>> {
    return this.#read<Data>(query, options, 'read', true);
  }

  /** read(), and the pages of stream, subscriptions and consumers: traced only for read() itself. */
  async #read<Data>(query: Query, options: ReadOptions, operation: 'read' | 'stream' | 'subscribe', traced: boolean): Promise<ReadResult<Data>> {
    this.#assertOpen();
    const { after, before, limit, backwards } = validateRead(query, options);
    const consistency = validateConsistency(options.consistency, 'consistency');
    const statement = buildReadStatement(this.#quotedSchema, query.toInternal(), { after, before, limit, backwards });
    const name = this.#statementName(statement.text);
    const span = this.#telemetry?.startRead(operation, consistency, traced);
    let rows: ReadRow[] | undefined;
    let answeredBy: Replica | undefined;
    try {
      const replica = consistency !== 'strong' && this.#replicas ? await this.#replicas.choose(consistency, options.signal) : undefined;
      if (replica) {
        try {
          rows = await this.#query<ReadRow>('read', statement.text, statement.values, options.signal, name, { pool: replica.pool, replica });
          this.#replicas!.observeReplicaHead(replica, BigInt(rows[0]!.head));
          answeredBy = replica;
        } catch (error) {
          if (error instanceof OperationAbortedError || error instanceof EventStoreClosedError) throw error;
          // Never the caller's problem: the primary has every event the replica has.
          this.#replicas!.failed(replica, error, this.#isTransient(error));
          rows = undefined;
        }
      }
      if (rows === undefined) {
        rows = await this.#query<ReadRow>('read', statement.text, statement.values, options.signal, name);
        this.#replicas?.observePrimaryHead(BigInt(rows[0]!.head));
      }
    } catch (error) {
      span?.fail(error);
      throw error;
    }
    const head = BigInt(rows[0]!.head);
    this.#observeHead(head);
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
    span?.end(events.length, head, answeredBy ? { replica: answeredBy.name, host: answeredBy.host, port: answeredBy.port } : PRIMARY_TARGET);
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
    const consistency = validateConsistency(options.consistency, 'consistency');
    // Every page at least at the first page's head: a later page on a replica further behind
    // would end the stream before the head the first one promised.
    let first: bigint | undefined;
    const readPage = async (from: bigint, before: bigint | undefined, limit: number, signal: AbortSignal | undefined): Promise<ReadResult<Data>> => {
      const where = consistency === 'strong' ? consistency : first === undefined ? consistency : atLeastConsistency(consistency, first);
      const bounds = { after: from, ...(before !== undefined && { before }), limit };
      const result = await this.#read<Data>(query, { ...bounds, ...(signal && { signal }), ...(where !== 'strong' && { consistency: where }) }, 'stream', false);
      first ??= result.head;
      return result;
    };
    const pages = streamPages<Data>(readPage, query, options);
    const span = this.#telemetry?.startStream(consistency);
    if (!span) {
      yield* pages;
      return;
    }
    // One span for the whole iteration, however long the caller takes between events.
    let failure: unknown;
    try {
      for (;;) {
        const next = await span.page(() => pages.next());
        if (next.done) return;
        span.yielded();
        yield next.value;
      }
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      await pages.return(undefined);
      span.end(failure, first);
    }
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
    return new PostgresConsumer<Data>(this.#host, name, options);
  }

  /**
   * An automation named `name`: for every event matching `options.query`, in position order, it
   * calls `decide` (after reading the event's decision model, with `projections`) and appends the
   * reactions in the same transaction that moves its checkpoint, so that each event gets its
   * reactions exactly once, whatever instant a process dies at. A durable consumer otherwise
   * (one instance per name, standbys, `consumerStatus(name)`, `resetConsumer(name)`).
   *
   * @example
   * const reminders = store.automation('return-reminders', {
   *   query: Query.of(QueryItem.types('BookCopyLentToReader')),
   *   decide: (event) => ({ type: 'ReturnReminderScheduled', tags: event.tags, data: { due: dueDate(event) } }),
   * });
   * await reminders.run({ signal: controller.signal });
   */
  automation<Data = unknown, Projections extends Record<string, Projection<any>> = Record<string, never>>(name: string, options: AutomationOptions<Data, Projections>): Automation {
    this.#assertOpen();
    return new PostgresAutomation<Data>({ consumers: this.#host, decisions: this, conditionScanLimit: this.#conditionScanLimit, propagateTraceContext: this.#propagateTraceContext }, name, options);
  }

  /** Checkpoint, lag, lease and last error of the consumer `name` (running anywhere, or not at all). */
  consumerStatus(name: string, options: { signal?: AbortSignal } = {}): Promise<ConsumerStatus> {
    if (this.#closed) return Promise.reject(new EventStoreClosedError());
    return consumerStatus(this.#host, name, options);
  }

  /**
   * Moves the checkpoint of consumer `name` (default: to 0n, to rebuild its read model; pass
   * `onReset` to empty the read model in the same transaction) and clears its failure. Throws
   * ConsumerRunningError while an instance holds the consumer's lease.
   */
  resetConsumer(name: string, options: ResetConsumerOptions = {}): Promise<void> {
    if (this.#closed) return Promise.reject(new EventStoreClosedError());
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
    if (this.#closed) return Promise.reject(new EventStoreClosedError());
    const telemetry = this.#telemetry;
    if (!telemetry) return executeCommand(this, handler, command, options);
    return telemetry.execute(() => executeCommand(this, handler, command, options), (error) => (error instanceof RetriesExhaustedError ? error.attempts : undefined));
  }

  /** Snapshots of decision-model projections, in `<schema>.snapshots`. */
  get snapshots(): SnapshotStore {
    return this.#snapshots;
  }

  /** The highest position in the store (0n when empty). */
  async head(options: HeadOptions = {}): Promise<bigint> {
    this.#assertOpen();
    return this.#readHead('head', options.signal);
  }

  /** The head on the primary, or on a replica's pool. */
  async #readHead(operation: string, signal: AbortSignal | undefined, target?: Target): Promise<bigint> {
    const rows = await this.#query<{ position: string }>(operation, `SELECT position FROM ${this.#quotedSchema}.head`, [], signal, undefined, target);
    return BigInt(rows[0]!.position);
  }

  /** The DDL of this store's schema, for users who apply migrations with their own tool. */
  schemaSql(): string {
    return schemaSql(this.#schema);
  }

  /**
   * Stops taking work, ends subscriptions, waits for queued and in-flight appends, running
   * consumers (they stop between events) and reads, then closes every connection; all of it
   * within `timeoutMs` (see {@link CloseOptions}). Later calls of other methods fail with
   * EventStoreClosedError.
   */
  close(options: CloseOptions = {}): Promise<void> {
    let timeoutMs: number;
    try {
      timeoutMs = timeoutOption(options.timeoutMs, 30_000, 'timeoutMs');
    } catch (error) {
      return Promise.reject(error);
    }
    // Every caller waits for the same drain, so a second close() cannot return early.
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#telemetry?.close();
      this.#closedController.abort(new EventStoreClosedError());
      const deadline = Date.now() + timeoutMs;
      const finished = await settlesWithin(Promise.all([this.#notifier.close(), Promise.allSettled([...this.#runs.keys()]), this.#batcher.drained()]), deadline - Date.now());
      if (!finished) {
        this.#batcher.forceClose();
        this.#notifier.destroy();
        for (const forceStop of this.#runs.values()) forceStop();
      }
      const ending = Promise.all([this.#pool.end(), this.#replicas?.close()]);
      if (!(await settlesWithin(ending, deadline - Date.now()))) {
        // Reads past the close deadline (their own deadline is longer): close their connections.
        for (const client of this.#checkedOut) destroyConnection(client);
      }
      // Also connections still being opened, and idle ones whose goodbye a vanished peer never
      // answers: no socket of the store outlives close() (else the process could not exit).
      const socketsClosed = Promise.all([...this.#clients].map((client) => new Promise((resolve) => client.once('end', resolve))));
      if (!(await settlesWithin(socketsClosed, deadline - Date.now()))) {
        for (const client of this.#clients) destroySocket(client);
      }
      await ending;
    })();
    return this.#closing;
  }

  #isTransient(error: unknown): boolean {
    return error instanceof OperationTimeoutError || isConnectionError(error) || (error instanceof EventStoreDatabaseError && isConnectionError(error.cause));
  }

  /**
   * FollowSource.waitForAppend. A reader on a replica got the replica's head, which may trail
   * what the primary announced: then it looks again shortly (the replica replays within
   * milliseconds) instead of waiting for the next notification that may never come.
   */
  #waitForAppend(position: bigint, since: number, timeoutMs: number, signal: AbortSignal, consistency: ReadConsistency): Promise<void> {
    if (consistency !== 'strong' && this.#replicas && this.#notifier.latestHead > position) return pause(Math.min(REPLICA_CATCH_UP_POLL_MS, timeoutMs), signal);
    return this.#notifier.waitForAppend(position, since, timeoutMs, signal);
  }

  #replicaProbes(): ReplicaProbes {
    const signalFor = (timeoutMs: number): AbortSignal => AbortSignal.any([AbortSignal.timeout(timeoutMs), this.#closedController.signal]);
    return {
      replicaHead: (replica, timeoutMs) => this.#readHead('replica head', signalFor(timeoutMs), { pool: replica.pool, replica }),
      primaryHead: (timeoutMs) => this.#readHead('head', signalFor(timeoutMs)),
      fellBack: (replica, reason, error) => {
        this.#telemetry?.replicaFellBack(reason);
        // 'behind' is the normal price of { atLeast } right after an append: debug, not warn.
        this.#log.write(reason === 'behind' ? 'debug' : 'warn', { reason, ...(replica && { replica: replica.name }), ...(error !== undefined && errorFields(error)) }, `read went to the primary instead of a replica (${reason})`);
      },
      changed: (replica, down, error) => {
        if (down) this.#log.warn({ replica: replica.name, ...(error !== undefined && errorFields(error)) }, `replica ${replica.name} is not answering; reads go elsewhere until it does`);
        else this.#log.info({ replica: replica.name }, `replica ${replica.name} is answering again`);
      },
    };
  }

  #telemetrySources(): TelemetrySources {
    const stateOf = (name: string, pool: pg.Pool): PoolState => ({ pool: name, idle: pool.idleCount, used: pool.totalCount - pool.idleCount, waiting: pool.waitingCount });
    return {
      pools: () => [stateOf('primary', this.#pool), ...(this.#replicas?.replicas.map((replica) => stateOf(replica.name, replica.pool)) ?? [])],
      replicaLags: () => this.#replicas?.lags() ?? [],
      knownHead: () => (this.#notifier.latestHead > this.#knownHead ? this.#notifier.latestHead : this.#knownHead),
    };
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

  /**
   * One statement on a pooled connection, within readTimeoutMs, cancellable by `signal`. A
   * deadline or an abort sends a cancel request and waits for the statement to end; if it does
   * not end promptly (the connection is dead), the connection is closed instead. A connection
   * whose cancel may still be on its way is never reused: it could hit the next statement.
   */
  async #query<Row extends pg.QueryResultRow>(operation: string, text: string, values: unknown[], signal: AbortSignal | undefined, name?: string, target?: Target): Promise<Row[]> {
    if (signal?.aborted) throw new OperationAbortedError(operation, signal.reason);
    const timeoutMs = this.#readTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const startedAt = performance.now();
    let client: pg.PoolClient;
    try {
      client = await this.#acquire(operation, Math.min(this.#connectTimeoutMs, timeoutMs), signal, target?.pool);
    } catch (error) {
      if (error instanceof OperationTimeoutError) throw new OperationTimeoutError(operation, timeoutMs, 'no connection could be had in time');
      throw this.#toError(error);
    }
    let stopped: 'aborted' | 'timed out' | undefined;
    let cancelling: Promise<void> | undefined;
    let destroyTimer: NodeJS.Timeout | undefined;
    let rejectStopped!: (error: Error) => void;
    const stoppedEarly = new Promise<never>((_, reject) => (rejectStopped = reject));
    stoppedEarly.catch(() => undefined);
    const stop = (why: 'aborted' | 'timed out'): void => {
      if (stopped) return;
      stopped = why;
      // The caller gets its answer now; the connection waits for the statement's end (below).
      rejectStopped(new Error(why));
      cancelling = sendCancelRequest(client);
      cancelling.catch(() => undefined);
      // A dead connection does not answer the cancel either: close it.
      destroyTimer = setTimeout(() => destroyConnection(client), CANCEL_GRACE_MS);
    };
    const onAbort = (): void => stop('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => stop('timed out'), Math.max(1, deadline - Date.now()));
    const running = client.query<Row>(name === undefined || !this.#preparedStatements ? { text, values } : { name, text, values });
    // Reused (or closed) only once the statement has ended and a cancel sent for it has arrived.
    void running
      .then(() => false, (error: unknown) => !isRefusal(error))
      .then((broken) => {
        clearTimeout(timer);
        clearTimeout(destroyTimer);
        signal?.removeEventListener('abort', onAbort);
        this.#release(client, broken, cancelling);
      });
    try {
      const { rows } = await Promise.race([running, stoppedEarly]);
      if (this.#slowOperationMs > 0 && this.#log.enabled) {
        const durationMs = performance.now() - startedAt;
        if (durationMs >= this.#slowOperationMs) this.#log.warn({ operation, duration_ms: Math.round(durationMs), rows: rows.length, ...(target?.replica && { replica: target.replica.name }) }, `slow ${operation}: ${Math.round(durationMs)} ms`);
      }
      return rows;
    } catch (error) {
      if (stopped === 'aborted') throw new OperationAbortedError(operation, signal?.reason);
      if (stopped === 'timed out') throw new OperationTimeoutError(operation, timeoutMs);
      throw this.#toError(error);
    }
  }

  /** A pooled connection within `timeoutMs`; an abort rejects at once (a late connection goes back to the pool). */
  #acquire(operation: string, timeoutMs: number, signal?: AbortSignal, pool: pg.Pool = this.#pool): Promise<pg.PoolClient> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (settle: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        settle();
      };
      const onAbort = (): void => finish(() => reject(new OperationAbortedError(operation, signal?.reason)));
      const timer = setTimeout(() => finish(() => reject(new OperationTimeoutError(operation, timeoutMs, 'no connection could be had in time'))), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      pool.connect().then(
        (client) => {
          if (done) {
            try {
              client.release();
            } catch {
              // closed under us already
            }
            return;
          }
          this.#checkedOut.add(client);
          finish(() => resolve(client));
        },
        (error: unknown) => finish(() => reject(error)),
      );
    });
  }

  /** Back to the pool, or closed: when broken, or when a cancel sent on it may still arrive. */
  #release(client: pg.PoolClient, broken: boolean, cancelling: Promise<void> | undefined): void {
    const giveBack = (ok: boolean): void => {
      this.#checkedOut.delete(client);
      if (!ok) return destroyConnection(client);
      try {
        client.release();
      } catch {
        // closed already (destroyConnection released it)
      }
    };
    if (broken) giveBack(false);
    else if (cancelling) cancelling.then(() => giveBack(true), () => giveBack(false));
    else giveBack(true);
  }

  #batchExecution(): BatchExecution {
    const appendSql = appendStatementText(this.#quotedSchema);
    const scanLimit = String(this.#conditionScanLimit);
    return {
      connect: async (timeoutMs) => {
        const client = await this.#acquire('append', timeoutMs);
        let broken = false;
        let cancelling: Promise<void> | undefined;
        let released = false;
        const connection: AppendConnection = {
          send: async (commands, checkIds) => {
            const payload = appendPayload(commands);
            const ids = commands.flatMap((command) => command.events.map((event) => event.id));
            const independent = commandsAreIndependent(commands.flatMap((command) => command.parts));
            const values = [payload, checkIds, scanLimit, ids, independent];
            const statement = this.#preparedStatements ? { name: 'dses_append', text: appendSql, values } : { text: appendSql, values };
            try {
              if (!this.#explicitReadCommitted) return (await client.query<AppendRow>(statement)).rows.map(toCommandResult);
              // The head lock is held from append_batch to COMMIT here, across round trips: a
              // client that vanishes in between must not keep it until the server's TCP
              // keepalive gives up (hours), so the server ends such a session after a second.
              await client.query("BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = '1s'");
              try {
                const { rows } = await client.query<AppendRow>(statement);
                await client.query('COMMIT');
                return rows.map(toCommandResult);
              } catch (error) {
                if (isRefusal(error)) await client.query('ROLLBACK').catch(() => undefined);
                throw error;
              }
            } catch (error) {
              broken = !isRefusal(error);
              throw error;
            }
          },
          cancel: () => (cancelling ??= sendCancelRequest(client)),
          serverIsWorking: async (timeoutMs) => {
            // Behind a pooler processID is the pooler's, found nowhere: then "not working".
            const pid = (client as unknown as { processID?: number }).processID;
            const rows = await this.#query<{ state: string | null }>('append', 'SELECT state FROM pg_stat_activity WHERE pid = $1', [pid], AbortSignal.timeout(timeoutMs));
            return rows[0]?.state === 'active';
          },
          destroy: () => {
            if (released) return; // given back already: not ours to close any more
            broken = true;
            destroyConnection(client);
          },
          release: () => {
            released = true;
            this.#release(client, broken, cancelling);
          },
        };
        return connection;
      },
      isConnectionError,
      isCancelled,
      isRefusal,
      toError: (error) => this.#toError(error),
      answered: (commands) => this.#telemetry?.batchSent(commands),
      detached: (run) => (this.#telemetry ? this.#telemetry.detached(run) : run()),
    };
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
    if (['42P05', '26000'].includes(String((error as { code?: unknown } | null)?.code)) && this.#preparedStatements) {
      return new EventStoreDatabaseError(
        `PostgreSQL error: ${message} (a connection pooler in transaction mode cannot keep named prepared statements: connect with preparedStatements: false)`,
        error,
      );
    }
    return new EventStoreDatabaseError(`PostgreSQL error: ${message}`, error);
  }
}

/** The migration from which idempotent retries ignore metadata.traceparent. */
const TRACE_CONTEXT_MIGRATION = 5;
/** The first migration whose append function writes a group of commands all or nothing. */
const COMMAND_GROUPS_MIGRATION = 6;

const PRIMARY_TARGET: ReadTarget = { replica: undefined, host: undefined, port: undefined };

/** What an append's error says about its outcome (telemetry's `eventstore.append.outcome`). */
function appendOutcomeOf(error: unknown): AppendOutcome {
  if (error instanceof AppendConditionFailedError) return 'condition_failed';
  if (error instanceof DuplicateEventIdError) return 'duplicate_id';
  if (error instanceof AppendOutcomeUnknownError) return 'unknown';
  // Every other error of append means nothing was written (see the README's Guarantees).
  return 'aborted';
}

/**
 * The events with the append span's W3C traceparent in their metadata, where the caller has not
 * set one. Nothing changes without an active trace.
 */
function withTraceparent(events: NormalizedEvent[], span: AppendSpan): NormalizedEvent[] {
  const traceparent = span.traceparent();
  if (traceparent === undefined) return events;
  return events.map((event) => withMetadataEntry(event, TRACEPARENT_KEY, traceparent));
}

function validateTelemetryOption(value: unknown): void {
  if (value === undefined || value === false) return;
  if (value === null || typeof value !== 'object') throw new InvalidInputError('telemetry', `must be false or { tracerProvider?, meterProvider? }, got ${describe(value)}`);
  const { tracerProvider, meterProvider } = value as Record<string, unknown>;
  if (tracerProvider !== undefined && typeof (tracerProvider as { getTracer?: unknown } | null)?.getTracer !== 'function') {
    throw new InvalidInputError('telemetry.tracerProvider', `must be an OpenTelemetry TracerProvider (with getTracer), got ${describe(tracerProvider)}`);
  }
  if (meterProvider !== undefined && typeof (meterProvider as { getMeter?: unknown } | null)?.getMeter !== 'function') {
    throw new InvalidInputError('telemetry.meterProvider', `must be an OpenTelemetry MeterProvider (with getMeter), got ${describe(meterProvider)}`);
  }
}

/** How soon a reader on a replica that trails the announced head looks again. */
const REPLICA_CATCH_UP_POLL_MS = 20;

/** Read shapes prepared per connection; beyond this, reads run as unnamed statements. */
const MAX_PREPARED_SHAPES = 200;

/** How long an aborted or timed-out statement's cancel may take before its connection is closed. */
const CANCEL_GRACE_MS = 1_000;

interface ConnectionSettings {
  sessionConfig: pg.ClientConfig;
  appendTimeoutMs: number;
  readTimeoutMs: number;
  connectTimeoutMs: number;
  preparedStatements: boolean;
  explicitReadCommitted: boolean;
  clients: Set<pg.Client>;
  replicaSettings: ReplicaSettings | undefined;
  log: StoreLog;
  slowOperationMs: number;
  server: { host: string | undefined; port: number | undefined; database: string | undefined };
  /** The schema's migration (the newest this library knows, when it migrated the schema itself). */
  schemaVersion: number;
}

/** A pool a statement runs on: the primary's, or a replica's. */
interface Target {
  pool: pg.Pool;
  /** A replica, or undefined for the primary. */
  replica: Replica | undefined;
}

function timeoutOption(value: unknown, fallback: number, path: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_TIMER_MS) {
    throw new InvalidInputError(path, `must be an integer number of milliseconds from 1 to ${MAX_TIMER_MS}, got ${describe(value)}`);
  }
  return value;
}



