// Bad input, SQL-looking and large values, atomicity, conditions, idempotent retries, batching
// isolation and cancellation, against a real PostgreSQL.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import {
  AppendOutcomeUnknownError,
  AppendConditionFailedError,
  DuplicateEventIdError,
  EventStoreDatabaseError,
  EventStoreError,
  InvalidInputError,
  OperationAbortedError,
  Query,
  QueryItem,
  isAppendConditionFailedError,
  isEventStoreError,
  type AppendCondition,
  type EventInput,
  type EventStore,
  type SequencedEvent,
} from '../../src/index.ts';
import { connectToSchema, createTestStore, databaseUrl, withClient, keepEventLoopAliveDuringTests } from '../helpers.ts';
import { installFaultTrigger } from './fixtures/fault-trigger.ts';

const SUITE = { timeout: 120_000 };
keepEventLoopAliveDuringTests();

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;
/** A plain connection for inspecting the table behind the store's back. */
let raw: pg.Client;

before(async () => {
  ({ store, schema, dispose } = await createTestStore());
  raw = new pg.Client({ connectionString: databaseUrl() });
  await raw.connect();
  await installFaultTrigger(schema);
  // A few events so that "nothing changed" is checked against a non-empty store.
  await store.append([good(), good(), good()]);
});
after(async () => {
  await raw.end();
  await dispose();
});

// ---------------------------------------------------------------------------------------------
// Helpers

function good(extra: Partial<EventInput> = {}): EventInput {
  return { type: 'Good', tags: ['input:ok'], data: { ok: true }, ...extra };
}

/** Lets a test pass what the types forbid, as untyped JavaScript callers can. */
function loose<T>(value: unknown): T {
  return value as T;
}

interface Snapshot {
  head: bigint;
  lastId: string | undefined;
  rows: number;
  maxPosition: number;
}

/** The state of the log: head and last event from a read, row count and max position from SQL. */
async function snapshot(): Promise<Snapshot> {
  const { events, head } = await store.read(Query.all(), { backwards: true, limit: 1 });
  const { rows } = await raw.query<{ n: number; max: number }>(`SELECT count(*)::int AS n, coalesce(max(position), 0)::int AS max FROM "${schema}".events`);
  return { head, lastId: events[0]?.id, rows: rows[0]!.n, maxPosition: rows[0]!.max };
}

/** Position of the stored event with this id, or undefined. */
async function storedPosition(id: string): Promise<bigint | undefined> {
  const { rows } = await raw.query<{ position: string }>(`SELECT position FROM "${schema}".events WHERE id = $1`, [id]);
  return rows[0] === undefined ? undefined : BigInt(rows[0].position);
}

async function countIds(ids: readonly string[]): Promise<number> {
  const { rows } = await raw.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".events WHERE id = ANY ($1::uuid[])`, [ids]);
  return rows[0]!.n;
}

function isInvalid(path: string, message?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError at ${path}, got ${String(error)}`);
    assert.ok(error instanceof EventStoreError, 'error instanceof EventStoreError');
    assert.equal(error.code, 'INVALID_INPUT');
    assert.equal(error.path, path);
    if (message) assert.match(error.message, message);
    return true;
  };
}

/** `run` rejects with InvalidInputError at `path`, and the log is exactly as before. */
async function expectInvalid(run: () => Promise<unknown>, path: string, message?: RegExp): Promise<void> {
  const before = await snapshot();
  await assert.rejects(run, isInvalid(path, message));
  assert.deepEqual(await snapshot(), before, 'a rejected input must not change the log');
}

/** Appends `[good(), bad]`: a valid event first, so a partial write would show. */
function appendWithBad(bad: unknown): Promise<unknown> {
  return store.append([good(), loose<EventInput>(bad)]);
}

function isAborted(error: unknown): boolean {
  assert.ok(error instanceof OperationAbortedError, `expected OperationAbortedError, got ${String(error)}`);
  assert.equal((error as OperationAbortedError).code, 'ABORTED');
  assert.equal((error as Error).name, 'AbortError');
  assert.ok(error instanceof EventStoreError, 'error instanceof EventStoreError');
  return true;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** Tracks whether a promise has settled yet, without leaving a rejection unhandled. */
function track<T>(promise: Promise<T>): { outcome: Promise<Outcome<T>>; settled: () => boolean } {
  let done = false;
  const outcome = settle(promise).finally(() => (done = true));
  return { outcome, settled: () => done };
}

function project(events: SequencedEvent[]): unknown[] {
  return events.map(({ id, type, tags, data, metadata }) => ({ id, type, tags, data, metadata }));
}

// ---------------------------------------------------------------------------------------------

describe('bad input is rejected with InvalidInputError and writes nothing', SUITE, () => {
  test('an empty event list', async () => {
    await expectInvalid(() => store.append([]), 'events', /at least one event/);
  });

  test('a non-object event', async () => {
    await expectInvalid(() => appendWithBad(null), 'events[1]');
    await expectInvalid(() => appendWithBad('Good'), 'events[1]');
  });

  test('type: missing, not a string, empty, 256 characters', async () => {
    await expectInvalid(() => appendWithBad({ data: 1 }), 'events[1].type');
    await expectInvalid(() => appendWithBad({ type: 7, data: 1 }), 'events[1].type');
    await expectInvalid(() => appendWithBad({ type: '', data: 1 }), 'events[1].type', /must not be empty/);
    await expectInvalid(() => appendWithBad({ type: 'T'.repeat(256), data: 1 }), 'events[1].type', /at most 255/);
  });

  test('a type of exactly 255 characters is accepted', async () => {
    const type = 'T'.repeat(255);
    const { position } = await store.append({ type, data: 1 });
    const { events } = await store.read(Query.of(QueryItem.types(type)));
    assert.deepEqual(events.map((event) => event.position), [position]);
  });

  test('tags: not an array, non-string, empty, 256 characters', async () => {
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: 'book:1' }), 'events[1].tags');
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: ['ok', 5] }), 'events[1].tags[1]');
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: [{ tag: 'x' }] }), 'events[1].tags[0]');
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: [''] }), 'events[1].tags[0]', /must not be empty/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: ['ok', 'g'.repeat(256)] }), 'events[1].tags[1]', /at most 255/);
  });

  test('duplicate tags are de-duplicated (and sorted), not an error', async () => {
    const id = randomUUID();
    await store.append({ id, type: 'Tagged', data: 1, tags: ['dup:b', 'dup:a', 'dup:b', 'dup:a'] });
    const { events } = await store.read(Query.of(QueryItem.tags('dup:a', 'dup:b')));
    assert.equal(events.length, 1);
    assert.equal(events[0]!.id, id);
    assert.deepEqual(events[0]!.tags, ['dup:a', 'dup:b']);
  });

  test('data that is not JSON-serializable', async () => {
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.again = cycle;
    await expectInvalid(() => appendWithBad({ type: 'T' }), 'events[1].data', /is required/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: undefined }), 'events[1].data', /undefined/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { f: () => 1 } }), 'events[1].data.f', /function/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { s: Symbol('s') } }), 'events[1].data.s', /symbol/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { n: 12n } }), 'events[1].data.n', /BigInt/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: cycle }), 'events[1].data.again', /cycle/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { n: NaN } }), 'events[1].data.n', /NaN/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { list: [1, Infinity] } }), 'events[1].data.list[1]', /Infinity/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { m: new Map([['k', 'v']]) } }), 'events[1].data.m', /Map/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { a: [0, 1, undefined] } }), 'events[1].data.a[2]', /undefined/);
  });

  test('metadata that is not a JSON object, or not JSON', async () => {
    for (const metadata of [null, 'meta', 3, [1, 2], true]) {
      await expectInvalid(() => appendWithBad({ type: 'T', data: 1, metadata }), 'events[1].metadata', /must be a JSON object/);
    }
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, metadata: { big: 1n } }), 'events[1].metadata.big', /BigInt/);
  });

  test('\\u0000 in a string value or key of data, in a type, in a tag', async () => {
    await expectInvalid(() => appendWithBad({ type: 'T', data: { s: 'a\u0000b' } }), 'events[1].data.s', /\\u0000/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: { 'k\u0000': 1 } }), 'events[1].data (key "k\\u0000")', /\\u0000/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, metadata: { m: '\u0000' } }), 'events[1].metadata.m', /\\u0000/);
    await expectInvalid(() => appendWithBad({ type: 'T\u0000', data: 1 }), 'events[1].type', /\\u0000/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: ['tag\u0000'] }), 'events[1].tags[0]', /\\u0000/);
  });

  test('an unpaired surrogate', async () => {
    await expectInvalid(() => appendWithBad({ type: 'T', data: { s: 'x\ud83d' } }), 'events[1].data.s', /unpaired/);
    await expectInvalid(() => appendWithBad({ type: '\ude00', data: 1 }), 'events[1].type', /unpaired/);
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, tags: ['\ud800'] }), 'events[1].tags[0]', /unpaired/);
  });

  test('an invalid id', async () => {
    for (const id of ['not-a-uuid', '', 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz', 123]) {
      await expectInvalid(() => appendWithBad({ type: 'T', data: 1, id }), 'events[1].id', /UUID/);
    }
  });

  test('the same id twice in one append (also when only the case differs)', async () => {
    const id = randomUUID();
    await expectInvalid(() => store.append([{ id, type: 'A', data: 1 }, good(), { id, type: 'A', data: 1 }]), 'events[2].id', /repeats id/);
    await expectInvalid(() => store.append([{ id, type: 'A', data: 1 }, { id: id.toUpperCase(), type: 'A', data: 1 }]), 'events[1].id', /repeats id/);
    assert.equal(await storedPosition(id), undefined);
  });

  test('an invalid occurredAt', async () => {
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, occurredAt: new Date('nope') }), 'events[1].occurredAt');
    await expectInvalid(() => appendWithBad({ type: 'T', data: 1, occurredAt: '2024-01-01' }), 'events[1].occurredAt');
  });

  test('a negative, non-integer or non-bigint `after` in read options', async () => {
    for (const value of [-1n, -1, 1.5, NaN, '3', null]) {
      await expectInvalid(() => store.read(Query.all(), { after: loose<bigint>(value) }), 'after');
    }
    await assert.rejects(async () => {
      for await (const event of store.stream(Query.all(), { after: -5n })) void event;
    }, isInvalid('after'));
  });

  test('a negative, non-integer or non-bigint `after` in an append condition', async () => {
    for (const value of [-1n, -1, 1.5, NaN, '3', {}]) {
      await expectInvalid(() => store.append(good(), { failIfEventsMatch: Query.all(), after: loose<bigint>(value) }), 'condition.after');
    }
  });

  test('a condition without a Query', async () => {
    await expectInvalid(() => store.append(good(), loose<AppendCondition>({})), 'condition.failIfEventsMatch', /must be a Query/);
    await expectInvalid(() => store.append(good(), loose<AppendCondition>({ after: 1n })), 'condition.failIfEventsMatch');
    // The JSON shape of a query is not a Query (Query.fromJSON turns it into one).
    await expectInvalid(() => store.append(good(), loose<AppendCondition>({ failIfEventsMatch: Query.all().toJSON() })), 'condition.failIfEventsMatch');
    await expectInvalid(() => store.append(good(), loose<AppendCondition>(null)), 'condition');
    await expectInvalid(() => store.append(good(), loose<AppendCondition>('Query.all()')), 'condition');
  });

  test('read with a bad limit, query or backwards flag', async () => {
    for (const limit of [0, -1, 1.5, NaN, '5']) {
      await expectInvalid(() => store.read(Query.all(), { limit: loose<number>(limit) }), 'limit', /positive integer/);
    }
    await expectInvalid(() => store.read(loose<Query>({ items: [] })), 'query');
    await expectInvalid(() => store.read(Query.all(), { backwards: loose<boolean>('yes') }), 'backwards');
    await assert.rejects(async () => {
      for await (const event of store.stream(Query.all(), { batchSize: 0 })) void event;
    }, isInvalid('batchSize'));
  });

  test('a query item with nothing to match', async () => {
    await expectInvalid(async () => store.read(Query.fromJSON({ items: [{}] })), 'Query.items[0]', /needs types, tags or predicates/);
    await expectInvalid(async () => store.append(good(), { failIfEventsMatch: Query.fromJSON({ items: [{ types: ['A'] }, {}] }) }), 'Query.items[1]');
    await expectInvalid(async () => store.read(Query.of()), 'Query.of');
    await expectInvalid(async () => store.read(Query.of(QueryItem.types())), 'QueryItem.types');
    await expectInvalid(async () => store.read(Query.of(QueryItem.tags())), 'QueryItem.tags');
    await expectInvalid(async () => store.read(Query.of(loose<QueryItem>({}))), 'Query.of[0]');
  });

  test('event input is checked before a condition or the database is consulted', async () => {
    // A failing condition must not hide the bad input, and the valid first event must not be written.
    await expectInvalid(() => store.append([good(), loose<EventInput>({ type: '', data: 1 })], { failIfEventsMatch: Query.all() }), 'events[1].type');
  });
});

describe('values that look like SQL are just data', SUITE, () => {
  const nasty = [`'; DROP TABLE events; --`, `"`, `\\`, `$1`, `'`, `$$`, `%_*`, `{a,b}`, `NULL`, `); --`, `\\x00`, ` `];

  test('types, tags, payload keys and values round-trip exactly and can be queried', async () => {
    const ids: string[] = [];
    const events: EventInput[] = nasty.map((value, index) => {
      const id = randomUUID();
      ids.push(id);
      return {
        id,
        type: value,
        tags: [value, `sql:${index}`, `${value}:${value}`],
        data: { [value]: value, nested: { [`${value}key`]: [value, { [value]: null }] }, index },
        metadata: { [value]: value },
      };
    });
    const before = await store.head();
    const { position } = await store.append(events);
    assert.equal(position, before + BigInt(nasty.length));

    const { events: stored } = await store.read(Query.of(...nasty.map((_, index) => QueryItem.tags(`sql:${index}`))));
    assert.deepEqual(
      project(stored),
      events.map((event) => ({ id: event.id, type: event.type, tags: [...new Set(event.tags)].sort(), data: event.data, metadata: event.metadata })),
    );

    for (const [index, value] of nasty.entries()) {
      const expected = [ids[index]];
      const byType = await store.read(Query.of(QueryItem.types(value)));
      assert.deepEqual(byType.events.map((event) => event.id), expected, `type ${JSON.stringify(value)}`);
      const byTag = await store.read(Query.of(QueryItem.tags(value)));
      assert.deepEqual(byTag.events.map((event) => event.id), expected, `tag ${JSON.stringify(value)}`);
      const byTwoTags = await store.read(Query.of(QueryItem.tags(value, `${value}:${value}`)));
      assert.deepEqual(byTwoTags.events.map((event) => event.id), expected, `tags ${JSON.stringify(value)}`);
      const byPredicate = await store.read(Query.of(QueryItem.anyPredicateOf({ [value]: value }, { never: 'matches' })));
      assert.deepEqual(byPredicate.events.map((event) => event.id), expected, `predicate ${JSON.stringify(value)}`);
      const byAll = await store.read(Query.of(QueryItem.types(value).allPredicatesOf({ [value]: value }, { nested: { [`${value}key`]: [value] } })));
      assert.deepEqual(byAll.events.map((event) => event.id), expected, `all predicates ${JSON.stringify(value)}`);
    }

    // The table is still there and nothing else matches.
    const { rows } = await withClient((client) => client.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".events WHERE id = ANY ($1::uuid[])`, [ids]));
    assert.equal(rows[0]!.n, nasty.length);
  });

  test('SQL-looking queries work as append conditions, on both condition-check paths', async () => {
    const indexed = await connectToSchema(schema, { conditionScanLimit: 0 });
    try {
      for (const checker of [store, indexed]) {
        for (const [index, value] of nasty.entries()) {
          const target = await store.read(Query.of(QueryItem.tags(`sql:${index}`)));
          const position = target.events[0]!.position;
          const queries = [
            Query.of(QueryItem.types(value).tags(value)),
            Query.of(QueryItem.anyPredicateOf({ [value]: value })),
            Query.of(QueryItem.tags(`${value}:${value}`).allPredicatesOf({ nested: { [`${value}key`]: [{ [value]: null }] } })),
          ];
          for (const query of queries) {
            const condition: AppendCondition = { failIfEventsMatch: query, after: position - 1n };
            await assert.rejects(checker.append(good(), condition), (error: unknown) => {
              assert.ok(error instanceof AppendConditionFailedError, 'error instanceof AppendConditionFailedError');
              assert.equal(error.conflictingPosition, position);
              return true;
            });
            // `after` = the event itself: no later match, passes (and writes).
            const before = await store.head();
            const { position: written } = await checker.append({ type: 'SqlGuard', data: 1 }, { failIfEventsMatch: query, after: position });
            assert.equal(written, before + 1n);
          }
        }
      }
    } finally {
      await indexed.close();
    }
  });
});

describe('large and unicode payloads', SUITE, () => {
  test('a 5 MB string and a large nested object append and read back identically', async () => {
    const big = Array.from({ length: (5 * 1024 * 1024) / 16 }, (_, index) => index.toString(36).padStart(15, '.') + '|').join('');
    assert.equal(big.length, 5 * 1024 * 1024);
    let deep: Record<string, unknown> = { leaf: 'bottom' };
    for (let level = 0; level < 100; level++) deep = { level, child: deep, list: [level, String(level)] };
    const wide = Array.from({ length: 30_000 }, (_, index) => ({ index, name: `item ${index}`, flags: [index % 2 === 0, index % 3 === 0], score: index / 7 }));
    const events: EventInput[] = [
      { id: randomUUID(), type: 'Big', tags: ['size:big'], data: { big } },
      { id: randomUUID(), type: 'Big', tags: ['size:big'], data: { deep, wide }, metadata: { note: big.slice(0, 100_000) } },
    ];
    const { position } = await store.append(events);
    const { events: stored } = await store.read(Query.of(QueryItem.types('Big').tags('size:big')));
    assert.deepEqual(stored.map((event) => event.position), [position - 1n, position]);
    assert.equal((stored[0]!.data as { big: string }).big.length, big.length);
    assert.ok((stored[0]!.data as { big: string }).big === big, 'the 5 MB string must be identical');
    assert.deepEqual(stored[1]!.data, { deep, wide });
    assert.deepEqual(stored[1]!.metadata, { note: big.slice(0, 100_000) });
  });

  test('unicode (emoji, CJK, RTL, combining marks) round-trips in type, tags, data and metadata and can be queried', async () => {
    const event: EventInput = {
      id: randomUUID(),
      type: '本が追加された📚',
      tags: ['書籍:本-1', 'emoji:😀👍🏽', 'family:👨‍👩‍👧‍👦'],
      data: { 名前: '山田太郎', emoji: '🎉🚀', rtl: 'مرحبا بالعالم', combining: 'e\u0301', astral: '\u{1F600}\u{20000}', '🔑': '값' },
      metadata: { 'ユーザー': 'ü', '⚙️': ['日本語'] },
    };
    await store.append(event);
    const queries = [
      Query.of(QueryItem.types('本が追加された📚')),
      Query.of(QueryItem.tags('emoji:😀👍🏽')),
      Query.of(QueryItem.tags('family:👨‍👩‍👧‍👦', '書籍:本-1')),
      Query.of(QueryItem.anyPredicateOf({ 名前: '山田太郎' })),
      Query.of(QueryItem.allPredicatesOf({ '🔑': '값' }, { combining: 'e\u0301' })),
    ];
    for (const query of queries) {
      const { events } = await store.read(query);
      assert.equal(events.length, 1);
      assert.deepEqual(project(events)[0], { id: event.id, type: event.type, tags: [...event.tags!].sort(), data: event.data, metadata: event.metadata });
    }
    // NFC and NFD forms are different strings: no normalisation happens.
    const { events } = await store.read(Query.of(QueryItem.anyPredicateOf({ combining: '\u00e9' })));
    assert.equal(events.length, 0);
  });
});

describe('multi-event atomicity', SUITE, () => {
  test('an append of 3 events whose condition fails writes none of them', async () => {
    await store.append({ type: 'AtomGuard', tags: ['atom:1'], data: 1 });
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const before = await snapshot();
    await assert.rejects(
      store.append(ids.map((id) => ({ id, type: 'Atom', tags: ['atom:1'], data: id })), { failIfEventsMatch: Query.of(QueryItem.types('AtomGuard').tags('atom:1')) }),
      AppendConditionFailedError,
    );
    assert.deepEqual(await snapshot(), before);
    assert.equal(await countIds(ids), 0);
  });

  test('an append of 3 events where the third fails in the database writes none of them', async () => {
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const before = await snapshot();
    await assert.rejects(
      store.append([{ id: ids[0]!, type: 'Atom', data: 1 }, { id: ids[1]!, type: 'Atom', data: 2 }, { id: ids[2]!, type: 'Boom', data: 3 }]),
      (error: unknown) => error instanceof EventStoreDatabaseError && error.code === 'DATABASE_ERROR' && /boom/.test(error.message),
    );
    assert.deepEqual(await snapshot(), before);
    assert.equal(await countIds(ids), 0);
  });

  test('a successful append of 3 events writes all of them at consecutive positions and returns the last', async () => {
    const { head } = await store.read(Query.of(QueryItem.tags('atom:2')));
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const { position } = await store.append(
      ids.map((id, index) => ({ id, type: 'Atom', tags: ['atom:2'], data: { index } })),
      { failIfEventsMatch: Query.of(QueryItem.tags('atom:2')), after: head },
    );
    assert.equal(position, head + 3n);
    const { events } = await store.read(Query.all(), { after: head });
    assert.deepEqual(
      events.map((event) => [event.position, event.id, event.data]),
      ids.map((id, index) => [head + 1n + BigInt(index), id, { index }]),
    );
    // One append, one recordedAt.
    assert.equal(new Set(events.map((event) => event.recordedAt.getTime())).size, 1);
  });
});

describe('append conditions', SUITE, () => {
  let indexed: EventStore;
  before(async () => (indexed = await connectToSchema(schema, { conditionScanLimit: 0 })));
  after(() => indexed.close());

  const checkers = (): Array<[string, EventStore]> => [
    ['recent-after scan', store],
    ['index probe', indexed],
  ];

  test('`after` is exclusive: after = the matching event passes, after = one before it fails', async () => {
    for (const [name, checker] of checkers()) {
      const tag = `cond:${randomUUID()}`;
      const query = Query.of(QueryItem.types('Lent').tags(tag));
      const { position } = await checker.append({ type: 'Lent', tags: [tag], data: 1 });
      await checker.append({ type: 'Other', tags: [tag], data: 2 }); // does not match the query
      const failing: AppendCondition = { failIfEventsMatch: query, after: position - 1n };
      await assert.rejects(checker.append({ type: 'Lent', tags: [tag], data: 3 }, failing), (error: unknown) => {
        assert.ok(error instanceof AppendConditionFailedError, name);
        assert.equal(error.conflictingPosition, position, name);
        return true;
      });
      const passed = await checker.append({ type: 'Lent', tags: [tag], data: 4 }, { failIfEventsMatch: query, after: position });
      assert.equal(passed.position, position + 2n, name);
      // Now the just-written event is the conflict for the same `after`.
      await assert.rejects(checker.append({ type: 'Lent', tags: [tag], data: 5 }, { failIfEventsMatch: query, after: position }), (error: unknown) => {
        assert.ok(error instanceof AppendConditionFailedError, name);
        assert.equal(error.conflictingPosition, passed.position, name);
        return true;
      });
    }
  });

  test('without `after` the condition is a uniqueness check: any matching event at all fails it', async () => {
    for (const [name, checker] of checkers()) {
      const tag = `unique:${randomUUID()}`;
      const query = Query.of(QueryItem.types('Registered').tags(tag));
      const first = await checker.append({ type: 'Registered', tags: [tag], data: 1 }, { failIfEventsMatch: query });
      // Many unrelated events later, the old one still counts.
      await checker.append(Array.from({ length: 5 }, () => good()));
      const before = await snapshot();
      await assert.rejects(checker.append({ type: 'Registered', tags: [tag], data: 2 }, { failIfEventsMatch: query }), (error: unknown) => {
        assert.ok(error instanceof AppendConditionFailedError, name);
        assert.equal(error.conflictingPosition, first.position, name);
        assert.match(error.message, /at all/);
        return true;
      });
      assert.deepEqual(await snapshot(), before, name);
      // A different tag is unique.
      await checker.append({ type: 'Registered', tags: [`${tag}-2`], data: 3 }, { failIfEventsMatch: Query.of(QueryItem.types('Registered').tags(`${tag}-2`)) });
    }
  });

  test('Query.all() as condition fails if anything at all was appended after `after`', async () => {
    for (const [name, checker] of checkers()) {
      const head = await checker.head();
      const passed = await checker.append(good(), { failIfEventsMatch: Query.all(), after: head });
      assert.equal(passed.position, head + 1n, name);
      await assert.rejects(checker.append(good(), { failIfEventsMatch: Query.all(), after: head }), (error: unknown) => {
        assert.ok(error instanceof AppendConditionFailedError, name);
        assert.equal(error.conflictingPosition, head + 1n, name);
        return true;
      });
      // Without `after`: fails on any non-empty store.
      await assert.rejects(checker.append(good(), { failIfEventsMatch: Query.all() }), (error: unknown) => {
        assert.ok(error instanceof AppendConditionFailedError, name);
        assert.equal(error.conflictingPosition, 1n, name);
        return true;
      });
    }
  });

  test('`after` beyond the head passes even though matching events exist', async () => {
    for (const [name, checker] of checkers()) {
      const tag = `beyond:${randomUUID()}`;
      const query = Query.of(QueryItem.tags(tag));
      await checker.append({ type: 'X', tags: [tag], data: 1 });
      const head = await checker.head();
      const { position } = await checker.append({ type: 'X', tags: [tag], data: 2 }, { failIfEventsMatch: query, after: head + 100n });
      assert.equal(position, head + 1n, name);
      const all = await checker.append({ type: 'X', tags: [tag], data: 3 }, { failIfEventsMatch: Query.all(), after: 9223372036854775807n });
      assert.equal(all.position, head + 2n, name);
    }
  });

  test('a time-bounded query as condition only conflicts with events inside the bounds', async () => {
    const tag = `time:${randomUUID()}`;
    const old = new Date('2001-01-01T00:00:00Z');
    const { position } = await store.append({ type: 'Timed', tags: [tag], data: 1, occurredAt: old });
    const query = Query.of(QueryItem.tags(tag));
    await store.append(good(), { failIfEventsMatch: query.occurredFrom(new Date('2002-01-01T00:00:00Z')) });
    await assert.rejects(store.append(good(), { failIfEventsMatch: query.occurredUntil(old) }), (error: unknown) => {
      assert.ok(error instanceof AppendConditionFailedError, 'error instanceof AppendConditionFailedError');
      assert.equal(error.conflictingPosition, position);
      return true;
    });
  });

  test('AppendConditionFailedError carries the condition object, the conflict, a stable code and a guard', async () => {
    const tag = `err:${randomUUID()}`;
    const { position } = await store.append({ type: 'E', tags: [tag], data: 1 });
    const condition: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.tags(tag)), after: position - 1n };
    const error = await store.append(good(), condition).then(
      () => assert.fail('the append should have failed'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof AppendConditionFailedError, 'error instanceof AppendConditionFailedError');
    assert.ok(error instanceof EventStoreError, 'error instanceof EventStoreError');
    assert.ok(error instanceof Error, 'error instanceof Error');
    assert.equal(error.code, 'APPEND_CONDITION_FAILED');
    assert.equal(error.name, 'AppendConditionFailedError');
    assert.strictEqual(error.condition, condition);
    assert.equal(error.conflictingPosition, position);
    assert.match(error.message, new RegExp(`after position ${position - 1n}`));
    assert.equal(isAppendConditionFailedError(error), true);
    assert.equal(isEventStoreError(error, 'APPEND_CONDITION_FAILED'), true);
    assert.equal(isAppendConditionFailedError(new InvalidInputError('x', 'y')), false);
    assert.equal(isAppendConditionFailedError(new Error('append condition failed')), false);
    assert.equal(isAppendConditionFailedError(undefined), false);
  });
});

describe('idempotent retry', SUITE, () => {
  function batchOf(tag: string): EventInput[] {
    return [
      { id: randomUUID(), type: 'Retried', tags: [tag, 'retry:all'], data: { n: 1, nested: { a: [1, 2] } }, metadata: { by: 'test' } },
      { id: randomUUID(), type: 'Retried', tags: [tag], data: { n: 2 } },
      { id: randomUUID(), type: 'RetriedToo', tags: [], data: 'third' },
    ];
  }

  test('the same call again returns the original position and writes nothing', async () => {
    const events = batchOf(`retry:${randomUUID()}`);
    const { position } = await store.append(events);
    const before = await snapshot();
    assert.deepEqual(await store.append(events), { position });
    assert.deepEqual(await store.append(structuredClone(events)), { position });
    assert.deepEqual(await snapshot(), before);
    assert.equal(await countIds(events.map((event) => event.id!)), 3);
  });

  test('a retry with equal content in another form (upper-case ids, reordered keys and tags, fresh occurredAt) is the same append', async () => {
    const tag = `retry:${randomUUID()}`;
    const events: EventInput[] = [{ id: randomUUID(), type: 'Retried', tags: [tag, 'retry:b', 'retry:a'], data: { a: 1, b: { c: 2, d: 3 } }, metadata: { x: 1, y: 2 } }];
    const { position } = await store.append(events);
    await delay(5);
    const retry: EventInput[] = [
      { id: events[0]!.id!.toUpperCase(), type: 'Retried', tags: ['retry:a', tag, 'retry:b', 'retry:a'], data: { b: { d: 3, c: 2 }, a: 1 }, metadata: { y: 2, x: 1 }, occurredAt: new Date() },
    ];
    const before = await snapshot();
    assert.deepEqual(await store.append(retry), { position });
    assert.deepEqual(await snapshot(), before);
  });

  test('a retry carrying its original condition returns the original position (the condition would fail on its own events)', async () => {
    const tag = `retry:${randomUUID()}`;
    const query = Query.of(QueryItem.tags(tag));
    const { head } = await store.read(query);
    const events = batchOf(tag);
    const withAfter: AppendCondition = { failIfEventsMatch: query, after: head };
    const { position } = await store.append(events, withAfter);
    const before = await snapshot();
    assert.deepEqual(await store.append(events, withAfter), { position });
    // A uniqueness condition, too.
    const tag2 = `retry:${randomUUID()}`;
    const unique: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.tags(tag2)) };
    const events2 = batchOf(tag2);
    const second = await store.append(events2, unique);
    assert.deepEqual(await store.append(events2, unique), second);
    assert.equal((await snapshot()).head, before.head + 3n);
    // A new append with the same condition but fresh ids does fail.
    await assert.rejects(store.append(batchOf(tag2), unique), AppendConditionFailedError);
  });

  test('identical appends racing in one store: all return the same position, one copy stored', async () => {
    const events = batchOf(`race:${randomUUID()}`);
    const before = await store.head();
    const results = await Promise.all(Array.from({ length: 8 }, () => store.append(structuredClone(events))));
    const position = results[0]!.position;
    assert.equal(position, before + 3n);
    for (const result of results) assert.equal(result.position, position);
    assert.equal(await countIds(events.map((event) => event.id!)), 3);
    assert.equal(await store.head(), before + 3n);
  });

  test('identical appends racing inside one batch (the original among them): all return the same position', async () => {
    const events = batchOf(`race:${randomUUID()}`);
    const slow = store.append({ type: 'Slow', data: { sleep: 0.2 } });
    await delay(50); // the slow append is in flight; the next ones queue into one batch
    const racing = Array.from({ length: 6 }, () => store.append(structuredClone(events)));
    const { position: slowPosition } = await slow;
    const results = await Promise.all(racing);
    for (const result of results) assert.equal(result.position, slowPosition + 3n);
    assert.equal(await countIds(events.map((event) => event.id!)), 3);
    assert.equal(await store.head(), slowPosition + 3n);
  });

  test('identical appends racing across two stores: all return the same position, one copy stored', async () => {
    const other = await connectToSchema(schema);
    try {
      for (let round = 0; round < 3; round++) {
        const events = batchOf(`race:${randomUUID()}`);
        const before = await store.head();
        const results = await Promise.all(Array.from({ length: 8 }, (_, index) => (index % 2 === 0 ? store : other).append(structuredClone(events))));
        for (const result of results) assert.equal(result.position, before + 3n);
        assert.equal(await countIds(events.map((event) => event.id!)), 3);
        assert.equal(await store.head(), before + 3n);
      }
    } finally {
      await other.close();
    }
  });

  test('retries with the original condition racing across two stores after the original committed', async () => {
    const other = await connectToSchema(schema);
    try {
      const tag = `race:${randomUUID()}`;
      const condition: AppendCondition = { failIfEventsMatch: Query.of(QueryItem.tags(tag)), after: await store.head() };
      const events = batchOf(tag);
      const { position } = await store.append(events, condition);
      const before = await snapshot();
      const results = await Promise.all(Array.from({ length: 6 }, (_, index) => (index % 2 === 0 ? store : other).append(structuredClone(events), condition)));
      for (const result of results) assert.equal(result.position, position);
      assert.deepEqual(await snapshot(), before);
    } finally {
      await other.close();
    }
  });

  test('the same ids with different type, tags, data or metadata: DuplicateEventIdError, nothing written', async () => {
    const tag = `dup:${randomUUID()}`;
    const events = batchOf(tag);
    const { position } = await store.append(events);
    const changes: Array<[string, (event: EventInput) => EventInput]> = [
      ['type', (event) => ({ ...event, type: 'Changed' })],
      ['tags', (event) => ({ ...event, tags: [...(event.tags ?? []), 'extra:tag'] })],
      ['fewer tags', (event) => ({ ...event, tags: [] })],
      ['data', (event) => ({ ...event, data: { changed: true } })],
      ['data number', (event) => ({ ...event, data: { ...(event.data as object), n: 1.5 } })],
      ['metadata', (event) => ({ ...event, metadata: { by: 'someone else' } })],
      ['metadata dropped', (event) => ({ ...event, metadata: {} })],
    ];
    for (const [what, change] of changes) {
      const changed = events.map((event, index) => (index === 0 ? change(event) : event));
      const before = await snapshot();
      const error = await store.append(changed).then(
        () => assert.fail(`a different ${what} must not be an idempotent retry`),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof DuplicateEventIdError, what);
      assert.ok(error instanceof EventStoreError, what);
      assert.equal(error.code, 'DUPLICATE_EVENT_ID', what);
      assert.deepEqual(error.ids, events.map((event) => event.id), what);
      assert.equal(error.existingPosition, position, what);
      assert.deepEqual(await snapshot(), before, what);
    }
    // The original is untouched.
    const { events: stored } = await store.read(Query.of(QueryItem.tags(tag)));
    assert.deepEqual(stored.map((event) => event.type), ['Retried', 'Retried']);
    assert.deepEqual(stored[0]!.metadata, { by: 'test' });
  });

  test('a retry where only some of the ids exist: DuplicateEventIdError, the new ones are not written', async () => {
    const events = batchOf(`partial:${randomUUID()}`);
    const { position } = await store.append(events.slice(0, 2));
    const before = await snapshot();
    for (const attempt of [events, [events[2]!, events[0]!], [events[1]!, { id: randomUUID(), type: 'New', data: 1 }]]) {
      await assert.rejects(store.append(attempt), (error: unknown) => {
        assert.ok(error instanceof DuplicateEventIdError, 'error instanceof DuplicateEventIdError');
        assert.equal(error.existingPosition !== undefined && error.existingPosition <= position, true);
        return true;
      });
      assert.deepEqual(await snapshot(), before);
    }
    assert.equal(await storedPosition(events[2]!.id!), undefined);
  });

  test('an id stored by an earlier append cannot be reused for a different event, even with a passing condition', async () => {
    const id = randomUUID();
    await store.append({ id, type: 'Original', data: 1 });
    const before = await snapshot();
    await assert.rejects(store.append({ id, type: 'Other', data: 1 }, { failIfEventsMatch: Query.all(), after: before.head }), DuplicateEventIdError);
    assert.deepEqual(await snapshot(), before);
  });
});

describe('batching isolation', SUITE, () => {
  test('concurrent appends in one store: an id clash, a failed condition and an exact retry among them do not affect the others', async () => {
    const existingId = randomUUID();
    const existing = await store.append({ id: existingId, type: 'Existing', tags: ['iso:1'], data: 1 });
    const before = await store.head();
    const plan = Array.from({ length: 21 }, (_, index) => index);
    const attempts = plan.map((index) => {
      if (index === 7) return store.append({ id: existingId, type: 'Clash', data: 1 });
      if (index === 10) return store.append(good(), { failIfEventsMatch: Query.of(QueryItem.tags('iso:1')) });
      if (index === 13) return store.append({ id: existingId, type: 'Existing', tags: ['iso:1'], data: 1 });
      return store.append({ type: 'Isolated', tags: [`iso:${index}`], data: { index } });
    });
    const outcomes = await Promise.all(attempts.map(settle));
    const positions: bigint[] = [];
    for (const [index, outcome] of outcomes.entries()) {
      if (index === 7) assert.ok(!outcome.ok && outcome.error instanceof DuplicateEventIdError, `#${index}`);
      else if (index === 10) assert.ok(!outcome.ok && outcome.error instanceof AppendConditionFailedError, `#${index}`);
      else if (index === 13) assert.deepEqual(outcome, { ok: true, value: existing }, `#${index}`);
      else {
        assert.ok(outcome.ok, `#${index}: ${outcome.ok ? '' : String(outcome.error)}`);
        positions.push(outcome.value.position);
      }
    }
    assert.equal(positions.length, 18);
    assert.deepEqual(
      [...positions].sort((a, b) => (a < b ? -1 : 1)),
      Array.from({ length: 18 }, (_, index) => before + 1n + BigInt(index)),
    );
    assert.equal(await store.head(), before + 18n);
    const { events } = await store.read(Query.of(QueryItem.types('Isolated')), { after: before });
    assert.equal(events.length, 18);
    for (const event of events) assert.equal(positions.includes(event.position), true);
  });

  test('two new events with the same id in one batch: the first is written, the other gets DuplicateEventIdError', async () => {
    const id = randomUUID();
    const slow = store.append({ type: 'Slow', data: { sleep: 0.2 } });
    await delay(50);
    const first = settle(store.append({ id, type: 'First', data: 1 }));
    const second = settle(store.append({ id, type: 'Second', data: 2 }));
    const third = settle(store.append(good()));
    await slow;
    const [a, b, c] = await Promise.all([first, second, third]);
    assert.ok(a.ok, 'a.ok');
    assert.ok(!b.ok && b.error instanceof DuplicateEventIdError, '!b.ok && b.error instanceof DuplicateEventIdError');
    assert.ok(c.ok, 'c.ok');
    assert.equal(await storedPosition(id), a.value.position);
  });

  test('a command that breaks the batch in the database fails alone; the others are written', async () => {
    const before = await store.head();
    const boomId = randomUUID();
    const attempts = Array.from({ length: 20 }, (_, index) =>
      index === 9 ? store.append({ id: boomId, type: 'Boom', data: 1 }) : store.append({ type: 'Survivor', tags: [`boom:${index}`], data: { index } }),
    );
    const outcomes = await Promise.all(attempts.map(settle));
    const positions: bigint[] = [];
    for (const [index, outcome] of outcomes.entries()) {
      if (index === 9) {
        assert.ok(!outcome.ok, 'the Boom append must fail');
        assert.ok(outcome.error instanceof EventStoreDatabaseError, String(outcome.error));
        assert.match((outcome.error as Error).message, /boom/);
      } else {
        assert.ok(outcome.ok, `#${index}: ${outcome.ok ? '' : String(outcome.error)}`);
        positions.push(outcome.value.position);
      }
    }
    assert.equal(new Set(positions).size, 19);
    assert.equal(await store.head(), before + 19n);
    assert.equal(await storedPosition(boomId), undefined);
    const { events } = await store.read(Query.of(QueryItem.types('Survivor')), { after: before });
    assert.deepEqual(events.map((event) => event.position), Array.from({ length: 19 }, (_, index) => before + 1n + BigInt(index)));
  });
});

describe('cancellation', SUITE, () => {
  test('append with an already-aborted signal rejects with ABORTED and writes nothing', async () => {
    const controller = new AbortController();
    controller.abort(new Error('user gave up'));
    const id = randomUUID();
    const before = await snapshot();
    await assert.rejects(store.append({ id, type: 'T', data: 1 }, undefined, { signal: controller.signal }), (error: unknown) => {
      isAborted(error);
      assert.equal(((error as Error).cause as Error).message, 'user gave up');
      return true;
    });
    await assert.rejects(store.append({ type: 'T', data: 1 }, { failIfEventsMatch: Query.all() }, { signal: AbortSignal.abort() }), isAborted);
    assert.deepEqual(await snapshot(), before);
    assert.equal(await storedPosition(id), undefined);
  });

  test('aborting an append queued behind a slow batch rejects it at once; it is never written, the slow one commits', async () => {
    const slowId = randomUUID();
    const slow = track(store.append({ id: slowId, type: 'Slow', data: { sleep: 1 } }));
    await delay(100);
    const controller = new AbortController();
    const queuedId = randomUUID();
    const queued = track(store.append({ id: queuedId, type: 'Queued', data: 1 }, undefined, { signal: controller.signal }));
    const other = track(store.append(good())); // queued too, not aborted
    await delay(50);
    const abortedAt = Date.now();
    controller.abort();
    const outcome = await queued.outcome;
    assert.ok(!outcome.ok, '!outcome.ok');
    isAborted(outcome.error);
    assert.ok(Date.now() - abortedAt < 500, 'a queued append must reject right away, not after the batch ahead of it');
    assert.equal(slow.settled(), false, 'the slow append was still running');
    const slowOutcome = await slow.outcome;
    assert.ok(slowOutcome.ok, 'slowOutcome.ok');
    const otherOutcome = await other.outcome;
    assert.ok(otherOutcome.ok, 'otherOutcome.ok');
    assert.equal(otherOutcome.value.position, slowOutcome.value.position + 1n);
    assert.equal(await storedPosition(slowId), slowOutcome.value.position);
    await store.append(good());
    assert.equal(await storedPosition(queuedId), undefined);
  });

  test('aborting the in-flight slow append cancels it: ABORTED, not written, and the store keeps working', async () => {
    const controller = new AbortController();
    const id = randomUUID();
    const before = await snapshot();
    const slow = track(store.append({ id, type: 'Slow', data: { sleep: 5 } }, undefined, { signal: controller.signal }));
    await delay(300);
    const abortedAt = Date.now();
    controller.abort();
    const outcome = await slow.outcome;
    const stored = await storedPosition(id);
    // Consistency first: the outcome and the log must agree.
    if (outcome.ok) assert.equal(stored, outcome.value.position);
    else assert.equal(stored, undefined);
    // With a 5 s sleep, the cancel wins.
    assert.ok(!outcome.ok, 'the append should have been cancelled');
    isAborted(outcome.error);
    assert.ok(Date.now() - abortedAt < 3000, 'the cancel must interrupt the running statement');
    assert.deepEqual(await snapshot(), before);
    // The cancel must not hit the next statement on that connection.
    for (let round = 0; round < 5; round++) await store.append({ type: 'Slow', data: { sleep: 0.02 } });
    assert.equal(await store.head(), before.head + 5n);
  });

  test('aborting one append of an in-flight batch does not touch the others: the caller is detached with APPEND_OUTCOME_UNKNOWN at once, the batch commits', async () => {
    const first = track(store.append({ type: 'Slow', data: { sleep: 0.4 } }));
    await delay(50);
    const controller = new AbortController();
    const slowId = randomUUID();
    const companionIds = [randomUUID(), randomUUID()];
    const slow = track(store.append({ id: slowId, type: 'Slow', data: { sleep: 1 } }, undefined, { signal: controller.signal }));
    const companions = companionIds.map((id) => track(store.append({ id, type: 'Companion', data: 1 })));
    const firstOutcome = await first.outcome;
    assert.ok(firstOutcome.ok, 'firstOutcome.ok');
    await delay(300); // the batch of slow + companions is now running
    assert.equal(slow.settled(), false);
    assert.equal(companions.some((companion) => companion.settled()), false, 'the companions ride in the slow batch');
    const abortedAt = Date.now();
    controller.abort();
    const outcome = await slow.outcome;
    assert.ok(Date.now() - abortedAt < 200, 'the aborting caller is detached at once');
    assert.ok(!outcome.ok, '!outcome.ok');
    assert.ok(outcome.error instanceof AppendOutcomeUnknownError, String(outcome.error));
    assert.deepEqual(outcome.error.ids, [slowId]);
    assert.equal(companions.some((companion) => companion.settled()), false, 'the batch was not cancelled');
    const positions: bigint[] = [];
    for (const [index, companion] of companions.entries()) {
      const result = await companion.outcome;
      assert.ok(result.ok, `companion ${index}: ${result.ok ? '' : String(result.error)}`);
      assert.equal(await storedPosition(companionIds[index]!), result.value.position);
      positions.push(result.value.position);
    }
    // The batch was not rolled back: the aborted caller's event went in with it, before the companions.
    assert.equal(await storedPosition(slowId), positions[0]! - 1n);
    // Settling the unknown outcome: the same event with the same id again is an idempotent repeat.
    const repeat = await store.append({ id: slowId, type: 'Slow', data: { sleep: 1 } });
    assert.equal(repeat.position, positions[0]! - 1n);
  });

  test('aborts racing a short append: the outcome always matches the log', async () => {
    for (let round = 0; round < 12; round++) {
      const controller = new AbortController();
      const id = randomUUID();
      const appending = track(store.append({ id, type: 'Slow', data: { sleep: 0.03 } }, undefined, { signal: controller.signal }));
      await delay(round * 4);
      controller.abort();
      const outcome = await appending.outcome;
      const stored = await storedPosition(id);
      if (outcome.ok) assert.equal(stored, outcome.value.position, `round ${round}: success must mean written`);
      else {
        isAborted(outcome.error);
        assert.equal(stored, undefined, `round ${round}: ABORTED must mean not written`);
      }
    }
    // Still consistent and gap-free.
    const state = await snapshot();
    assert.equal(state.rows, state.maxPosition);
    assert.equal(state.head, BigInt(state.maxPosition));
  });

  test('read, head and stream with an already-aborted signal reject with ABORTED', async () => {
    const signal = AbortSignal.abort();
    await assert.rejects(store.read(Query.all(), { signal }), isAborted);
    await assert.rejects(store.head({ signal }), isAborted);
    await assert.rejects(async () => {
      for await (const event of store.stream(Query.all(), { signal })) void event;
    }, isAborted);
  });

  test('aborting a read that waits for a lock cancels it; the store keeps working', async () => {
    await withClient(async (locker) => {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
      try {
        const controller = new AbortController();
        const reading = track(store.read(Query.all(), { signal: controller.signal }));
        const headController = new AbortController();
        const heading = track(store.read(Query.of(QueryItem.tags('input:ok')), { signal: headController.signal, limit: 1 }));
        await delay(300);
        assert.equal(reading.settled(), false, 'the read must be blocked by the lock');
        assert.equal(heading.settled(), false);
        const abortedAt = Date.now();
        controller.abort();
        const outcome = await reading.outcome;
        assert.ok(!outcome.ok, '!outcome.ok');
        isAborted(outcome.error);
        assert.ok(Date.now() - abortedAt < 2000, 'Date.now() - abortedAt < 2000');
        headController.abort();
        const headOutcome = await heading.outcome;
        assert.ok(!headOutcome.ok, '!headOutcome.ok');
        isAborted(headOutcome.error);
      } finally {
        await locker.query('ROLLBACK');
      }
    });
    for (let round = 0; round < 12; round++) {
      const { head } = await store.read(Query.all(), { limit: 1 });
      assert.ok(head > 0n, 'head > 0n');
    }
  });

  test('aborting a read that waits for a free connection rejects it with ABORTED (it never runs)', async () => {
    const narrow = await connectToSchema(schema, { poolSize: 1 });
    try {
      await withClient(async (locker) => {
        await locker.query('BEGIN');
        await locker.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
        let waiting: ReturnType<typeof track<unknown>> | undefined;
        let holding: ReturnType<typeof track<unknown>> | undefined;
        try {
          // The only connection is busy with a read stuck on the lock.
          holding = track(narrow.read(Query.all(), { limit: 1 }));
          await delay(100);
          const controller = new AbortController();
          waiting = track(narrow.read(Query.all(), { limit: 1, signal: controller.signal }));
          await delay(100);
          controller.abort();
          await delay(1000);
          assert.equal(waiting.settled(), true, 'an aborted read must not keep waiting for a connection');
        } finally {
          await locker.query('ROLLBACK');
        }
        assert.ok((await holding.outcome).ok, 'the read holding the connection completes once the lock is gone');
        const outcome = await waiting.outcome;
        assert.equal(outcome.ok, false, 'the aborted read must not run after all');
        if (!outcome.ok) isAborted(outcome.error);
      });
    } finally {
      await narrow.close();
    }
  });

  test('aborting head() that waits for a lock cancels it', async () => {
    await withClient(async (locker) => {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".head IN ACCESS EXCLUSIVE MODE`);
      try {
        const controller = new AbortController();
        const heading = track(store.head({ signal: controller.signal }));
        await delay(200);
        assert.equal(heading.settled(), false);
        controller.abort();
        const outcome = await heading.outcome;
        assert.ok(!outcome.ok, '!outcome.ok');
        isAborted(outcome.error);
      } finally {
        await locker.query('ROLLBACK');
      }
    });
    assert.ok((await store.head()) > 0n, '(await store.head()) > 0n');
  });

  test('aborting a stream mid-iteration stops it with ABORTED', async () => {
    const tag = `stream:${randomUUID()}`;
    await store.append(Array.from({ length: 6 }, (_, index) => ({ type: 'Streamed', tags: [tag], data: { index } })));
    const controller = new AbortController();
    const seen: unknown[] = [];
    await assert.rejects(async () => {
      for await (const event of store.stream(Query.of(QueryItem.tags(tag)), { batchSize: 2, signal: controller.signal })) {
        seen.push(event.data);
        if (seen.length === 1) controller.abort();
      }
    }, isAborted);
    // The batch already fetched is delivered; the next fetch is refused.
    assert.deepEqual(seen, [{ index: 0 }, { index: 1 }]);
    // Without abort, the same stream yields all six.
    let count = 0;
    for await (const event of store.stream(Query.of(QueryItem.tags(tag)), { batchSize: 2 })) {
      void event;
      count++;
    }
    assert.equal(count, 6);
  });

  test('aborting a stream while its next batch waits for a lock stops it with ABORTED', async () => {
    const tag = `stream:${randomUUID()}`;
    await store.append(Array.from({ length: 6 }, (_, index) => ({ type: 'Streamed', tags: [tag], data: { index } })));
    const controller = new AbortController();
    const seen: unknown[] = [];
    await withClient(async (locker) => {
      try {
        await assert.rejects(async () => {
          for await (const event of store.stream(Query.of(QueryItem.tags(tag)), { batchSize: 2, signal: controller.signal })) {
            seen.push(event.data);
            if (seen.length === 2) {
              await locker.query('BEGIN');
              await locker.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
              setTimeout(() => controller.abort(), 200);
            }
          }
        }, isAborted);
      } finally {
        await locker.query('ROLLBACK');
      }
    });
    // The stream fetches one batch ahead: the second batch may have arrived before the lock was
    // taken (then the third waits), or may be the one waiting. Either way nothing after the
    // waiting batch was yielded.
    assert.ok(seen.length === 2 || seen.length === 4, `saw ${seen.length} events`);
    assert.deepEqual(seen, Array.from({ length: seen.length }, (_, index) => ({ index })));
  });
});

describe('JSON null payloads', SUITE, () => {
  // EventInput documents `data: null` as "an event without payload"; normalizeEvent accepts it.
  test('an event with data: null appends and reads back with data null', async () => {
    const id = randomUUID();
    const { position } = await store.append({ id, type: 'NoPayload', data: null });
    const { events } = await store.read(Query.of(QueryItem.types('NoPayload')));
    assert.deepEqual(events.map((event) => [event.position, event.id, event.data]), [[position, id, null]]);
    // And an exact retry is idempotent.
    assert.deepEqual(await store.append({ id, type: 'NoPayload', data: null }), { position });
  });
});
