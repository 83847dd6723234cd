/**
 * Adapter for `@ricofritzsche/eventstore` 1.0.10 (ricofritzsche/eventstore-typescript), set up as its
 * README shows: `new PostgresEventStore({ connectionString })` then `initializeDatabase()` (which
 * tries `CREATE DATABASE` through the `postgres` database, logs "already exists" to the console for
 * the harness's fresh database, then creates its `events` table, a type index and a jsonb GIN index).
 * It opens its own `pg.Pool` with the pg default of 10 connections.
 *
 * How the contract maps onto it:
 * - This store has no tags: events are `{ eventType, payload }` and queries filter on event types AND
 *   jsonb containment predicates on the payload (`payload @> $n`, served by its GIN index). A tag is
 *   therefore carried in the payload as `{ tags: [...], data }`, and `{ types, tag }` becomes
 *   `createQuery(createFilter(types, [{ tags: [tag] }]))`: jsonb containment on an array is "contains
 *   this element", so this matches exactly "type in types AND has tag".
 * - `read` -> `store.query(query)`: one `SELECT *` of every matching row into memory (no cursor, no
 *   paging). The position is `maxSequenceNumber`, which is the sequence number of the LAST EVENT READ
 *   (0 when none matched), not the store head; that is what its README tells a command handler to pass.
 * - Conditional append -> `append(events, query, expectedMaxSequenceNumber)`: one statement
 *   `WITH context AS (SELECT MAX(sequence_number) ... WHERE <query>) INSERT ... WHERE COALESCE(max_seq, 0) = $expected`.
 *   When the condition fails no row is inserted and it throws a plain `Error` whose message starts with
 *   `eventstore-stores-postgres-err05: Context changed` (its README's `includes('optimistic locking')`
 *   check does not match that message); mapped to 'conflict', anything else throws.
 * - `streamAll` -> `store.query(createQuery())` (no filters): the library has no paging or streaming
 *   read, so this loads EVERY event into memory at once before calling `onEvent`; its peak RSS in W5
 *   reflects that.
 *
 * Known limitation of the peer (not "fixed" here): the check-then-insert is a single statement at READ
 * COMMITTED. Two appends with the same condition that run concurrently both evaluate `MAX(...)` on the
 * same snapshot (neither sees the other's uncommitted row), so both insert: two racers can both win
 * (guarantee A in /work/shared/DCB.md). Positions come from a BIGSERIAL (gaps possible, and a position
 * can become visible after a higher one), so the "last event read" position is also exposed to the
 * commit-order hole (guarantees B and C). The check in `bench/check-adapter.ts` is sequential and does
 * not show this; the concurrent workloads do.
 */
import { PostgresEventStore, createFilter, createQuery, type Event, type EventQuery } from '@ricofritzsche/eventstore';
import type { BenchAdapter, BenchAppendOutcome, BenchEvent, BenchPosition, BenchQuery, BenchReadResult } from '../adapter.ts';

const CONFLICT_MESSAGE_PREFIX = 'eventstore-stores-postgres-err05';

function toQuery(query: BenchQuery): EventQuery {
  return createQuery(createFilter(query.types, [{ tags: [query.tag] }]));
}

function toEvent(event: BenchEvent): Event {
  return { eventType: event.type, payload: { tags: event.tags, data: event.data } };
}

function asSequenceNumber(position: BenchPosition): number {
  if (typeof position !== 'number' || !Number.isSafeInteger(position)) throw new TypeError(`not a sequence number: ${String(position)}`);
  return position;
}

class RicoAdapter implements BenchAdapter {
  readonly name = '@ricofritzsche/eventstore';
  // One INSERT ... SELECT unnest($types), unnest($payloads) statement, no per-event locks: any size works.
  readonly maxPreloadBatch = 10_000;
  private store: PostgresEventStore | undefined;

  async open(connectionString: string): Promise<void> {
    this.store = new PostgresEventStore({ connectionString });
    await this.store.initializeDatabase();
  }

  private get eventStore(): PostgresEventStore {
    if (!this.store) throw new Error('adapter not opened');
    return this.store;
  }

  async append(events: BenchEvent[], condition?: { query: BenchQuery; position: BenchPosition }): Promise<BenchAppendOutcome> {
    const input = events.map(toEvent);
    try {
      if (condition) await this.eventStore.append(input, toQuery(condition.query), asSequenceNumber(condition.position));
      else await this.eventStore.append(input);
      return 'appended';
    } catch (error) {
      if (error instanceof Error && error.message.startsWith(CONFLICT_MESSAGE_PREFIX)) return 'conflict';
      throw error;
    }
  }

  async read(query: BenchQuery): Promise<BenchReadResult> {
    const result = await this.eventStore.query(toQuery(query));
    return { count: result.events.length, position: result.maxSequenceNumber };
  }

  positionKey(position: BenchPosition): string {
    return String(asSequenceNumber(position));
  }

  async streamAll(onEvent: (position: bigint) => void): Promise<number> {
    // Everything in memory at once: the library offers no cursor or page size (see the header).
    const { events } = await this.eventStore.query(createQuery());
    for (const event of events) onEvent(BigInt(event.sequenceNumber));
    return events.length;
  }

  async close(): Promise<void> {
    const store = this.store;
    this.store = undefined;
    await store?.close();
  }
}

export default function createAdapter(): BenchAdapter {
  return new RicoAdapter();
}
