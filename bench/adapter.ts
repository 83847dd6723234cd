/**
 * The contract every library under benchmark implements (ours and each peer), so that every
 * workload runs the same code against each of them. Each adapter runs in its own child process
 * (no library can change another's `pg` type parsers) on a fresh database of the same server.
 */

/** An event as the workloads produce it. */
export interface BenchEvent {
  type: string;
  tags: string[];
  data: Record<string, unknown>;
}

/** The only query shape the workloads use: one item, these types AND this tag. */
export interface BenchQuery {
  types: string[];
  tag: string;
}

/** Opaque token a read returns and a conditional append takes back (a bigint, a peer's position object, ...). */
export type BenchPosition = unknown;

export interface BenchReadResult {
  /** Number of events the read returned (used to check all libraries read the same data). */
  count: number;
  /** What to pass as `after` of the append condition. */
  position: BenchPosition;
}

export type BenchAppendOutcome = 'appended' | 'conflict';

export interface BenchAdapter {
  /** Short, stable name used in results: `dynamic-streams-eventstore`, `@dcb-es/event-store-postgres`, ... */
  readonly name: string;
  /** Connects to an existing, empty database and creates what the library needs. */
  open(connectionString: string): Promise<void>;
  /**
   * Appends atomically. With a condition: only if no event matching `condition.query` exists after
   * `condition.position`; a failed condition returns 'conflict' (never throws for it).
   */
  append(events: BenchEvent[], condition?: { query: BenchQuery; position: BenchPosition }): Promise<BenchAppendOutcome>;
  /** Reads every event matching the query (a decision read) and the position to condition on. */
  read(query: BenchQuery): Promise<BenchReadResult>;
  /** A string that is equal for equal positions (W2 checks that no two successes shared one `after`). */
  positionKey(position: BenchPosition): string;
  /** Reads every event in the store in order, calling `onEvent` for each; returns the count. Optional. */
  streamAll?(onEvent: (position: bigint) => void): Promise<number>;
  /** Largest batch the library's bulk path takes in one call (e.g. 5000 for one that locks per (type, tag)). */
  readonly maxPreloadBatch: number;
  close(): Promise<void>;
}
