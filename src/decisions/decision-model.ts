import { InvalidInputError } from '../errors.ts';
import { type AppendCondition } from '../append-condition.ts';
import { type JsonValue } from '../events.ts';
import { assertJson, describe } from '../validation.ts';
import { Query, QueryItem } from '../query.ts';
import { queryMatcher } from '../query-match.ts';
import type { Projection, ReadOptions, ReadResult, Snapshot, SnapshotKey, SnapshotStore, StatesOf } from '../store.ts';
import { queryHash } from './snapshots.ts';

/** What a decision model needs from a store: `read` (and, for snapshots, a snapshot store). */
export interface DecisionModelSource {
  read<Data = unknown>(query: Query, options?: ReadOptions): Promise<ReadResult<Data>>;
  readonly snapshots?: SnapshotStore;
}

export interface DecisionModel<States> {
  state: States;
  /**
   * Append with this condition: it fails if any event any of the projections depends on was
   * appended after the read.
   */
  appendCondition: AppendCondition & { after: bigint };
}

export interface BuildDecisionModelOptions {
  signal?: AbortSignal;
  /** Load and save snapshots of projections that declare `snapshot`. Default true when the store has a snapshot store. */
  snapshots?: boolean;
}

/**
 * Reads the events every projection needs with one query, folds each event into every projection
 * it matches, and returns the states with the append condition that guards a decision made on
 * them.
 *
 * @example
 * const { state, appendCondition } = await buildDecisionModel(store, {
 *   course: courseCapacity('c1'),
 *   student: studentSubscriptions('s1'),
 * });
 * if (state.course.subscriptions >= state.course.capacity) throw new CourseFullError('c1');
 * await store.append(subscribed('s1', 'c1'), appendCondition);
 */
export async function buildDecisionModel<Projections extends Record<string, Projection<any>>>(
  store: DecisionModelSource,
  projections: Projections,
  options: BuildDecisionModelOptions = {},
): Promise<DecisionModel<StatesOf<Projections>>> {
  if (projections === null || typeof projections !== 'object') throw new InvalidInputError('projections', `must be an object of projections, got ${describe(projections)}`);
  const entries = Object.entries(projections);
  if (entries.length === 0) throw new InvalidInputError('projections', 'needs at least one projection');
  for (const [name, projection] of entries) {
    if (projection === null || typeof projection !== 'object' || !(projection.query instanceof Query) || typeof projection.apply !== 'function') {
      throw new InvalidInputError(`projections.${name}`, `must be a projection made by defineProjection, got ${describe(projection)}`);
    }
  }
  const query = mergeQueries(entries.map(([, projection]) => projection.query));
  const signal = signalOption(options.signal);
  const snapshotStore = options.snapshots === false ? undefined : store.snapshots;
  const snapshotKeys = new Map<string, SnapshotKey>();
  const loaded = new Map<string, Snapshot>();
  if (snapshotStore) {
    await Promise.all(
      entries.map(async ([name, projection]) => {
        if (!projection.snapshot) return;
        const key = { name: projection.snapshot.name, version: projection.snapshot.version, queryHash: queryHash(projection.query) };
        snapshotKeys.set(name, key);
        const snapshot = await snapshotStore.load(key, signal);
        if (snapshot) loaded.set(name, snapshot);
      }),
    );
  }

  // One read per distinct starting point: projections without a snapshot from the first event,
  // those with one from their snapshot's position, and one "last event" read per projection that
  // only needs that. Each read has its own head; the condition uses the lowest, so any relevant
  // event a read could not have seen counts as a conflict.
  let reads = await runReads(store, planReads(entries, loaded, query), signal);
  // A snapshot beyond its read's head belongs to a store that has since lost events (restored
  // from an older backup): it is not valid here. Drop it and read again.
  const stale = reads.filter((read) => read.after > read.result.head).flatMap((read) => read.names);
  if (stale.length > 0) {
    for (const name of stale) loaded.delete(name);
    reads = await runReads(store, planReads(entries, loaded, query), signal);
  }

  const state: Record<string, unknown> = {};
  const snapshotsToSave: { key: SnapshotKey; snapshot: Snapshot }[] = [];
  for (const read of reads) {
    for (const name of read.names) {
      const projection = projections[name]!;
      const snapshot = loaded.get(name);
      let current: unknown = snapshot ? restore(projection, snapshot.state) : structuredClone(projection.initialState);
      const matches = queryMatcher(projection.query);
      let folded = 0;
      for (const event of read.result.events) {
        if (!matches(event)) continue;
        current = projection.apply(current, event);
        folded += 1;
      }
      // defineProperty: a projection named after user input (`__proto__`) must stay a plain key.
      Object.defineProperty(state, name, { value: current, enumerable: true, writable: true, configurable: true });
      const key = snapshotKeys.get(name);
      if (key && projection.snapshot && folded >= (projection.snapshot.every ?? 100)) {
        snapshotsToSave.push({ key, snapshot: { position: read.result.head, state: serialize(projection, current, name) } });
      }
    }
  }
  // Saved only once every projection folded (a throwing handler leaves nothing in flight). A
  // snapshot is an optimisation: a failed save does not fail the decision, the next one retries.
  if (snapshotStore) await Promise.allSettled(snapshotsToSave.map(({ key, snapshot }) => snapshotStore.save(key, snapshot, signal)));
  const after = reads.reduce((lowest, read) => (read.result.head < lowest ? read.result.head : lowest), reads[0]!.result.head);
  return { state: state as StatesOf<Projections>, appendCondition: { failIfEventsMatch: query, after } };
}

interface PlannedRead {
  query: Query;
  after: bigint;
  onlyLastEvent: boolean;
  names: string[];
}

/** `merged`: every projection's query merged, the read's query when one read serves them all (the usual case). */
function planReads(entries: readonly [string, Projection<unknown>][], snapshots: ReadonlyMap<string, Snapshot>, merged: Query): PlannedRead[] {
  const reads: PlannedRead[] = [];
  const byStart = new Map<bigint, string[]>();
  for (const [name, projection] of entries) {
    if (projection.onlyLastEvent) {
      reads.push({ query: projection.query, after: 0n, onlyLastEvent: true, names: [name] });
      continue;
    }
    const start = snapshots.get(name)?.position ?? 0n;
    byStart.set(start, [...(byStart.get(start) ?? []), name]);
  }
  const projectionsByName = new Map(entries);
  for (const [after, names] of byStart) {
    const query = names.length === entries.length ? merged : mergeQueries(names.map((name) => projectionsByName.get(name)!.query));
    reads.push({ query, after, onlyLastEvent: false, names });
  }
  return reads;
}

async function runReads(store: DecisionModelSource, reads: readonly PlannedRead[], signal: { signal?: AbortSignal }): Promise<(PlannedRead & { result: ReadResult<unknown> })[]> {
  return Promise.all(
    reads.map(async (read) => ({
      ...read,
      result: await store.read(read.query, read.onlyLastEvent ? { backwards: true, limit: 1, ...signal } : { after: read.after, ...signal }),
    })),
  );
}

/**
 * One query matching every event any of `queries` matches: their items together (duplicates
 * removed), or all events if one of them is `Query.all()`. Time bounds are kept only when all
 * queries share them; otherwise the merged query reads (and guards) a superset, and each
 * projection still only folds the events its own query matches.
 */
export function mergeQueries(queries: readonly Query[]): Query {
  if (queries.length === 0) throw new InvalidInputError('queries', 'needs at least one query');
  const first = queries[0]!.toJSON();
  const sameBounds = queries.every((query) => {
    const json = query.toJSON();
    return json.occurredFrom === first.occurredFrom && json.occurredUntil === first.occurredUntil;
  });
  let merged: Query;
  if (queries.some((query) => query.isAll)) {
    merged = Query.all();
  } else {
    const items = new Map<string, QueryItem>();
    for (const query of queries) for (const item of query.items) items.set(JSON.stringify(item.toJSON()), item);
    merged = Query.of(...items.values());
  }
  if (sameBounds && first.occurredFrom !== undefined) merged = merged.occurredFrom(new Date(first.occurredFrom));
  if (sameBounds && first.occurredUntil !== undefined) merged = merged.occurredUntil(new Date(first.occurredUntil));
  return merged;
}

function restore(projection: Projection<unknown>, json: JsonValue): unknown {
  return projection.snapshot?.deserialize ? projection.snapshot.deserialize(json) : json;
}

function serialize(projection: Projection<unknown>, state: unknown, name: string): JsonValue {
  const json = projection.snapshot?.serialize ? projection.snapshot.serialize(state) : state;
  // The same check as event data: a Set, Map, BigInt or undefined would not survive the JSON
  // round trip, and a snapshot that comes back different breaks the next decision.
  try {
    assertJson(json, `projections.${name}.snapshot`);
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    throw new InvalidInputError(error.path, `${error.message.slice(error.path.length + 2)} (the state must survive JSON; give snapshot.serialize/deserialize)`);
  }
  return JSON.parse(JSON.stringify(json)) as JsonValue;
}

function signalOption(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}
