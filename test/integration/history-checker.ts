// A pure validator of a final event log against the record of every append attempt that produced
// it. Used by the randomized concurrency test; proven to catch violations by
// test/unit/history-checker.test.ts.
//
// Every event written by a checked history embeds, in its `data`, which attempt wrote it and the
// condition it was appended under (see `AttemptStamp`). The checker then verifies, in position
// order and without trusting the store:
// - positions are exactly 1..N (no gap, no duplicate, ascending) and recordedAt never decreases;
// - every event belongs to a recorded attempt, and each attempt's events form one contiguous
//   block in their original order (all or nothing);
// - an acknowledged attempt's events sit exactly at the acknowledged block (its returned position
//   is the block's last position);
// - a rejected attempt left no event;
// - for every committed attempt with a condition, no event matching the condition's query lies
//   strictly between `after` (0 when absent) and the attempt's first position (guarantee A);
// - every rejection is justified: an event matching the query exists after `after`, the reported
//   conflicting position is such an event and, when `after` was given, the first one (a
//   rejection could only have seen a prefix of the final log; guarantee C).
import type { QueryItemJSON, QueryJSON } from '../../src/index.ts';

/** What each event of a checked history carries in `data.stamp`. */
export interface AttemptStamp {
  attempt: string;
  /** Index of the event within its append (0-based). */
  index: number;
  /** Number of events of the append. */
  count: number;
  /** The condition the append was made under; `after` as a decimal string or null when absent. */
  condition: { query: QueryJSON; after: string | null } | null;
}

/** An event of the final log, as read back. */
export interface LoggedEvent {
  position: bigint;
  type: string;
  tags: readonly string[];
  data: unknown;
  occurredAt?: Date;
  recordedAt?: Date;
}

export type AttemptOutcome =
  | { status: 'appended'; position: bigint }
  | { status: 'condition-failed'; conflictingPosition: bigint | undefined }
  /** Any other failure: the checker then only requires all or nothing. */
  | { status: 'error'; message: string };

export interface AttemptRecord {
  attempt: string;
  eventCount: number;
  condition: { query: QueryJSON; after: bigint | undefined } | null;
  outcome: AttemptOutcome;
}

/** Returns every violation found (empty: the history is valid). */
export function checkHistory(log: readonly LoggedEvent[], attempts: readonly AttemptRecord[]): string[] {
  const violations: string[] = [];
  const report = (message: string): void => {
    if (violations.length < 50) violations.push(message);
  };

  // Positions 1..N, ascending, and recordedAt non-decreasing.
  log.forEach((event, index) => {
    const expected = BigInt(index + 1);
    if (event.position !== expected) report(`gap or duplicate: log entry ${index} has position ${event.position}, expected ${expected}`);
    const previous = log[index - 1];
    if (previous?.recordedAt && event.recordedAt && event.recordedAt.getTime() < previous.recordedAt.getTime()) {
      report(`recordedAt decreases from position ${previous.position} (${previous.recordedAt.toISOString()}) to ${event.position} (${event.recordedAt.toISOString()})`);
    }
  });

  // Group the log by attempt.
  const byAttempt = new Map<string, { stamp: AttemptStamp; events: LoggedEvent[] }>();
  for (const event of log) {
    const stamp = stampOf(event);
    if (!stamp) {
      report(`event at position ${event.position} carries no attempt stamp`);
      continue;
    }
    const group = byAttempt.get(stamp.attempt);
    if (group) group.events.push(event);
    else byAttempt.set(stamp.attempt, { stamp, events: [event] });
  }

  const records = new Map<string, AttemptRecord>();
  for (const record of attempts) {
    if (records.has(record.attempt)) report(`attempt ${record.attempt} is recorded twice`);
    records.set(record.attempt, record);
  }

  // Per attempt present in the log: one contiguous, complete, ordered block.
  for (const [attempt, { stamp, events }] of byAttempt) {
    const first = events[0]!;
    const last = events.at(-1)!;
    if (events.length !== stamp.count) report(`attempt ${attempt}: ${events.length} of its ${stamp.count} events are in the log (not all or nothing)`);
    events.forEach((event, index) => {
      const eventStamp = stampOf(event)!;
      if (event.position !== first.position + BigInt(index)) report(`attempt ${attempt}: its events are not contiguous (position ${event.position})`);
      if (eventStamp.index !== index) report(`attempt ${attempt}: event at position ${event.position} has index ${eventStamp.index}, expected ${index}`);
      if (canonicalJson(eventStamp.condition) !== canonicalJson(stamp.condition)) report(`attempt ${attempt}: its events disagree on the condition`);
    });
    const record = records.get(attempt);
    if (!record) {
      report(`attempt ${attempt} is in the log (positions ${first.position}..${last.position}) but was never recorded`);
      continue;
    }
    if (record.eventCount !== stamp.count) report(`attempt ${attempt}: recorded with ${record.eventCount} events, stamped with ${stamp.count}`);
    if (record.outcome.status === 'condition-failed') {
      report(`attempt ${attempt} was rejected (condition failed) but its events are present at positions ${first.position}..${last.position}`);
    } else if (record.outcome.status === 'appended' && record.outcome.position !== last.position) {
      report(`attempt ${attempt} was acknowledged at position ${record.outcome.position} but its events are at ${first.position}..${last.position}`);
    }
    const recordedCondition = record.condition === null ? null : { query: record.condition.query, after: record.condition.after === undefined ? null : record.condition.after.toString() };
    if (canonicalJson(recordedCondition) !== canonicalJson(stamp.condition)) report(`attempt ${attempt}: the stored condition differs from the recorded one`);

    // The condition held in position order: nothing matching between `after` and the block.
    if (stamp.condition) {
      const after = stamp.condition.after === null ? 0n : BigInt(stamp.condition.after);
      const conflict = firstMatch(log, stamp.condition.query, after, first.position);
      if (conflict !== undefined) {
        report(
          `attempt ${attempt} committed at ${first.position}..${last.position} under condition after ${stamp.condition.after ?? '(none)'}, ` +
            `but the event at position ${conflict.position} (${conflict.type} [${conflict.tags.join(', ')}]) matches its query: the condition did not hold`,
        );
      }
    }
  }

  // Per recorded attempt: acknowledged ones are present, rejections are justified.
  for (const record of attempts) {
    const present = byAttempt.get(record.attempt);
    const { outcome } = record;
    if (outcome.status === 'appended' && !present) {
      report(`attempt ${record.attempt} was acknowledged at position ${outcome.position} but none of its events is in the log`);
    }
    if (outcome.status === 'condition-failed') {
      if (!record.condition) {
        report(`attempt ${record.attempt} was rejected with a condition failure but had no condition`);
        continue;
      }
      const after = record.condition.after ?? 0n;
      const conflict = firstMatch(log, record.condition.query, after, undefined);
      if (!conflict) {
        report(`attempt ${record.attempt} was rejected, but no event matching its query exists after ${after}: a false conflict`);
        continue;
      }
      const reported = outcome.conflictingPosition;
      if (reported !== undefined) {
        const event = log.find((candidate) => candidate.position === reported);
        if (!event || reported <= after || !matchesQuery(record.condition.query, event)) {
          report(`attempt ${record.attempt} was rejected citing position ${reported}, which holds no event matching its query after ${after}`);
        } else if (record.condition.after !== undefined && reported !== conflict.position) {
          // The rejection saw a prefix of the final log, so the first conflict it saw is the
          // first in the final log too; a later one means it missed an earlier, visible event.
          report(`attempt ${record.attempt} was rejected citing position ${reported}, but the first matching event after ${after} is at ${conflict.position}`);
        }
      }
    }
  }
  return violations;
}

/** JSON with object keys sorted: jsonb does not keep key order, so compare this way. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, current: unknown) =>
    current !== null && typeof current === 'object' && !Array.isArray(current)
      ? Object.fromEntries(Object.entries(current as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : current,
  );
}

function stampOf(event: LoggedEvent): AttemptStamp | undefined {
  const data = event.data as { stamp?: unknown } | null;
  if (data === null || typeof data !== 'object') return undefined;
  const stamp = data.stamp as AttemptStamp | undefined;
  if (!stamp || typeof stamp.attempt !== 'string' || typeof stamp.index !== 'number' || typeof stamp.count !== 'number') return undefined;
  return stamp;
}

/** The first event with after < position < before (no upper bound when before is undefined) matching the query. */
function firstMatch(log: readonly LoggedEvent[], query: QueryJSON, after: bigint, before: bigint | undefined): LoggedEvent | undefined {
  return log.find((event) => event.position > after && (before === undefined || event.position < before) && matchesQuery(query, event));
}

/** The DCB matching rule, in JavaScript: items OR-ed, inside an item types OR-ed and tags AND-ed. */
export function matchesQuery(query: QueryJSON, event: Pick<LoggedEvent, 'type' | 'tags' | 'data' | 'occurredAt'>): boolean {
  if (query.occurredFrom !== undefined || query.occurredUntil !== undefined) {
    if (!event.occurredAt) throw new Error('matchesQuery: the query bounds occurredAt but the event has none');
    if (query.occurredFrom !== undefined && event.occurredAt.getTime() < new Date(query.occurredFrom).getTime()) return false;
    if (query.occurredUntil !== undefined && event.occurredAt.getTime() > new Date(query.occurredUntil).getTime()) return false;
  }
  if (query.items.length === 0) return true;
  return query.items.some((item) => matchesItem(item, event));
}

function matchesItem(item: QueryItemJSON, event: Pick<LoggedEvent, 'type' | 'tags' | 'data'>): boolean {
  if (item.types && !item.types.includes(event.type)) return false;
  if (item.tags && !item.tags.every((tag) => event.tags.includes(tag))) return false;
  if (item.anyPredicateOf && !item.anyPredicateOf.some((predicate) => jsonContains(event.data, predicate, true))) return false;
  if (item.allPredicatesOf && !item.allPredicatesOf.every((predicate) => jsonContains(event.data, predicate, true))) return false;
  return true;
}

/** PostgreSQL's jsonb `@>`. */
export function jsonContains(container: unknown, contained: unknown, topLevel = true): boolean {
  if (Array.isArray(container)) {
    if (Array.isArray(contained)) return contained.every((wanted) => container.some((have) => jsonContains(have, wanted, false)));
    // Special case: a top-level array contains a primitive it holds.
    if (topLevel && (contained === null || typeof contained !== 'object')) return container.some((have) => jsonContains(have, contained, false));
    return false;
  }
  if (container !== null && typeof container === 'object') {
    if (contained === null || typeof contained !== 'object' || Array.isArray(contained)) return false;
    const have = container as Record<string, unknown>;
    return Object.entries(contained as Record<string, unknown>).every(([key, value]) => key in have && jsonContains(have[key], value, false));
  }
  if (contained !== null && typeof contained === 'object') return false;
  return container === contained;
}
