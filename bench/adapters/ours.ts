/** The benchmark adapter for this repository's store, through its public API only. */
import { AppendConditionFailedError, EventStore, Query, QueryItem, type AppendCondition, type EventStoreOptions } from '../../src/index.ts';
import type { BenchAdapter, BenchAppendOutcome, BenchEvent, BenchPosition, BenchQuery, BenchReadResult } from '../adapter.ts';

function toQuery(query: BenchQuery): Query {
  return Query.of(QueryItem.types(...query.types).tags(query.tag));
}

function toPosition(position: BenchPosition): bigint {
  if (typeof position !== 'bigint') throw new TypeError(`expected a bigint position from this adapter's read, got ${typeof position}`);
  return position;
}

/**
 * `options` go to EventStore.connect besides the connection string and pool size (the worker
 * passes none; bench/telemetry-worker.ts passes the `telemetry` option it measures).
 */
export default function createAdapter(options: Omit<EventStoreOptions, 'connectionString'> = {}): BenchAdapter {
  let opened: EventStore | undefined;
  const store = (): EventStore => {
    if (!opened) throw new Error('the adapter is not open');
    return opened;
  };

  return {
    name: 'dynamic-streams-eventstore',
    maxPreloadBatch: 10_000,

    async open(connectionString: string): Promise<void> {
      opened = await EventStore.connect({ poolSize: 20, ...options, connectionString });
    },

    async append(events: BenchEvent[], condition?: { query: BenchQuery; position: BenchPosition }): Promise<BenchAppendOutcome> {
      const guard: AppendCondition | undefined = condition && { failIfEventsMatch: toQuery(condition.query), after: toPosition(condition.position) };
      try {
        await store().append(events, guard);
        return 'appended';
      } catch (error) {
        if (error instanceof AppendConditionFailedError) return 'conflict';
        throw error;
      }
    },

    async read(query: BenchQuery): Promise<BenchReadResult> {
      const { events, head } = await store().read(toQuery(query));
      return { count: events.length, position: head };
    },

    positionKey(position: BenchPosition): string {
      return toPosition(position).toString();
    },

    async streamAll(onEvent: (position: bigint) => void): Promise<number> {
      let count = 0;
      for await (const event of store().stream(Query.all(), { batchSize: 5000 })) {
        onEvent(event.position);
        count++;
      }
      return count;
    },

    async close(): Promise<void> {
      await opened?.close();
      opened = undefined;
    },
  };
}
