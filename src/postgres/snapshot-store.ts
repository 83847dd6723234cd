import type pg from 'pg';
import type { Snapshot, SnapshotKey, SnapshotStore } from '../decisions/snapshots.ts';
import type { JsonValue } from '../events.ts';

type Run = <Row extends pg.QueryResultRow>(operation: string, text: string, values: unknown[], signal: AbortSignal | undefined) => Promise<Row[]>;

/**
 * Snapshots in `<schema>.snapshots`. A save replaces a snapshot at an earlier position, or one
 * beyond the head (left over from before the store was restored from an older backup).
 */
export class PostgresSnapshotStore implements SnapshotStore {
  readonly #run: Run;
  readonly #table: string;
  readonly #head: string;

  constructor(quotedSchema: string, run: Run) {
    this.#run = run;
    this.#table = `${quotedSchema}.snapshots`;
    this.#head = `${quotedSchema}.head`;
  }

  async load(key: SnapshotKey, options: { signal?: AbortSignal } = {}): Promise<Snapshot | undefined> {
    const rows = await this.#run<{ position: string; state: JsonValue }>(
      'load snapshot',
      `SELECT position, state FROM ${this.#table} WHERE name = $1 AND version = $2 AND query_hash = $3`,
      [key.name, key.version, key.queryHash],
      options.signal,
    );
    const row = rows[0];
    return row && { position: BigInt(row.position), state: row.state };
  }

  async save(key: SnapshotKey, snapshot: Snapshot, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#run(
      'save snapshot',
      `INSERT INTO ${this.#table} AS s (name, version, query_hash, position, state) VALUES ($1, $2, $3, $4, $5::jsonb)
       ON CONFLICT (name, version, query_hash) DO UPDATE SET position = EXCLUDED.position, state = EXCLUDED.state, created_at = now()
       WHERE s.position < EXCLUDED.position OR s.position > (SELECT h.position FROM ${this.#head} h)`,
      [key.name, key.version, key.queryHash, snapshot.position.toString(), JSON.stringify(snapshot.state)],
      options.signal,
    );
  }
}
