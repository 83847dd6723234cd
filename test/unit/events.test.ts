// Pure tests of event validation and normalisation (no database).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventStoreError, InvalidInputError } from '../../src/errors.ts';
import { normalizeEvent, withMetadataEntry, type EventInput } from '../../src/events.ts';
import { assertJson, MAX_TAG_LENGTH, MAX_TYPE_LENGTH, validatePosition } from '../../src/validation.ts';

const NOW = new Date('2024-05-06T07:08:09.010Z');
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Asserts that `run` throws an InvalidInputError at exactly `path`, optionally with a message matching `message`. */
function assertInvalid(run: () => unknown, path: string, message?: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    assert.ok(error instanceof EventStoreError, 'error instanceof EventStoreError');
    assert.equal(error.code, 'INVALID_INPUT');
    assert.equal(error.name, 'InvalidInputError');
    assert.equal(error.path, path);
    assert.ok(error.message.startsWith(`${path}: `), `message should start with the path: ${error.message}`);
    if (message) assert.match(error.message, message);
    return true;
  });
}

/** Lets a test pass inputs the types forbid, as untyped JavaScript callers can. */
function loose(value: unknown): EventInput {
  return value as EventInput;
}

function normalize(input: unknown, path = 'events[0]') {
  return normalizeEvent(loose(input), path, NOW);
}

describe('normalizeEvent: accepted shapes', () => {
  test('a minimal event gets no tags, empty metadata, a generated UUIDv7 and occurredAt = now', () => {
    const event = normalize({ type: 'BookAdded', data: { id: 'b1' } });
    assert.equal(event.type, 'BookAdded');
    assert.deepEqual(event.tags, []);
    assert.deepEqual(event.data, { id: 'b1' });
    assert.deepEqual(event.metadata, {});
    assert.match(event.id, UUID_V7);
    assert.equal(event.occurred_at, NOW.toISOString());
  });

  test('generated ids are distinct and increase (UUIDv7 is time-ordered)', () => {
    const ids = Array.from({ length: 50 }, () => normalize({ type: 'T', data: 1 }).id);
    assert.equal(new Set(ids).size, 50);
    for (const id of ids) assert.match(id, UUID_V7);
    assert.deepEqual([...ids].sort(), ids);
  });

  test('tags are de-duplicated and sorted', () => {
    const event = normalize({ type: 'T', data: null, tags: ['reader:r2', 'book:b1', 'reader:r2', 'a', 'book:b1'] });
    assert.deepEqual(event.tags, ['a', 'book:b1', 'reader:r2']);
  });

  test('the caller\'s tags array is not modified', () => {
    const tags = ['z', 'a', 'z'];
    normalize({ type: 'T', data: 1, tags });
    assert.deepEqual(tags, ['z', 'a', 'z']);
  });

  test('a supplied id is accepted and lower-cased', () => {
    const event = normalize({ type: 'T', data: 1, id: '0190F0A4-1B2C-7D3E-8F40-123456789ABC' });
    assert.equal(event.id, '0190f0a4-1b2c-7d3e-8f40-123456789abc');
    const v4 = normalize({ type: 'T', data: 1, id: 'c9b1d3f2-5e7a-4b8c-9d0e-1f2a3b4c5d6e' });
    assert.equal(v4.id, 'c9b1d3f2-5e7a-4b8c-9d0e-1f2a3b4c5d6e');
  });

  test('a supplied occurredAt is kept', () => {
    const occurredAt = new Date('2001-02-03T04:05:06.789Z');
    assert.equal(normalize({ type: 'T', data: 1, occurredAt }).occurred_at, '2001-02-03T04:05:06.789Z');
  });

  test('data may be any JSON value: null, scalars, arrays, nested objects', () => {
    for (const data of [null, 0, -1.5, true, false, '', 'text', [], [1, [2, [3]]], {}, { a: { b: [{ c: null }] } }]) {
      assert.deepEqual(normalize({ type: 'T', data }).data, data);
    }
  });

  test('metadata objects are kept; undefined properties are allowed (JSON omits them)', () => {
    const event = normalize({ type: 'T', data: { a: 1, skipped: undefined }, metadata: { user: 'u1', nested: { n: 1 }, gone: undefined } });
    assert.deepEqual(event.metadata, { user: 'u1', nested: { n: 1 }, gone: undefined });
    assert.equal(JSON.stringify(event.data), '{"a":1}');
  });

  test('types and tags of exactly the maximum length are accepted', () => {
    const event = normalize({ type: 'x'.repeat(MAX_TYPE_LENGTH), data: 1, tags: ['y'.repeat(MAX_TAG_LENGTH)] });
    assert.equal(event.type.length, 255);
    assert.equal(event.tags[0]!.length, 255);
  });

  test('emoji, CJK and other valid surrogate pairs are accepted everywhere', () => {
    const event = normalize({ type: '書籍😀', data: { '鍵🔑': '値👍🏽' }, tags: ['標籤:🏷️'], metadata: { 'ü': 'ß' } });
    assert.equal(event.type, '書籍😀');
    assert.deepEqual(event.tags, ['標籤:🏷️']);
  });

  test('the path prefix is used as given', () => {
    assertInvalid(() => normalize({ type: '', data: 1 }, 'events[7]'), 'events[7].type');
  });
});

describe('normalizeEvent: rejections name the offending path', () => {
  test('the event itself must be an object', () => {
    for (const input of [null, undefined, 'event', 42, true]) assertInvalid(() => normalize(input), 'events[0]', /must be an event object/);
  });

  test('type: missing, not a string, empty, too long, NUL, unpaired surrogate', () => {
    assertInvalid(() => normalize({ data: 1 }), 'events[0].type', /must be a string, got undefined/);
    assertInvalid(() => normalize({ type: 42, data: 1 }), 'events[0].type', /must be a string, got 42/);
    assertInvalid(() => normalize({ type: ['T'], data: 1 }), 'events[0].type', /must be a string, got an array/);
    assertInvalid(() => normalize({ type: '', data: 1 }), 'events[0].type', /must not be empty/);
    assertInvalid(() => normalize({ type: 'x'.repeat(256), data: 1 }), 'events[0].type', /at most 255 characters, got 256/);
    assertInvalid(() => normalize({ type: 'Bad\u0000Type', data: 1 }), 'events[0].type', /NUL character \\u0000 at index 3/);
    assertInvalid(() => normalize({ type: 'T\ud800', data: 1 }), 'events[0].type', /unpaired UTF-16 surrogate/);
  });

  test('tags: not an array, non-string, empty, too long, NUL, unpaired surrogate', () => {
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: 'book:1' }), 'events[0].tags', /must be an array of strings/);
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: null }), 'events[0].tags', /must be an array of strings, got null/);
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: ['ok', 7] }), 'events[0].tags[1]', /must be a string, got 7/);
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: ['ok', 'ok', null] }), 'events[0].tags[2]');
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: [''] }), 'events[0].tags[0]', /must not be empty/);
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: ['a', 't'.repeat(256)] }), 'events[0].tags[1]', /at most 255 characters, got 256/);
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: ['book:\u0000'] }), 'events[0].tags[0]', /\\u0000/);
    assertInvalid(() => normalize({ type: 'T', data: 1, tags: ['\udc00x'] }), 'events[0].tags[0]', /unpaired UTF-16 surrogate at index 0/);
  });

  test('data: absent or not JSON', () => {
    assertInvalid(() => normalize({ type: 'T' }), 'events[0].data', /is required \(use null/);
    assertInvalid(() => normalize({ type: 'T', data: undefined }), 'events[0].data', /undefined is not JSON/);
    assertInvalid(() => normalize({ type: 'T', data: { a: [1, 2, () => 3] } }), 'events[0].data.a[2]', /a function is not JSON/);
    assertInvalid(() => normalize({ type: 'T', data: { a: { b: 10n } } }), 'events[0].data.a.b', /BigInt is not JSON/);
  });

  test('metadata: not a JSON object, or containing non-JSON', () => {
    for (const metadata of [null, 'm', 5, true, ['a']]) {
      assertInvalid(() => normalize({ type: 'T', data: 1, metadata }), 'events[0].metadata', /must be a JSON object/);
    }
    assertInvalid(() => normalize({ type: 'T', data: 1, metadata: { when: NaN } }), 'events[0].metadata.when', /NaN is not representable/);
    assertInvalid(() => normalize({ type: 'T', data: 1, metadata: new Map([['a', 1]]) }), 'events[0].metadata', /a Map is not JSON/);
  });

  test('id: not a string, not a UUID', () => {
    for (const id of ['not-a-uuid', '', '0190f0a4-1b2c-7d3e-8f40-123456789ab', '0190f0a41b2c7d3e8f40123456789abc', '{0190f0a4-1b2c-7d3e-8f40-123456789abc}', 42, null]) {
      assertInvalid(() => normalize({ type: 'T', data: 1, id }), 'events[0].id', /must be a UUID string/);
    }
  });

  test('occurredAt: not a Date, or an invalid Date', () => {
    assertInvalid(() => normalize({ type: 'T', data: 1, occurredAt: new Date('not a date') }), 'events[0].occurredAt', /an invalid Date/);
    assertInvalid(() => normalize({ type: 'T', data: 1, occurredAt: '2024-01-01T00:00:00Z' }), 'events[0].occurredAt', /must be a valid Date/);
    assertInvalid(() => normalize({ type: 'T', data: 1, occurredAt: 1_700_000_000_000 }), 'events[0].occurredAt');
    assertInvalid(() => normalize({ type: 'T', data: 1, occurredAt: null }), 'events[0].occurredAt');
  });
});

describe('assertJson', () => {
  test('accepts JSON values, Dates (via toJSON), shared non-cyclic references and undefined properties', () => {
    const shared = { s: 1 };
    for (const value of [null, 1, 'x', true, [], {}, [shared, shared], { a: shared, b: shared }, new Date(0), { d: new Date(0) }, { u: undefined }, '😀', '漢字']) {
      assert.doesNotThrow(() => assertJson(value, 'v'));
    }
  });

  test('undefined, at top level and in arrays', () => {
    assertInvalid(() => assertJson(undefined, 'v'), 'v', /undefined is not JSON \(use null\)/);
    assertInvalid(() => assertJson([1, undefined], 'v'), 'v[1]');
  });

  test('functions, symbols and BigInts', () => {
    assertInvalid(() => assertJson(() => 1, 'v'), 'v', /a function is not JSON/);
    assertInvalid(() => assertJson({ f: function named() {} }, 'v'), 'v.f', /a function is not JSON/);
    assertInvalid(() => assertJson({ s: Symbol('x') }, 'v'), 'v.s', /a symbol is not JSON/);
    assertInvalid(() => assertJson([[1n]], 'v'), 'v[0][0]', /BigInt is not JSON/);
  });

  test('NaN, Infinity and -Infinity', () => {
    assertInvalid(() => assertJson({ n: NaN }, 'v'), 'v.n', /NaN/);
    assertInvalid(() => assertJson({ n: [Infinity] }, 'v'), 'v.n[0]', /Infinity/);
    assertInvalid(() => assertJson(-Infinity, 'v'), 'v', /-Infinity/);
  });

  test('cycles, through objects and arrays', () => {
    const object: Record<string, unknown> = { a: 1 };
    object.self = object;
    assertInvalid(() => assertJson(object, 'v'), 'v.self', /contains a cycle/);
    const array: unknown[] = [1];
    array.push({ back: array });
    assertInvalid(() => assertJson({ list: array }, 'v'), 'v.list[1].back', /contains a cycle/);
  });

  test('Map and Set', () => {
    assertInvalid(() => assertJson({ m: new Map() }, 'v'), 'v.m', /a Map is not JSON/);
    assertInvalid(() => assertJson([new Set([1])], 'v'), 'v[0]', /a Set is not JSON/);
  });

  test('NUL in a string value or key', () => {
    assertInvalid(() => assertJson({ a: ['ok', 'x\u0000y'] }, 'events[0].data'), 'events[0].data.a[1]', /\\u0000 at index 1/);
    assertInvalid(() => assertJson({ nested: { 'k\u0000': 1 } }, 'events[0].data'), 'events[0].data.nested (key "k\\u0000")', /\\u0000/);
  });

  test('unpaired surrogates, high or low, in values or keys', () => {
    assertInvalid(() => assertJson('abc\ud83d', 'v'), 'v', /unpaired UTF-16 surrogate at index 3/);
    assertInvalid(() => assertJson({ s: '\ude00abc' }, 'v'), 'v.s', /unpaired UTF-16 surrogate at index 0/);
    assertInvalid(() => assertJson({ '\ud83dk': 1 }, 'v'), 'v (key "\\ud83dk")', /unpaired UTF-16 surrogate/);
    // A reversed pair is two unpaired surrogates.
    assertInvalid(() => assertJson('\ude00\ud83d', 'v'), 'v', /unpaired/);
    assert.doesNotThrow(() => assertJson('\ud83d\ude00', 'v'));
  });

  test('a toJSON result is checked too', () => {
    assertInvalid(() => assertJson({ x: { toJSON: () => undefined } }, 'v'), 'v.x', /undefined is not JSON/);
    assertInvalid(() => assertJson({ x: { toJSON: () => ({ bad: 1n }) } }, 'v'), 'v.x.bad', /BigInt/);
  });
});

describe('validatePosition', () => {
  test('accepts non-negative bigints and safe integer numbers, returning a bigint', () => {
    assert.equal(validatePosition(0n, 'after'), 0n);
    assert.equal(validatePosition(42n, 'after'), 42n);
    assert.equal(validatePosition(9223372036854775807n, 'after'), 9223372036854775807n);
    assert.equal(validatePosition(0, 'after'), 0n);
    assert.equal(validatePosition(17, 'after'), 17n);
    assert.equal(validatePosition(Number.MAX_SAFE_INTEGER, 'after'), BigInt(Number.MAX_SAFE_INTEGER));
  });

  test('rejects negative, too large, non-integer and non-numeric values', () => {
    assertInvalid(() => validatePosition(-1n, 'after'), 'after', /must not be negative, got -1/);
    assertInvalid(() => validatePosition(9223372036854775808n, 'after'), 'after', /largest position/);
    assertInvalid(() => validatePosition(-1, 'condition.after'), 'condition.after', /must not be negative/);
    assertInvalid(() => validatePosition(1.5, 'after'), 'after', /must be an integer, got 1.5/);
    assertInvalid(() => validatePosition(NaN, 'after'), 'after', /must be an integer/);
    assertInvalid(() => validatePosition(Infinity, 'after'), 'after', /must be an integer/);
    assertInvalid(() => validatePosition(Number.MAX_SAFE_INTEGER + 1, 'after'), 'after', /must be an integer/);
    assertInvalid(() => validatePosition('3', 'after'), 'after', /must be a bigint position, got "3"/);
    assertInvalid(() => validatePosition(null, 'after'), 'after', /got null/);
    assertInvalid(() => validatePosition({}, 'after'), 'after', /got an object/);
  });
});

describe('withMetadataEntry (the trace context added to an event already serialized)', () => {
  const cases: Array<[string, EventInput['metadata']]> = [
    ['no metadata', undefined],
    ['empty', {}],
    ['flat', { user: 'u1', n: 2 }],
    ['nested, ending in an object', { a: { b: { c: {} } } }],
    ['ending in an array', { list: [1, [2, {}]] }],
    ['tricky strings', { s: '},"occurred_at":"x"}', t: '{', u: '\u2028"\\' }],
    ['only undefined values (serialized as {})', { gone: undefined }],
    ['prototype-less', Object.assign(Object.create(null) as Record<string, unknown>, { x: 1 })],
  ];
  for (const [name, metadata] of cases) {
    test(`${name}: the JSON is what serializing the extended event gives`, () => {
      const event = normalizeEvent({ type: 'T', data: { metadata: '}' }, ...(metadata !== undefined && { metadata }) }, 'event', NOW);
      const extended = withMetadataEntry(event, 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      const expected = JSON.parse(JSON.stringify({ id: event.id, type: event.type, tags: event.tags, data: event.data, metadata: { ...(event.metadata as object), traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, occurred_at: event.occurred_at }));
      assert.deepEqual(JSON.parse(extended.json), expected);
      assert.deepEqual(JSON.parse(event.json).metadata, JSON.parse(JSON.stringify(event.metadata)), 'the original is unchanged');
    });
  }
  test('metadata that has the key already, or a toJSON, is left as it is', () => {
    for (const metadata of [{ traceparent: 'mine' }, { toJSON: () => ({ a: 1 }) }]) {
      const event = normalizeEvent({ type: 'T', data: 1, metadata }, 'event', NOW);
      assert.equal(withMetadataEntry(event, 'traceparent', 'x'), event);
    }
  });
});
