import { TRACEPARENT_KEY } from '../telemetry/names.ts';
import { isDeepStrictEqual } from 'node:util';
import { executeCommand } from '../decisions/command-handler.ts';
import { validateSnapshot, validateSnapshotKey } from '../decisions/snapshots.ts';
import { AppendConditionFailedError } from '../append-condition.ts';
import { DuplicateEventIdError, EventStoreClosedError, OperationAbortedError } from '../errors.ts';
import type { AppendCondition } from '../append-condition.ts';
import type { EventInput, JsonValue, SequencedEvent } from '../events.ts';
import { prepareAppend, prepareCommands, streamPages, validateRead, type PreparedAppend } from '../operation-input.ts';
import type { Query } from '../query.ts';
import { queryMatcher } from '../query-match.ts';
import type {
  AppendCommand,
  AppendCommandsResult,
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
    const [position] = await this.#write([prepared], false, options.signal);
    return { position: position! };
  }

  /** All commands or none, each condition checked in order and seeing the earlier commands' events (see DcbEventStore). */
  async appendCommands(commands: readonly AppendCommand[], options: AppendOptions = {}): Promise<AppendCommandsResult> {
    this.#assertOpen();
    const prepared = prepareCommands(commands, options.signal);
    const positions = await this.#write(prepared, true, options.signal);
    return { positions, position: positions.at(-1)! };
  }

  /**
   * Checks and writes the commands of one call, as the PostgreSQL store's append function does:
   * in order, the first failure decides, nothing is written unless every command passes; a call
   * whose events are all stored with the same content already is an idempotent retry.
   */
  async #write(commands: readonly PreparedAppend[], named: boolean, signal: AbortSignal | undefined): Promise<bigint[]> {
    // Data and metadata as JSON made when append() was called, as PostgreSQL stores them
    // (undefined properties dropped, toJSON applied), so that reads return what the real store
    // returns and later changes to the caller's objects do not leak in.
    const stored = commands.map((command) => command.events.map((event) => {
      const parsed = JSON.parse(event.json) as { data: unknown; metadata: Record<string, unknown> };
      return { id: event.id, type: event.type, tags: event.tags, data: parsed.data ?? null, metadata: parsed.metadata, occurredAt: new Date(event.occurred_at) };
    }));
    // Asynchronous like the real store; close() waits for appends already called, as there.
    const settled = Promise.resolve();
    this.#pending.add(settled);
    await settled;
    this.#pending.delete(settled);
    if (signal?.aborted) throw new OperationAbortedError('append', signal.reason);

    const commandIndex = (index: number): number | undefined => (named ? index : undefined);
    const head = this.#head();
    /** Events of earlier commands of this call that passed, at the positions they would get. */
    const pending: Array<{ command: number; event: SequencedEvent }> = [];
    const outcomes: Array<{ kind: 'stored'; position: bigint } | { kind: 'new'; position: bigint }> = [];
    for (const [index, events] of stored.entries()) {
      const existing = events.map((event) => this.#positionsById.get(event.id));
      if (existing.some((position) => position !== undefined)) {
        const same = existing.every((position, eventIndex) => {
          if (position === undefined) return false;
          const original = this.#events[Number(position) - 1]!;
          const event = events[eventIndex]!;
          return original.type === event.type && isDeepStrictEqual(original.tags, event.tags) && isDeepStrictEqual(original.data, event.data) && isDeepStrictEqual(withoutTraceContext(original.metadata), withoutTraceContext(event.metadata));
        });
        const last = existing.reduce<bigint>((max, position) => (position !== undefined && position > max ? position : max), 0n);
        if (!same) throw new DuplicateEventIdError(events.filter((_, eventIndex) => existing[eventIndex] !== undefined).map((event) => event.id), last, commandIndex(index));
        outcomes.push({ kind: 'stored', position: last });
        continue;
      }
      const condition = commands[index]!.condition;
      if (condition) {
        const matches = queryMatcher(condition.failIfEventsMatch);
        const after = commands[index]!.after ?? 0n;
        const conflict = this.#events.find((event) => event.position > after && matches(event));
        if (conflict) throw new AppendConditionFailedError(condition, conflict.position, named ? { commandIndex: index } : undefined);
        const earlier = pending.find(({ event }) => event.position > after && matches(event));
        if (earlier) throw new AppendConditionFailedError(condition, undefined, { commandIndex: index, conflictingCommandIndex: earlier.command });
      }
      const recordedAt = new Date();
      for (const event of events) pending.push({ command: index, event: { position: head + BigInt(pending.length + 1), ...event, recordedAt } });
      outcomes.push({ kind: 'new', position: head + BigInt(pending.length) });
    }
    const firstStored = outcomes.findIndex((outcome) => outcome.kind === 'stored');
    if (firstStored >= 0 && pending.length > 0) {
      // Stored already for some commands and new for others: not the same call again.
      const ids = stored[firstStored]!.map((event) => event.id);
      throw new DuplicateEventIdError(ids, outcomes[firstStored]!.position, commandIndex(firstStored));
    }
    for (const { event } of pending) {
      this.#events.push(event);
      this.#positionsById.set(event.id, event.position);
    }
    if (pending.length > 0) for (const wake of [...this.#waiters]) wake();
    return outcomes.map((outcome) => outcome.position);
  }

  async read<Data = unknown>(query: Query, options: ReadOptions = {}): Promise<ReadResult<Data>> {
    this.#assertOpen();
    const { after, before, limit, backwards } = validateRead(query, options);
    // One copy of the log: every consistency reads it (validated as the PostgreSQL store does).
    validateConsistency(options.consistency, 'consistency');
    if (options.signal?.aborted) throw new OperationAbortedError('read', options.signal.reason);
    await Promise.resolve();
    const matches = queryMatcher(query);
    const head = this.#head();
    let events = this.#events.filter((event) => event.position > after && (before === undefined || event.position < before) && matches(event));
    if (backwards) events.reverse();
    if (limit !== undefined) events = events.slice(0, limit);
    // Copies: a caller changing what it read must not change the store.
    return { events: events.map((event) => structuredClone(event) as SequencedEvent<Data>), head };
  }

  async *stream<Data = unknown>(query: Query, options: StreamOptions = {}): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
    this.#assertOpen();
    yield* streamPages<Data>((from, before, limit, signal) => this.read<Data>(query, { after: from, ...(before !== undefined && { before }), limit, ...(signal && { signal }) }), query, options);
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
