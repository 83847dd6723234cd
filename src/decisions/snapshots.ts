import { createHash } from 'node:crypto';
import type { JsonValue } from '../events.ts';
import type { Query } from '../query.ts';

/**
 * Identifies a snapshot: the projection's name and version, and a hash of its query (so that
 * `courseCapacity('c1')` and `courseCapacity('c2')` have separate snapshots).
 */
export interface SnapshotKey {
  name: string;
  version: number;
  queryHash: string;
}

/** A projection's state folded from every matching event up to and including `position`. */
export interface Snapshot {
  position: bigint;
  state: JsonValue;
}

/** Where snapshots live: a table in the PostgreSQL store, a map in the in-memory store. */
export interface SnapshotStore {
  load(key: SnapshotKey, options?: { signal?: AbortSignal }): Promise<Snapshot | undefined>;
  /** Stores `snapshot` unless one at a later position is stored already. */
  save(key: SnapshotKey, snapshot: Snapshot, options?: { signal?: AbortSignal }): Promise<void>;
}

/** SHA-256 of the query's JSON shape. */
export function queryHash(query: Query): string {
  return createHash('sha256').update(JSON.stringify(query.toJSON())).digest('hex');
}
