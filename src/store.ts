// The contract both stores implement (the PostgreSQL EventStore and the InMemoryEventStore), with
// the option and result types of every operation. Everything above the stores (decisions,
// subscriptions, the CLI, the HTTP API, telemetry) is written against this module; it imports
// only the vocabulary below it (events, queries, errors).
import type { AppendConditionFailedError } from './append-condition.ts';
import type { AppendCondition } from './append-condition.ts';
import type { EventInput, JsonValue, SequencedEvent } from './events.ts';
import type { Query } from './query.ts';

/**
 * A Dynamic Consistency Boundary event store: append guarded by the query a decision read,
 * read and stream by query, follow the log, run command handlers.
 */
export interface DcbEventStore {
  /**
   * Appends events atomically, in order. With a condition, only if no event matching
   * `condition.failIfEventsMatch` has a position greater than `condition.after`; otherwise
   * AppendConditionFailedError and nothing is written.
   */
  append(events: EventInput | readonly EventInput[], condition?: AppendCondition, options?: AppendOptions): Promise<AppendResult>;
  /**
   * Appends several commands atomically: all of them or none. Each command's condition is checked
   * in order and sees the events of the commands before it in the same call (two commands that
   * create the same entity conflict, as two separate appends would). A failed condition rejects
   * with AppendConditionFailedError carrying `commandIndex`, and nothing of any command is written.
   */
  appendCommands(commands: readonly AppendCommand[], options?: AppendOptions): Promise<AppendCommandsResult>;
  /** The events matching `query`, in position order, with the head of the same snapshot. */
  read<Data = unknown>(query: Query, options?: ReadOptions): Promise<ReadResult<Data>>;
  /** The events matching `query`, fetched in pages: for histories too large for one read. */
  stream<Data = unknown>(query: Query, options?: StreamOptions): AsyncGenerator<SequencedEvent<Data>, void, undefined>;
  /** The matching events after `options.after`, then each new one as it is appended, until the signal aborts or the store closes. */
  subscribe<Data = unknown>(query: Query, options?: SubscribeOptions): AsyncGenerator<SequencedEvent<Data>, void, undefined>;
  /** The highest position written (0n for an empty store). */
  head(options?: HeadOptions): Promise<bigint>;
  /** Reads the handler's decision model, decides and appends with its condition, retrying lost races. */
  execute<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput>(
    handler: CommandHandler<Command, Projections, Event>,
    command: Command,
    options?: ExecuteOptions,
  ): Promise<ExecuteResult<StatesOf<Projections>, Event>>;
  /** Where decision models keep snapshots of projections that declare one. */
  readonly snapshots: SnapshotStore;
  /** Waits for operations in flight, then releases everything; later calls fail with EventStoreClosedError. */
  close(options?: CloseOptions): Promise<void>;
}

/**
 * Where a read may run. `'strong'` (the default): on the primary, it sees every committed event.
 * `'eventual'`: on a read replica when one is configured and healthy; it may miss the newest
 * events, but what it returns is still a prefix of the log (every event up to its head, none
 * missing in between). `{ atLeast: position }`: on a replica whose head has reached `position`
 * (read your own writes: pass the position an append returned); the primary otherwise.
 * A store without replicas reads every consistency on the primary.
 */
export type ReadConsistency = 'strong' | 'eventual' | { atLeast: bigint };

export interface HeadOptions {
  signal?: AbortSignal;
}

export interface CloseOptions {
  /**
   * How long close() waits for queued and in-flight appends, running consumers and reads. After
   * it, appends still queued fail with EventStoreClosedError (never sent), appends in flight with
   * AppendOutcomeUnknownError, and the remaining connections are closed. Default 30000 ms.
   */
  timeoutMs?: number;
}

export interface ReadOptions {
  /** Only events with a position greater than this. Default 0. */
  after?: bigint;
  /**
   * Only events with a position less than this (exclusive). Default: no upper bound. With
   * `backwards` and `limit` it pages back through history: the `limit` newest events below
   * `before`; the next page is `before: <the oldest position of this one>`. A range holding no
   * position (`before` 0n or 1n, or `before <= after + 1`) reads no events; it is not an error.
   * `head` in the result is still the store's head.
   */
  before?: bigint;
  /** At most this many events. Default: all matching events. */
  limit?: number;
  /** Newest first (still only events between `after` and `before`). Default false. */
  backwards?: boolean;
  signal?: AbortSignal;
  /** Where the reads run (see ReadConsistency). Default `'strong'`. */
  consistency?: ReadConsistency;
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
  /** Only events with a position less than this (exclusive): the stream ends before it (and at the head its first page saw). */
  before?: bigint;
  /** Events fetched per round trip. Default 1000. */
  batchSize?: number;
  signal?: AbortSignal;
  /** Where the reads run (see ReadConsistency). Default `'strong'`. */
  consistency?: ReadConsistency;
}

export interface AppendOptions {
  /**
   * Stops waiting. A queued append is dropped (OperationAbortedError: nothing written). One in
   * flight alone in its batch is cancelled on the server: OperationAbortedError if the cancel won,
   * its position if the commit won. One in flight with other callers' appends is not cancelled
   * (that would roll theirs back): the caller gets AppendOutcomeUnknownError at once.
   */
  signal?: AbortSignal;
  /** This append's deadline (see `appendTimeoutMs`), for a call that must answer sooner (or may take longer). */
  timeoutMs?: number;
}

/** One command of {@link DcbEventStore.appendCommands}: its events and the condition its decision implies. */
export interface AppendCommand {
  events: EventInput | readonly EventInput[];
  condition?: AppendCondition;
}

export interface AppendCommandsResult {
  /**
   * Position of each command's last event, in the order given (for an idempotent retry, the
   * positions written originally).
   */
  positions: bigint[];
  /** Position of the last event written: the last of `positions`. */
  position: bigint;
}

export interface AppendResult {
  /** Position of the last event written (or, for an idempotent retry, written originally). */
  position: bigint;
}

export interface SubscribeOptions {
  /** Start after this position (exclusive). Default 0n: from the first event. */
  after?: bigint;
  /** Ends the subscription: the iteration finishes (without an error) promptly after it fires. */
  signal?: AbortSignal;
  /** Events fetched per round trip while catching up. Default 1000. */
  batchSize?: number;
  /**
   * Longest wait for new events without a wake-up notification, in ms. Notifications make the
   * subscription react at once; the poll covers notifications lost while reconnecting. Default 1000.
   */
  pollIntervalMs?: number;
  /** Where the reads run (see ReadConsistency). Default `'strong'`. */
  consistency?: ReadConsistency;
}

/**
 * Identifies a snapshot: the projection's name and version, and a hash of its query (so that
 * `courseCapacity('c1')` and `courseCapacity('c2')` have separate snapshots).
 */
export interface SnapshotKey {
  name: string;
  version: number;
  queryHash: string;
}

/** A projection's state folded from every matching event up to and including `position`. */
export interface Snapshot {
  position: bigint;
  state: JsonValue;
}

/** Where snapshots live: a table in the PostgreSQL store, a map in the in-memory store. */
export interface SnapshotStore {
  load(key: SnapshotKey, options?: { signal?: AbortSignal }): Promise<Snapshot | undefined>;
  /** Stores `snapshot` unless one at a later position is stored already. */
  save(key: SnapshotKey, snapshot: Snapshot, options?: { signal?: AbortSignal }): Promise<void>;
}

/** Lets a decision model start from a stored state instead of the first event. */
export interface SnapshotOptions<State> {
  /** Stable name of the projection, e.g. `courseCapacity`. */
  name: string;
  /** Bump it whenever the handlers or the state's shape change: older snapshots are then ignored. */
  version: number;
  /** Save a new snapshot once at least this many events were folded since the last one. Default 100. */
  every?: number;
  /** State to JSON. Default: the state itself (it must survive a JSON round trip). */
  serialize?: (state: State) => JsonValue;
  /** JSON back to state. Default: the JSON itself. */
  deserialize?: (json: JsonValue) => State;
}

/**
 * The decision state a rule needs, folded from the events its query matches. Create one with
 * {@link defineProjection}; combine several with `buildDecisionModel`.
 */
export interface Projection<State> {
  readonly query: Query;
  readonly initialState: State;
  /** The state after `event`; `state` unchanged for events it has no handler for. */
  apply(state: State, event: SequencedEvent): State;
  readonly snapshot: Readonly<SnapshotOptions<State>> | undefined;
  /** Only the last matching event is read and folded (e.g. "the last invoice number"). */
  readonly onlyLastEvent: boolean;
}

/** The state of each projection, by the names given to {@link buildDecisionModel}. */
export type StatesOf<Projections extends Record<string, Projection<any>>> = {
  [Name in keyof Projections]: Projections[Name] extends Projection<infer State> ? State : never;
};

/**
 * A command handler in the DCB style: the projections its rules need (they may depend on the
 * command) and a pure decision on their state. Define it with {@link defineCommandHandler} and run
 * it with `store.execute(handler, command)`.
 */
export interface CommandHandler<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput> {
  projections(command: Command): Projections;
  /**
   * The events to append, or nothing (an empty array or undefined) when the command has nothing
   * to do, e.g. because it was carried out before. Throw a domain error to reject the command: it
   * reaches the caller unchanged.
   */
  decide(state: StatesOf<Projections>, command: Command): Event | readonly Event[] | undefined | void;
}

export interface ExecuteOptions {
  signal?: AbortSignal;
  /** Most attempts (reads + decisions + appends) before {@link RetriesExhaustedError}. Default 10. */
  maxAttempts?: number;
  /** First retry waits up to this long (full jitter: a random time between 0 and the bound). Default 5 ms. */
  initialDelayMs?: number;
  /** Bound of the doubling wait between attempts. Default 500 ms. */
  maxDelayMs?: number;
  /** Called for each lost race (the append's condition failed), before the wait and the next attempt. For logs and metrics. */
  onConflict?: (error: AppendConditionFailedError, attempt: number) => void;
  /** Where the reads run (see ReadConsistency). Default `'strong'`. */
  consistency?: ReadConsistency;
}

export interface ExecuteResult<States, Event extends EventInput = EventInput> {
  /** The events appended (empty when the decision was to do nothing). */
  events: readonly Event[];
  /** Position of the last appended event; undefined when nothing was appended. */
  position: bigint | undefined;
  /** The state the successful decision was made on. */
  state: States;
  /** 1 when the first attempt went through. */
  attempts: number;
}
