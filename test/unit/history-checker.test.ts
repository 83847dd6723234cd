// The history checker must reject every kind of broken history the concurrency tests look for;
// otherwise a passing randomized test would prove nothing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { QueryJSON } from '../../src/index.ts';
import { checkHistory, jsonContains, matchesQuery, type AttemptRecord, type AttemptStamp, type LoggedEvent } from '../integration/history-checker.ts';

const LENT_B1: QueryJSON = { items: [{ types: ['Lent'], tags: ['book:b1'] }] };
const T0 = Date.parse('2026-01-01T00:00:00Z');

interface Spec {
  attempt: string;
  type?: string;
  tags?: string[];
  count?: number;
  condition?: { query: QueryJSON; after?: bigint } | null;
  /** Position when committed; an array for several events. */
  at?: bigint | bigint[];
  outcome: AttemptRecord['outcome'];
}

/** Builds a log and the attempt records from compact specs. */
function history(specs: Spec[]): { log: LoggedEvent[]; attempts: AttemptRecord[] } {
  const log: LoggedEvent[] = [];
  const attempts: AttemptRecord[] = [];
  for (const spec of specs) {
    const positions = spec.at === undefined ? [] : Array.isArray(spec.at) ? spec.at : [spec.at];
    const count = spec.count ?? Math.max(positions.length, 1);
    const condition = spec.condition ?? null;
    attempts.push({ attempt: spec.attempt, eventCount: count, condition: condition && { query: condition.query, after: condition.after }, outcome: spec.outcome });
    positions.forEach((position, index) => {
      const stamp: AttemptStamp = {
        attempt: spec.attempt,
        index,
        count,
        condition: condition && { query: condition.query, after: condition.after === undefined ? null : condition.after.toString() },
      };
      log.push({ position, type: spec.type ?? 'Lent', tags: spec.tags ?? ['book:b1'], data: { stamp }, recordedAt: new Date(T0 + Number(position)) });
    });
  }
  log.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
  return { log, attempts };
}

function assertViolation(violations: string[], pattern: RegExp): void {
  assert.ok(violations.some((violation) => pattern.test(violation)), `expected a violation matching ${pattern}, got:\n${violations.join('\n') || '(none)'}`);
}

describe('checkHistory', () => {
  test('accepts a valid history: conflict, rejection, unconditional and disjoint appends', () => {
    const { log, attempts } = history([
      { attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, outcome: { status: 'condition-failed', conflictingPosition: 1n } },
      { attempt: 'c', tags: ['book:b2'], condition: { query: { items: [{ tags: ['book:b2'] }] }, after: 0n }, at: [2n, 3n], outcome: { status: 'appended', position: 3n } },
      { attempt: 'd', condition: null, at: 4n, outcome: { status: 'appended', position: 4n } },
      // Stale after (0) but nothing matching in between: fine.
      { attempt: 'e', type: 'Returned', tags: ['book:b3'], condition: { query: { items: [{ types: ['Returned'] }] }, after: 0n }, at: 5n, outcome: { status: 'appended', position: 5n } },
      // Uniqueness (no after) rejected because 'a' exists.
      { attempt: 'f', condition: { query: LENT_B1 }, outcome: { status: 'condition-failed', conflictingPosition: 1n } },
      // An error whose append did not happen.
      { attempt: 'g', outcome: { status: 'error', message: 'connection lost' } },
    ]);
    assert.deepEqual(checkHistory(log, attempts), []);
  });

  test('ignores key order in stored stamps (jsonb reorders object keys)', () => {
    const { log, attempts } = history([{ attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } }]);
    const data = log[0]!.data as { stamp: AttemptStamp };
    data.stamp.condition = { after: '0', query: { items: [{ tags: ['book:b1'], types: ['Lent'] }] } } as unknown as AttemptStamp['condition'];
    assert.deepEqual(checkHistory(log, attempts), []);
  });

  test('detects two successes on the same stale after', () => {
    const { log, attempts } = history([
      { attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    assertViolation(checkHistory(log, attempts), /attempt b committed .* position 1 .* the condition did not hold/);
  });

  test('detects a uniqueness condition (no after) that did not hold', () => {
    const { log, attempts } = history([
      { attempt: 'a', condition: null, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1 }, at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    assertViolation(checkHistory(log, attempts), /attempt b committed .*after \(none\).*did not hold/);
  });

  test('detects a conflict through one overlapping type/tag combination only', () => {
    const queryA: QueryJSON = { items: [{ types: ['X', 'Y'], tags: ['t1'] }] };
    const queryB: QueryJSON = { items: [{ types: ['Y', 'Z'], tags: ['t2'] }] };
    const { log, attempts } = history([
      { attempt: 'a', type: 'Y', tags: ['t1', 't2'], condition: { query: queryA, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', type: 'Y', tags: ['t1', 't2'], condition: { query: queryB, after: 0n }, at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    assertViolation(checkHistory(log, attempts), /attempt b .*did not hold/);
    // Outside the overlap both may commit.
    const disjoint = history([
      { attempt: 'a', type: 'X', tags: ['t1', 't2'], condition: { query: queryA, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', type: 'Z', tags: ['t1', 't2'], condition: { query: queryB, after: 0n }, at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    assert.deepEqual(checkHistory(disjoint.log, disjoint.attempts), []);
  });

  test('detects a gap and a duplicate position', () => {
    const gap = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', at: 2n, outcome: { status: 'appended', position: 2n } },
      { attempt: 'c', at: 4n, outcome: { status: 'appended', position: 4n } },
    ]);
    assertViolation(checkHistory(gap.log, gap.attempts), /gap or duplicate: log entry 2 has position 4, expected 3/);
    const duplicate = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', at: 1n, outcome: { status: 'appended', position: 1n } },
    ]);
    assertViolation(checkHistory(duplicate.log, duplicate.attempts), /gap or duplicate: log entry 1 has position 1, expected 2/);
  });

  test('detects an acknowledged but missing append', () => {
    const { log, attempts } = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', outcome: { status: 'appended', position: 2n } },
    ]);
    assertViolation(checkHistory(log, attempts), /attempt b was acknowledged at position 2 but none of its events is in the log/);
  });

  test('detects a rejected but present append', () => {
    const { log, attempts } = history([
      { attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, at: 2n, outcome: { status: 'condition-failed', conflictingPosition: 1n } },
    ]);
    assertViolation(checkHistory(log, attempts), /attempt b was rejected \(condition failed\) but its events are present at positions 2..2/);
  });

  test('detects an acknowledgement at the wrong position', () => {
    const { log, attempts } = history([
      { attempt: 'a', at: [1n, 2n], outcome: { status: 'appended', position: 1n } },
    ]);
    assertViolation(checkHistory(log, attempts), /acknowledged at position 1 but its events are at 1..2/);
  });

  test('detects a partial append and a torn (non-contiguous) block', () => {
    const partial = history([{ attempt: 'a', count: 3, at: [1n, 2n], outcome: { status: 'error', message: 'lost' } }]);
    assertViolation(checkHistory(partial.log, partial.attempts), /2 of its 3 events are in the log/);
    const torn = history([
      { attempt: 'a', at: [1n, 3n], outcome: { status: 'appended', position: 3n } },
      { attempt: 'b', at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    assertViolation(checkHistory(torn.log, torn.attempts), /attempt a: its events are not contiguous/);
  });

  test('detects events nobody appended', () => {
    const { log, attempts } = history([{ attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } }]);
    log.push({ position: 2n, type: 'Lent', tags: [], data: { other: true } });
    log.push({ position: 3n, type: 'Lent', tags: [], data: { stamp: { attempt: 'ghost', index: 0, count: 1, condition: null } } });
    const violations = checkHistory(log, attempts);
    assertViolation(violations, /position 2 carries no attempt stamp/);
    assertViolation(violations, /attempt ghost is in the log .* never recorded/);
  });

  test('detects a false conflict and a wrong conflicting position', () => {
    const falseConflict = history([
      { attempt: 'a', tags: ['book:b2'], at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, outcome: { status: 'condition-failed', conflictingPosition: 1n } },
    ]);
    const violations = checkHistory(falseConflict.log, falseConflict.attempts);
    assertViolation(violations, /attempt b was rejected, but no event matching its query exists after 0: a false conflict/);
    const notFirst = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', at: 2n, outcome: { status: 'appended', position: 2n } },
      { attempt: 'c', condition: { query: LENT_B1, after: 0n }, outcome: { status: 'condition-failed', conflictingPosition: 2n } },
    ]);
    assertViolation(checkHistory(notFirst.log, notFirst.attempts), /citing position 2, but the first matching event after 0 is at 1/);
    const notMatching = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', tags: ['book:b2'], at: 2n, outcome: { status: 'appended', position: 2n } },
      { attempt: 'c', condition: { query: LENT_B1, after: 0n }, outcome: { status: 'condition-failed', conflictingPosition: 2n } },
    ]);
    assertViolation(checkHistory(notMatching.log, notMatching.attempts), /citing position 2, which holds no event matching its query/);
  });

  test('detects recordedAt going backwards', () => {
    const { log, attempts } = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    log[1]!.recordedAt = new Date(T0 - 1000);
    assertViolation(checkHistory(log, attempts), /recordedAt decreases from position 1/);
  });

  test('detects a stored condition that differs from the one recorded', () => {
    const { log, attempts } = history([{ attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } }]);
    attempts[0]!.condition = { query: LENT_B1, after: 5n };
    assertViolation(checkHistory(log, attempts), /stored condition differs/);
  });
});

describe('matchesQuery', () => {
  const event = { type: 'Lent', tags: ['book:b1', 'reader:r1'], data: { BookID: 'b1', list: [1, 2, { a: 1 }] } };
  test('types OR, tags AND, items OR, all', () => {
    assert.equal(matchesQuery({ items: [] }, event), true);
    assert.equal(matchesQuery({ items: [{ types: ['Returned', 'Lent'] }] }, event), true);
    assert.equal(matchesQuery({ items: [{ types: ['Returned'] }] }, event), false);
    assert.equal(matchesQuery({ items: [{ tags: ['book:b1', 'reader:r1'] }] }, event), true);
    assert.equal(matchesQuery({ items: [{ tags: ['book:b1', 'reader:r2'] }] }, event), false);
    assert.equal(matchesQuery({ items: [{ types: ['Lent'], tags: ['book:b2'] }, { tags: ['reader:r1'] }] }, event), true);
    assert.equal(matchesQuery({ items: [{ types: ['Returned'], tags: ['book:b1'] }] }, event), false);
  });
  test('payload predicates follow jsonb containment', () => {
    assert.equal(matchesQuery({ items: [{ anyPredicateOf: [{ BookID: 'b2' }, { BookID: 'b1' }] }] }, event), true);
    assert.equal(matchesQuery({ items: [{ allPredicatesOf: [{ BookID: 'b1' }, { list: [2] }] }] }, event), true);
    assert.equal(matchesQuery({ items: [{ allPredicatesOf: [{ BookID: 'b1' }, { list: [3] }] }] }, event), false);
    assert.equal(jsonContains({ a: { b: 1, c: 2 } }, { a: { b: 1 } }), true);
    assert.equal(jsonContains([1, [2, 3]], [[3]]), true);
    assert.equal(jsonContains([1, 2], 1), true);
    assert.equal(jsonContains({ a: [1, 2] }, { a: 1 }), false);
    assert.equal(jsonContains({ a: 1 }, { a: '1' }), false);
  });
});
