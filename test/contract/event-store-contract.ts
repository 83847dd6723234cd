// The contract both stores keep: the PostgreSQL EventStore and the InMemoryEventStore run these
// same tests with the same expectations (test/integration/contract-postgres.test.ts,
// test/unit/contract-in-memory.test.ts). A unit test written against the in-memory store is only
// worth something if what it relies on holds on PostgreSQL too; this file is where that is proven.
// Every test gets a fresh, empty store from the factory, so positions start at 1.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  AppendConditionFailedError,
  DuplicateEventIdError,
  EventStoreClosedError,
  EventStoreError,
  InvalidInputError,
  OperationAbortedError,
  Query,
  QueryItem,
  RetriesExhaustedError,
  defineCommandHandler,
  defineProjection,
  isAppendConditionFailedError,
  type AppendCondition,
  type EventInput,
  type EventStore,
  type ReadOptions,
  type SequencedEvent,
  type SnapshotKey,
  type StreamOptions,
} from '../../src/index.ts';
import { queryHash } from '../../src/decisions/snapshots.ts';
import type { InMemoryEventStore } from '../../src/testing/index.ts';

// ---------------------------------------------------------------------------------------------
// The interface under contract

type ContractMember = 'append' | 'appendCommands' | 'read' | 'stream' | 'subscribe' | 'head' | 'execute' | 'snapshots' | 'close';

/** What both stores offer, with the PostgreSQL store's signatures. */
export type ContractStore = Pick<EventStore, ContractMember>;

// Compile-time half of the contract: each store's members are assignable to the other's, so code
// written against one compiles against the other (checked by `tsc --noEmit`).
type MutuallyAssignable<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameInterface: MutuallyAssignable<Pick<EventStore, ContractMember>, Pick<InMemoryEventStore, ContractMember>> = true;
void sameInterface;

export type ContractStoreFactory = () => Promise<{ store: ContractStore; dispose(): Promise<void> }>;

// ---------------------------------------------------------------------------------------------
// Helpers

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const T0 = Date.parse('2024-03-01T10:00:00.000Z');
/** The earliest and latest occurredAt PostgreSQL's timestamptz takes as the stores send it (ISO 8601, UTC). */
const EARLIEST = new Date('0001-01-01T00:00:00.000Z');
const LATEST = new Date('9999-12-31T23:59:59.999Z');
/** T0 plus `minutes` (and `ms` milliseconds). */
const at = (minutes: number, ms = 0): Date => new Date(T0 + minutes * 60_000 + ms);

/** Lets a test pass what the types forbid, as untyped JavaScript callers can. */
function loose<T>(value: unknown): T {
  return value as T;
}

function positions(events: readonly SequencedEvent[]): bigint[] {
  return events.map((event) => event.position);
}

function range(from: number, to: number): bigint[] {
  const result: bigint[] = [];
  for (let position = from; position <= to; position++) result.push(BigInt(position));
  return result;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function event(type: string, tags: string[] = [], data: unknown = {}): EventInput {
  return { type, tags, data };
}

/** The next item of `iterator`, or a rejection naming what did not arrive within `ms`. */
async function nextWithin<T>(iterator: AsyncIterator<T>, ms: number, what: string): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([iterator.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function nextEvent(iterator: AsyncIterator<SequencedEvent>, ms: number, what: string): Promise<SequencedEvent> {
  const result = await nextWithin(iterator, ms, what);
  assert.equal(result.done, false, `${what}: the subscription ended`);
  return result.value as SequencedEvent;
}

function aborted(reason?: unknown) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof OperationAbortedError, `expected OperationAbortedError, got ${String(error)}`);
    assert.equal(error.code, 'ABORTED');
    assert.equal(error.name, 'AbortError');
    if (reason !== undefined) assert.equal(error.cause, reason);
    return true;
  };
}

function conditionFailed(condition: AppendCondition, conflictingPosition: bigint) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof AppendConditionFailedError, `expected AppendConditionFailedError, got ${String(error)}`);
    assert.ok(isAppendConditionFailedError(error));
    assert.equal(error.code, 'APPEND_CONDITION_FAILED');
    assert.equal(error.condition, condition, 'the error carries the condition that failed');
    assert.equal(error.conflictingPosition, conflictingPosition, 'conflictingPosition');
    return true;
  };
}

/** Everything in the store, to compare before and after an operation that must not write. */
async function everything(store: ContractStore): Promise<{ head: bigint; events: unknown[] }> {
  const { events, head } = await store.read(Query.all());
  return { head, events: events.map(({ position, id, type, tags, data, metadata }) => ({ position, id, type, tags, data, metadata })) };
}

// ---------------------------------------------------------------------------------------------
// A small library data set for the query tests. Positions are 1..13 in this order; occurredAt is
// not in position order, and event 5 lies 1 ms after event 4.

const ADDED = 'BookCopyAddedToCirculation';
const REGISTERED = 'ReaderRegistered';
const LENT = 'BookCopyLentToReader';
const RETURNED = 'BookCopyReturnedByReader';

export const LIBRARY: EventInput[] = [
  /* 1 */ { type: ADDED, tags: ['book:b1'], occurredAt: at(0), data: { BookID: 'b1', Title: 'Dune', Authors: ['Herbert'], nested: { genre: 'sf', shelf: { room: 1, row: 'A' } } } },
  /* 2 */ { type: ADDED, tags: ['book:b2'], occurredAt: at(5), data: { BookID: 'b2', Title: 'Emma', Authors: ['Austen', 'Bronte'], nested: { genre: 'novel', shelf: { room: 2 } }, note: null } },
  /* 3 */ { type: REGISTERED, tags: ['reader:r1'], occurredAt: at(3), data: { ReaderID: 'r1', Name: 'Ann' } },
  /* 4 */ { type: LENT, tags: ['book:b1', 'reader:r1'], occurredAt: at(10), data: { BookID: 'b1', ReaderID: 'r1' } },
  /* 5 */ { type: LENT, tags: ['reader:r1', 'book:b2'], occurredAt: at(10, 1), data: { BookID: 'b2', ReaderID: 'r1' } },
  /* 6 */ { type: RETURNED, tags: ['book:b1', 'reader:r1'], occurredAt: at(20), data: { BookID: 'b1', ReaderID: 'r1' } },
  /* 7 */ { type: LENT, tags: ['book:b1', 'reader:r2'], occurredAt: at(30), data: { BookID: 'b1', ReaderID: 'r2' } },
  /* 8 */ { type: 'Listed', tags: [], occurredAt: at(25), data: ['b1', 'b2', 3] },
  /* 9 */ { type: 'Nothing', tags: ['odd'], occurredAt: at(40), data: null },
  /* 10 */ { type: 'Scalar', tags: ['odd'], occurredAt: at(40), data: 'b1' },
  /* 11 */ { type: 'Scalar', tags: ['odd'], occurredAt: at(40), data: 3 },
  /* 12 */ { type: 'Nested', tags: ['odd'], occurredAt: at(41), data: { a: [[1, 2], [3]], b: [{ c: 1, d: 2 }, { c: 3 }] } },
  /* 13 */ { type: 'Tagged', tags: ['series:"a,b"', '{braces}', 'NULL', 'back\\slash', 'ünï 📚'], occurredAt: at(42), data: { odd: true } },
];

const OBJECT_DATA = [1n, 2n, 3n, 4n, 5n, 6n, 7n, 12n, 13n];

/** [description, query, expected positions]. */
export const QUERY_CASES: Array<[string, Query, bigint[]]> = [
  ['all events', Query.all(), range(1, 13)],
  ['one type', Query.of(QueryItem.types(LENT)), [4n, 5n, 7n]],
  ['several types (any of them)', Query.of(QueryItem.types(LENT, RETURNED)), [4n, 5n, 6n, 7n]],
  ['one tag', Query.of(QueryItem.tags('book:b1')), [1n, 4n, 6n, 7n]],
  ['several tags (all of them)', Query.of(QueryItem.tags('book:b1', 'reader:r1')), [4n, 6n]],
  ['types and tags', Query.of(QueryItem.types(LENT).tags('reader:r1')), [4n, 5n]],
  ['several items (OR)', Query.of(QueryItem.types(REGISTERED).tags('reader:r1'), QueryItem.types(LENT).tags('book:b2')), [3n, 5n]],
  ['overlapping items: each event once', Query.of(QueryItem.tags('book:b1'), QueryItem.types(LENT)), [1n, 4n, 5n, 6n, 7n]],
  ['a tag no event carries', Query.of(QueryItem.tags('book:none')), []],
  ['a type no event has', Query.of(QueryItem.types('Unknown')), []],
  ['tags with quotes, commas, braces, backslash, NULL, unicode', Query.of(QueryItem.tags('series:"a,b"', '{braces}', 'NULL', 'back\\slash', 'ünï 📚')), [13n]],
  ['a tag that is a prefix of a stored one', Query.of(QueryItem.tags('book:b')), []],
  ['payload: anyPredicateOf one value', Query.of(QueryItem.anyPredicateOf({ BookID: 'b1' })), [1n, 4n, 6n, 7n]],
  ['payload: anyPredicateOf several values, with a type', Query.of(QueryItem.types(LENT).anyPredicateOf({ ReaderID: 'r2' }, { BookID: 'b2' })), [5n, 7n]],
  ['payload: allPredicatesOf', Query.of(QueryItem.allPredicatesOf({ BookID: 'b1' }, { ReaderID: 'r1' })), [4n, 6n]],
  ['payload: a nested object, partially', Query.of(QueryItem.anyPredicateOf({ nested: { shelf: { room: 1 } } })), [1n]],
  ['payload: a nested value that differs', Query.of(QueryItem.anyPredicateOf({ nested: { shelf: { room: 3 } } })), []],
  ['payload: arrays contain arrays as sets (order, duplicates ignored)', Query.of(QueryItem.anyPredicateOf({ Authors: ['Bronte', 'Austen', 'Austen'] })), [2n]],
  ['payload: an empty array is contained in every array', Query.of(QueryItem.anyPredicateOf({ Authors: [] })), [1n, 2n]],
  ['payload: a nested array does not contain a bare primitive', Query.of(QueryItem.anyPredicateOf({ Authors: 'Herbert' })), []],
  ['payload: a top-level array contains a primitive element (and a scalar equals itself)', Query.of(QueryItem.anyPredicateOf('b1')), [8n, 10n]],
  ['payload: a number, top-level', Query.of(QueryItem.anyPredicateOf(3)), [8n, 11n]],
  ['payload: null property', Query.of(QueryItem.anyPredicateOf({ note: null })), [2n]],
  ['payload: null itself', Query.of(QueryItem.anyPredicateOf(null)), [9n]],
  ['payload: {} is contained in every object, not in arrays or scalars', Query.of(QueryItem.anyPredicateOf({})), OBJECT_DATA],
  ['payload: arrays of arrays', Query.of(QueryItem.anyPredicateOf({ a: [[3]] })), [12n]],
  ['payload: an array nested in arrays does not contain a bare element', Query.of(QueryItem.anyPredicateOf({ a: [1] })), []],
  ['payload: objects in arrays, partially', Query.of(QueryItem.anyPredicateOf({ b: [{ c: 3 }, { d: 2 }] })), [12n]],
  ['payload: one object in an array must hold all its keys', Query.of(QueryItem.anyPredicateOf({ b: [{ c: 1, d: 3 }] })), []],
  ['payload: a string is not a number', Query.of(QueryItem.anyPredicateOf({ BookID: 1 })), []],
  ['occurredFrom (inclusive)', Query.all().occurredFrom(at(10)), [4n, 5n, 6n, 7n, 8n, 9n, 10n, 11n, 12n, 13n]],
  ['occurredUntil (inclusive, millisecond precision)', Query.all().occurredUntil(at(10)), [1n, 2n, 3n, 4n]],
  ['occurredFrom and occurredUntil', Query.all().occurredFrom(at(5)).occurredUntil(at(10, 1)), [2n, 4n, 5n]],
  ['occurredFrom one millisecond later', Query.all().occurredFrom(at(10, 1)).occurredUntil(at(20)), [5n, 6n]],
  ['time bounds with items', Query.of(QueryItem.types(LENT), QueryItem.tags('reader:r1')).occurredFrom(at(10, 1)), [5n, 6n, 7n]],
  ['time bounds that exclude everything', Query.of(QueryItem.types(LENT)).occurredUntil(at(-1)), []],
];

// ---------------------------------------------------------------------------------------------
// A small command handler

type ReaderEvents = { ReaderRegistered: { readerId: string } };

class ReaderAlreadyRegisteredError extends Error {
  constructor(readonly readerId: string) {
    super(`reader ${readerId} is registered already`);
    this.name = 'ReaderAlreadyRegisteredError';
  }
}

const readerRegistration = (readerId: string) =>
  defineProjection<{ registered: boolean }, ReaderEvents>({
    initialState: { registered: false },
    handlers: { ReaderRegistered: (state) => ({ ...state, registered: true }) },
    tags: [`reader:${readerId}`],
  });

const registerReader = defineCommandHandler({
  projections: (command: { readerId: string }) => ({ reader: readerRegistration(command.readerId) }),
  decide: (state, command): EventInput | undefined => {
    if (state.reader.registered) throw new ReaderAlreadyRegisteredError(command.readerId);
    return { type: 'ReaderRegistered', tags: [`reader:${command.readerId}`], data: { readerId: command.readerId } };
  },
});

const counter = (name: string) =>
  defineProjection<{ count: number }>({
    initialState: { count: 0 },
    handlers: { Counted: (state) => ({ count: state.count + 1 }) },
    tags: [`counter:${name}`],
  });

function counted(name: string, n: number | string): EventInput {
  return { type: 'Counted', tags: [`counter:${name}`], data: { n } };
}

// ---------------------------------------------------------------------------------------------

/**
 * Registers the contract's tests for one store implementation. `factory` gives a fresh, empty
 * store for each test; `dispose` closes it and frees what it holds (it may be closed already).
 */
export function defineEventStoreContract(name: string, factory: ContractStoreFactory): void {
  const withStore = (run: (store: ContractStore) => Promise<void>) => async (): Promise<void> => {
    const { store, dispose } = await factory();
    try {
      await run(store);
    } finally {
      await dispose();
    }
  };

  describe(`event store contract: ${name}`, { timeout: 30_000 }, () => {
    describe('append and positions', () => {
      test('a single event gets position 1 and the returned position; the next append continues at 2', withStore(async (store) => {
        assert.deepEqual(await store.append(event('A')), { position: 1n });
        assert.deepEqual(await store.append([event('B')]), { position: 2n });
        assert.deepEqual(positions((await store.read(Query.all())).events), [1n, 2n]);
        assert.equal(await store.head(), 2n);
      }));

      test('many events in one append: consecutive positions in the given order, the result is the last', withStore(async (store) => {
        assert.deepEqual(await store.append([event('A', [], { n: 1 }), event('A', [], { n: 2 }), event('A', [], { n: 3 })]), { position: 3n });
        assert.deepEqual(await store.append([event('A', [], { n: 4 }), event('A', [], { n: 5 })]), { position: 5n });
        const { events, head } = await store.read(Query.all());
        assert.equal(head, 5n);
        assert.deepEqual(positions(events), range(1, 5));
        assert.deepEqual(events.map((stored) => (stored.data as { n: number }).n), [1, 2, 3, 4, 5]);
      }));

      test('rejected appends leave no gap in the positions', withStore(async (store) => {
        await store.append(event('A', ['unique:1']));
        await assert.rejects(store.append(event('B'), { failIfEventsMatch: Query.of(QueryItem.tags('unique:1')) }), AppendConditionFailedError);
        await assert.rejects(store.append([event('B'), loose<EventInput>({ type: '', data: 1 })]), InvalidInputError);
        const id = randomUUID();
        await store.append({ ...event('C'), id });
        await assert.rejects(store.append({ ...event('D'), id }), DuplicateEventIdError);
        await assert.rejects(store.append([event('E'), event('E')], undefined, { signal: AbortSignal.abort() }), OperationAbortedError);
        assert.deepEqual(await store.append([event('F'), event('F')]), { position: 4n });
        assert.deepEqual(positions((await store.read(Query.all())).events), range(1, 4));
      }));

      test('an event reads back as stored: generated UUIDv7 id, sorted unique tags, {} metadata, occurredAt now, recordedAt by the store', withStore(async (store) => {
        const before = Date.now();
        await store.append({ type: 'Minimal', tags: ['t:b', 't:a', 't:b'], data: { ok: true } });
        const after = Date.now();
        const [stored] = (await store.read(Query.all())).events;
        assert.ok(stored);
        assert.equal(stored.position, 1n);
        assert.match(stored.id, UUID_V7);
        assert.equal(stored.type, 'Minimal');
        assert.deepEqual(stored.tags, ['t:a', 't:b']);
        assert.deepEqual(stored.data, { ok: true });
        assert.deepEqual(stored.metadata, {});
        assert.ok(stored.occurredAt instanceof Date && stored.recordedAt instanceof Date);
        assert.ok(stored.occurredAt.getTime() >= before && stored.occurredAt.getTime() <= after, 'occurredAt defaults to the time of the append');
        assert.ok(Math.abs(stored.recordedAt.getTime() - (before + after) / 2) < 5000, 'recordedAt is about now');
      }));

      test('data and metadata are stored as their JSON: undefined properties dropped, toJSON applied; client ids lower-cased; occurredAt kept', withStore(async (store) => {
        const id = randomUUID();
        const occurredAt = new Date('2023-05-06T07:08:09.123Z');
        const when = new Date('2024-01-02T03:04:05.678Z');
        await store.append([
          {
            id: id.toUpperCase(),
            type: 'Rich',
            tags: ['ünï 📚'],
            occurredAt,
            data: { keep: 1, dropped: undefined, when, list: [1, 'two', null, { three: 3 }], nested: { deep: { deeper: true } }, unicode: 'ünï 📚', fraction: 0.1 + 0.2 },
            metadata: { user: 'u1', gone: undefined, trace: ['a', 'b'] },
          },
          { type: 'Scalar', data: 'text' },
          { type: 'Scalar', data: 42 },
          { type: 'Scalar', data: false },
          { type: 'Scalar', data: null },
          { type: 'Scalar', data: [1, [2, [3]]] },
          { type: 'OddTags', tags: ['Z', 'a', 'ä', '📚', 'NULL', '{braces}', 'back\\slash', 'series:"a,b"', 'a'], data: 1 },
        ]);
        const { events } = await store.read(Query.all());
        const rich = events[0]!;
        assert.equal(rich.id, id.toLowerCase());
        assert.equal(rich.occurredAt.toISOString(), occurredAt.toISOString());
        assert.deepStrictEqual(rich.data, { keep: 1, when: '2024-01-02T03:04:05.678Z', list: [1, 'two', null, { three: 3 }], nested: { deep: { deeper: true } }, unicode: 'ünï 📚', fraction: 0.1 + 0.2 });
        assert.deepStrictEqual(rich.metadata, { user: 'u1', trace: ['a', 'b'] });
        assert.deepStrictEqual(events.slice(1, 6).map((stored) => stored.data), ['text', 42, false, null, [1, [2, [3]]]]);
        assert.deepStrictEqual(events[6]!.tags, ['NULL', 'Z', 'a', 'back\\slash', 'series:"a,b"', '{braces}', 'ä', '📚'], 'unique, in JavaScript sort order');
        const recordedAt = new Set(events.map((stored) => stored.recordedAt.getTime()));
        assert.equal(recordedAt.size, 1, 'one append, one recordedAt');
      }));

      test('occurredAt at the limits (0001-01-01T00:00:00.000Z, 9999-12-31T23:59:59.999Z) is stored and read back equal, and time bounds at the limits match it', withStore(async (store) => {
        await store.append([
          { type: 'Earliest', data: 1, occurredAt: new Date(EARLIEST) },
          { type: 'Latest', data: 2, occurredAt: new Date(LATEST) },
          { type: 'JustAfterEarliest', data: 3, occurredAt: new Date(EARLIEST.getTime() + 1) },
          { type: 'JustBeforeLatest', data: 4, occurredAt: new Date(LATEST.getTime() - 1) },
        ]);
        const { events } = await store.read(Query.all());
        assert.deepEqual(events.map((stored) => stored.occurredAt.toISOString()), [
          '0001-01-01T00:00:00.000Z',
          '9999-12-31T23:59:59.999Z',
          '0001-01-01T00:00:00.001Z',
          '9999-12-31T23:59:59.998Z',
        ]);
        assert.deepEqual(events.map((stored) => stored.occurredAt.getTime()), [EARLIEST.getTime(), LATEST.getTime(), EARLIEST.getTime() + 1, LATEST.getTime() - 1]);
        const read = async (query: Query): Promise<bigint[]> => positions((await store.read(query)).events);
        assert.deepEqual(await read(Query.all().occurredFrom(EARLIEST).occurredUntil(LATEST)), [1n, 2n, 3n, 4n]);
        assert.deepEqual(await read(Query.all().occurredUntil(EARLIEST)), [1n]);
        assert.deepEqual(await read(Query.all().occurredFrom(LATEST)), [2n]);
        assert.deepEqual(await read(Query.fromJSON({ items: [], occurredFrom: '9999-12-31T23:59:59.998Z' })), [2n, 4n]);
        // As conditions, on both of the PostgreSQL store's check paths (recent after: walk; none: indexes).
        const latest = { failIfEventsMatch: Query.all().occurredFrom(LATEST), after: 1n };
        await assert.rejects(store.append(event('X'), latest), conditionFailed(latest, 2n));
        const earliest = { failIfEventsMatch: Query.of(QueryItem.types('Earliest', 'Latest')).occurredUntil(EARLIEST) };
        await assert.rejects(store.append(event('X'), earliest), conditionFailed(earliest, 1n));
        await store.append(event('X'), { failIfEventsMatch: Query.all().occurredFrom(LATEST), after: 2n });
        assert.equal(await store.head(), 5n);
      }));

      test('changing an event object right after append() was called (before it resolved) does not change what is stored', withStore(async (store) => {
        // The second append is queued behind the first (the PostgreSQL store has one batch in flight).
        const first = store.append(event('First'));
        const data = { version: 'as appended', list: [1] };
        const metadata = { user: 'u1' };
        const tags = ['t:1'];
        const second = store.append({ type: 'Second', tags, data, metadata });
        data.version = 'changed later';
        data.list.push(2);
        metadata.user = 'u2';
        tags.push('t:2');
        await Promise.all([first, second]);
        const stored = (await store.read(Query.of(QueryItem.types('Second')))).events[0]!;
        assert.deepEqual({ tags: stored.tags, data: stored.data, metadata: stored.metadata }, { tags: ['t:1'], data: { version: 'as appended', list: [1] }, metadata: { user: 'u1' } });
      }));

      test('a caller changing what it appended or read does not change the store', withStore(async (store) => {
        const data = { list: [1, 2] };
        await store.append({ type: 'A', data });
        data.list.push(3);
        const first = await store.read(Query.all());
        (first.events[0]!.data as { list: number[] }).list.push(4);
        first.events[0]!.tags.push('mutated');
        const second = await store.read(Query.all());
        assert.deepEqual(second.events[0]!.data, { list: [1, 2] });
        assert.deepEqual(second.events[0]!.tags, []);
      }));
    });

    describe('read', () => {
      test('an empty store: no events, head 0', withStore(async (store) => {
        assert.deepEqual(await store.read(Query.all()), { events: [], head: 0n });
        assert.equal(await store.head(), 0n);
        assert.deepEqual(await collect(store.stream(Query.all())), []);
      }));

      test('after (exclusive), limit and backwards, each with head', withStore(async (store) => {
        await store.append([1, 2, 3, 4, 5, 6].map((n) => event(n % 2 === 0 ? 'Even' : 'Odd', [], { n })));
        const cases: Array<[ReadOptions, bigint[]]> = [
          [{}, range(1, 6)],
          [{ after: 0n }, range(1, 6)],
          [{ after: 2n }, range(3, 6)],
          [{ after: 6n }, []],
          [{ after: 100n }, []],
          [{ limit: 2 }, [1n, 2n]],
          [{ after: 2n, limit: 3 }, [3n, 4n, 5n]],
          [{ limit: 100 }, range(1, 6)],
          [{ backwards: true }, [6n, 5n, 4n, 3n, 2n, 1n]],
          [{ backwards: true, limit: 1 }, [6n]],
          [{ backwards: true, after: 3n }, [6n, 5n, 4n]],
          [{ backwards: true, after: 3n, limit: 2 }, [6n, 5n]],
          [{ backwards: false, after: 5n }, [6n]],
        ];
        for (const [options, expected] of cases) {
          const { events, head } = await store.read(Query.all(), options);
          assert.deepEqual(positions(events), expected, `read(all, ${JSON.stringify(options, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value))})`);
          assert.equal(head, 6n, 'head is the store head whatever the bounds');
        }
        const odd = Query.of(QueryItem.types('Odd'));
        assert.deepEqual(positions((await store.read(odd, { after: 1n, limit: 1 })).events), [3n]);
        assert.deepEqual(positions((await store.read(odd, { backwards: true, limit: 2 })).events), [5n, 3n]);
      }));

      test('before (exclusive), alone and with after, backwards and limit, each with head', withStore(async (store) => {
        await store.append([1, 2, 3, 4, 5, 6].map((n) => event(n % 2 === 0 ? 'Even' : 'Odd', [], { n })));
        const cases: Array<[ReadOptions, bigint[]]> = [
          [{ before: 4n }, range(1, 3)],
          [{ before: 7n }, range(1, 6)],
          [{ before: 100n }, range(1, 6)],
          [{ before: 9223372036854775807n }, range(1, 6)],
          [{ before: 6n }, range(1, 5)],
          [{ before: 1n }, []],
          [{ before: 0n }, []],
          [{ after: 2n, before: 5n }, [3n, 4n]],
          [{ after: 2n, before: 4n }, [3n]],
          [{ after: 2n, before: 3n }, []],
          [{ after: 3n, before: 3n }, []],
          [{ after: 5n, before: 2n }, []],
          [{ before: 5n, limit: 2 }, [1n, 2n]],
          [{ before: 5n, backwards: true }, [4n, 3n, 2n, 1n]],
          [{ before: 5n, backwards: true, limit: 2 }, [4n, 3n]],
          [{ before: 5n, after: 1n, backwards: true, limit: 10 }, [4n, 3n, 2n]],
          [{ before: 2n, backwards: true, limit: 2 }, [1n]],
          [{ before: 100n, backwards: true, limit: 2 }, [6n, 5n]],
        ];
        for (const [options, expected] of cases) {
          const { events, head } = await store.read(Query.all(), options);
          assert.deepEqual(positions(events), expected, `read(all, ${JSON.stringify(options, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value))})`);
          assert.equal(head, 6n, 'head is the store head whatever the bounds');
        }
        const odd = Query.of(QueryItem.types('Odd'));
        assert.deepEqual(positions((await store.read(odd, { before: 5n })).events), [1n, 3n]);
        assert.deepEqual(positions((await store.read(odd, { before: 5n, backwards: true, limit: 1 })).events), [3n]);
        assert.deepEqual(positions((await store.read(odd, { before: 1n, backwards: true, limit: 1 })).events), []);
        assert.deepEqual(await store.read(Query.of(QueryItem.types('Even')), { before: 2n }), { events: [], head: 6n });
      }));

      test('backwards + before + limit pages through the whole log: no gaps, no repeats, the forward read reversed', withStore(async (store) => {
        // 61 events, a third of them matching a tag and a type each, interleaved with others.
        await store.append(Array.from({ length: 61 }, (_, n) => event(n % 3 === 0 ? 'Hit' : 'Miss', n % 3 === 0 ? ['page:me'] : ['page:other'], { n })));
        const queries: Array<[string, Query]> = [
          ['all', Query.all()],
          ['a type', Query.of(QueryItem.types('Hit'))],
          ['a tag', Query.of(QueryItem.tags('page:me'))],
          ['a type and a tag', Query.of(QueryItem.types('Hit').tags('page:me'))],
        ];
        for (const [description, query] of queries) {
          const { events: forward, head } = await store.read(query);
          for (const pageSize of [1, 4, 7, 21, 100]) {
            const walked: bigint[] = [];
            let before = head + 1n;
            for (let pages = 0; ; pages++) {
              assert.ok(pages <= forward.length + 1, `${description}, pages of ${pageSize}: does not end`);
              const page = await store.read(query, { backwards: true, limit: pageSize, before });
              assert.equal(page.head, head);
              walked.push(...positions(page.events));
              const oldest = page.events.at(-1);
              if (oldest === undefined) break;
              before = oldest.position;
            }
            assert.deepEqual(walked, [...positions(forward)].reverse(), `${description}, pages of ${pageSize}`);
          }
        }
      }));

      test('head is the highest position in the store, not the last matching event', withStore(async (store) => {
        await store.append([event('A'), event('B'), event('B')]);
        const { events, head } = await store.read(Query.of(QueryItem.types('A')));
        assert.deepEqual(positions(events), [1n]);
        assert.equal(head, 3n);
        assert.equal((await store.read(Query.of(QueryItem.types('None')))).head, 3n);
        assert.equal(await store.head(), 3n);
      }));
    });

    describe('query shapes', () => {
      const fixture = (run: (store: ContractStore) => Promise<void>) =>
        withStore(async (store) => {
          assert.deepEqual(await store.append(LIBRARY), { position: BigInt(LIBRARY.length) });
          await run(store);
        });

      test('read returns exactly the matching events, in position order', fixture(async (store) => {
        const failures: string[] = [];
        for (const [description, query, expected] of QUERY_CASES) {
          const { events, head } = await store.read(query);
          const actual = positions(events);
          if (JSON.stringify(actual.map(String)) !== JSON.stringify(expected.map(String))) failures.push(`${description}: got [${actual.join(', ')}], expected [${expected.join(', ')}]`);
          assert.equal(head, 13n);
        }
        assert.deepEqual(failures, []);
      }));

      test('backwards and limit on filtered queries; stream in pages of one', fixture(async (store) => {
        const failures: string[] = [];
        for (const [description, query, expected] of QUERY_CASES) {
          const backwards = positions((await store.read(query, { backwards: true, limit: 2 })).events);
          if (backwards.join() !== [...expected].reverse().slice(0, 2).join()) failures.push(`${description} backwards: got [${backwards.join(', ')}]`);
          const streamed = positions(await collect(store.stream(query, { batchSize: 1 })));
          if (streamed.join() !== expected.join()) failures.push(`${description} stream: got [${streamed.join(', ')}]`);
        }
        assert.deepEqual(failures, []);
      }));

      test('as append conditions: fail exactly when a matching event exists after `after`, naming the first one', fixture(async (store) => {
        const failures: string[] = [];
        const probe = (): EventInput => ({ type: 'Probe', data: 'probe' });
        // Queries that match something: with after 0 and without after they fail; with after at
        // their last match they pass; nothing is written by the failures.
        for (const [description, query, expected] of QUERY_CASES) {
          if (expected.length === 0) continue;
          for (const condition of [{ failIfEventsMatch: query, after: 0n }, { failIfEventsMatch: query }] as AppendCondition[]) {
            try {
              await store.append(probe(), condition);
              failures.push(`${description} (after ${condition.after}): no conflict`);
            } catch (error) {
              if (!(error instanceof AppendConditionFailedError)) throw error;
              if (error.conflictingPosition !== expected[0]) failures.push(`${description}: conflictingPosition ${error.conflictingPosition}, expected ${expected[0]}`);
            }
          }
          if (expected.length > 1) {
            try {
              await store.append(probe(), { failIfEventsMatch: query, after: expected[0]! });
              failures.push(`${description} (after ${expected[0]}): no conflict`);
            } catch (error) {
              if (!(error instanceof AppendConditionFailedError)) throw error;
              if (error.conflictingPosition !== expected[1]) failures.push(`${description}: conflictingPosition ${error.conflictingPosition} after ${expected[0]}, expected ${expected[1]}`);
            }
          }
        }
        assert.equal(await store.head(), 13n, 'failed conditions write nothing');
        // Queries that match nothing (and a probe that none of them matches): the append goes through.
        let head = 13n;
        for (const [description, query, expected] of QUERY_CASES) {
          if (expected.length !== 0) continue;
          const { position } = await store.append(probe(), { failIfEventsMatch: query });
          if (position !== head + 1n) failures.push(`${description}: appended at ${position}, expected ${head + 1n}`);
          head = position;
        }
        assert.deepEqual(failures, []);
      }));

      test('conditions far behind the head (index paths of the PostgreSQL store) find the first conflict too', withStore(async (store) => {
        await store.append([
          { type: 'Early', tags: ['early:1'], data: { early: 1 } },
          { type: 'Other', tags: ['other'], data: { other: 1 } },
          { type: 'Early', tags: ['early:2'], data: { early: 2 } },
        ]);
        await store.append(Array.from({ length: 300 }, (_, n) => event('Filler', ['filler'], { n })));
        await store.append([
          { type: 'Late', tags: ['late'], data: { late: 1 } },
          { type: 'Early', tags: ['early:1'], data: { early: 1 } },
        ]);
        assert.equal(await store.head(), 305n);
        const cases: Array<[Query, bigint | undefined, bigint | undefined]> = [
          [Query.of(QueryItem.tags('early:1')), undefined, 1n],
          [Query.of(QueryItem.tags('early:1')), 0n, 1n],
          [Query.of(QueryItem.tags('early:1')), 1n, 305n],
          [Query.of(QueryItem.types('Early')), 1n, 3n],
          [Query.of(QueryItem.types('Early').tags('early:2')), 3n, undefined],
          [Query.of(QueryItem.anyPredicateOf({ early: 2 })), 0n, 3n],
          [Query.of(QueryItem.allPredicatesOf({ early: 1 })), 2n, 305n],
          [Query.of(QueryItem.tags('late'), QueryItem.types('Other')), 0n, 2n],
          [Query.of(QueryItem.tags('late'), QueryItem.anyPredicateOf({ other: 1 })), 1n, 2n],
          [Query.of(QueryItem.tags('late'), QueryItem.tags('other')), 2n, 304n],
          [Query.of(QueryItem.types('Missing'), QueryItem.tags('missing')), 0n, undefined],
          [Query.all().occurredUntil(at(0)), 0n, undefined],
          [Query.all(), 100n, 101n],
        ];
        for (const [query, after, conflict] of cases) {
          const condition: AppendCondition = after === undefined ? { failIfEventsMatch: query } : { failIfEventsMatch: query, after };
          const label = `${JSON.stringify(query.toJSON())} after ${after}`;
          if (conflict === undefined) {
            const head = await store.head();
            assert.deepEqual(await store.append(event('Probe', ['probe']), condition), { position: head + 1n }, label);
          } else {
            await assert.rejects(store.append(event('Probe', ['probe']), condition), conditionFailed(condition, conflict), label);
          }
        }
      }));
    });

    describe('stream', () => {
      test('pages of a small batchSize over a filtered query: every match once, in order; after is exclusive', withStore(async (store) => {
        await store.append(Array.from({ length: 11 }, (_, n) => event(n % 3 === 0 ? 'Skip' : 'Take', [], { n })));
        const take = Query.of(QueryItem.types('Take'));
        const expected = positions((await store.read(take)).events);
        assert.equal(expected.length, 7);
        for (const batchSize of [1, 2, 3, 7, 8, 1000]) {
          assert.deepEqual(positions(await collect(store.stream(take, { batchSize }))), expected, `batchSize ${batchSize}`);
          assert.deepEqual(positions(await collect(store.stream(take, { batchSize, after: 5n }))), expected.filter((position) => position > 5n), `batchSize ${batchSize} after 5`);
        }
        assert.deepEqual(positions(await collect(store.stream(Query.all(), { batchSize: 4 }))), range(1, 11));
      }));

      test('with before: ends before it, in pages of any size, also with after; before beyond the head ends at the head', withStore(async (store) => {
        await store.append(Array.from({ length: 11 }, (_, n) => event(n % 3 === 0 ? 'Skip' : 'Take', [], { n })));
        const take = Query.of(QueryItem.types('Take'));
        const expected = positions((await store.read(take)).events);
        for (const batchSize of [1, 2, 3, 1000]) {
          assert.deepEqual(positions(await collect(store.stream(take, { batchSize, before: 9n }))), expected.filter((position) => position < 9n), `batchSize ${batchSize} before 9`);
          assert.deepEqual(positions(await collect(store.stream(take, { batchSize, after: 2n, before: 9n }))), expected.filter((position) => position > 2n && position < 9n), `batchSize ${batchSize} after 2 before 9`);
          assert.deepEqual(positions(await collect(store.stream(Query.all(), { batchSize, before: 50n }))), range(1, 11), `batchSize ${batchSize} before 50`);
          assert.deepEqual(await collect(store.stream(Query.all(), { batchSize, before: 1n })), [], `batchSize ${batchSize} before 1`);
          assert.deepEqual(await collect(store.stream(Query.all(), { batchSize, before: 0n })), [], `batchSize ${batchSize} before 0`);
          assert.deepEqual(await collect(store.stream(Query.all(), { batchSize, after: 5n, before: 6n })), [], `batchSize ${batchSize} after 5 before 6`);
        }
      }));

      test('ends at the head its first page saw, even when events are appended meanwhile', withStore(async (store) => {
        await store.append([1, 2, 3, 4, 5].map((n) => event('A', [], { n })));
        const iterator = store.stream(Query.all(), { batchSize: 2 });
        const seen: bigint[] = [];
        const first = await iterator.next();
        assert.equal(first.done, false);
        seen.push((first.value as SequencedEvent).position);
        await store.append([6, 7, 8].map((n) => event('A', [], { n })));
        for await (const streamed of { [Symbol.asyncIterator]: () => iterator }) seen.push(streamed.position);
        assert.deepEqual(seen, range(1, 5));
        assert.deepEqual(positions(await collect(store.stream(Query.all(), { batchSize: 2 }))), range(1, 8), 'a new stream sees them');
      }));
    });

    describe('append conditions', () => {
      const tagged = Query.of(QueryItem.tags('course:c1'));

      test('with after: an event matching after `after` fails the append, naming the first one', withStore(async (store) => {
        await store.append([event('X', ['course:c1']), event('X', ['course:c2']), event('X', ['course:c1']), event('X', ['course:c1'])]);
        const condition: AppendCondition = { failIfEventsMatch: tagged, after: 1n };
        await assert.rejects(store.append(event('Y', ['course:c1']), condition), conditionFailed(condition, 3n));
        assert.equal(await store.head(), 4n);
      }));

      test('with after: matching events at or before `after`, or only non-matching ones after it, do not conflict', withStore(async (store) => {
        await store.append([event('X', ['course:c1']), event('X', ['course:c2'])]);
        assert.deepEqual(await store.append(event('Y', ['course:c1']), { failIfEventsMatch: tagged, after: 1n }), { position: 3n });
        assert.deepEqual(await store.append(event('Y', ['course:c1']), { failIfEventsMatch: tagged, after: 3n }), { position: 4n });
        assert.deepEqual(await store.append(event('Y'), { failIfEventsMatch: tagged, after: 100n }), { position: 5n }, 'after beyond the head');
        assert.deepEqual(await store.append(event('Z'), { failIfEventsMatch: Query.all(), after: 5n }), { position: 6n });
        const all: AppendCondition = { failIfEventsMatch: Query.all(), after: 5n };
        await assert.rejects(store.append(event('Z'), all), conditionFailed(all, 6n));
      }));

      test('without after: fails if any matching event exists at all (uniqueness)', withStore(async (store) => {
        const unique: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.types('UsernameClaimed').tags('username:ann')) };
        await store.append(event('Other', ['username:ann']));
        assert.deepEqual(await store.append(event('UsernameClaimed', ['username:ann']), unique), { position: 2n }, 'its own events do not count');
        await store.append(event('Other', ['username:ann']));
        await assert.rejects(store.append(event('UsernameClaimed', ['username:ann']), unique), conditionFailed(unique, 2n));
        const withZero: AppendCondition = { failIfEventsMatch: unique.failIfEventsMatch, after: 0n };
        await assert.rejects(store.append(event('UsernameClaimed', ['username:ann']), withZero), conditionFailed(withZero, 2n));
        assert.deepEqual(await store.append(event('UsernameClaimed', ['username:bob']), { failIfEventsMatch: Query.of(QueryItem.types('UsernameClaimed').tags('username:bob')) }), { position: 4n });
      }));

      test('several items: the conflicting position is the first match of any item', withStore(async (store) => {
        await store.append([event('A', ['a']), event('B', ['b']), event('A', ['a']), event('B', ['b'])]);
        const condition: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.types('B'), QueryItem.tags('a')), after: 2n };
        await assert.rejects(store.append(event('C'), condition), conditionFailed(condition, 3n));
        const reversed: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.types('A'), QueryItem.tags('b')), after: 0n };
        await assert.rejects(store.append(event('C'), reversed), conditionFailed(reversed, 1n));
      }));

      test('a failed condition writes nothing, and the ids of the failed append stay free', withStore(async (store) => {
        await store.append(event('X', ['course:c1']));
        const before = await everything(store);
        const ids = [randomUUID(), randomUUID(), randomUUID()];
        const batch = ids.map((id, n) => ({ ...event('New', ['course:c1'], { n }), id }));
        await assert.rejects(store.append(batch, { failIfEventsMatch: tagged, after: 0n }), AppendConditionFailedError);
        assert.deepEqual(await everything(store), before);
        assert.deepEqual(await store.append(batch, { failIfEventsMatch: tagged, after: 1n }), { position: 4n });
        assert.deepEqual((await store.read(Query.of(QueryItem.types('New')))).events.map((stored) => stored.id), ids);
      }));

      test('concurrent appends with overlapping conditions: exactly one succeeds', withStore(async (store) => {
        await store.append(event('CourseDefined', ['course:c1']));
        const { head } = await store.read(tagged);
        const outcomes = await Promise.allSettled([1, 2, 3, 4].map((n) => store.append(event('Subscribed', ['course:c1'], { n }), { failIfEventsMatch: tagged, after: head })));
        assert.equal(outcomes.filter((outcome) => outcome.status === 'fulfilled').length, 1);
        for (const outcome of outcomes) if (outcome.status === 'rejected') assert.ok(outcome.reason instanceof AppendConditionFailedError);
        assert.equal(await store.head(), 2n);
      }));

      test('the read-decide-append cycle: a concurrent append in between makes the second writer fail', withStore(async (store) => {
        await store.append(event('CourseDefined', ['course:c1'], { capacity: 1 }));
        const first = await store.read(tagged);
        const second = await store.read(tagged);
        await store.append(event('Subscribed', ['course:c1']), { failIfEventsMatch: tagged, after: first.head });
        const condition: AppendCondition = { failIfEventsMatch: tagged, after: second.head };
        await assert.rejects(store.append(event('Subscribed', ['course:c1']), condition), conditionFailed(condition, 2n));
        assert.equal(await store.head(), 2n);
      }));
    });

    describe('idempotent retries by client-supplied ids', () => {
      const batchOf = (): EventInput[] => [
        { id: randomUUID(), type: 'Retried', tags: ['retry:b', 'retry:a'], data: { n: 1, nested: { a: [1, 2] } }, metadata: { by: 'test' } },
        { id: randomUUID(), type: 'Retried', tags: ['retry:a'], data: null },
      ];

      test('the same events again return the original position and write nothing, also after other appends', withStore(async (store) => {
        await store.append(event('Before'));
        const batch = batchOf();
        assert.deepEqual(await store.append(batch), { position: 3n });
        await store.append(event('After'));
        const before = await everything(store);
        assert.deepEqual(await store.append(batch), { position: 3n });
        assert.deepEqual(await store.append(batch.map((retried) => ({ ...retried }))), { position: 3n });
        assert.deepEqual(await everything(store), before);
      }));

      test('equal content in another form (upper-case ids, reordered tags and keys, another occurredAt) is the same append', withStore(async (store) => {
        const id = randomUUID();
        await store.append({ id, type: 'Retried', tags: ['b', 'a'], data: { a: 1, b: { c: 2, d: 3 } }, metadata: { x: 1, y: 2 }, occurredAt: at(0) });
        assert.deepEqual(await store.append({ id: id.toUpperCase(), type: 'Retried', tags: ['a', 'b', 'a'], data: { b: { d: 3, c: 2 }, a: 1 }, metadata: { y: 2, x: 1 }, occurredAt: at(99) }), { position: 1n });
        assert.equal(await store.head(), 1n);
      }));

      test('a retry whose metadata differs only in its traceparent (another trace) is the same append; the stored trace context stays', withStore(async (store) => {
        const id = randomUUID();
        const first = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
        await store.append({ id, type: 'Retried', data: 1, metadata: { by: 'test', traceparent: first } });
        assert.deepEqual(await store.append({ id, type: 'Retried', data: 1, metadata: { by: 'test', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } }), { position: 1n });
        assert.deepEqual(await store.append({ id, type: 'Retried', data: 1, metadata: { by: 'test' } }), { position: 1n });
        const { events } = await store.read(Query.all());
        assert.deepEqual(events.map((stored) => stored.metadata), [{ by: 'test', traceparent: first }]);
        await assert.rejects(store.append({ id, type: 'Retried', data: 1, metadata: { by: 'someone else', traceparent: first } }), DuplicateEventIdError);
      }));

      test('a retry carrying its original condition returns the original position (the condition would now fail on its own events)', withStore(async (store) => {
        const batch = batchOf();
        const condition: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.tags('retry:a')) };
        assert.deepEqual(await store.append(batch, condition), { position: 2n });
        assert.deepEqual(await store.append(batch, condition), { position: 2n });
        assert.deepEqual(await store.append(batch, { failIfEventsMatch: Query.all(), after: 0n }), { position: 2n });
      }));

      test('the same ids with a different type, tags, data or metadata: DuplicateEventIdError naming the stored position, nothing written', withStore(async (store) => {
        const original = batchOf()[0]!;
        await store.append(event('Before'));
        await store.append(original);
        const before = await everything(store);
        const variants: Array<[string, EventInput]> = [
          ['type', { ...original, type: 'Changed' }],
          ['tags', { ...original, tags: ['retry:a'] }],
          ['data', { ...original, data: { n: 2, nested: { a: [1, 2] } } }],
          ['data array order', { ...original, data: { n: 1, nested: { a: [2, 1] } } }],
          ['metadata', { ...original, metadata: { by: 'someone else' } }],
          ['no metadata', { ...original, metadata: {} }],
        ];
        for (const [what, variant] of variants) {
          await assert.rejects(store.append(variant), (error: unknown) => {
            assert.ok(error instanceof DuplicateEventIdError, `${what}: expected DuplicateEventIdError, got ${String(error)}`);
            assert.equal(error.code, 'DUPLICATE_EVENT_ID');
            assert.deepEqual(error.ids, [original.id], what);
            assert.equal(error.existingPosition, 2n, what);
            return true;
          });
        }
        assert.deepEqual(await everything(store), before);
      }));

      test('only some of the ids stored before: DuplicateEventIdError naming the stored ones; the new events are not written', withStore(async (store) => {
        const [stored, fresh] = batchOf() as [EventInput, EventInput];
        await store.append(event('Before'));
        await store.append(stored);
        await store.append(event('After'));
        const before = await everything(store);
        for (const attempt of [[stored, fresh], [fresh, stored]]) {
          await assert.rejects(store.append(attempt), (error: unknown) => {
            assert.ok(error instanceof DuplicateEventIdError, `expected DuplicateEventIdError, got ${String(error)}`);
            assert.equal(error.existingPosition, 2n);
            return true;
          });
        }
        assert.deepEqual(await everything(store), before);
        assert.deepEqual(await store.append(fresh), { position: 4n }, 'the new id is still free');
      }));

      test('DuplicateEventIdError.ids lists the ids that are stored already, not the new ones', withStore(async (store) => {
        const [stored, fresh] = batchOf() as [EventInput, EventInput];
        await store.append(stored);
        await assert.rejects(store.append([stored, fresh]), (error: unknown) => {
          assert.ok(error instanceof DuplicateEventIdError);
          assert.deepEqual(error.ids, [stored.id]);
          return true;
        });
      }));
    });

    describe('bad input is rejected with the same InvalidInputError path, and nothing is written', () => {
      const good = (): EventInput => ({ type: 'Good', tags: ['ok'], data: { ok: true } });
      const withBad = (store: ContractStore, bad: unknown) => store.append([good(), loose<EventInput>(bad)]);
      const cycle: Record<string, unknown> = { a: 1 };
      cycle.self = cycle;
      const sharedId = randomUUID();
      const cases: Array<[string, string, (store: ContractStore) => Promise<unknown>]> = [
        ['empty event list', 'events', (store) => store.append([])],
        ['an event that is not an object', 'events[1]', (store) => withBad(store, null)],
        ['empty type', 'events[1].type', (store) => withBad(store, { type: '', data: 1 })],
        ['type not a string', 'events[1].type', (store) => withBad(store, { type: 7, data: 1 })],
        ['type of 256 characters', 'events[1].type', (store) => withBad(store, { type: 'T'.repeat(256), data: 1 })],
        ['tags not an array', 'events[1].tags', (store) => withBad(store, { type: 'T', data: 1, tags: 'book:1' })],
        ['an empty tag', 'events[1].tags[1]', (store) => withBad(store, { type: 'T', data: 1, tags: ['ok', ''] })],
        ['a tag that is not a string', 'events[1].tags[0]', (store) => withBad(store, { type: 'T', data: 1, tags: [5] })],
        ['a tag with NUL', 'events[1].tags[0]', (store) => withBad(store, { type: 'T', data: 1, tags: ['a\u0000b'] })],
        ['missing data', 'events[1].data', (store) => withBad(store, { type: 'T' })],
        ['undefined data', 'events[1].data', (store) => withBad(store, { type: 'T', data: undefined })],
        ['cyclic data', 'events[1].data.self', (store) => withBad(store, { type: 'T', data: cycle })],
        ['NaN in data', 'events[1].data.n', (store) => withBad(store, { type: 'T', data: { n: NaN } })],
        ['Infinity in an array', 'events[1].data.list[1]', (store) => withBad(store, { type: 'T', data: { list: [1, Infinity] } })],
        ['BigInt in data', 'events[1].data.n', (store) => withBad(store, { type: 'T', data: { n: 12n } })],
        ['a function in data', 'events[1].data.f', (store) => withBad(store, { type: 'T', data: { f: () => 1 } })],
        ['a Set in data', 'events[1].data.s', (store) => withBad(store, { type: 'T', data: { s: new Set([1]) } })],
        ['NUL in a data string', 'events[1].data', (store) => withBad(store, { type: 'T', data: 'a\u0000' })],
        ['metadata that is an array', 'events[1].metadata', (store) => withBad(store, { type: 'T', data: 1, metadata: [] })],
        ['metadata that is a string', 'events[1].metadata', (store) => withBad(store, { type: 'T', data: 1, metadata: 'x' })],
        ['metadata that is null', 'events[1].metadata', (store) => withBad(store, { type: 'T', data: 1, metadata: null })],
        ['BigInt in metadata', 'events[1].metadata.x', (store) => withBad(store, { type: 'T', data: 1, metadata: { x: 1n } })],
        ['an id repeated within the append', 'events[1].id', (store) => store.append([{ ...good(), id: sharedId }, { ...good(), id: sharedId.toUpperCase() }])],
        ['an id that is not a UUID', 'events[1].id', (store) => withBad(store, { type: 'T', data: 1, id: 'not-a-uuid' })],
        ['an id that is not a string', 'events[1].id', (store) => withBad(store, { type: 'T', data: 1, id: 42 })],
        ['an invalid occurredAt', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: new Date('nope') })],
        ['occurredAt as a string', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: '2024-01-01' })],
        // Dates travel as toISOString(); PostgreSQL's timestamptz refuses year 0000 and the
        // 6-digit forms toISOString() writes outside 0000..9999.
        ['occurredAt 1 ms before 0001-01-01 (year 0000)', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: new Date(EARLIEST.getTime() - 1) })],
        ['occurredAt in year 0000', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: new Date('0000-06-15T12:00:00.000Z') })],
        ['occurredAt before year 0 (-000001)', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: new Date('-000001-01-01T00:00:00.000Z') })],
        ['occurredAt 1 ms after 9999-12-31T23:59:59.999Z', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: new Date(LATEST.getTime() + 1) })],
        ['occurredAt the latest JavaScript date', 'events[1].occurredAt', (store) => withBad(store, { type: 'T', data: 1, occurredAt: new Date(8.64e15) })],
        ['occurredAt out of range in the first event', 'events[0].occurredAt', (store) => store.append([{ ...good(), occurredAt: new Date('+010000-01-01T00:00:00.000Z') }, good()])],
        ['metadata whose toJSON gives null', 'events[1].metadata', (store) => withBad(store, { type: 'T', data: 1, metadata: { toJSON: () => null } })],
        ['metadata whose toJSON gives a string (a Date)', 'events[1].metadata', (store) => withBad(store, { type: 'T', data: 1, metadata: new Date() })],
        ['a hole in the event list', 'events[1]', (store) => store.append(loose<EventInput[]>([good(), , good()]))],
        ['a condition that is not an object', 'condition', (store) => store.append(good(), loose<AppendCondition>('x'))],
        ['a condition that is null', 'condition', (store) => store.append(good(), loose<AppendCondition>(null))],
        ['a condition without a Query', 'condition.failIfEventsMatch', (store) => store.append(good(), loose<AppendCondition>({ failIfEventsMatch: { items: [] } }))],
        ['a negative condition.after', 'condition.after', (store) => store.append(good(), { failIfEventsMatch: Query.all(), after: -1n })],
        ['a fractional condition.after', 'condition.after', (store) => store.append(good(), loose<AppendCondition>({ failIfEventsMatch: Query.all(), after: 1.5 }))],
        ['condition.after as a string', 'condition.after', (store) => store.append(good(), loose<AppendCondition>({ failIfEventsMatch: Query.all(), after: '1' }))],
        ['read: not a Query', 'query', (store) => store.read(loose<Query>({ items: [] }))],
        ['read: occurredFrom in year 0000', 'Query.occurredFrom', (store) => store.read(Query.all().occurredFrom(new Date(EARLIEST.getTime() - 1)))],
        ['read: occurredUntil after 9999', 'Query.occurredUntil', (store) => store.read(Query.of(QueryItem.types('T')).occurredUntil(new Date(LATEST.getTime() + 1)))],
        ['read: occurredFrom from JSON in year 10000', 'Query.occurredFrom', (store) => store.read(Query.fromJSON({ items: [], occurredFrom: '+010000-01-01T00:00:00.000Z' }))],
        ['condition: occurredUntil before year 0', 'Query.occurredUntil', (store) => store.append(good(), { failIfEventsMatch: Query.all().occurredUntil(new Date('-000001-01-01T00:00:00.000Z')) })],
        ['read: a negative after', 'after', (store) => store.read(Query.all(), { after: -1n })],
        ['read: limit 0', 'limit', (store) => store.read(Query.all(), { limit: 0 })],
        ['read: a fractional limit', 'limit', (store) => store.read(Query.all(), { limit: 1.5 })],
        ['read: backwards not a boolean', 'backwards', (store) => store.read(Query.all(), loose<ReadOptions>({ backwards: 'yes' }))],
        ['read: a negative before', 'before', (store) => store.read(Query.all(), { before: -1n })],
        ['read: a negative before, backwards with a limit', 'before', (store) => store.read(Query.all(), { before: -5n, backwards: true, limit: 10 })],
        ['read: before as a string', 'before', (store) => store.read(Query.all(), loose<ReadOptions>({ before: '3' }))],
        ['read: a fractional before', 'before', (store) => store.read(Query.all(), loose<ReadOptions>({ before: 1.5 }))],
        ['read: before null', 'before', (store) => store.read(Query.all(), loose<ReadOptions>({ before: null }))],
        ['read: before beyond the largest position', 'before', (store) => store.read(Query.all(), { before: 9223372036854775808n })],
        ['stream: not a Query', 'query', (store) => store.stream(loose<Query>(null)).next()],
        ['stream: batchSize 0', 'batchSize', (store) => store.stream(Query.all(), { batchSize: 0 }).next()],
        ['stream: a negative after', 'after', (store) => store.stream(Query.all(), { after: -2n }).next()],
        ['stream: a negative before', 'before', (store) => store.stream(Query.all(), { before: -2n }).next()],
        ['stream: before as a string', 'before', (store) => store.stream(Query.all(), loose<StreamOptions>({ before: '2' })).next()],
        ['subscribe: not a Query', 'query', async (store) => store.subscribe(loose<Query>('all'))],
        ['subscribe: batchSize 0', 'batchSize', async (store) => store.subscribe(Query.all(), { batchSize: 0 })],
        ['subscribe: pollIntervalMs 0', 'pollIntervalMs', async (store) => store.subscribe(Query.all(), { pollIntervalMs: 0 })],
        ['subscribe: a negative after', 'after', async (store) => store.subscribe(Query.all(), { after: -1n })],
        ['snapshots.save: a name with NUL', 'key.name', (store) => store.snapshots.save({ name: 'a\u0000', version: 1, queryHash: 'h' }, { position: 0n, state: 1 })],
        ['snapshots.save: an empty name', 'key.name', (store) => store.snapshots.save({ name: '', version: 1, queryHash: 'h' }, { position: 0n, state: 1 })],
        ['snapshots.save: version beyond int4', 'key.version', (store) => store.snapshots.save({ name: 'p', version: 2 ** 31, queryHash: 'h' }, { position: 0n, state: 1 })],
        ['snapshots.save: a fractional version', 'key.version', (store) => store.snapshots.save({ name: 'p', version: 1.5, queryHash: 'h' }, { position: 0n, state: 1 })],
        ['snapshots.save: an empty query hash', 'key.queryHash', (store) => store.snapshots.save({ name: 'p', version: 1, queryHash: '' }, { position: 0n, state: 1 })],
        ['snapshots.save: a negative position', 'snapshot.position', (store) => store.snapshots.save({ name: 'p', version: 1, queryHash: 'h' }, { position: -1n, state: 1 })],
        ['snapshots.save: state undefined', 'snapshot.state', (store) => store.snapshots.save({ name: 'p', version: 1, queryHash: 'h' }, loose({ position: 1n, state: undefined }))],
        ['snapshots.save: NUL in the state', 'snapshot.state.a', (store) => store.snapshots.save({ name: 'p', version: 1, queryHash: 'h' }, { position: 1n, state: { a: 'x\u0000' } })],
        ['snapshots.save: an unpaired surrogate in the state', 'snapshot.state.a', (store) => store.snapshots.save({ name: 'p', version: 1, queryHash: 'h' }, { position: 1n, state: { a: '\ud800' } })],
        ['snapshots.save: BigInt in the state', 'snapshot.state.a', (store) => store.snapshots.save({ name: 'p', version: 1, queryHash: 'h' }, { position: 1n, state: loose({ a: 1n }) })],
        ['snapshots.load: a name with NUL', 'key.name', (store) => store.snapshots.load({ name: 'a\u0000', version: 1, queryHash: 'h' })],
        ['execute: not a handler', 'handler', (store) => store.execute(loose<typeof registerReader>({}), { readerId: 'r1' })],
        ['execute: maxAttempts 0', 'maxAttempts', (store) => store.execute(registerReader, { readerId: 'r1' }, { maxAttempts: 0 })],
        ['execute: a negative initialDelayMs', 'initialDelayMs', (store) => store.execute(registerReader, { readerId: 'r1' }, { initialDelayMs: -1 })],
      ];

      test('each case', withStore(async (store) => {
        await store.append([good(), good()]);
        const before = await everything(store);
        const failures: string[] = [];
        for (const [description, path, run] of cases) {
          try {
            await run(store);
            failures.push(`${description}: accepted`);
          } catch (error) {
            if (!(error instanceof InvalidInputError)) failures.push(`${description}: ${String(error)}`);
            else if (error.path !== path) failures.push(`${description}: path ${error.path}, expected ${path}`);
            else if (error.code !== 'INVALID_INPUT' || !error.message.startsWith(`${path}: `)) failures.push(`${description}: code ${error.code}, message ${error.message}`);
          }
        }
        assert.deepEqual(failures, []);
        assert.deepEqual(await everything(store), before, 'rejected input must not change the store');
      }));
    });

    describe('abort', () => {
      test('an already-aborted signal: append, read, head, stream and execute reject with OperationAbortedError; nothing is written', withStore(async (store) => {
        await store.append(event('Before'));
        const before = await everything(store);
        const reason = new Error('cancelled by the test');
        const signal = AbortSignal.abort(reason);
        await assert.rejects(store.append(event('A'), undefined, { signal }), aborted(reason));
        await assert.rejects(store.append([event('A'), event('B')], { failIfEventsMatch: Query.all(), after: 1n }, { signal }), aborted(reason));
        await assert.rejects(store.read(Query.all(), { signal }), aborted(reason));
        await assert.rejects(store.head({ signal }), aborted(reason));
        await assert.rejects(store.stream(Query.all(), { signal }).next(), aborted(reason));
        await assert.rejects(store.execute(registerReader, { readerId: 'r1' }, { signal }), aborted(reason));
        assert.deepEqual(await everything(store), before);
      }));

      test('an already-aborted signal ends a subscription at once, without events or error', withStore(async (store) => {
        await store.append([event('A'), event('B')]);
        const started = Date.now();
        assert.deepEqual(await collect(store.subscribe(Query.all(), { signal: AbortSignal.abort() })), []);
        assert.ok(Date.now() - started < 1000);
      }));
    });

    describe('subscribe', () => {
      test('catches up, then delivers live events promptly (not by polling), in position order', withStore(async (store) => {
        await store.append([1, 2, 3].map((n) => event('A', [], { n })));
        const controller = new AbortController();
        const iterator = store.subscribe(Query.all(), { signal: controller.signal, batchSize: 2, pollIntervalMs: 60_000 });
        try {
          const seen: bigint[] = [];
          for (let n = 0; n < 3; n++) seen.push((await nextEvent(iterator, 2000, `catch-up event ${n + 1}`)).position);
          assert.deepEqual(seen, [1n, 2n, 3n]);
          await store.append([event('A', [], { n: 4 }), event('A', [], { n: 5 })]);
          seen.push((await nextEvent(iterator, 2000, 'live event 4')).position);
          seen.push((await nextEvent(iterator, 2000, 'live event 5')).position);
          const waiting = nextEvent(iterator, 5000, 'live event 6');
          await delay(50);
          await store.append(event('A', [], { n: 6 }));
          seen.push((await waiting).position);
          assert.deepEqual(seen, range(1, 6));
        } finally {
          controller.abort();
        }
      }));

      test('only events matching the query, starting after `after`', withStore(async (store) => {
        await store.append([event('A', ['x']), event('B', ['x']), event('A', ['x']), event('B', ['x']), event('A', ['y'])]);
        const controller = new AbortController();
        const iterator = store.subscribe(Query.of(QueryItem.types('A').tags('x')), { signal: controller.signal, after: 1n, pollIntervalMs: 60_000 });
        try {
          assert.equal((await nextEvent(iterator, 2000, 'catch-up')).position, 3n);
          await store.append([event('B', ['x']), event('A', ['y']), event('A', ['x'])]);
          assert.equal((await nextEvent(iterator, 2000, 'live')).position, 8n);
          await store.append([event('A', ['y']), event('A', ['x', 'y'])]);
          assert.equal((await nextEvent(iterator, 2000, 'live')).position, 10n);
        } finally {
          controller.abort();
        }
      }));

      test('an abort ends a waiting subscription promptly and without error', withStore(async (store) => {
        await store.append(event('A'));
        const controller = new AbortController();
        const iterator = store.subscribe(Query.all(), { signal: controller.signal, pollIntervalMs: 60_000 });
        assert.equal((await nextEvent(iterator, 2000, 'catch-up')).position, 1n);
        const pending = iterator.next();
        await delay(50);
        const started = Date.now();
        controller.abort(new Error('stop'));
        assert.deepEqual(await nextWithin({ next: () => pending }, 1000, 'end after abort'), { done: true, value: undefined });
        assert.ok(Date.now() - started < 1000);
        assert.deepEqual(await iterator.next(), { done: true, value: undefined });
      }));

      test('`break` ends it: the iterator is done and later events are not consumed', withStore(async (store) => {
        await store.append([event('A'), event('A')]);
        const iterator = store.subscribe(Query.all(), { pollIntervalMs: 60_000 });
        const seen: bigint[] = [];
        for await (const delivered of { [Symbol.asyncIterator]: () => iterator }) {
          seen.push(delivered.position);
          break;
        }
        assert.deepEqual(seen, [1n]);
        await store.append(event('A'));
        assert.deepEqual(await nextWithin(iterator, 1000, 'after break'), { done: true, value: undefined });
      }));

      // A plain async generator's return() would wait behind the pending next() for the whole
      // poll interval (60 s here).
      test('return() while a next() waits for new events ends both at once', withStore(async (store) => {
        const iterator = store.subscribe(Query.all(), { pollIntervalMs: 60_000 });
        const pending = iterator.next();
        await delay(50);
        const started = Date.now();
        assert.deepEqual(await nextWithin({ next: () => iterator.return(undefined) }, 1000, 'return()'), { done: true, value: undefined });
        assert.deepEqual(await nextWithin({ next: () => pending }, 1000, 'the pending next()'), { done: true, value: undefined });
        assert.ok(Date.now() - started < 1000);
        await store.append(event('A'));
        assert.deepEqual(await nextWithin(iterator, 1000, 'after return()'), { done: true, value: undefined });
      }));

      test('closing the store ends a waiting subscription without error', withStore(async (store) => {
        const iterator = store.subscribe(Query.all(), { pollIntervalMs: 60_000 });
        const pending = iterator.next();
        await delay(50);
        const started = Date.now();
        await store.close();
        assert.deepEqual(await nextWithin({ next: () => pending }, 2000, 'end after close'), { done: true, value: undefined });
        assert.ok(Date.now() - started < 2000);
      }));
    });

    describe('execute', () => {
      test('a command handler appends what it decides, guarded by its projections', withStore(async (store) => {
        await store.append(event('ReaderRegistered', ['reader:r2'], { readerId: 'r2' }));
        const result = await store.execute(registerReader, { readerId: 'r1' });
        assert.equal(result.position, 2n);
        assert.equal(result.attempts, 1);
        assert.deepEqual(result.state, { reader: { registered: false } });
        assert.deepEqual(result.events, [{ type: 'ReaderRegistered', tags: ['reader:r1'], data: { readerId: 'r1' } }]);
        const { events } = await store.read(Query.of(QueryItem.tags('reader:r1')));
        assert.deepEqual(events.map(({ position, type, tags, data }) => ({ position, type, tags, data })), [{ position: 2n, type: 'ReaderRegistered', tags: ['reader:r1'], data: { readerId: 'r1' } }]);
      }));

      test('an error thrown by decide reaches the caller unchanged, and nothing is appended', withStore(async (store) => {
        await store.execute(registerReader, { readerId: 'r1' });
        const before = await everything(store);
        await assert.rejects(store.execute(registerReader, { readerId: 'r1' }), (error: unknown) => {
          assert.ok(error instanceof ReaderAlreadyRegisteredError, `expected the domain error, got ${String(error)}`);
          assert.equal(error.readerId, 'r1');
          return true;
        });
        const thrown = new Error('the very same object');
        let calls = 0;
        const failing = defineCommandHandler({
          projections: () => ({ reader: readerRegistration('r9') }),
          decide: () => {
            calls += 1;
            throw thrown;
          },
        });
        await assert.rejects(store.execute(failing, {}), (error: unknown) => error === thrown);
        assert.equal(calls, 1, 'a domain error is not retried');
        assert.deepEqual(await everything(store), before);
      }));

      test('a decision to do nothing appends nothing and has no position', withStore(async (store) => {
        const idle = defineCommandHandler({ projections: () => ({ count: counter('c') }), decide: () => undefined });
        assert.deepEqual(await store.execute(idle, {}), { events: [], position: undefined, state: { count: { count: 0 } }, attempts: 1 });
        const empty = defineCommandHandler({ projections: () => ({ count: counter('c') }), decide: () => [] });
        assert.equal((await store.execute(empty, {})).position, undefined);
        assert.equal(await store.head(), 0n);
      }));

      test('a conflicting append between its read and its append: it reads and decides again, then succeeds', withStore(async (store) => {
        await store.append(counted('other', 0));
        const concurrent: Array<Promise<unknown>> = [];
        const states: number[] = [];
        const increment = defineCommandHandler({
          projections: (command: { name: string }) => ({ counter: counter(command.name) }),
          decide: (state, command) => {
            states.push(state.counter.count);
            // Another writer appends while this decision is being made (the first time only).
            if (states.length === 1) concurrent.push(store.append(counted(command.name, 'concurrent')));
            return counted(command.name, state.counter.count + 1);
          },
        });
        const result = await store.execute(increment, { name: 'c1' });
        assert.deepEqual(await Promise.all(concurrent), [{ position: 2n }]);
        assert.deepEqual(states, [0, 1], 'decided again on the state that includes the concurrent event');
        assert.equal(result.attempts, 2);
        assert.equal(result.position, 3n);
        assert.deepEqual(result.state, { counter: { count: 1 } });
        const { events } = await store.read(Query.of(QueryItem.tags('counter:c1')));
        assert.deepEqual(events.map((stored) => [stored.position, stored.data]), [[2n, { n: 'concurrent' }], [3n, { n: 2 }]]);
      }));

      test('a command that loses every race: RetriesExhaustedError after maxAttempts, nothing of it written', withStore(async (store) => {
        const concurrent: Array<Promise<unknown>> = [];
        const losing = defineCommandHandler({
          projections: () => ({ counter: counter('hot') }),
          decide: (state) => {
            concurrent.push(store.append(counted('hot', 'concurrent')));
            return counted('hot', state.counter.count + 1);
          },
        });
        await assert.rejects(store.execute(losing, {}, { maxAttempts: 3, initialDelayMs: 1 }), (error: unknown) => {
          assert.ok(error instanceof RetriesExhaustedError, `expected RetriesExhaustedError, got ${String(error)}`);
          assert.equal(error.code, 'RETRIES_EXHAUSTED');
          assert.equal(error.attempts, 3);
          assert.ok(error.cause instanceof AppendConditionFailedError);
          return true;
        });
        await Promise.all(concurrent);
        const { events } = await store.read(Query.all());
        assert.deepEqual(events.map((stored) => stored.data), [{ n: 'concurrent' }, { n: 'concurrent' }, { n: 'concurrent' }]);
      }));

      test('a projection with snapshots: execute saves one once `every` events were folded, and the state stays right', withStore(async (store) => {
        const snapshotted = defineProjection<{ count: number }>({
          initialState: { count: 0 },
          handlers: { Counted: (state) => ({ count: state.count + 1 }) },
          tags: ['counter:s'],
          snapshot: { name: 'contract-counter', version: 1, every: 2 },
        });
        const increment = defineCommandHandler({
          projections: () => ({ counter: snapshotted }),
          decide: (state) => counted('s', state.counter.count + 1),
        });
        const key: SnapshotKey = { name: 'contract-counter', version: 1, queryHash: queryHash(snapshotted.query) };
        await store.append([counted('s', 1), counted('x', 1), counted('s', 2)]);
        assert.equal(await store.snapshots.load(key), undefined);
        assert.equal((await store.execute(increment, {})).state.counter.count, 2);
        assert.deepEqual(await store.snapshots.load(key), { position: 3n, state: { count: 2 } });
        for (let n = 3; n <= 5; n++) assert.equal((await store.execute(increment, {})).state.counter.count, n);
        assert.deepEqual(await store.snapshots.load(key), { position: 5n, state: { count: 4 } });
        assert.equal((await store.read(Query.of(QueryItem.tags('counter:s')))).events.length, 6);
      }));
    });

    describe('snapshots', () => {
      const key = (overrides: Partial<SnapshotKey> = {}): SnapshotKey => ({ name: 'projection', version: 1, queryHash: 'a'.repeat(64), ...overrides });

      test('save and load; a later position replaces a snapshot, an earlier one does not', withStore(async (store) => {
        await store.append([event('A'), event('A'), event('A'), event('A')]);
        assert.equal(await store.snapshots.load(key()), undefined);
        await store.snapshots.save(key(), { position: 2n, state: { count: 2, nested: { list: [1, 'two', null] } } });
        assert.deepEqual(await store.snapshots.load(key()), { position: 2n, state: { count: 2, nested: { list: [1, 'two', null] } } });
        await store.snapshots.save(key(), { position: 3n, state: { count: 3 } });
        assert.deepEqual(await store.snapshots.load(key()), { position: 3n, state: { count: 3 } });
        await store.snapshots.save(key(), { position: 1n, state: { count: 1 } });
        assert.deepEqual(await store.snapshots.load(key()), { position: 3n, state: { count: 3 } }, 'an older snapshot does not replace a newer one');
      }));

      test('name, version and query hash each make a separate snapshot', withStore(async (store) => {
        await store.append([event('A'), event('A')]);
        await store.snapshots.save(key(), { position: 1n, state: 'base' });
        await store.snapshots.save(key({ name: 'other' }), { position: 2n, state: 'name' });
        await store.snapshots.save(key({ version: 2 }), { position: 2n, state: 'version' });
        await store.snapshots.save(key({ queryHash: 'b'.repeat(64) }), { position: 2n, state: 'hash' });
        assert.deepEqual(await store.snapshots.load(key()), { position: 1n, state: 'base' });
        assert.deepEqual(await store.snapshots.load(key({ name: 'other' })), { position: 2n, state: 'name' });
        assert.deepEqual(await store.snapshots.load(key({ version: 2 })), { position: 2n, state: 'version' });
        assert.deepEqual(await store.snapshots.load(key({ queryHash: 'b'.repeat(64) })), { position: 2n, state: 'hash' });
        assert.equal(await store.snapshots.load(key({ version: 3 })), undefined);
      }));

      test('a snapshot beyond the head (left from a store that lost events) is replaced by an earlier one', withStore(async (store) => {
        await store.append([event('A'), event('A')]);
        await store.snapshots.save(key(), { position: 50n, state: 'from the future' });
        assert.deepEqual(await store.snapshots.load(key()), { position: 50n, state: 'from the future' });
        await store.snapshots.save(key(), { position: 2n, state: 'valid' });
        assert.deepEqual(await store.snapshots.load(key()), { position: 2n, state: 'valid' });
      }));

      test('a loaded snapshot is a copy', withStore(async (store) => {
        await store.append(event('A'));
        await store.snapshots.save(key(), { position: 1n, state: { list: [1] } });
        const loaded = await store.snapshots.load(key());
        (loaded!.state as { list: number[] }).list.push(2);
        assert.deepEqual(await store.snapshots.load(key()), { position: 1n, state: { list: [1] } });
      }));
    });

    describe('close', () => {
      test('after close, every operation fails with EventStoreClosedError', withStore(async (store) => {
        await store.append(event('A'));
        await store.close();
        await store.close();
        const closed = (error: unknown): boolean => {
          assert.ok(error instanceof EventStoreClosedError, `expected EventStoreClosedError, got ${String(error)}`);
          assert.ok(error instanceof EventStoreError);
          assert.equal(error.code, 'STORE_CLOSED');
          return true;
        };
        await assert.rejects(async () => store.append(event('A')), closed);
        await assert.rejects(async () => store.read(Query.all()), closed);
        await assert.rejects(async () => store.head(), closed);
        await assert.rejects(async () => store.stream(Query.all()).next(), closed);
        await assert.rejects(async () => store.subscribe(Query.all()), closed);
        await assert.rejects(async () => store.execute(registerReader, { readerId: 'r1' }), closed);
      }));

      test('after close, snapshots fail with EventStoreClosedError too', withStore(async (store) => {
        await store.close();
        const key: SnapshotKey = { name: 'p', version: 1, queryHash: 'h' };
        await assert.rejects(async () => store.snapshots.load(key), EventStoreClosedError);
        await assert.rejects(async () => store.snapshots.save(key, { position: 0n, state: 1 }), EventStoreClosedError);
      }));

      test('close waits for an append already started: it is written and its promise resolves', withStore(async (store) => {
        const appending = store.append([event('A'), event('B')]);
        await store.close();
        assert.deepEqual(await appending, { position: 2n });
      }));
    });
  });
}
