/**
 * Adapter for `@dcb-es/event-store-postgres` 7.0.1 (kraken-tech/dcb-event-store), set up the way its
 * README recommends: `new PostgresEventStore({ pool })`, `ensureInstalled()`, default lock strategy
 * (advisory locks) and default read-barrier cache.
 *
 * How the contract maps onto it:
 * - Query `{ types, tag }` -> `Query.fromItems([{ types, tags: Tags.from([tag]) }])`. Tags are opaque
 *   strings to this library (`Tags.fromObj` only builds `key=value` strings), so ours pass through.
 * - `read` iterates `store.read(query)` (a server-side cursor, 5000 rows per FETCH). The position it
 *   returns is what the library's own `buildDecisionModel` puts in the append condition: the highest
 *   position among the events read, `SequencePosition.initial()` (0) when none matched. It is not
 *   the store head; with per-(type, tag) conditions that is enough, because the read is bounded by a
 *   barrier high-water mark taken under the same (type, tag) advisory locks the writers hold.
 * - Conditional append -> `append({ events, condition: { failIfEventsMatch: query, after } })`. A
 *   failed condition raises `AppendConditionError` ("Expected Version fail: New events matching
 *   appendCondition found.") from `@dcb-es/event-store`, mapped to 'conflict'; anything else throws.
 * - Every append locks one advisory key per (event type, tag) pair of every event (exclusive) plus
 *   one per event type (shared), inside one function call; batches above `copyThreshold` (10,000)
 *   switch to a COPY path. Hence `maxPreloadBatch = 5000`.
 * - `streamAll` uses `store.read(Query.all())`: a cursor, 5000 rows per round trip, constant memory.
 *
 * Peer behaviour worth knowing (not "fixed" here):
 * - A read item with several tags matches events carrying ANY of them (`tags && $1`), while the append
 *   condition matches events carrying ALL of them (`tags @> ...`). Our workloads use one tag per item,
 *   where both agree.
 * - The read barrier's high-water mark is cached per process for 50 ms (`hwmCacheTtlMs`, invalidated by
 *   this process's own appends); a read in another process can therefore miss events committed in the
 *   last 50 ms. The condition check stays correct (it conflicts instead), so this only shows up as
 *   extra conflicts, never as a lost update.
 * - Positions come from a BIGSERIAL, so they can have gaps (rolled-back appends) and are parsed with
 *   `parseInt` (exact only up to 2^53).
 */
import pg from 'pg';
import { PostgresEventStore } from '@dcb-es/event-store-postgres';
import { AppendConditionError, Query, SequencePosition, Tags, type DcbEvent } from '@dcb-es/event-store';
import type { BenchAdapter, BenchAppendOutcome, BenchEvent, BenchPosition, BenchQuery, BenchReadResult } from '../adapter.ts';

function toQuery(query: BenchQuery): Query {
  return Query.fromItems([{ types: query.types, tags: Tags.from([query.tag]) }]);
}

function toDcbEvent(event: BenchEvent): DcbEvent {
  return { type: event.type, tags: Tags.from(event.tags), data: event.data, metadata: {} };
}

function asSequencePosition(position: BenchPosition): SequencePosition {
  if (!(position instanceof SequencePosition)) throw new TypeError(`not a @dcb-es SequencePosition: ${String(position)}`);
  return position;
}

function isAppendConditionError(error: unknown): boolean {
  // instanceof, plus the name in case a second copy of @dcb-es/event-store were ever installed.
  return error instanceof AppendConditionError || (error instanceof Error && error.name === 'AppendConditionError');
}

class DcbEsAdapter implements BenchAdapter {
  readonly name = '@dcb-es/event-store-postgres';
  readonly maxPreloadBatch = 5000;
  private pool: pg.Pool | undefined;
  private store: PostgresEventStore | undefined;

  async open(connectionString: string): Promise<void> {
    this.pool = new pg.Pool({ connectionString });
    // pg's advice for every pool: an idle client that loses its connection is an 'error' event, fatal
    // without a listener. The pool drops that client; the next query uses a new one.
    this.pool.on('error', (error) => console.error(`${this.name}: idle pool client error: ${error.message}`));
    this.store = new PostgresEventStore({ pool: this.pool });
    await this.store.ensureInstalled();
  }

  private get eventStore(): PostgresEventStore {
    if (!this.store) throw new Error('adapter not opened');
    return this.store;
  }

  async append(events: BenchEvent[], condition?: { query: BenchQuery; position: BenchPosition }): Promise<BenchAppendOutcome> {
    const dcbEvents = events.map(toDcbEvent);
    try {
      await this.eventStore.append(
        condition
          ? { events: dcbEvents, condition: { failIfEventsMatch: toQuery(condition.query), after: asSequencePosition(condition.position) } }
          : { events: dcbEvents },
      );
      return 'appended';
    } catch (error) {
      if (isAppendConditionError(error)) return 'conflict';
      throw error;
    }
  }

  async read(query: BenchQuery): Promise<BenchReadResult> {
    let count = 0;
    let position = SequencePosition.initial();
    for await (const event of this.eventStore.read(toQuery(query))) {
      count += 1;
      if (event.position.isAfter(position)) position = event.position;
    }
    return { count, position };
  }

  positionKey(position: BenchPosition): string {
    return asSequencePosition(position).toString();
  }

  async streamAll(onEvent: (position: bigint) => void): Promise<number> {
    let count = 0;
    for await (const event of this.eventStore.read(Query.all())) {
      count += 1;
      onEvent(BigInt(event.position.toString()));
    }
    return count;
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    this.store = undefined;
    await pool?.end();
  }
}

export default function createAdapter(): BenchAdapter {
  return new DcbEsAdapter();
}
