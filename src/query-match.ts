import type { InternalQuery, InternalQueryItem, Query } from './query.ts';

/** The parts of an event a query looks at. */
export interface MatchableEvent {
  type: string;
  tags: readonly string[];
  data: unknown;
  occurredAt: Date;
}

/**
 * Whether `event` matches `query`, with exactly the semantics of the PostgreSQL store (payload
 * predicates as jsonb `@>`). Used to fold a merged read into each projection and by the
 * in-memory store; the query-semantics test checks it against PostgreSQL.
 */
export function eventMatchesQuery(query: Query, event: MatchableEvent): boolean {
  return matchesInternal(query.toInternal(), event);
}

/** A matcher compiled once, for folding many events. */
export function queryMatcher(query: Query): (event: MatchableEvent) => boolean {
  const internal = query.toInternal();
  return (event) => matchesInternal(internal, event);
}

function matchesInternal(query: InternalQuery, event: MatchableEvent): boolean {
  const time = event.occurredAt.getTime();
  if (query.from !== null && time < Date.parse(query.from)) return false;
  if (query.until !== null && time > Date.parse(query.until)) return false;
  return query.all || query.items.some((item) => matchesItem(item, event));
}

function matchesItem(item: InternalQueryItem, event: MatchableEvent): boolean {
  if (item.types !== null && !item.types.includes(event.type)) return false;
  if (item.tags !== null && !item.tags.every((tag) => event.tags.includes(tag))) return false;
  if (item.any_of !== null && !item.any_of.some((predicate) => jsonContains(event.data, predicate))) return false;
  if (item.all_of !== null && !item.all_of.every((predicate) => jsonContains(event.data, predicate))) return false;
  return true;
}

const isContainer = (value: unknown): value is object => value !== null && typeof value === 'object';
const isPlainObject = (value: unknown): value is Record<string, unknown> => isContainer(value) && !Array.isArray(value);

/**
 * PostgreSQL's `left @> right` on jsonb: objects contain sub-objects recursively, arrays contain
 * arrays as sets (order and duplicates ignored), scalars are equal, and only a top-level array
 * also contains a primitive that is one of its elements.
 */
export function jsonContains(left: unknown, right: unknown): boolean {
  if (Array.isArray(left) && !isContainer(right)) return left.some((element) => !isContainer(element) && element === right);
  return containsNested(left, right);
}

function containsNested(left: unknown, right: unknown): boolean {
  if (Array.isArray(right)) {
    if (!Array.isArray(left)) return false;
    return right.every((wanted) =>
      isContainer(wanted)
        ? left.some((element) => isContainer(element) && Array.isArray(element) === Array.isArray(wanted) && containsNested(element, wanted))
        : left.some((element) => !isContainer(element) && element === wanted),
    );
  }
  if (isPlainObject(right)) {
    if (!isPlainObject(left)) return false;
    return Object.keys(right).every((key) => Object.hasOwn(left, key) && containsNested(left[key], right[key]));
  }
  return !isContainer(left) && left === right;
}
