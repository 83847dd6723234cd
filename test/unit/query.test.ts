// The Query / QueryItem builder: what each method builds, that built queries cannot be changed
// afterwards, what is refused (always with InvalidInputError), and the DCB JSON shape.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventStoreError, InvalidInputError, MAX_TAG_LENGTH, MAX_TYPE_LENGTH, Query, QueryItem, type QueryJSON } from '../../src/index.ts';

/** Asserts that `action` throws an InvalidInputError (code INVALID_INPUT), optionally at `path`. */
function assertInvalid(action: () => unknown, path?: string | RegExp, what = ''): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof InvalidInputError, `${what}: expected an InvalidInputError, got ${String(error)}`);
    assert.ok(error instanceof EventStoreError);
    assert.equal(error.code, 'INVALID_INPUT');
    if (typeof path === 'string') assert.equal(error.path, path, what);
    else if (path instanceof RegExp) assert.match(error.path, path, what);
    return true;
  }, what);
}

/** Bypasses the compile-time types, as a JavaScript caller could. */
function loose<T>(value: unknown): T {
  return value as T;
}

const LENT = 'BookCopyLentToReader';
const RETURNED = 'BookCopyReturnedByReader';
const REGISTERED = 'ReaderRegistered';
const d1 = new Date('2024-03-01T10:00:00.000Z');
const d2 = new Date('2024-03-02T10:00:00.000Z');

describe('QueryItem builders', () => {
  test('QueryItem.types keeps the given types, in order, without duplicates', () => {
    assert.deepEqual(QueryItem.types(LENT).toJSON(), { types: [LENT] });
    assert.deepEqual(QueryItem.types(RETURNED, LENT, RETURNED).toJSON(), { types: [RETURNED, LENT] });
  });

  test('QueryItem.tags keeps the tags sorted and without duplicates', () => {
    assert.deepEqual(QueryItem.tags('reader:r1').toJSON(), { tags: ['reader:r1'] });
    assert.deepEqual(QueryItem.tags('reader:r1', 'book:b1', 'reader:r1').toJSON(), { tags: ['book:b1', 'reader:r1'] });
  });

  test('QueryItem.anyPredicateOf and allPredicatesOf keep the predicates in order', () => {
    assert.deepEqual(QueryItem.anyPredicateOf({ BookID: 'b1' }, { BookID: 'b2' }).toJSON(), { anyPredicateOf: [{ BookID: 'b1' }, { BookID: 'b2' }] });
    assert.deepEqual(QueryItem.allPredicatesOf({ BookID: 'b1' }, { nested: { a: [1, 2] } }).toJSON(), {
      allPredicatesOf: [{ BookID: 'b1' }, { nested: { a: [1, 2] } }],
    });
  });

  test('predicates may be any JSON value: objects, arrays, strings, numbers, booleans, null', () => {
    const predicates = [{}, [], ['b1', 2], 'b1', 0, -1.5, true, false, null, { a: null, b: [{ c: 'd' }] }];
    assert.deepEqual(QueryItem.anyPredicateOf(...predicates).toJSON(), { anyPredicateOf: predicates });
    assert.deepEqual(QueryItem.allPredicatesOf(...predicates).toJSON(), { allPredicatesOf: predicates });
  });

  test('an object property that is undefined is left out, as JSON does', () => {
    assert.deepEqual(QueryItem.anyPredicateOf({ a: undefined, b: 1 }).toJSON(), { anyPredicateOf: [{ b: 1 }] });
  });

  test('the same (non-cyclic) object may appear twice in a predicate', () => {
    const shared = { BookID: 'b1' };
    assert.deepEqual(QueryItem.anyPredicateOf({ x: shared, y: [shared, shared] }).toJSON(), {
      anyPredicateOf: [{ x: { BookID: 'b1' }, y: [{ BookID: 'b1' }, { BookID: 'b1' }] }],
    });
  });

  test('chained methods combine all parts, whatever the order', () => {
    const expected = { types: [LENT, RETURNED], tags: ['book:b1', 'reader:r1'], anyPredicateOf: [{ BookID: 'b1' }] };
    assert.deepEqual(QueryItem.types(LENT, RETURNED).tags('reader:r1', 'book:b1').anyPredicateOf({ BookID: 'b1' }).toJSON(), expected);
    assert.deepEqual(QueryItem.tags('book:b1', 'reader:r1').anyPredicateOf({ BookID: 'b1' }).types(LENT, RETURNED).toJSON(), expected);
    assert.deepEqual(QueryItem.anyPredicateOf({ BookID: 'b1' }).types(LENT, RETURNED).tags('reader:r1', 'book:b1').toJSON(), expected);
    assert.deepEqual(QueryItem.allPredicatesOf({ a: 1 }, { b: 2 }).tags('x').types(REGISTERED).toJSON(), {
      types: [REGISTERED],
      tags: ['x'],
      allPredicatesOf: [{ a: 1 }, { b: 2 }],
    });
  });

  test('the longest allowed type and tag (255 characters) are accepted', () => {
    const type = 't'.repeat(MAX_TYPE_LENGTH);
    const tag = 'g'.repeat(MAX_TAG_LENGTH);
    assert.deepEqual(QueryItem.types(type).tags(tag).toJSON(), { types: [type], tags: [tag] });
  });

  test('types and tags may hold characters that are special elsewhere (commas, quotes, braces, unicode)', () => {
    const odd = ['a,b', 'q"u', '{x}', 'NULL', 'back\\slash', 'ünï 📚'];
    assert.deepEqual(QueryItem.types(...odd).toJSON().types, odd);
    assert.deepEqual(QueryItem.tags(...odd).toJSON().tags, [...odd].sort());
  });
});

describe('immutability', () => {
  test('every chained call returns a new item and leaves the original unchanged', () => {
    const base = QueryItem.types(LENT);
    const withTags = base.tags('book:b1');
    const withPredicate = base.anyPredicateOf({ BookID: 'b1' });
    const withAll = withTags.allPredicatesOf({ ReaderID: 'r1' });
    assert.notEqual(withTags, base);
    assert.notEqual(withPredicate, base);
    assert.notEqual(withAll, withTags);
    assert.deepEqual(base.toJSON(), { types: [LENT] });
    assert.deepEqual(withTags.toJSON(), { types: [LENT], tags: ['book:b1'] });
    assert.deepEqual(withPredicate.toJSON(), { types: [LENT], anyPredicateOf: [{ BookID: 'b1' }] });
    assert.deepEqual(withAll.toJSON(), { types: [LENT], tags: ['book:b1'], allPredicatesOf: [{ ReaderID: 'r1' }] });
    // The original can still be extended with what the derived items set.
    assert.deepEqual(base.tags('book:b2').toJSON(), { types: [LENT], tags: ['book:b2'] });

    const tagsFirst = QueryItem.tags('reader:r1');
    tagsFirst.types(LENT);
    assert.deepEqual(tagsFirst.toJSON(), { tags: ['reader:r1'] });
    const predicateFirst = QueryItem.allPredicatesOf({ a: 1 });
    predicateFirst.types(LENT);
    predicateFirst.tags('x');
    assert.deepEqual(predicateFirst.toJSON(), { allPredicatesOf: [{ a: 1 }] });
  });

  test('mutating a predicate object after building does not change the item', () => {
    const predicate: { BookID: string; nested: { list: number[]; deep?: { x: number } }; extra?: number } = { BookID: 'b1', nested: { list: [1, 2] } };
    const list = ['b1', { r: 'r1' }];
    const item = QueryItem.anyPredicateOf(predicate, list);
    const all = QueryItem.allPredicatesOf(predicate);
    predicate.BookID = 'b2';
    predicate.extra = 1;
    predicate.nested.list.push(3);
    predicate.nested.deep = { x: 1 };
    list.push('b3');
    (list[1] as { r: string }).r = 'r2';
    assert.deepEqual(item.toJSON(), { anyPredicateOf: [{ BookID: 'b1', nested: { list: [1, 2] } }, ['b1', { r: 'r1' }]] });
    assert.deepEqual(all.toJSON(), { allPredicatesOf: [{ BookID: 'b1', nested: { list: [1, 2] } }] });
    assert.deepEqual(Query.of(item).toJSON(), { items: [{ anyPredicateOf: [{ BookID: 'b1', nested: { list: [1, 2] } }, ['b1', { r: 'r1' }]] }] });
  });

  test('mutating what toJSON returned does not change the item or the query', () => {
    const item = QueryItem.types(LENT).tags('book:b1').anyPredicateOf({ BookID: 'b1', list: [1] });
    const query = Query.of(item).occurredFrom(d1);
    const json = item.toJSON();
    json.types!.push(RETURNED);
    json.tags!.length = 0;
    (json.anyPredicateOf![0] as { BookID: string; list: number[] }).BookID = 'b2';
    (json.anyPredicateOf![0] as { BookID: string; list: number[] }).list.push(2);
    json.anyPredicateOf!.push({ other: true });
    const queryJson = query.toJSON();
    queryJson.items.push({ types: [REGISTERED] });
    queryJson.items[0]!.types = ['X'];
    queryJson.occurredFrom = d2.toISOString();
    const expectedItem = { types: [LENT], tags: ['book:b1'], anyPredicateOf: [{ BookID: 'b1', list: [1] }] };
    assert.deepEqual(item.toJSON(), expectedItem);
    assert.deepEqual(query.toJSON(), { items: [expectedItem], occurredFrom: d1.toISOString() });

    const allItem = QueryItem.allPredicatesOf({ a: [1] });
    (allItem.toJSON().allPredicatesOf![0] as { a: number[] }).a.push(2);
    assert.deepEqual(allItem.toJSON(), { allPredicatesOf: [{ a: [1] }] });
  });

  test('occurredFrom and occurredUntil return a new query and leave the original unchanged', () => {
    const base = Query.of(QueryItem.types(LENT));
    const from = base.occurredFrom(d1);
    const both = from.occurredUntil(d2);
    assert.notEqual(from, base);
    assert.notEqual(both, from);
    assert.deepEqual(base.toJSON(), { items: [{ types: [LENT] }] });
    assert.deepEqual(from.toJSON(), { items: [{ types: [LENT] }], occurredFrom: d1.toISOString() });
    assert.deepEqual(both.toJSON(), { items: [{ types: [LENT] }], occurredFrom: d1.toISOString(), occurredUntil: d2.toISOString() });
    // The original can take a different bound.
    assert.deepEqual(base.occurredUntil(d1).toJSON(), { items: [{ types: [LENT] }], occurredUntil: d1.toISOString() });

    const all = Query.all();
    all.occurredFrom(d1);
    assert.deepEqual(all.toJSON(), { items: [] });
  });

  test('mutating a Date after using it as a bound does not change the query', () => {
    const from = new Date(d1.getTime());
    const until = new Date(d2.getTime());
    const query = Query.all().occurredFrom(from).occurredUntil(until);
    from.setTime(0);
    until.setUTCFullYear(2099);
    assert.deepEqual(query.toJSON(), { items: [], occurredFrom: d1.toISOString(), occurredUntil: d2.toISOString() });
  });
});

describe('Query', () => {
  test('Query.all() matches everything: isAll, no items, JSON { items: [] }', () => {
    const all = Query.all();
    assert.equal(all.isAll, true);
    assert.deepEqual(all.items, []);
    assert.deepEqual(all.toJSON(), { items: [] });
    assert.equal(all.occurredFrom(d1).isAll, true);
    assert.equal(all.occurredUntil(d2).isAll, true);
  });

  test('Query.of keeps its items in order and is not isAll', () => {
    const first = QueryItem.types(LENT);
    const second = QueryItem.tags('book:b1');
    const query = Query.of(first, second);
    assert.equal(query.isAll, false);
    assert.equal(query.items.length, 2);
    assert.equal(query.items[0], first);
    assert.equal(query.items[1], second);
    assert.deepEqual(query.toJSON(), { items: [{ types: [LENT] }, { tags: ['book:b1'] }] });
  });

  test('the same item twice is kept (it matches the same events)', () => {
    const item = QueryItem.types(LENT);
    assert.deepEqual(Query.of(item, item).toJSON(), { items: [{ types: [LENT] }, { types: [LENT] }] });
  });

  test('occurredFrom and occurredUntil may be equal (a single instant)', () => {
    assert.deepEqual(Query.all().occurredFrom(d1).occurredUntil(new Date(d1.getTime())).toJSON(), {
      items: [],
      occurredFrom: d1.toISOString(),
      occurredUntil: d1.toISOString(),
    });
    assert.deepEqual(Query.all().occurredUntil(d1).occurredFrom(new Date(d1.getTime())).toJSON(), {
      items: [],
      occurredFrom: d1.toISOString(),
      occurredUntil: d1.toISOString(),
    });
  });

  test('time bounds keep millisecond precision', () => {
    const precise = new Date('2024-03-01T10:00:00.123Z');
    assert.equal(Query.all().occurredUntil(precise).toJSON().occurredUntil, '2024-03-01T10:00:00.123Z');
  });
});

describe('refused input', () => {
  test('an empty types(), tags(), anyPredicateOf() or allPredicatesOf()', () => {
    assertInvalid(() => QueryItem.types(), 'QueryItem.types');
    assertInvalid(() => QueryItem.tags(), 'QueryItem.tags');
    assertInvalid(() => QueryItem.anyPredicateOf(), 'QueryItem.anyPredicateOf');
    assertInvalid(() => QueryItem.allPredicatesOf(), 'QueryItem.allPredicatesOf');
    assertInvalid(() => QueryItem.tags('x').types(), 'QueryItem.types');
    assertInvalid(() => QueryItem.types('x').tags(), 'QueryItem.tags');
    assertInvalid(() => QueryItem.types('x').anyPredicateOf(), 'QueryItem.anyPredicateOf');
    assertInvalid(() => QueryItem.types('x').allPredicatesOf(), 'QueryItem.allPredicatesOf');
  });

  test('setting types or tags twice on one item', () => {
    assertInvalid(() => QueryItem.types(LENT).types(RETURNED), 'QueryItem.types');
    assertInvalid(() => QueryItem.types(LENT).tags('a').types(RETURNED), 'QueryItem.types');
    assertInvalid(() => QueryItem.tags('a').tags('b'), 'QueryItem.tags');
    assertInvalid(() => QueryItem.tags('a').types(LENT).tags('b'), 'QueryItem.tags');
  });

  test('both anyPredicateOf and allPredicatesOf, or either twice, on one item', () => {
    assertInvalid(() => QueryItem.anyPredicateOf({ a: 1 }).allPredicatesOf({ b: 2 }), 'QueryItem.allPredicatesOf');
    assertInvalid(() => QueryItem.allPredicatesOf({ a: 1 }).anyPredicateOf({ b: 2 }), 'QueryItem.anyPredicateOf');
    assertInvalid(() => QueryItem.anyPredicateOf({ a: 1 }).anyPredicateOf({ b: 2 }), 'QueryItem.anyPredicateOf');
    assertInvalid(() => QueryItem.allPredicatesOf({ a: 1 }).allPredicatesOf({ b: 2 }), 'QueryItem.allPredicatesOf');
    assertInvalid(() => QueryItem.types(LENT).anyPredicateOf({ a: 1 }).tags('x').allPredicatesOf({ b: 2 }), 'QueryItem.allPredicatesOf');
  });

  test('an item with nothing to match', () => {
    // The constructor is private in TypeScript; a JavaScript caller can still reach it.
    const empty = Reflect.construct(QueryItem, [{}]) as QueryItem;
    assertInvalid(() => Query.of(empty), 'Query.of[0]');
    assertInvalid(() => Query.of(QueryItem.types(LENT), empty), 'Query.of[1]');
    assertInvalid(() => QueryItem.fromJSON({}), 'QueryItem');
    assertInvalid(() => Query.fromJSON({ items: [{}] }), 'Query.items[0]');
    assertInvalid(() => Query.fromJSON({ items: [{ types: [LENT] }, {}] }), 'Query.items[1]');
  });

  test('Query.of() with no items, or with something that is not a QueryItem', () => {
    assertInvalid(() => Query.of(), 'Query.of');
    assertInvalid(() => Query.of(...[]), 'Query.of');
    assertInvalid(() => Query.of(loose<QueryItem>({ types: [LENT] })), 'Query.of[0]');
    assertInvalid(() => Query.of(QueryItem.types(LENT), loose<QueryItem>(null)), 'Query.of[1]');
    assertInvalid(() => Query.of(loose<QueryItem>(QueryItem.types(LENT).toJSON())), 'Query.of[0]');
  });

  test('occurredFrom after occurredUntil, whichever is set first', () => {
    assertInvalid(() => Query.all().occurredFrom(d2).occurredUntil(d1), 'Query.occurredUntil');
    assertInvalid(() => Query.all().occurredUntil(d1).occurredFrom(d2), 'Query.occurredFrom');
    const oneMsLater = new Date(d1.getTime() + 1);
    assertInvalid(() => Query.of(QueryItem.types(LENT)).occurredFrom(oneMsLater).occurredUntil(d1), 'Query.occurredUntil');
  });

  test('a time bound set twice', () => {
    assertInvalid(() => Query.all().occurredFrom(d1).occurredFrom(d1), 'Query.occurredFrom');
    assertInvalid(() => Query.all().occurredUntil(d2).occurredUntil(d2), 'Query.occurredUntil');
  });

  test('an invalid Date or a non-Date as a time bound', () => {
    assertInvalid(() => Query.all().occurredFrom(new Date('not a date')), 'Query.occurredFrom');
    assertInvalid(() => Query.all().occurredUntil(new Date(Number.NaN)), 'Query.occurredUntil');
    for (const notADate of ['2024-03-01T10:00:00.000Z', d1.getTime(), null, undefined, {}]) {
      assertInvalid(() => Query.all().occurredFrom(loose<Date>(notADate)), 'Query.occurredFrom');
      assertInvalid(() => Query.all().occurredUntil(loose<Date>(notADate)), 'Query.occurredUntil');
    }
  });

  test('a type or tag that is not a string', () => {
    for (const notAString of [1, null, undefined, {}, ['a'], true, Symbol('s'), 1n]) {
      assertInvalid(() => QueryItem.types(loose<string>(notAString)), 'QueryItem.types[0]');
      assertInvalid(() => QueryItem.tags(loose<string>(notAString)), 'QueryItem.tags[0]');
    }
    assertInvalid(() => QueryItem.types(LENT, loose<string>(7)), 'QueryItem.types[1]');
    assertInvalid(() => QueryItem.tags('a', 'b', loose<string>(null)), 'QueryItem.tags[2]');
  });

  test('an empty or over-long (more than 255 characters) type or tag', () => {
    assertInvalid(() => QueryItem.types(''), 'QueryItem.types[0]');
    assertInvalid(() => QueryItem.tags(''), 'QueryItem.tags[0]');
    assertInvalid(() => QueryItem.types(LENT, ''), 'QueryItem.types[1]');
    assertInvalid(() => QueryItem.types('t'.repeat(MAX_TYPE_LENGTH + 1)), 'QueryItem.types[0]');
    assertInvalid(() => QueryItem.tags('g'.repeat(MAX_TAG_LENGTH + 1)), 'QueryItem.tags[0]');
    assertInvalid(() => QueryItem.tags('ok', 'g'.repeat(1000)), 'QueryItem.tags[1]');
  });

  test('a NUL character or an unpaired surrogate in a type or tag', () => {
    assertInvalid(() => QueryItem.types('Book\u0000Lent'), 'QueryItem.types[0]');
    assertInvalid(() => QueryItem.tags('\u0000'), 'QueryItem.tags[0]');
    assertInvalid(() => QueryItem.types('a\ud800'), 'QueryItem.types[0]');
    assertInvalid(() => QueryItem.tags('\udc00b'), 'QueryItem.tags[0]');
  });

  test('predicates that are not JSON', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const cyclicArray: unknown[] = [1];
    cyclicArray.push(cyclicArray);
    const deepCycle: { a: { b: { c?: unknown } } } = { a: { b: {} } };
    deepCycle.a.b.c = deepCycle.a;
    const notJson: Array<[string, unknown]> = [
      ['a function', () => 1],
      ['a BigInt', 10n],
      ['undefined', undefined],
      ['a symbol', Symbol('s')],
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['-Infinity', Number.NEGATIVE_INFINITY],
      ['a cyclic object', cyclic],
      ['a cyclic array', cyclicArray],
      ['a cycle deeper down', deepCycle],
      ['a function in an object', { a: { b: () => 1 } }],
      ['a BigInt in an array', [1, [2n]]],
      ['undefined in an array', [1, undefined]],
      ['a hole in an array', loose<unknown[]>(new Array(2))],
      ['a Map', new Map([['a', 1]])],
      ['a Set', new Set([1])],
      ['a NUL character in a string', { BookID: 'b\u00001' }],
      ['a NUL character in a key', { ['Book\u0000ID']: 'b1' }],
      ['an unpaired surrogate', ['\ud83d']],
    ];
    for (const [what, predicate] of notJson) {
      assertInvalid(() => QueryItem.anyPredicateOf(predicate), /^QueryItem\.anyPredicateOf\[0\]/, what);
      assertInvalid(() => QueryItem.allPredicatesOf({ ok: true }, predicate), /^QueryItem\.allPredicatesOf\[1\]/, what);
      assertInvalid(() => QueryItem.types(LENT).anyPredicateOf({ ok: 1 }, { ok: 2 }, predicate), /^QueryItem\.anyPredicateOf\[2\]/, what);
    }
  });

  test('a refused call builds nothing that leaks into later calls', () => {
    const base = QueryItem.types(LENT);
    assertInvalid(() => base.anyPredicateOf({ ok: 1 }, () => 1));
    assert.deepEqual(base.toJSON(), { types: [LENT] });
    assert.deepEqual(base.anyPredicateOf({ ok: 1 }).toJSON(), { types: [LENT], anyPredicateOf: [{ ok: 1 }] });
  });
});

describe('JSON round trip', () => {
  const shapes: Array<[string, Query, QueryJSON]> = [
    ['all', Query.all(), { items: [] }],
    ['all from', Query.all().occurredFrom(d1), { items: [], occurredFrom: d1.toISOString() }],
    ['all until', Query.all().occurredUntil(d2), { items: [], occurredUntil: d2.toISOString() }],
    ['all from until', Query.all().occurredFrom(d1).occurredUntil(d2), { items: [], occurredFrom: d1.toISOString(), occurredUntil: d2.toISOString() }],
    ['one type', Query.of(QueryItem.types(LENT)), { items: [{ types: [LENT] }] }],
    ['several types', Query.of(QueryItem.types(LENT, RETURNED)), { items: [{ types: [LENT, RETURNED] }] }],
    ['one tag', Query.of(QueryItem.tags('book:b1')), { items: [{ tags: ['book:b1'] }] }],
    ['several tags', Query.of(QueryItem.tags('reader:r1', 'book:b1')), { items: [{ tags: ['book:b1', 'reader:r1'] }] }],
    ['types and tags', Query.of(QueryItem.types(LENT).tags('book:b1')), { items: [{ types: [LENT], tags: ['book:b1'] }] }],
    ['any predicate', Query.of(QueryItem.anyPredicateOf({ BookID: 'b1' }, 'b1', null, [1, [2]])), { items: [{ anyPredicateOf: [{ BookID: 'b1' }, 'b1', null, [1, [2]]] }] }],
    ['all predicates', Query.of(QueryItem.allPredicatesOf({ a: { b: [true] } }, {})), { items: [{ allPredicatesOf: [{ a: { b: [true] } }, {}] }] }],
    [
      'everything in one item',
      Query.of(QueryItem.types(REGISTERED).tags('reader:r1').allPredicatesOf({ ReaderID: 'r1' })),
      { items: [{ types: [REGISTERED], tags: ['reader:r1'], allPredicatesOf: [{ ReaderID: 'r1' }] }] },
    ],
    [
      'three items with bounds',
      Query.of(QueryItem.types(LENT), QueryItem.tags('b', 'a'), QueryItem.anyPredicateOf({ x: 1 }).types(RETURNED)).occurredFrom(d1).occurredUntil(d2),
      {
        items: [{ types: [LENT] }, { tags: ['a', 'b'] }, { types: [RETURNED], anyPredicateOf: [{ x: 1 }] }],
        occurredFrom: d1.toISOString(),
        occurredUntil: d2.toISOString(),
      },
    ],
    ['items with until only', Query.of(QueryItem.types(LENT)).occurredUntil(d1), { items: [{ types: [LENT] }], occurredUntil: d1.toISOString() }],
    ['odd strings', Query.of(QueryItem.types('q"u', 'a,b').tags('{x}', 'NULL', 'ünï 📚')), { items: [{ types: ['q"u', 'a,b'], tags: ['NULL', '{x}', 'ünï 📚'] }] }],
  ];

  for (const [name, query, json] of shapes) {
    test(`${name}: toJSON gives the DCB shape and fromJSON gives it back`, () => {
      assert.deepEqual(query.toJSON(), json);
      // Through a real JSON string too, as over the wire.
      const parsed = Query.fromJSON(JSON.parse(JSON.stringify(query)));
      assert.deepEqual(parsed.toJSON(), json);
      assert.equal(parsed.isAll, json.items.length === 0);
      assert.equal(parsed.items.length, json.items.length);
      assert.deepEqual(parsed.toInternal(), query.toInternal());
      assert.deepEqual(Query.fromJSON(json).toJSON(), json);
    });
  }

  test('{ items: [] } is Query.all()', () => {
    const query = Query.fromJSON({ items: [] });
    assert.equal(query.isAll, true);
    assert.deepEqual(query.toInternal(), Query.all().toInternal());
  });

  test('fromJSON normalizes tags (sorted, unique) and time zones (UTC ISO)', () => {
    assert.deepEqual(Query.fromJSON({ items: [{ tags: ['b', 'a', 'b'], types: ['T', 'T'] }] }).toJSON(), { items: [{ types: ['T'], tags: ['a', 'b'] }] });
    assert.deepEqual(Query.fromJSON({ items: [], occurredFrom: '2024-03-01T12:00:00+02:00' }).toJSON(), { items: [], occurredFrom: d1.toISOString() });
  });

  test('QueryItem.fromJSON round trips an item', () => {
    const json = { types: [LENT], tags: ['book:b1'], anyPredicateOf: [{ BookID: 'b1' }] };
    assert.deepEqual(QueryItem.fromJSON(json).toJSON(), json);
    assert.deepEqual(QueryItem.fromJSON({ allPredicatesOf: [1, 'x'] }).toJSON(), { allPredicatesOf: [1, 'x'] });
  });

  test('fromJSON copies predicates: changing the input afterwards does not change the query', () => {
    const json = { items: [{ anyPredicateOf: [{ BookID: 'b1', list: [1] }] }] };
    const query = Query.fromJSON(json);
    json.items[0]!.anyPredicateOf[0]!.BookID = 'b2';
    json.items[0]!.anyPredicateOf[0]!.list.push(2);
    assert.deepEqual(query.toJSON(), { items: [{ anyPredicateOf: [{ BookID: 'b1', list: [1] }] }] });
  });

  test('fromJSON refuses what is not a query object', () => {
    for (const notAnObject of [null, undefined, 'all', 1, true, [], [{ types: [LENT] }]]) {
      assertInvalid(() => Query.fromJSON(notAnObject), 'Query');
      assertInvalid(() => QueryItem.fromJSON(notAnObject), 'QueryItem');
    }
  });

  test('fromJSON refuses unknown keys', () => {
    assertInvalid(() => Query.fromJSON({ items: [], all: true }), 'Query.all');
    assertInvalid(() => Query.fromJSON({ items: [], occurredAfter: d1.toISOString() }), 'Query.occurredAfter');
    assertInvalid(() => Query.fromJSON({ items: [{ types: [LENT], eventTypes: [LENT] }] }), 'Query.items[0].eventTypes');
    assertInvalid(() => Query.fromJSON({ items: [{ types: [LENT] }, { tags: ['a'], anyPredicatesOf: [1] }] }), 'Query.items[1].anyPredicatesOf');
    assertInvalid(() => QueryItem.fromJSON({ types: [LENT], x: 1 }), 'QueryItem.x');
  });

  test('fromJSON refuses wrong types', () => {
    const refused: unknown[] = [
      {},
      { items: null },
      { items: {} },
      { items: 'all' },
      { items: [null] },
      { items: ['x'] },
      { items: [[]] },
      { items: [{ types: LENT }] },
      { items: [{ types: [1] }] },
      { items: [{ types: [] }] },
      { items: [{ types: [''] }] },
      { items: [{ types: null }] },
      { items: [{ tags: 'book:b1' }] },
      { items: [{ tags: [null] }] },
      { items: [{ tags: [] }] },
      { items: [{ tags: ['x'.repeat(256)] }] },
      { items: [{ anyPredicateOf: { BookID: 'b1' } }] },
      { items: [{ anyPredicateOf: [] }] },
      { items: [{ allPredicatesOf: 'x' }] },
      { items: [{ allPredicatesOf: [] }] },
      { items: [{ anyPredicateOf: [1], allPredicatesOf: [2] }] },
      { items: [{ types: [LENT], anyPredicateOf: [{ a: 'nul\u0000' }] }] },
      { items: [], occurredFrom: 5 },
      { items: [], occurredFrom: null },
      { items: [], occurredUntil: {} },
      { items: [], occurredFrom: 'not a date' },
      { items: [], occurredUntil: '' },
      { items: [], occurredFrom: d2.toISOString(), occurredUntil: d1.toISOString() },
    ];
    for (const json of refused) {
      assert.throws(() => Query.fromJSON(json), (error: unknown) => error instanceof InvalidInputError, `should refuse ${JSON.stringify(json)}`);
    }
    assertInvalid(() => Query.fromJSON({ items: 'all' }), 'Query.items');
    assertInvalid(() => Query.fromJSON({ items: [{ types: LENT }] }), 'Query.items[0].types');
    assertInvalid(() => Query.fromJSON({ items: [], occurredFrom: 5 }), 'Query.occurredFrom');
    assertInvalid(() => Query.fromJSON({ items: [], occurredUntil: 'yesterday' }), 'Query.occurredUntil');
  });
});
