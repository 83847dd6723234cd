// Decision models, command execution and snapshots, on the in-memory store (no database):
// defineProjection's validation and derived query, mergeQueries, buildDecisionModel's folding and
// append condition, executeCommand's retries and error handling, and when snapshots are saved,
// used and ignored.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  AppendConditionFailedError,
  DuplicateEventIdError,
  InvalidInputError,
  OperationAbortedError,
  Query,
  QueryItem,
  RetriesExhaustedError,
  buildDecisionModel,
  defineCommandHandler,
  defineProjection,
  eventMatchesQuery,
  executeCommand,
  mergeQueries,
  type CommandStore,
  type EventInput,
  type Projection,
  type ProjectionDefinition,
  type ReadOptions,
  type ReadResult,
  type SequencedEvent,
  type SnapshotKey,
  type SnapshotOptions,
  type SnapshotStore,
} from '../../src/index.ts';
import { queryHash } from '../../src/decisions/snapshots.ts';
import { InMemoryEventStore } from '../../src/testing/index.ts';

/** No test here waits on anything slow; a hang (e.g. an unbounded retry wait) fails fast instead. */
const SUITE = { timeout: 5000 };

// ---------------------------------------------------------------------------------------------
// Helpers

/** Lets a test pass what the types forbid, as untyped JavaScript callers can. */
function loose<T>(value: unknown): T {
  return value as T;
}

function invalidAt(path: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError at ${path}, got ${String(error)}`);
    assert.equal(error.path, path);
    return true;
  };
}

interface RecordedRead {
  query: Query;
  after: bigint;
  backwards: boolean;
  limit: number | undefined;
}

interface ReadHooks {
  /** Runs before read number `readNumber` (1-based) reaches the store. */
  beforeRead?: (readNumber: number) => Promise<void>;
  /** Runs once read number `readNumber` has returned, before the caller sees it (a writer that gets in between). */
  afterRead?: (readNumber: number) => Promise<void>;
}

/**
 * A source for buildDecisionModel / executeCommand backed by `store` that records each read
 * (query, `after`, `backwards`, `limit`) and runs the hooks around it.
 */
function recording(store: InMemoryEventStore, hooks: ReadHooks | ReadHooks['afterRead'] = {}) {
  const { beforeRead, afterRead } = typeof hooks === 'function' ? { beforeRead: undefined, afterRead: hooks } : hooks;
  const reads: RecordedRead[] = [];
  let appends = 0;
  const source: CommandStore & { snapshots: SnapshotStore } = {
    async read<Data = unknown>(query: Query, options: ReadOptions = {}): Promise<ReadResult<Data>> {
      reads.push({ query, after: options.after ?? 0n, backwards: options.backwards ?? false, limit: options.limit });
      const readNumber = reads.length;
      await beforeRead?.(readNumber);
      const result = await store.read<Data>(query, options);
      await afterRead?.(readNumber);
      return result;
    },
    append(events, condition, options) {
      appends += 1;
      return store.append(events, condition, options);
    },
    snapshots: store.snapshots,
  };
  return { source, reads, afters: () => reads.map((read) => read.after), appends: () => appends };
}

const sortPositions = (positions: bigint[]): bigint[] => [...positions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

function positionsOf(events: readonly SequencedEvent[]): bigint[] {
  return events.map((event) => event.position);
}

// ---------------------------------------------------------------------------------------------
// A small course domain

const courseDefined = (courseId: string, capacity = 10): EventInput => ({ type: 'CourseDefined', tags: [`course:${courseId}`], data: { courseId, capacity } });
const subscribed = (studentId: string, courseId: string): EventInput => ({
  type: 'StudentSubscribed',
  tags: [`student:${studentId}`, `course:${courseId}`],
  data: { studentId, courseId },
});

/** Records which positions it folded, so a test sees exactly what reached it. */
const courseLog = (courseId: string) =>
  defineProjection<bigint[]>({
    initialState: [],
    handlers: {
      CourseDefined: (state, event) => [...state, event.position],
      StudentSubscribed: (state, event) => [...state, event.position],
    },
    tags: [`course:${courseId}`],
  });

const studentLog = (studentId: string) =>
  defineProjection<bigint[]>({
    initialState: [],
    handlers: { StudentSubscribed: (state, event) => [...state, event.position] },
    tags: [`student:${studentId}`],
  });

const counterTag = (name: string): string => `counter:${name}`;
const counted = (name: string, n: number | string = 0): EventInput => ({ type: 'Counted', tags: [counterTag(name)], data: { n } });

const counter = (name: string) =>
  defineProjection<{ count: number }>({
    initialState: { count: 0 },
    handlers: { Counted: (state) => ({ count: state.count + 1 }) },
    tags: [counterTag(name)],
  });

const increment = defineCommandHandler({
  projections: (command: { name: string }) => ({ counter: counter(command.name) }),
  decide: (state, command) => counted(command.name, state.counter.count + 1),
});

// ---------------------------------------------------------------------------------------------

describe('defineProjection: validation', SUITE, () => {
  const handlers = { A: (state: number) => state + 1 };
  const cases: Array<[string, unknown, string]> = [
    ['not an object', null, 'projection'],
    ['handlers not an object', { initialState: 0, handlers: null }, 'projection.handlers'],
    ['no handlers', { initialState: 0, handlers: {} }, 'projection.handlers'],
    ['a handler that is not a function', { initialState: 0, handlers: { A: 1 } }, 'projection.handlers.A'],
    ['an empty event type', { initialState: 0, handlers: { '': () => 0 } }, 'projection.handlers.'],
    ['an event type of 256 characters', { initialState: 0, handlers: { ['T'.repeat(256)]: () => 0 } }, `projection.handlers.${'T'.repeat(256)}`],
    ['no initialState', { handlers }, 'projection.initialState'],
    ['an initialState that cannot be cloned', { initialState: { f: () => 1 }, handlers }, 'projection.initialState'],
    ['a query that is not a Query', { initialState: 0, handlers, query: { items: [] } }, 'projection.query'],
    ['both tags and query', { initialState: 0, handlers, query: Query.all(), tags: ['t'] }, 'projection.tags'],
    ['tags not an array', { initialState: 0, handlers, tags: 'book:1' }, 'projection.tags'],
    ['snapshot not an object', { initialState: 0, handlers, snapshot: null }, 'projection.snapshot'],
    ['snapshot without a name', { initialState: 0, handlers, snapshot: { version: 1 } }, 'projection.snapshot.name'],
    ['snapshot with an empty name', { initialState: 0, handlers, snapshot: { name: '', version: 1 } }, 'projection.snapshot.name'],
    ['snapshot with a negative version', { initialState: 0, handlers, snapshot: { name: 'p', version: -1 } }, 'projection.snapshot.version'],
    ['snapshot with a fractional version', { initialState: 0, handlers, snapshot: { name: 'p', version: 1.5 } }, 'projection.snapshot.version'],
    ['snapshot with every 0', { initialState: 0, handlers, snapshot: { name: 'p', version: 1, every: 0 } }, 'projection.snapshot.every'],
    ['snapshot.serialize not a function', { initialState: 0, handlers, snapshot: { name: 'p', version: 1, serialize: 'json' } }, 'projection.snapshot.serialize'],
    ['snapshot.deserialize not a function', { initialState: 0, handlers, snapshot: { name: 'p', version: 1, deserialize: 1 } }, 'projection.snapshot.deserialize'],
    ['onlyLastEvent not a boolean', { initialState: 0, handlers, onlyLastEvent: 'yes' }, 'projection.onlyLastEvent'],
    ['onlyLastEvent with a snapshot', { initialState: 0, handlers, onlyLastEvent: true, snapshot: { name: 'p', version: 1 } }, 'projection.snapshot'],
  ];
  for (const [description, definition, path] of cases) {
    test(`${description}: InvalidInputError at ${path.length > 40 ? `${path.slice(0, 40)}...` : path}`, () => {
      assert.throws(() => defineProjection(loose<ProjectionDefinition<unknown, Record<string, unknown>>>(definition)), invalidAt(path));
    });
  }

  test('a bad tag: InvalidInputError at projection.tags[1] (where the caller put it)', () => {
    assert.throws(() => defineProjection({ initialState: 0, handlers, tags: ['ok', ''] }), invalidAt('projection.tags[1]'));
  });

  test('an initialState of undefined is allowed when given explicitly', () => {
    const projection = defineProjection<number | undefined>({ initialState: undefined, handlers: { A: () => 1 } });
    assert.equal(projection.initialState, undefined);
  });
});

describe('defineProjection: the query and apply', SUITE, () => {
  test('the query is "any of the handled types, with all the tags"', () => {
    const projection = defineProjection({ initialState: 0, handlers: { B: (state: number) => state, A: (state: number) => state }, tags: ['t:2', 't:1'] });
    assert.deepEqual(projection.query.toJSON(), { items: [{ types: ['B', 'A'], tags: ['t:1', 't:2'] }] });
  });

  test('without tags, or with an empty list: the handled types only', () => {
    assert.deepEqual(defineProjection({ initialState: 0, handlers: { A: (state: number) => state } }).query.toJSON(), { items: [{ types: ['A'] }] });
    assert.deepEqual(defineProjection({ initialState: 0, handlers: { A: (state: number) => state }, tags: [] }).query.toJSON(), { items: [{ types: ['A'] }] });
  });

  test('an explicit query is used as given', () => {
    const query = Query.of(QueryItem.tags('x'), QueryItem.anyPredicateOf({ y: 1 })).occurredFrom(new Date('2024-01-01T00:00:00Z'));
    const projection = defineProjection({ initialState: 0, handlers: { A: (state: number) => state + 1 }, query });
    assert.equal(projection.query, query);
  });

  test('apply: the handler of the event type; other types leave the state as it is (same object)', () => {
    const state = { n: 1 };
    const projection = defineProjection<{ n: number }>({ initialState: { n: 0 }, handlers: { A: (current) => ({ n: current.n + 10 }) } });
    const base = { position: 1n, id: randomUUID(), tags: [], data: {}, metadata: {}, occurredAt: new Date(), recordedAt: new Date() };
    assert.deepEqual(projection.apply(state, { ...base, type: 'A' }), { n: 11 });
    assert.equal(projection.apply(state, { ...base, type: 'B' }), state);
  });

  test('the projection is frozen, and later changes to the definition do not reach it', () => {
    const snapshot: SnapshotOptions<number> = { name: 'p', version: 1, every: 5 };
    const handlers: Record<string, (state: number) => number> = { A: (state) => state + 1 };
    const projection = defineProjection<number>({ initialState: 0, handlers, snapshot });
    snapshot.every = 1;
    handlers.A = () => 1000;
    handlers.B = () => 2000;
    assert.equal(projection.snapshot?.every, 5);
    assert.deepEqual(projection.query.toJSON(), { items: [{ types: ['A'] }] });
    const event = { position: 1n, id: randomUUID(), type: 'A', tags: [], data: {}, metadata: {}, occurredAt: new Date(), recordedAt: new Date() };
    assert.equal(projection.apply(0, event), 1);
    assert.ok(Object.isFrozen(projection));
  });
});

describe('mergeQueries', SUITE, () => {
  const from = new Date('2024-01-01T00:00:00.000Z');
  const until = new Date('2024-02-01T00:00:00.000Z');

  test('items of all queries, duplicates removed, in order of first appearance', () => {
    const merged = mergeQueries([
      Query.of(QueryItem.types('A').tags('x')),
      Query.of(QueryItem.types('B'), QueryItem.types('A').tags('x')),
      Query.of(QueryItem.tags('y', 'x')),
      Query.of(QueryItem.tags('x', 'y')),
      Query.of(QueryItem.anyPredicateOf({ a: 1 })),
      Query.of(QueryItem.anyPredicateOf({ a: 1 })),
    ]);
    assert.deepEqual(merged.toJSON(), { items: [{ types: ['A'], tags: ['x'] }, { types: ['B'] }, { tags: ['x', 'y'] }, { anyPredicateOf: [{ a: 1 }] }] });
  });

  test('Query.all() among them: the merge is all events', () => {
    const merged = mergeQueries([Query.of(QueryItem.types('A')), Query.all(), Query.of(QueryItem.tags('x'))]);
    assert.equal(merged.isAll, true);
    assert.deepEqual(merged.toJSON(), { items: [] });
  });

  test('time bounds are kept only when every query has the same ones', () => {
    const a = Query.of(QueryItem.types('A')).occurredFrom(from).occurredUntil(until);
    const b = Query.of(QueryItem.types('B')).occurredFrom(from).occurredUntil(until);
    assert.deepEqual(mergeQueries([a, b]).toJSON(), { items: [{ types: ['A'] }, { types: ['B'] }], occurredFrom: from.toISOString(), occurredUntil: until.toISOString() });
    assert.deepEqual(mergeQueries([Query.all().occurredFrom(from), Query.all().occurredFrom(from)]).toJSON(), { items: [], occurredFrom: from.toISOString() });
    const otherUntil = Query.of(QueryItem.types('B')).occurredFrom(from).occurredUntil(new Date(until.getTime() + 1));
    assert.deepEqual(mergeQueries([a, otherUntil]).toJSON(), { items: [{ types: ['A'] }, { types: ['B'] }] }, 'different until: no bounds at all');
    assert.deepEqual(mergeQueries([a, Query.of(QueryItem.types('B'))]).toJSON(), { items: [{ types: ['A'] }, { types: ['B'] }] }, 'one without bounds');
    assert.deepEqual(mergeQueries([Query.of(QueryItem.types('B')), a]).toJSON(), { items: [{ types: ['B'] }, { types: ['A'] }] }, 'the first without bounds');
    assert.deepEqual(mergeQueries([a, Query.all()]).toJSON(), { items: [] });
  });

  test('the merge matches every event any of the queries matches (and, without differing bounds, nothing else)', () => {
    const events = [
      { type: 'A', tags: ['x'], data: { a: 1 }, occurredAt: new Date('2024-01-15T00:00:00Z') },
      { type: 'A', tags: [], data: { a: 2 }, occurredAt: new Date('2023-12-01T00:00:00Z') },
      { type: 'B', tags: ['y'], data: null, occurredAt: new Date('2024-03-01T00:00:00Z') },
      { type: 'C', tags: ['x', 'y'], data: { a: 1 }, occurredAt: new Date('2024-01-20T00:00:00Z') },
    ];
    const groups: Array<[Query[], boolean]> = [
      [[Query.of(QueryItem.types('A')), Query.of(QueryItem.tags('y'))], true],
      [[Query.of(QueryItem.anyPredicateOf({ a: 1 })), Query.of(QueryItem.types('B').tags('y'))], true],
      [[Query.of(QueryItem.types('A')).occurredFrom(from), Query.of(QueryItem.tags('y')).occurredFrom(from)], true],
      [[Query.of(QueryItem.types('A')).occurredFrom(from).occurredUntil(until), Query.of(QueryItem.tags('y'))], false],
    ];
    for (const [queries, exact] of groups) {
      const merged = mergeQueries(queries);
      for (const event of events) {
        const any = queries.some((query) => eventMatchesQuery(query, event));
        const matched = eventMatchesQuery(merged, event);
        if (any) assert.ok(matched, `merge of ${JSON.stringify(queries)} misses ${JSON.stringify(event)}`);
        if (exact) assert.equal(matched, any, `merge of ${JSON.stringify(queries)} on ${JSON.stringify(event)}`);
      }
    }
  });

  test('no queries: InvalidInputError', () => {
    assert.throws(() => mergeQueries([]), invalidAt('queries'));
  });
});

describe('buildDecisionModel', SUITE, () => {
  async function courseStore(): Promise<InMemoryEventStore> {
    const store = new InMemoryEventStore();
    await store.append([
      /* 1 */ courseDefined('c1'),
      /* 2 */ courseDefined('c2'),
      /* 3 */ subscribed('s1', 'c2'),
      /* 4 */ subscribed('s2', 'c1'),
      /* 5 */ subscribed('s1', 'c1'),
      /* 6 */ { type: 'Unrelated', data: null },
    ]);
    return store;
  }

  test('each event is folded only into the projections whose query matches it', async () => {
    const store = await courseStore();
    const { state } = await buildDecisionModel(store, { course: courseLog('c1'), student: studentLog('s1') });
    assert.deepEqual(state, { course: [1n, 4n, 5n], student: [3n, 5n] });
  });

  test('one read of the merged query; the condition is that query after the head of the read', async () => {
    const store = await courseStore();
    const { source, reads } = recording(store);
    const projections = { course: courseLog('c1'), student: studentLog('s1') };
    const { appendCondition } = await buildDecisionModel(source, projections);
    const merged = mergeQueries([projections.course.query, projections.student.query]);
    assert.equal(reads.length, 1);
    assert.deepEqual(reads[0]!.query.toJSON(), merged.toJSON());
    assert.equal(reads[0]!.after, 0n);
    assert.deepEqual(appendCondition.failIfEventsMatch.toJSON(), merged.toJSON());
    assert.equal(appendCondition.after, 6n, 'the head, not the last matching position');
    assert.deepEqual(Object.keys(appendCondition).sort(), ['after', 'failIfEventsMatch']);
  });

  test('the condition guards every projection: an event either of them would see makes the append fail; others do not', async () => {
    const store = await courseStore();
    for (const [concurrent, conflicts] of [
      [subscribed('s9', 'c1'), true],
      [subscribed('s1', 'c3'), true],
      [courseDefined('c3'), false],
    ] as const) {
      const { appendCondition } = await buildDecisionModel(store, { course: courseLog('c1'), student: studentLog('s1') });
      await store.append(concurrent);
      const attempt = store.append(subscribed('s1', 'c1'), appendCondition);
      if (conflicts) await assert.rejects(attempt, AppendConditionFailedError);
      else await attempt;
    }
  });

  test('time bounds of one projection limit only what it folds', async () => {
    const store = new InMemoryEventStore();
    await store.append([
      { ...counted('t'), occurredAt: new Date('2024-01-01T00:00:00Z') },
      { ...counted('t'), occurredAt: new Date('2024-02-01T00:00:00Z') },
      { ...counted('t'), occurredAt: new Date('2024-03-01T00:00:00Z') },
    ]);
    const recent = defineProjection<number>({
      initialState: 0,
      handlers: { Counted: (state) => state + 1 },
      query: Query.of(QueryItem.types('Counted').tags(counterTag('t'))).occurredFrom(new Date('2024-02-01T00:00:00Z')),
    });
    const { state, appendCondition } = await buildDecisionModel(store, { all: counter('t'), recent });
    assert.deepEqual(state, { all: { count: 3 }, recent: 2 });
    assert.equal(appendCondition.failIfEventsMatch.toJSON().occurredFrom, undefined, 'the merged query reads (and guards) the superset');
  });

  test('an onlyLastEvent projection reads and folds only the last event its query matches; the condition still covers its query', async () => {
    const store = new InMemoryEventStore();
    const invoice = (number: number): EventInput => ({ type: 'InvoiceCreated', tags: ['invoice'], data: { number } });
    await store.append([invoice(1), counted('a'), invoice(2), invoice(3), counted('a'), { type: 'Unrelated', data: null }]);
    const folded: bigint[] = [];
    const lastInvoice = defineProjection<number>({
      initialState: 0,
      handlers: {
        InvoiceCreated: (_state, event) => {
          folded.push(event.position);
          return (event.data as { number: number }).number;
        },
      },
      onlyLastEvent: true,
    });
    assert.equal(lastInvoice.onlyLastEvent, true);
    assert.equal(counter('a').onlyLastEvent, false, 'default false');
    const { source, reads } = recording(store);
    const { state, appendCondition } = await buildDecisionModel(source, { lastInvoice, count: counter('a') });
    assert.deepEqual(state, { lastInvoice: 3, count: { count: 2 } });
    assert.deepEqual(folded, [4n]);
    const lastRead = reads.find((read) => read.backwards);
    assert.ok(lastRead, 'a backwards read');
    assert.equal(lastRead.limit, 1);
    assert.deepEqual(lastRead.query.toJSON(), lastInvoice.query.toJSON());
    assert.deepEqual(appendCondition.failIfEventsMatch.toJSON(), mergeQueries([lastInvoice.query, counter('a').query]).toJSON());
    assert.equal(appendCondition.after, 6n);
    await store.append(invoice(4));
    await assert.rejects(store.append(invoice(4), appendCondition), AppendConditionFailedError, 'a new invoice conflicts');
  });

  test('initialState is copied for every build: a handler that mutates its state does not leak into the next build', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('m'), counted('m')]);
    const initialState = { seen: [] as number[] };
    const mutating = defineProjection<{ seen: number[] }>({
      initialState,
      handlers: {
        Counted: (state, event) => {
          state.seen.push(Number(event.position));
          return state;
        },
      },
      tags: [counterTag('m')],
    });
    assert.deepEqual((await buildDecisionModel(store, { mutating })).state.mutating, { seen: [1, 2] });
    assert.deepEqual((await buildDecisionModel(store, { mutating })).state.mutating, { seen: [1, 2] });
    assert.deepEqual(initialState, { seen: [] });
    assert.deepEqual(mutating.initialState, { seen: [] });
  });

  test('a projection named __proto__ is an ordinary name', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('p'), counted('p')]);
    const projections: Record<string, Projection<{ count: number }>> = JSON.parse('{"__proto__": null}') as Record<string, Projection<{ count: number }>>;
    projections['__proto__'] = counter('p');
    projections.other = counter('other');
    const { state } = await buildDecisionModel(store, projections);
    assert.ok(Object.hasOwn(state, '__proto__'));
    assert.deepEqual(Object.getOwnPropertyDescriptor(state, '__proto__')?.value, { count: 2 });
    assert.deepEqual(state.other, { count: 0 });
  });

  test('no events: every projection has its initial state, the condition has after 0', async () => {
    const store = new InMemoryEventStore();
    const { state, appendCondition } = await buildDecisionModel(store, { course: courseLog('c1'), count: counter('x') });
    assert.deepEqual(state, { course: [], count: { count: 0 } });
    assert.equal(appendCondition.after, 0n);
  });

  test('bad projections: InvalidInputError', async () => {
    const store = new InMemoryEventStore();
    await assert.rejects(buildDecisionModel(store, loose<Record<string, Projection<unknown>>>(null)), invalidAt('projections'));
    await assert.rejects(buildDecisionModel(store, {}), invalidAt('projections'));
    await assert.rejects(buildDecisionModel(store, loose<Record<string, Projection<unknown>>>({ ok: counter('x'), bad: { query: 'all', apply: () => 0 } })), invalidAt('projections.bad'));
  });

  test('an aborted signal: OperationAbortedError', async () => {
    const store = new InMemoryEventStore();
    await assert.rejects(buildDecisionModel(store, { count: counter('x') }, { signal: AbortSignal.abort() }), OperationAbortedError);
  });
});

describe('executeCommand', SUITE, () => {
  test('a decision to do nothing (undefined or []) appends nothing; position is undefined', async () => {
    for (const nothing of [undefined, []]) {
      const store = new InMemoryEventStore();
      await store.append(counted('n'));
      const { source, appends } = recording(store);
      const idle = defineCommandHandler({ projections: () => ({ counter: counter('n') }), decide: () => nothing });
      const result = await executeCommand(source, idle, {});
      assert.deepEqual(result, { events: [], position: undefined, state: { counter: { count: 1 } }, attempts: 1 });
      assert.equal(appends(), 0);
      assert.equal(await store.head(), 1n);
    }
  });

  test('a single event or a list: appended with the model\'s condition; the result has the last position', async () => {
    const store = new InMemoryEventStore();
    await store.append(counted('other'));
    assert.equal((await executeCommand(store, increment, { name: 'a' })).position, 2n);
    const twice = defineCommandHandler({ projections: () => ({ counter: counter('a') }), decide: (state) => [counted('a', state.counter.count + 1), counted('a', state.counter.count + 2)] });
    const result = await executeCommand(store, twice, {});
    assert.equal(result.position, 4n);
    assert.equal(result.events.length, 2);
  });

  test('a conflict between its read and its append: it reads and decides again, and succeeds', async () => {
    const store = new InMemoryEventStore();
    const { source, afters } = recording(store, async (readNumber) => {
      if (readNumber === 1) await store.append(counted('r', 'concurrent'));
    });
    const decided: number[] = [];
    const handler = defineCommandHandler({
      projections: () => ({ counter: counter('r') }),
      decide: (state) => {
        decided.push(state.counter.count);
        return counted('r', state.counter.count + 1);
      },
    });
    const result = await executeCommand(source, handler, {}, { initialDelayMs: 1 });
    assert.equal(result.attempts, 2);
    assert.deepEqual(decided, [0, 1]);
    assert.deepEqual(result.state, { counter: { count: 1 } });
    assert.equal(result.position, 2n);
    assert.deepEqual(afters(), [0n, 0n]);
    assert.deepEqual((await store.read(Query.all())).events.map((event) => event.data), [{ n: 'concurrent' }, { n: 1 + 1 }]);
  });

  test('it keeps losing: RetriesExhaustedError after maxAttempts, with attempts and the last conflict as cause; nothing of it written', async () => {
    const store = new InMemoryEventStore();
    const { source, reads } = recording(store, async () => {
      await store.append(counted('hot', 'concurrent'));
    });
    await assert.rejects(executeCommand(source, increment, { name: 'hot' }, { maxAttempts: 3, initialDelayMs: 1 }), (error: unknown) => {
      assert.ok(error instanceof RetriesExhaustedError, `expected RetriesExhaustedError, got ${String(error)}`);
      assert.equal(error.code, 'RETRIES_EXHAUSTED');
      assert.equal(error.attempts, 3);
      assert.ok(error.cause instanceof AppendConditionFailedError, 'cause is the last AppendConditionFailedError');
      assert.equal(error.cause.conflictingPosition, 3n);
      return true;
    });
    assert.equal(reads.length, 3);
    assert.deepEqual((await store.read(Query.all())).events.map((event) => event.data), [{ n: 'concurrent' }, { n: 'concurrent' }, { n: 'concurrent' }]);
  });

  test('onConflict is told of each conflict (the error and the attempt), including the last one', async () => {
    const store = new InMemoryEventStore();
    const { source } = recording(store, async () => {
      await store.append(counted('hot'));
    });
    const conflicts: Array<[bigint | undefined, number]> = [];
    await assert.rejects(
      executeCommand(source, increment, { name: 'hot' }, { maxAttempts: 3, initialDelayMs: 1, onConflict: (error, attempt) => conflicts.push([error.conflictingPosition, attempt]) }),
      RetriesExhaustedError,
    );
    assert.deepEqual(conflicts, [[1n, 1], [2n, 2], [3n, 3]]);
  });

  test('maxAttempts 1: no retry', async () => {
    const store = new InMemoryEventStore();
    const { source, reads } = recording(store, async () => {
      await store.append(counted('hot'));
    });
    await assert.rejects(executeCommand(source, increment, { name: 'hot' }, { maxAttempts: 1 }), (error: unknown) => error instanceof RetriesExhaustedError && error.attempts === 1);
    assert.equal(reads.length, 1);
  });

  test('the default is 10 attempts, and maxDelayMs bounds the wait between them', async () => {
    const store = new InMemoryEventStore();
    const { source, reads } = recording(store, async () => {
      await store.append(counted('hot'));
    });
    const started = Date.now();
    // Were maxDelayMs ignored, waits of up to a minute would follow: the abort ends them (and the test fails).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 2000);
    try {
      await assert.rejects(executeCommand(source, increment, { name: 'hot' }, { initialDelayMs: 60_000, maxDelayMs: 2, signal: controller.signal }), (error: unknown) => {
        assert.ok(error instanceof RetriesExhaustedError, `expected RetriesExhaustedError, got ${String(error)}`);
        assert.equal(error.attempts, 10);
        return true;
      });
    } finally {
      clearTimeout(timer);
    }
    assert.equal(reads.length, 10);
    assert.ok(Date.now() - started < 1000, 'waits are at most maxDelayMs');
  });

  test('an error thrown by decide reaches the caller as the same object, without a retry', async () => {
    const store = new InMemoryEventStore();
    const domainError = new Error('course full');
    let calls = 0;
    const failing = defineCommandHandler({
      projections: () => ({ counter: counter('d') }),
      decide: () => {
        calls += 1;
        throw domainError;
      },
    });
    await assert.rejects(executeCommand(store, failing, {}), (error: unknown) => error === domainError);
    assert.equal(calls, 1);
    const notAnError = { reason: 'thrown as a plain object' };
    const throwsObject = defineCommandHandler({
      projections: () => ({ counter: counter('d') }),
      decide: () => {
        throw notAnError;
      },
    });
    await assert.rejects(executeCommand(store, throwsObject, {}), (error: unknown) => error === notAnError);
    assert.equal(await store.head(), 0n);
  });

  test('append errors other than a failed condition are not retried', async () => {
    const store = new InMemoryEventStore();
    const id = randomUUID();
    await store.append({ id, type: 'Counted', tags: [counterTag('other')], data: { n: 0 } });
    const { source, reads } = recording(store);
    const clashing = defineCommandHandler({ projections: () => ({ counter: counter('dup') }), decide: () => ({ ...counted('dup', 1), id }) });
    await assert.rejects(executeCommand(source, clashing, {}), DuplicateEventIdError);
    assert.equal(reads.length, 1);
    const invalid = defineCommandHandler({ projections: () => ({ counter: counter('dup') }), decide: () => loose<EventInput>({ type: '', data: 1 }) });
    await assert.rejects(executeCommand(source, invalid, {}), invalidAt('events[0].type'));
  });

  test('an abort while it waits to retry: OperationAbortedError at once, with the reason as cause', async () => {
    const store = new InMemoryEventStore();
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const { source, reads } = recording(store, async () => {
      await store.append(counted('hot'));
    });
    const running = executeCommand(source, increment, { name: 'hot' }, { signal: controller.signal, initialDelayMs: 60_000, maxDelayMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    const started = Date.now();
    controller.abort(reason);
    await assert.rejects(running, (error: unknown) => {
      assert.ok(error instanceof OperationAbortedError, `expected OperationAbortedError, got ${String(error)}`);
      assert.equal(error.cause, reason);
      return true;
    });
    assert.ok(Date.now() - started < 500);
    assert.equal(reads.length, 1, 'it was waiting after the first conflict');
  });

  test('an already-aborted signal: OperationAbortedError before reading', async () => {
    const store = new InMemoryEventStore();
    const { source, reads } = recording(store);
    await assert.rejects(executeCommand(source, increment, { name: 'x' }, { signal: AbortSignal.abort() }), OperationAbortedError);
    assert.equal(reads.length, 0);
  });

  test('bad handler or options: InvalidInputError', async () => {
    const store = new InMemoryEventStore();
    const cases: Array<[unknown, unknown, string]> = [
      [null, {}, 'handler'],
      [{ projections: () => ({}) }, {}, 'handler'],
      [{ decide: () => undefined }, {}, 'handler'],
      [increment, { maxAttempts: 0 }, 'maxAttempts'],
      [increment, { maxAttempts: 1.5 }, 'maxAttempts'],
      [increment, { maxAttempts: '3' }, 'maxAttempts'],
      [increment, { initialDelayMs: -1 }, 'initialDelayMs'],
      [increment, { initialDelayMs: NaN }, 'initialDelayMs'],
      [increment, { maxDelayMs: Infinity }, 'maxDelayMs'],
      [increment, { maxDelayMs: '5' }, 'maxDelayMs'],
      [increment, { onConflict: 'log' }, 'onConflict'],
    ];
    for (const [handler, options, path] of cases) {
      await assert.rejects(executeCommand(store, loose<typeof increment>(handler), { name: 'x' }, loose<object>(options)), invalidAt(path));
    }
    assert.equal(await store.head(), 0n);
  });
});

describe('snapshots in decision models', SUITE, () => {
  type Tally = { count: number };
  const tally = (name: string, options: Partial<SnapshotOptions<Tally>> = {}): Projection<Tally> =>
    defineProjection<Tally>({
      initialState: { count: 0 },
      handlers: { Counted: (state) => ({ count: state.count + 1 }) },
      tags: [counterTag(name)],
      snapshot: { name: 'tally', version: 1, every: 3, ...options },
    });
  const keyOf = (projection: Projection<any>): SnapshotKey => ({ name: projection.snapshot!.name, version: projection.snapshot!.version, queryHash: queryHash(projection.query) });

  // Bugs caught: a failed save failing the decision (a snapshot is an optimisation), and a save
  // started before a later projection threw, left to reject unhandled (which crashes a process).
  test('a failing snapshot save neither fails the decision nor escapes as an unhandled rejection', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failingSaves = {
        read: store.read.bind(store),
        snapshots: { load: store.snapshots.load.bind(store.snapshots), save: () => Promise.reject(new Error('snapshot table gone')) },
      };
      const { state } = await buildDecisionModel(failingSaves, { tally: tally('a') });
      assert.equal(state.tally.count, 3);
      const broken = defineProjection<number>({ initialState: 0, handlers: { Counted: () => { throw new Error('bug in projection'); } }, tags: [counterTag('a')] });
      await assert.rejects(buildDecisionModel(failingSaves, { tally: tally('a'), broken }), /bug in projection/);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('saved once `every` events were folded; the next build reads only the events after it', async () => {
    const store = new InMemoryEventStore();
    const { source, afters } = recording(store);
    const projection = tally('a');
    const build = async (): Promise<number> => {
      const { state, appendCondition } = await buildDecisionModel(source, { tally: projection });
      assert.equal(appendCondition.after, await store.head(), 'the condition is at the head, whatever was read');
      return state.tally.count;
    };
    await store.append([counted('a'), counted('a')]);
    assert.equal(await build(), 2);
    assert.equal(await store.snapshots.load(keyOf(projection)), undefined, 'two events folded: no snapshot yet');
    await store.append(counted('a'));
    assert.equal(await build(), 3);
    assert.deepEqual(await store.snapshots.load(keyOf(projection)), { position: 3n, state: { count: 3 } });
    await store.append([counted('a'), counted('other'), counted('a')]);
    assert.equal(await build(), 5);
    assert.deepEqual(await store.snapshots.load(keyOf(projection)), { position: 3n, state: { count: 3 } }, 'two folded since: not saved again');
    await store.append(counted('a'));
    assert.equal(await build(), 6);
    assert.deepEqual(await store.snapshots.load(keyOf(projection)), { position: 7n, state: { count: 6 } });
    assert.equal(await build(), 6);
    assert.deepEqual(afters(), [0n, 0n, 3n, 3n, 7n]);
  });

  test('every defaults to 100', async () => {
    const store = new InMemoryEventStore();
    const projection = defineProjection<Tally>({ initialState: { count: 0 }, handlers: { Counted: (state) => ({ count: state.count + 1 }) }, tags: [counterTag('d')], snapshot: { name: 'tally-default', version: 1 } });
    await store.append(Array.from({ length: 99 }, () => counted('d')));
    await buildDecisionModel(store, { projection });
    assert.equal(await store.snapshots.load(keyOf(projection)), undefined);
    await store.append(counted('d'));
    await buildDecisionModel(store, { projection });
    assert.deepEqual(await store.snapshots.load(keyOf(projection)), { position: 100n, state: { count: 100 } });
  });

  test('next to a projection without snapshot: each reads from its own start (one read per starting point), the condition is at the lower head', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    await buildDecisionModel(store, { tally: tally('a') });
    assert.deepEqual(await store.snapshots.load(keyOf(tally('a'))), { position: 3n, state: { count: 3 } });
    await store.append(counted('a'));
    const { source, reads } = recording(store);
    const { state, appendCondition } = await buildDecisionModel(source, { tally: tally('a'), plain: counter('a') });
    assert.deepEqual(state, { tally: { count: 4 }, plain: { count: 4 } }, 'events up to the snapshot are not folded twice, later ones not missed');
    assert.deepEqual(sortPositions(reads.map((read) => read.after)), [0n, 3n]);
    assert.deepEqual(appendCondition.failIfEventsMatch.toJSON(), mergeQueries([tally('a').query, counter('a').query]).toJSON());
    assert.equal(appendCondition.after, 4n);
  });

  test('when an event lands between the reads, the condition (at the lowest head) makes the append fail', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    await buildDecisionModel(store, { tally: tally('a') });
    // The second read starts only after another writer appended an event both projections match:
    // one of them has seen it, the other not.
    let firstReadDone!: () => void;
    const firstRead = new Promise<void>((resolve) => (firstReadDone = resolve));
    const { source, reads } = recording(store, {
      afterRead: async (readNumber) => {
        if (readNumber === 1) firstReadDone();
      },
      beforeRead: async (readNumber) => {
        if (readNumber !== 2) return;
        await firstRead;
        await store.append(counted('a', 'in between'));
      },
    });
    const { state, appendCondition } = await buildDecisionModel(source, { tally: tally('a'), plain: counter('a') });
    assert.equal(reads.length, 2);
    assert.notDeepEqual(state.tally, state.plain, 'the reads saw different heads');
    assert.equal(appendCondition.after, 3n, 'the lower of the two heads');
    await assert.rejects(store.append(counted('a', 'decided'), appendCondition), AppendConditionFailedError);
  });

  test('a version bump ignores the older snapshot', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    // A v1 snapshot with a state no fold would give shows whether it is used.
    await store.snapshots.save(keyOf(tally('a')), { position: 3n, state: { count: 1000 } });
    const { source, afters } = recording(store);
    assert.equal((await buildDecisionModel(source, { tally: tally('a') })).state.tally.count, 1000, 'v1 uses its snapshot');
    assert.equal((await buildDecisionModel(source, { tally: tally('a', { version: 2 }) })).state.tally.count, 3, 'v2 folds from the start');
    assert.deepEqual(afters(), [3n, 0n]);
    assert.deepEqual(await store.snapshots.load(keyOf(tally('a', { version: 2 }))), { position: 3n, state: { count: 3 } });
    assert.deepEqual(await store.snapshots.load(keyOf(tally('a'))), { position: 3n, state: { count: 1000 } }, 'v1 is left alone');
  });

  test('different command arguments (a different query) have separate snapshots', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a'), counted('b')]);
    await buildDecisionModel(store, { tally: tally('a') });
    assert.notEqual(keyOf(tally('a')).queryHash, keyOf(tally('b')).queryHash);
    const { source, afters } = recording(store);
    assert.equal((await buildDecisionModel(source, { tally: tally('b') })).state.tally.count, 1);
    assert.deepEqual(afters(), [0n]);
    assert.equal(await store.snapshots.load(keyOf(tally('b'))), undefined);
    assert.deepEqual(await store.snapshots.load(keyOf(tally('a'))), { position: 4n, state: { count: 3 } });
  });

  test('a snapshot beyond the head is ignored (read again from the start) and then replaced', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    await store.snapshots.save(keyOf(tally('a')), { position: 100n, state: { count: 1000 } });
    const { source, afters } = recording(store);
    const { state, appendCondition } = await buildDecisionModel(source, { tally: tally('a') });
    assert.equal(state.tally.count, 3);
    assert.equal(appendCondition.after, 3n);
    assert.deepEqual(afters(), [100n, 0n]);
    assert.deepEqual(await store.snapshots.load(keyOf(tally('a'))), { position: 3n, state: { count: 3 } });
  });

  test('a state JSON cannot hold, without serialize: InvalidInputError, nothing saved', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a')]);
    const big = defineProjection<{ total: bigint }>({
      initialState: { total: 0n },
      handlers: { Counted: (state) => ({ total: state.total + 1n }) },
      tags: [counterTag('a')],
      snapshot: { name: 'big', version: 1, every: 1 },
    });
    await assert.rejects(buildDecisionModel(store, { big }), invalidAt('projections.big.snapshot.total'));
    assert.equal(await store.snapshots.load(keyOf(big)), undefined);
  });

  test('a Set or Map state, without serialize: InvalidInputError rather than a snapshot of {}', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a')]);
    const ids = defineProjection<Set<string>>({
      initialState: new Set(),
      handlers: { Counted: (state, event) => new Set([...state, event.id]) },
      tags: [counterTag('a')],
      snapshot: { name: 'ids', version: 1, every: 1 },
    });
    await assert.rejects(buildDecisionModel(store, { ids }), invalidAt('projections.ids.snapshot'));
    assert.equal(await store.snapshots.load(keyOf(ids)), undefined, 'a lossy snapshot must not be saved');
  });

  test('serialize/deserialize round-trip a state JSON cannot hold (a Set)', async () => {
    const store = new InMemoryEventStore();
    let deserialized = 0;
    const ids = defineProjection<Set<string>>({
      initialState: new Set(),
      handlers: { Counted: (state, event) => new Set([...state, String((event.data as { n: unknown }).n)]) },
      tags: [counterTag('a')],
      snapshot: {
        name: 'ids',
        version: 1,
        every: 2,
        serialize: (state) => [...state].sort(),
        deserialize: (json) => {
          deserialized += 1;
          return new Set(json as string[]);
        },
      },
    });
    await store.append([counted('a', 1), counted('a', 2)]);
    await buildDecisionModel(store, { ids });
    assert.deepEqual(await store.snapshots.load(keyOf(ids)), { position: 2n, state: ['1', '2'] });
    await store.append(counted('a', 3));
    const { source, afters } = recording(store);
    const { state } = await buildDecisionModel(source, { ids });
    assert.equal(deserialized, 1);
    assert.deepEqual(afters(), [2n]);
    assert.ok(state.ids instanceof Set);
    assert.deepEqual([...state.ids].sort(), ['1', '2', '3']);
  });

  test('snapshots: false neither loads nor saves', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    await store.snapshots.save(keyOf(tally('a')), { position: 3n, state: { count: 1000 } });
    const { source, afters } = recording(store);
    assert.equal((await buildDecisionModel(source, { tally: tally('a') }, { snapshots: false })).state.tally.count, 3);
    assert.deepEqual(afters(), [0n]);
    assert.deepEqual(await store.snapshots.load(keyOf(tally('a'))), { position: 3n, state: { count: 1000 } });
  });

  test('a store without a snapshot store: projections with snapshot options still work', async () => {
    const store = new InMemoryEventStore();
    await store.append([counted('a'), counted('a'), counted('a')]);
    const withoutSnapshots: CommandStore = { read: (query, options) => store.read(query, options), append: (events, condition, options) => store.append(events, condition, options) };
    assert.equal((await executeCommand(withoutSnapshots, defineCommandHandler({ projections: () => ({ tally: tally('a') }), decide: () => undefined }), {})).state.tally.count, 3);
    assert.deepEqual(positionsOf((await store.read(Query.all())).events), [1n, 2n, 3n]);
  });
});
