// Consumers and statistics of a PostgreSQL store, for the HTTP API's /v1/consumers and /v1/stats
// (the same statements as `dses consumers` and `dses stats`). Its shape is the HTTP layer's
// StoreInspector; it is not imported from there, since nothing below a surface imports from it.
import type { ConsumerStatus } from './consumer-types.ts';
import type { EventStore } from './event-store.ts';
import { consumerNames, storeStats, type StatsOptions, type StoreStats } from './stats.ts';

export interface PostgresInspectorOptions extends StatsOptions {
  /** The store's database (the statistics open a connection of their own). */
  connectionString: string;
}

export interface PostgresInspector {
  consumers(): Promise<ConsumerStatus[]>;
  /** False when there is no consumer of that name (nothing changed). */
  resetConsumer(name: string, position: bigint): Promise<boolean>;
  stats(): Promise<StoreStats>;
}

/** Consumers and statistics of `store` (in `store.schema`), for createServer's `inspector`. */
export function postgresInspector(store: EventStore, options: PostgresInspectorOptions): PostgresInspector {
  const { connectionString, ...statsOptions } = options;
  return {
    consumers: async () => {
      const names = await consumerNames(connectionString, store.schema);
      return Promise.all(names.map((name) => store.consumerStatus(name)));
    },
    resetConsumer: async (name, position) => {
      // resetConsumer would create a consumer it does not know; a typo in a URL must not.
      const names = await consumerNames(connectionString, store.schema);
      if (!names.includes(name)) return false;
      await store.resetConsumer(name, { position });
      return true;
    },
    stats: () => storeStats(connectionString, store.schema, statsOptions),
  };
}
