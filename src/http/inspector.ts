// What /v1/consumers and /v1/stats need beyond the store contract: a PostgreSQL store has
// durable consumers and statistics, an in-memory one has neither (those routes answer 501).
// Written here as a structural interface so that the HTTP layer does not depend on a store;
// postgresInspector (src/postgres/inspector.ts) is the PostgreSQL implementation.

/** A durable consumer's status, as /v1/consumers returns it. */
export interface InspectedConsumer {
  name: string;
  position: bigint;
  head: bigint;
  lag: bigint;
  state: 'idle' | 'running' | 'failed';
  owner: string | null;
  failedPosition: bigint | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  updatedAt: Date | null;
}

export interface StoreInspector {
  /** Every durable consumer's status, by name. */
  consumers(): Promise<InspectedConsumer[]>;
  /** Moves a consumer's checkpoint; false when there is no consumer of that name (nothing changed). */
  resetConsumer(name: string, position: bigint): Promise<boolean>;
  /** The store's statistics (counts, sizes, rates); bigints become decimal strings in JSON. */
  stats(): Promise<object>;
}
