import { TRACEPARENT_KEY } from '../telemetry/names.ts';
import { isDeepStrictEqual } from 'node:util';
import { executeCommand } from '../decisions/command-handler.ts';
import { validateSnapshot, validateSnapshotKey } from '../decisions/snapshots.ts';
import { AppendConditionFailedError } from '../append-condition.ts';
import { DuplicateEventIdError, EventStoreClosedError, OperationAbortedError } from '../errors.ts';
import type { AppendCondition } from '../append-condition.ts';
import type { EventInput, JsonValue, SequencedEvent } from '../events.ts';
import { prepareAppend, streamPages, validateRead } from '../operation-input.ts';
import type { Query } from '../query.ts';
import { queryMatcher } from '../query-match.ts';
import type {
  AppendOptions,
  AppendResult,
  CommandHandler,
  DcbEventStore,
  ExecuteOptions,
  ExecuteResult,
  HeadOptions,
  Projection,
  ReadOptions,
  ReadResult,
  Snapshot,
  SnapshotKey,
  SnapshotStore,
  StatesOf,
  StreamOptions,
  SubscribeOptions,
} from '../store.ts';
import { follow, validateSubscribeOptions } from '../subscriptions/follow.ts';
import { wakeableWait } from '../util/wait.ts';
import { validateConsistency } from '../validation.ts';
import type { Automation, AutomationOptions } from '../decisions/automation.ts';
import { InMemoryAutomation, type AutomationRecord } from './in-memory-automation.ts';

/**
 * An event store in memory with the PostgreSQL store's interface and semantics (`append`, `read`,
 * `stream`, `subscribe`, `head`, `execute`, snapshots): the same validation and errors, gap-free
 * positions, conditions, idempotent retries by event id. For unit tests and prototypes; one shared
 * contract test suite runs against both stores. Not durable, one process only.
 *
 * @example
 * const store = new InMemoryEventStore();
 * await store.append({ type: 'CourseDefined', tags: ['course:c1'], data: { capacity: 10 } });
 */
export class InMemoryEventStore implements DcbEventStore {
  readonly #events: SequencedEvent[] = [];
  readonly #positionsById = new Map<string, bigint>();
  readonly #waiters = new Set<() => void>();
  readonly #pending = new Set<Promise<void>>();
  readonly #snapshots = new InMemorySnapshotStore(() => this.#head(), () => this.#assertOpen());
  /** Aborted by close(): ends every wait of the subscriptions, as in the PostgreSQL store. */
  readonly #closedController = new AbortController();
  #closed = false;
  /** Checkpoints and leases of automations, by name. */
  readonly #automations = new Map<string, AutomationRecord>();

  async append(events: EventInput | readonly EventInput[], condition?: AppendCondition, options: AppendOptions = {}): Promise<AppendResult> {
    this.#assertOpen();
    const prepared = prepareAppend(events, condition, options.signal);
    // Data and metadata as JSON made when append() was called, as PostgreSQL stores them
    // (undefined properties dropped, toJSON applied), so that reads return what the real store
    // returns and later changes to the caller's objects do not leak in.
    const stored = prepared.events.map((event) => {
      const parsed = JSON.parse(event.json) as { data: unknown; metadata: Record<string, unknown> };
      return { id: event.id, type: event.type, tags: event.tags, data: parsed.data ?? null, metadata: parsed.metadata, occurredAt: new Date(event.occurred_at) };
    });
    // Asynchronous like the real store; close() waits for appends already called, as there.
    const settled = Promise.resolve();
    this.#pending.add(settled);
    await settled;
    this.#pending.delete(settled);
    if (options.signal?.aborted) throw new OperationAbortedError('append', options.signal.reason);

    const existing = stored.map((event) => this.#positionsById.get(event.id));
    if (existing.some((position) => position !== undefined)) {
      const same = existing.every((position, index) => {
        if (position === undefined) return false;
        const original = this.#events[Number(position) - 1]!;
        const event = stored[index]!;
        return original.type === event.type && isDeepStrictEqual(original.tags, event.tags) && isDeepStrictEqual(original.data, event.data) && isDeepStrictEqual(withoutTraceContext(original.metadata), withoutTraceContext(event.metadata));
      });
      const last = existing.reduce<bigint>((max, position) => (position !== undefined && position > max ? position : max), 0n);
      if (same) return { position: last };
      throw new DuplicateEventIdError(stored.filter((_, index) => existing[index] !== undefined).map((event) => event.id), last);
    }

    if (prepared.condition) {
      const matches = queryMatcher(prepared.condition.failIfEventsMatch);
      const after = prepared.after ?? 0n;
      const conflict = this.#events.find((event) => event.position > after && matches(event));
      if (conflict) throw new AppendConditionFailedError(prepared.condition, conflict.position);
    }

    const recordedAt = new Date();
    for (const event of stored) {
      const position = BigInt(this.#events.length + 1);
      this.#events.push({ position, ...event, recordedAt });
      this.#positionsById.set(event.id, position);
    }
    for (const wake of [...this.#waiters]) wake();
    return { position: this.#head() };
  }

  async read<Data = unknown>(query: Query, options: ReadOptions = {}): Promise<ReadResult<Data>> {
    this.#assertOpen();
    const { after, limit, backwards } = validateRead(query, options);
    // One copy of the log: every consistency reads it (validated as the PostgreSQL store does).
    validateConsistency(options.consistency, 'consistency');
    if (options.signal?.aborted) throw new OperationAbortedError('read', options.signal.reason);
    await Promise.resolve();
    const matches = queryMatcher(query);
    const head = this.#head();
    let events = this.#events.filter((event) => event.position > after && matches(event));
    if (backwards) events.reverse();
    if (limit !== undefined) events = events.slice(0, limit);
    // Copies: a caller changing what it read must not change the store.
    return { events: events.map((event) => structuredClone(event) as SequencedEvent<Data>), head };
  }

  async *stream<Data = unknown>(query: Query, options: StreamOptions = {}): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
    this.#assertOpen();
    yield* streamPages<Data>((from, limit, signal) => this.read<Data>(query, { after: from, limit, ...(signal && { signal }) }), query, options);
  }

  subscribe<Data = unknown>(query: Query, options: SubscribeOptions = {}): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
    this.#assertOpen();
    const isClosed = (): boolean => this.#closed;
    return follow<Data>(
      {
        read: (readQuery, readOptions) => this.read(readQuery, readOptions),
        mark: () => 0, // the head is known exactly here: waitForAppend compares with it
        waitForAppend: (position, _since, timeoutMs, signal) => this.#waitForAppend(position, timeoutMs, signal),
        get closed() {
          return isClosed();
        },
        closedSignal: this.#closedController.signal,
        isTransient: () => false,
      },
      query,
      validateSubscribeOptions(query, options),
    );
  }

  async head(options: HeadOptions = {}): Promise<bigint> {
    this.#assertOpen();
    if (options.signal?.aborted) throw new OperationAbortedError('head', options.signal.reason);
    return this.#head();
  }

  execute<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput>(
    handler: CommandHandler<Command, Projections, Event>,
    command: Command,
    options?: ExecuteOptions,
  ): Promise<ExecuteResult<StatesOf<Projections>, Event>> {
    this.#assertOpen();
    return executeCommand(this, handler, command, options);
  }

  /**
   * An automation with the PostgreSQL store's semantics: reactions appended once per event, in
   * order, the checkpoint kept by this store across runs (see `EventStore.automation`).
   */
  automation<Data = unknown, Projections extends Record<string, Projection<any>> = Record<string, never>>(name: string, options: AutomationOptions<Data, Projections>): Automation {
    this.#assertOpen();
    const automations = this.#automations;
    return new InMemoryAutomation<Data>(
      {
        read: (query, readOptions) => this.read(query, readOptions),
        snapshots: this.#snapshots,
        append: (events, condition, appendOptions) => this.append(events, condition, appendOptions),
        head: () => this.#head(),
        record: (automation) => {
          let record = automations.get(automation);
          if (!record) automations.set(automation, (record = { position: 0n, failed: undefined, owner: null, leased: false, updatedAt: null }));
          return record;
        },
        waitForAppend: (position, timeoutMs, signal) => this.#waitForAppend(position, timeoutMs, signal),
        closedSignal: this.#closedController.signal,
      },
      name,
      options,
    );
  }

  get snapshots(): SnapshotStore {
    return this.#snapshots;
  }

  /** Every event, in order (copies). Handy in assertions. */
  get events(): readonly SequencedEvent[] {
    return this.#events.map((event) => structuredClone(event));
  }

  /** Ends subscriptions; appends already called still complete. Later calls throw EventStoreClosedError. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#closedController.abort(new EventStoreClosedError());
    for (const wake of [...this.#waiters]) wake();
    await Promise.all(this.#pending);
  }

  #head(): bigint {
    return BigInt(this.#events.length);
  }

  #waitForAppend(position: bigint, timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.#closed || signal.aborted || this.#head() > position) return Promise.resolve();
    return wakeableWait(timeoutMs, signal, (wake) => {
      this.#waiters.add(wake);
      return () => this.#waiters.delete(wake);
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new EventStoreClosedError();
  }
}

class InMemorySnapshotStore implements SnapshotStore {
  readonly #snapshots = new Map<string, Snapshot>();
  readonly #head: () => bigint;
  readonly #assertOpen: () => void;

  constructor(head: () => bigint, assertOpen: () => void) {
    this.#head = head;
    this.#assertOpen = assertOpen;
  }

  async load(input: SnapshotKey): Promise<Snapshot | undefined> {
    this.#assertOpen();
    const key = validateSnapshotKey(input);
    const snapshot = this.#snapshots.get(mapKey(key));
    return snapshot && { position: snapshot.position, state: structuredClone(snapshot.state) };
  }

  async save(inputKey: SnapshotKey, input: Snapshot): Promise<void> {
    this.#assertOpen();
    const key = validateSnapshotKey(inputKey);
    const snapshot = validateSnapshot(input);
    const existing = this.#snapshots.get(mapKey(key));
    if (existing && existing.position >= snapshot.position && existing.position <= this.#head()) return;
    this.#snapshots.set(mapKey(key), { position: snapshot.position, state: jsonCopy(snapshot.state) as JsonValue });
  }
}

function mapKey(key: SnapshotKey): string {
  return JSON.stringify([key.name, key.version, key.queryHash]);
}

function jsonCopy(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? undefined : JSON.parse(text);
}

/** Metadata as compared for an idempotent retry: the trace context says who wrote it, not what was written. */
function withoutTraceContext(metadata: Record<string, unknown>): Record<string, unknown> {
  if (!Object.hasOwn(metadata, TRACEPARENT_KEY)) return metadata;
  const { [TRACEPARENT_KEY]: _traceparent, ...rest } = metadata;
  return rest;
}
