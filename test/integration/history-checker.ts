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
//   rejection could only have seen a prefix of the final log; guarantee C);
// - an append reported as "nothing was written" (any other rejection) left no event (else a
//   false failure), and one whose outcome was unknown is present at most once, whole; a repeat
//   that settled it (same ids) must agree with the log;
// - no attempt's events are present twice (duplicated, e.g. resent under new ids).
// The fault-injection suite (test/faults) also checks subscriptions, read models, uniqueness
// claims and deadlines with the functions at the end.
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
  id?: string;
  type: string;
  tags: readonly string[];
  data: unknown;
  occurredAt?: Date;
  recordedAt?: Date;
}

export type AttemptOutcome =
  | { status: 'appended'; position: bigint }
  | { status: 'condition-failed'; conflictingPosition: bigint | undefined }
  /**
   * Any other rejection (ABORTED, TIMEOUT, DATABASE_ERROR, ...): the store says nothing of the
   * append was written, so its events must be absent.
   */
  | { status: 'nothing-written'; code: string }
  /** AppendOutcomeUnknownError, or a writer killed mid-append: present at most once, whole. */
  | { status: 'unknown'; code: string }
  /** A failure the checker knows nothing about: it then only requires all or nothing. */
  | { status: 'error'; message: string };

/** What repeating an unknown append with the same ids answered, when that answer was definitive. */
export type SettledOutcome = { status: 'appended'; position: bigint } | { status: 'condition-failed'; conflictingPosition: bigint | undefined };

export interface AttemptRecord {
  attempt: string;
  eventCount: number;
  condition: { query: QueryJSON; after: bigint | undefined } | null;
  outcome: AttemptOutcome;
  /** For an `unknown` outcome: the definitive answer of a repeat with the same ids, if any. */
  settled?: SettledOutcome;
}

export type ViolationKind =
  /** Acknowledged (or settled as appended) but absent. */
  | 'lost'
  /** An attempt's events are present more than once. */
  | 'duplicated'
  /** Reported as not written (condition failed, or any other rejection) but present. */
  | 'false-failure'
  /** Present, but not at the acknowledged position. */
  | 'misplaced'
  /** A committed append whose condition did not hold in position order. */
  | 'condition'
  /** A rejection no event in the log justifies. */
  | 'false-conflict'
  /** Positions not exactly 1..N, recordedAt decreasing. */
  | 'order'
  /** Part of an append, or a torn block. */
  | 'partial'
  /** Events nobody (recorded) appended. */
  | 'unrecorded'
  | 'other';

export interface Violation {
  kind: ViolationKind;
  message: string;
}

/** Returns every violation found (empty: the history is valid). */
export function checkHistory(log: readonly LoggedEvent[], attempts: readonly AttemptRecord[]): string[] {
  return analyzeHistory(log, attempts).map((violation) => violation.message);
}

/** checkHistory, with each violation's kind (for counting lost, duplicated, false failures). */
export function analyzeHistory(log: readonly LoggedEvent[], attempts: readonly AttemptRecord[], limit = 200): Violation[] {
  const violations: Violation[] = [];
  let kind: ViolationKind = 'other';
  const report = (message: string): void => {
    if (violations.length < limit) violations.push({ kind, message });
  };
  const as = (next: ViolationKind): void => {
    kind = next;
  };

  // Positions 1..N, ascending, and recordedAt non-decreasing.
  as('order');
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
  as('unrecorded');
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
  as('other');
  for (const record of attempts) {
    if (records.has(record.attempt)) report(`attempt ${record.attempt} is recorded twice`);
    records.set(record.attempt, record);
  }

  // Per attempt present in the log: one contiguous, complete, ordered block.
  for (const [attempt, { stamp, events }] of byAttempt) {
    const first = events[0]!;
    const last = events.at(-1)!;
    // Several copies of the first event (the same append written twice, under other ids).
    const copies = events.filter((event) => stampOf(event)!.index === 0);
    if (copies.length > 1) {
      as('duplicated');
      report(`attempt ${attempt} is present ${copies.length} times (duplicated): its first event is at positions ${copies.map((event) => event.position).join(', ')}`);
    } else {
      as('partial');
      if (events.length !== stamp.count) report(`attempt ${attempt}: ${events.length} of its ${stamp.count} events are in the log (not all or nothing)`);
      events.forEach((event, index) => {
        const eventStamp = stampOf(event)!;
        if (event.position !== first.position + BigInt(index)) report(`attempt ${attempt}: its events are not contiguous (position ${event.position})`);
        if (eventStamp.index !== index) report(`attempt ${attempt}: event at position ${event.position} has index ${eventStamp.index}, expected ${index}`);
        if (canonicalJson(eventStamp.condition) !== canonicalJson(stamp.condition)) report(`attempt ${attempt}: its events disagree on the condition`);
      });
    }
    const record = records.get(attempt);
    if (!record) {
      as('unrecorded');
      report(`attempt ${attempt} is in the log (positions ${first.position}..${last.position}) but was never recorded`);
      continue;
    }
    as('other');
    if (record.eventCount !== stamp.count) report(`attempt ${attempt}: recorded with ${record.eventCount} events, stamped with ${stamp.count}`);
    const { outcome, settled } = record;
    as('false-failure');
    if (outcome.status === 'condition-failed') {
      report(`attempt ${attempt} was rejected (condition failed) but its events are present at positions ${first.position}..${last.position}`);
    } else if (outcome.status === 'nothing-written') {
      report(`attempt ${attempt} failed with ${outcome.code} (nothing written, the store said) but its events are present at positions ${first.position}..${last.position}: a false failure`);
    } else if (outcome.status === 'unknown' && settled?.status === 'condition-failed') {
      report(`attempt ${attempt} (outcome unknown) was settled as not written (its repeat failed its condition) but its events are present at positions ${first.position}..${last.position}`);
    }
    as('misplaced');
    if (outcome.status === 'appended' && outcome.position !== last.position) {
      report(`attempt ${attempt} was acknowledged at position ${outcome.position} but its events are at ${first.position}..${last.position}`);
    } else if (outcome.status === 'unknown' && settled?.status === 'appended' && settled.position !== last.position) {
      report(`attempt ${attempt} (outcome unknown) was settled at position ${settled.position} but its events are at ${first.position}..${last.position}`);
    }
    as('other');
    const recordedCondition = record.condition === null ? null : { query: record.condition.query, after: record.condition.after === undefined ? null : record.condition.after.toString() };
    if (canonicalJson(recordedCondition) !== canonicalJson(stamp.condition)) report(`attempt ${attempt}: the stored condition differs from the recorded one`);

    // The condition held in position order: nothing matching between `after` and the block.
    if (stamp.condition) {
      as('condition');
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
    as('lost');
    if (outcome.status === 'appended' && !present) {
      report(`attempt ${record.attempt} was acknowledged at position ${outcome.position} but none of its events is in the log`);
    }
    if (outcome.status === 'unknown' && record.settled?.status === 'appended' && !present) {
      report(`attempt ${record.attempt} (outcome unknown) was settled at position ${record.settled.position} by a repeat, but none of its events is in the log`);
    }
    const rejection = outcome.status === 'condition-failed' ? outcome : outcome.status === 'unknown' && record.settled?.status === 'condition-failed' ? record.settled : undefined;
    if (rejection) {
      as('false-conflict');
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
      const reported = rejection.conflictingPosition;
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

/** What a subscriber reported for one event it received. */
export interface SeenEvent {
  position: bigint;
  /** The attempt stamped in the event's data, to catch an event delivered with another's content. */
  attempt: string | undefined;
}

/**
 * A subscription to `query` from the start must have delivered exactly the log's matching events,
 * each once, in position order, with their own content: nothing skipped, repeated, reordered.
 */
export function checkSubscription(log: readonly LoggedEvent[], seen: readonly SeenEvent[], query: QueryJSON = { items: [] }): string[] {
  const violations: string[] = [];
  const report = (message: string): void => {
    if (violations.length < 20) violations.push(message);
  };
  const expected = log.filter((event) => matchesQuery(query, event));
  const seenCount = new Map<bigint, number>();
  for (const event of seen) seenCount.set(event.position, (seenCount.get(event.position) ?? 0) + 1);
  for (const [position, count] of seenCount) if (count > 1) report(`subscriber: the event at position ${position} was delivered ${count} times`);
  for (let index = 1; index < seen.length; index++) {
    if (seen[index]!.position <= seen[index - 1]!.position) report(`subscriber: position ${seen[index]!.position} was delivered after ${seen[index - 1]!.position} (out of order)`);
  }
  const byPosition = new Map(log.map((event) => [event.position, event]));
  const wanted = new Set(expected.map((event) => event.position));
  for (const event of seen) {
    const logged = byPosition.get(event.position);
    if (!logged || !wanted.has(event.position)) report(`subscriber: received position ${event.position}, which is not a matching event of the log`);
    else if (event.attempt !== stampOf(logged)?.attempt) report(`subscriber: received position ${event.position} with the content of attempt ${event.attempt}, the log has ${stampOf(logged)?.attempt}`);
  }
  const missing = expected.filter((event) => !seenCount.has(event.position));
  if (missing.length > 0) {
    report(`subscriber: ${missing.length} matching event(s) never delivered (skipped), first at position ${missing[0]!.position}${missing.length > 1 ? `, last at ${missing.at(-1)!.position}` : ''}`);
  }
  return violations;
}

/** A read model kept by a consumer: how often each position was applied, and per-tag counts. */
export interface ReadModelState {
  /** position -> how many times the handler's effects for it committed. */
  applied: ReadonlyMap<bigint, number>;
  /** tag ('*' for all events) -> events carrying it and the last such position. */
  tags: ReadonlyMap<string, { events: bigint; lastPosition: bigint }>;
}

/** The read model must equal a fold of the log: every event applied exactly once, counts per tag. */
export function checkReadModel(log: readonly LoggedEvent[], model: ReadModelState): string[] {
  const violations: string[] = [];
  const report = (message: string): void => {
    if (violations.length < 20) violations.push(message);
  };
  const positions = new Set(log.map((event) => event.position));
  for (const [position, times] of model.applied) {
    if (!positions.has(position)) report(`read model: position ${position} was applied but is not in the log`);
    else if (times !== 1) report(`read model: position ${position} was applied ${times} times`);
  }
  const notApplied = log.filter((event) => !model.applied.has(event.position));
  if (notApplied.length > 0) report(`read model: ${notApplied.length} event(s) never applied, first at position ${notApplied[0]!.position}`);
  const fold = new Map<string, { events: bigint; lastPosition: bigint }>();
  for (const event of log) {
    for (const tag of [...event.tags, '*']) {
      const entry = fold.get(tag) ?? { events: 0n, lastPosition: 0n };
      entry.events++;
      entry.lastPosition = event.position;
      fold.set(tag, entry);
    }
  }
  for (const [tag, want] of fold) {
    const have = model.tags.get(tag);
    if (!have) report(`read model: tag ${tag} is missing (the log has ${want.events} events with it)`);
    else if (have.events !== want.events || have.lastPosition !== want.lastPosition) {
      report(`read model: tag ${tag} has ${have.events} events up to ${have.lastPosition}, the log ${want.events} up to ${want.lastPosition}`);
    }
  }
  for (const tag of model.tags.keys()) if (!fold.has(tag)) report(`read model: tag ${tag} is not in the log`);
  return violations;
}

/** At most one event of `type` per tag starting with `prefix` (uniqueness claims, e.g. `username:`). */
export function checkUniqueClaims(log: readonly LoggedEvent[], type: string, prefix: string): string[] {
  const claims = new Map<string, bigint[]>();
  for (const event of log) {
    if (event.type !== type) continue;
    for (const tag of event.tags) if (tag.startsWith(prefix)) claims.set(tag, [...(claims.get(tag) ?? []), event.position]);
  }
  return [...claims]
    .filter(([, positions]) => positions.length > 1)
    .map(([tag, positions]) => `uniqueness: ${tag} was claimed ${positions.length} times (positions ${positions.join(', ')})`);
}

/** One call as a client saw it: when it started and when it returned (or was abandoned). */
export interface TimedCall {
  label: string;
  kind: 'append' | 'read';
  startedAt: number;
  /** When it returned; undefined when it never did (still running when its process was killed). */
  endedAt: number | undefined;
  /** For a call that never returned: when it was last known to be still waiting. */
  abandonedAt?: number;
}

/** No call may wait past its deadline (`limits` per kind, in ms, slack included). */
export function checkDeadlines(calls: readonly TimedCall[], limits: { append: number; read: number }): string[] {
  const violations: string[] = [];
  for (const call of calls) {
    const end = call.endedAt ?? call.abandonedAt;
    if (end === undefined) continue;
    const waited = end - call.startedAt;
    if (waited > limits[call.kind]) {
      const how = call.endedAt === undefined ? `was still waiting after ${waited} ms (never returned)` : `returned after ${waited} ms`;
      if (violations.length < 20) violations.push(`deadline: ${call.kind} ${call.label} ${how}, over the ${limits[call.kind]} ms limit`);
    }
  }
  return violations;
}
