// The history checker must reject every kind of broken history the concurrency tests look for;
// otherwise a passing randomized test would prove nothing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { QueryJSON } from '../../src/index.ts';
import {
  analyzeHistory,
  checkDeadlines,
  checkHistory,
  checkReadModel,
  checkSubscription,
  checkUniqueClaims,
  jsonContains,
  matchesQuery,
  type AttemptRecord,
  type AttemptStamp,
  type LoggedEvent,
  type ReadModelState,
} from '../integration/history-checker.ts';

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
  settled?: AttemptRecord['settled'];
}

/** Builds a log and the attempt records from compact specs. */
function history(specs: Spec[]): { log: LoggedEvent[]; attempts: AttemptRecord[] } {
  const log: LoggedEvent[] = [];
  const attempts: AttemptRecord[] = [];
  for (const spec of specs) {
    const positions = spec.at === undefined ? [] : Array.isArray(spec.at) ? spec.at : [spec.at];
    const count = spec.count ?? Math.max(positions.length, 1);
    const condition = spec.condition ?? null;
    attempts.push({
      attempt: spec.attempt,
      eventCount: count,
      condition: condition && { query: condition.query, after: condition.after },
      outcome: spec.outcome,
      ...(spec.settled && { settled: spec.settled }),
    });
    positions.forEach((position, positionIndex) => {
      // Positions beyond `count` are a second copy of the same append.
      const index = positionIndex % count;
      const stamp: AttemptStamp = {
        attempt: spec.attempt,
        index,
        count,
        condition: condition && { query: condition.query, after: condition.after === undefined ? null : condition.after.toString() },
      };
      log.push({ position, id: `${spec.attempt}-${positionIndex}`, type: spec.type ?? 'Lent', tags: spec.tags ?? ['book:b1'], data: { stamp }, recordedAt: new Date(T0 + Number(position)) });
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

describe('checkHistory under faults: unknown and nothing-written outcomes', () => {
  test('accepts unknown outcomes present once or absent, settled or not, and absent nothing-written ones', () => {
    const { log, attempts } = history([
      { attempt: 'a', at: 1n, outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' } },
      { attempt: 'b', outcome: { status: 'unknown', code: 'KILLED' } },
      { attempt: 'c', at: [2n, 3n], outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' }, settled: { status: 'appended', position: 3n } },
      { attempt: 'd', condition: { query: LENT_B1, after: 0n }, outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' }, settled: { status: 'condition-failed', conflictingPosition: 1n } },
      { attempt: 'e', outcome: { status: 'nothing-written', code: 'ABORTED' } },
      { attempt: 'f', outcome: { status: 'nothing-written', code: 'TIMEOUT' } },
    ]);
    assert.deepEqual(checkHistory(log, attempts), []);
  });

  test('detects a false failure: reported as nothing written, but present', () => {
    const { log, attempts } = history([
      { attempt: 'a', at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', at: 2n, outcome: { status: 'nothing-written', code: 'DATABASE_ERROR' } },
    ]);
    const violations = analyzeHistory(log, attempts);
    assertViolation(violations.map((violation) => violation.message), /attempt b failed with DATABASE_ERROR \(nothing written, the store said\) but its events are present at positions 2..2: a false failure/);
    assert.deepEqual(violations.map((violation) => violation.kind), ['false-failure']);
  });

  test('counts a condition failure whose events are present as a false failure', () => {
    const { log, attempts } = history([
      { attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, at: 2n, outcome: { status: 'condition-failed', conflictingPosition: 1n } },
    ]);
    assert.ok(analyzeHistory(log, attempts).some((violation) => violation.kind === 'false-failure'));
  });

  test('detects an unknown outcome present twice (duplicated)', () => {
    const { log, attempts } = history([{ attempt: 'a', count: 2, at: [1n, 2n, 3n, 4n], outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' } }]);
    const violations = analyzeHistory(log, attempts);
    assertViolation(violations.map((violation) => violation.message), /attempt a is present 2 times \(duplicated\): its first event is at positions 1, 3/);
    assert.deepEqual(violations.map((violation) => violation.kind), ['duplicated']);
  });

  test('detects an acknowledged append present twice (duplicated)', () => {
    const { log, attempts } = history([{ attempt: 'a', at: [1n, 2n], count: 1, outcome: { status: 'appended', position: 1n } }]);
    assert.ok(analyzeHistory(log, attempts).some((violation) => violation.kind === 'duplicated'));
  });

  test('detects an unknown outcome present in part', () => {
    const { log, attempts } = history([{ attempt: 'a', count: 3, at: [1n, 2n], outcome: { status: 'unknown', code: 'KILLED' } }]);
    const violations = analyzeHistory(log, attempts);
    assertViolation(violations.map((violation) => violation.message), /2 of its 3 events are in the log/);
    assert.deepEqual(violations.map((violation) => violation.kind), ['partial']);
  });

  test('detects a settle that contradicts the log', () => {
    const lost = history([{ attempt: 'a', outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' }, settled: { status: 'appended', position: 1n } }]);
    const lostViolations = analyzeHistory(lost.log, lost.attempts);
    assertViolation(lostViolations.map((violation) => violation.message), /attempt a \(outcome unknown\) was settled at position 1 by a repeat, but none of its events is in the log/);
    assert.deepEqual(lostViolations.map((violation) => violation.kind), ['lost']);

    const misplaced = history([
      { attempt: 'a', at: 1n, outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' }, settled: { status: 'appended', position: 2n } },
      { attempt: 'b', at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    const misplacedViolations = analyzeHistory(misplaced.log, misplaced.attempts);
    assertViolation(misplacedViolations.map((violation) => violation.message), /attempt a \(outcome unknown\) was settled at position 2 but its events are at 1..1/);
    assert.deepEqual(misplacedViolations.map((violation) => violation.kind), ['misplaced']);

    const present = history([
      { attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' }, settled: { status: 'condition-failed', conflictingPosition: 1n } },
    ]);
    const presentViolations = analyzeHistory(present.log, present.attempts);
    assertViolation(presentViolations.map((violation) => violation.message), /attempt a \(outcome unknown\) was settled as not written .* present at positions 1..1/);
    assert.ok(presentViolations.some((violation) => violation.kind === 'false-failure'));

    const unjustified = history([
      { attempt: 'a', tags: ['book:b2'], at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, outcome: { status: 'unknown', code: 'APPEND_OUTCOME_UNKNOWN' }, settled: { status: 'condition-failed', conflictingPosition: 1n } },
    ]);
    const unjustifiedViolations = analyzeHistory(unjustified.log, unjustified.attempts);
    assertViolation(unjustifiedViolations.map((violation) => violation.message), /attempt b was rejected, but no event matching its query exists after 0: a false conflict/);
  });

  test('kinds: lost, misplaced, condition, order, unrecorded', () => {
    const { log, attempts } = history([
      { attempt: 'a', condition: { query: LENT_B1, after: 0n }, at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', condition: { query: LENT_B1, after: 0n }, at: 2n, outcome: { status: 'appended', position: 3n } },
      { attempt: 'c', outcome: { status: 'appended', position: 9n } },
    ]);
    log.push({ position: 4n, type: 'Lent', tags: [], data: {} });
    const kinds = new Set(analyzeHistory(log, attempts).map((violation) => violation.kind));
    assert.deepEqual([...kinds].sort(), ['condition', 'lost', 'misplaced', 'order', 'unrecorded']);
  });
});

describe('checkSubscription', () => {
  const { log } = history([
    { attempt: 'a', at: [1n, 2n], outcome: { status: 'appended', position: 2n } },
    { attempt: 'b', tags: ['book:b2'], at: 3n, outcome: { status: 'appended', position: 3n } },
  ]);
  const seen = (...entries: [bigint, string][]) => entries.map(([position, attempt]) => ({ position, attempt }));

  test('accepts every matching event once, in order', () => {
    assert.deepEqual(checkSubscription(log, seen([1n, 'a'], [2n, 'a'], [3n, 'b'])), []);
    assert.deepEqual(checkSubscription(log, seen([3n, 'b']), { items: [{ tags: ['book:b2'] }] }), []);
  });
  test('detects a skipped event', () => {
    assertViolation(checkSubscription(log, seen([1n, 'a'], [3n, 'b'])), /1 matching event\(s\) never delivered \(skipped\), first at position 2/);
  });
  test('detects a repeated event and disorder', () => {
    const violations = checkSubscription(log, seen([1n, 'a'], [2n, 'a'], [2n, 'a'], [3n, 'b']));
    assertViolation(violations, /position 2 was delivered 2 times/);
    assertViolation(checkSubscription(log, seen([2n, 'a'], [1n, 'a'], [3n, 'b'])), /position 1 was delivered after 2 \(out of order\)/);
  });
  test('detects an event with the wrong content, one not in the log, and one outside the query', () => {
    assertViolation(checkSubscription(log, seen([1n, 'a'], [2n, 'b'], [3n, 'b'])), /received position 2 with the content of attempt b, the log has a/);
    assertViolation(checkSubscription(log, seen([1n, 'a'], [2n, 'a'], [3n, 'b'], [4n, 'c'])), /received position 4, which is not a matching event/);
    assertViolation(checkSubscription(log, seen([1n, 'a'], [3n, 'b']), { items: [{ tags: ['book:b2'] }] }), /received position 1, which is not a matching event/);
  });
});

describe('checkReadModel', () => {
  const { log } = history([
    { attempt: 'a', at: [1n, 2n], outcome: { status: 'appended', position: 2n } },
    { attempt: 'b', tags: ['book:b2'], at: 3n, outcome: { status: 'appended', position: 3n } },
  ]);
  const good = (): { applied: Map<bigint, number>; tags: Map<string, { events: bigint; lastPosition: bigint }> } => ({
    applied: new Map([[1n, 1], [2n, 1], [3n, 1]]),
    tags: new Map([
      ['book:b1', { events: 2n, lastPosition: 2n }],
      ['book:b2', { events: 1n, lastPosition: 3n }],
      ['*', { events: 3n, lastPosition: 3n }],
    ]),
  });
  test('accepts a fold of the log', () => {
    assert.deepEqual(checkReadModel(log, good() satisfies ReadModelState), []);
  });
  test('detects an event applied twice, never, or not in the log', () => {
    const twice = good();
    twice.applied.set(2n, 2);
    assertViolation(checkReadModel(log, twice), /position 2 was applied 2 times/);
    const never = good();
    never.applied.delete(3n);
    assertViolation(checkReadModel(log, never), /1 event\(s\) never applied, first at position 3/);
    const extra = good();
    extra.applied.set(7n, 1);
    assertViolation(checkReadModel(log, extra), /position 7 was applied but is not in the log/);
  });
  test('detects wrong, missing and extra tag counts', () => {
    const wrong = good();
    wrong.tags.set('book:b1', { events: 3n, lastPosition: 2n });
    assertViolation(checkReadModel(log, wrong), /tag book:b1 has 3 events up to 2, the log 2 up to 2/);
    const missing = good();
    missing.tags.delete('*');
    assertViolation(checkReadModel(log, missing), /tag \* is missing/);
    const extra = good();
    extra.tags.set('book:b9', { events: 1n, lastPosition: 1n });
    assertViolation(checkReadModel(log, extra), /tag book:b9 is not in the log/);
  });
});

describe('checkUniqueClaims and checkDeadlines', () => {
  test('detects a name claimed twice', () => {
    const { log } = history([
      { attempt: 'a', type: 'UsernameClaimed', tags: ['username:x'], at: 1n, outcome: { status: 'appended', position: 1n } },
      { attempt: 'b', type: 'UsernameClaimed', tags: ['username:y'], at: 2n, outcome: { status: 'appended', position: 2n } },
    ]);
    assert.deepEqual(checkUniqueClaims(log, 'UsernameClaimed', 'username:'), []);
    log.push({ position: 3n, type: 'UsernameClaimed', tags: ['username:x'], data: {} });
    assert.deepEqual(checkUniqueClaims(log, 'UsernameClaimed', 'username:'), ['uniqueness: username:x was claimed 2 times (positions 1, 3)']);
  });
  test('detects a call that returned late and one that never returned', () => {
    const limits = { append: 1000, read: 500 };
    assert.deepEqual(checkDeadlines([{ label: 'a', kind: 'append', startedAt: 0, endedAt: 1000 }, { label: 'r', kind: 'read', startedAt: 0, endedAt: 500 }], limits), []);
    assertViolation(checkDeadlines([{ label: 'r', kind: 'read', startedAt: 0, endedAt: 501 }], limits), /read r returned after 501 ms, over the 500 ms limit/);
    assertViolation(checkDeadlines([{ label: 'a', kind: 'append', startedAt: 0, endedAt: undefined, abandonedAt: 5000 }], limits), /append a was still waiting after 5000 ms \(never returned\)/);
    // Killed quickly (the process died, not the store): not a deadline problem.
    assert.deepEqual(checkDeadlines([{ label: 'a', kind: 'append', startedAt: 0, endedAt: undefined, abandonedAt: 10 }], limits), []);
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
