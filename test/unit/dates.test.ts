// Dates both stores accept: occurredAt and query time bounds travel to PostgreSQL as
// toISOString(), and only 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z (UTC) come out of
// that as text PostgreSQL's timestamptz takes (checked against PostgreSQL 17: year 0000 is "out of
// range", "+010000-..." a bad time zone displacement, "-000001-..." invalid syntax). Anything else
// must be an InvalidInputError naming the path, never a database error. The round trip on a real
// server is in the contract suite and test/integration/dates.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidInputError } from '../../src/errors.ts';
import { normalizeEvent } from '../../src/events.ts';
import { MAX_STORABLE_TIME, MIN_STORABLE_TIME, validateStorableDate } from '../../src/validation.ts';
import { Query, QueryItem } from '../../src/query.ts';

const EARLIEST = '0001-01-01T00:00:00.000Z';
const LATEST = '9999-12-31T23:59:59.999Z';

function assertInvalid(run: () => unknown, path: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    assert.equal(error.path, path);
    assert.ok(error.message.startsWith(`${path}: `), error.message);
    return true;
  });
}

const TOO_EARLY: Array<[string, Date]> = [
  ['1 ms before 0001-01-01 (0000-12-31T23:59:59.999Z)', new Date(Date.parse(EARLIEST) - 1)],
  ['the start of year 0000', new Date('0000-01-01T00:00:00.000Z')],
  ['year -1 (written -000001-...)', new Date('-000001-06-01T00:00:00.000Z')],
  ['the earliest JavaScript date', new Date(-8.64e15)],
];
const TOO_LATE: Array<[string, Date]> = [
  ['1 ms after 9999-12-31T23:59:59.999Z', new Date(Date.parse(LATEST) + 1)],
  ['year 10000 (written +010000-...)', new Date('+010000-01-01T00:00:00.000Z')],
  ['the latest JavaScript date', new Date(8.64e15)],
];

describe('validateStorableDate', () => {
  test('the limits are exactly the first and last millisecond that toISOString() writes with a year 0001..9999', () => {
    assert.equal(new Date(MIN_STORABLE_TIME).toISOString(), EARLIEST);
    assert.equal(new Date(MAX_STORABLE_TIME).toISOString(), LATEST);
    assert.equal(new Date(MIN_STORABLE_TIME - 1).toISOString(), '0000-12-31T23:59:59.999Z');
    assert.equal(new Date(MAX_STORABLE_TIME + 1).toISOString(), '+010000-01-01T00:00:00.000Z');
  });

  test('accepts the limits and what lies between, and returns a copy', () => {
    for (const text of [EARLIEST, '0001-01-01T00:00:00.001Z', '1970-01-01T00:00:00.000Z', '2024-02-29T12:34:56.789Z', '9999-12-31T23:59:59.998Z', LATEST]) {
      const date = new Date(text);
      const valid = validateStorableDate(date, 'at');
      assert.equal(valid.toISOString(), text);
      assert.notEqual(valid, date, 'a copy: the caller changing its Date later changes nothing');
    }
  });

  test('refuses dates outside the limits, invalid dates and non-dates, naming the path', () => {
    for (const [, date] of [...TOO_EARLY, ...TOO_LATE]) assertInvalid(() => validateStorableDate(date, 'x.occurredAt'), 'x.occurredAt');
    for (const bad of [new Date(Number.NaN), '2024-01-01', 1_700_000_000_000, null, {}]) assertInvalid(() => validateStorableDate(bad, 'x'), 'x');
  });
});

describe('where it applies', () => {
  test('an event\'s occurredAt', () => {
    const now = new Date('2024-05-06T07:08:09.010Z');
    for (const [, date] of [...TOO_EARLY, ...TOO_LATE]) assertInvalid(() => normalizeEvent({ type: 'T', data: 1, occurredAt: date }, 'events[3]', now), 'events[3].occurredAt');
    assert.equal(normalizeEvent({ type: 'T', data: 1, occurredAt: new Date(EARLIEST) }, 'events[0]', now).occurred_at, EARLIEST);
    assert.equal(normalizeEvent({ type: 'T', data: 1, occurredAt: new Date(LATEST) }, 'events[0]', now).occurred_at, LATEST);
  });

  test('Query.occurredFrom and Query.occurredUntil, built or parsed from JSON', () => {
    for (const [, date] of [...TOO_EARLY, ...TOO_LATE]) {
      assertInvalid(() => Query.all().occurredFrom(date), 'Query.occurredFrom');
      assertInvalid(() => Query.of(QueryItem.types('T')).occurredUntil(date), 'Query.occurredUntil');
      assertInvalid(() => Query.fromJSON({ items: [], occurredFrom: date.toISOString() }), 'Query.occurredFrom');
      assertInvalid(() => Query.fromJSON({ items: [{ tags: ['a'] }], occurredUntil: date.toISOString() }), 'Query.occurredUntil');
    }
    const widest = Query.all().occurredFrom(new Date(EARLIEST)).occurredUntil(new Date(LATEST));
    assert.deepEqual(widest.toJSON(), { items: [], occurredFrom: EARLIEST, occurredUntil: LATEST });
    assert.deepEqual(Query.fromJSON(widest.toJSON()).toInternal(), widest.toInternal());
  });
});
