import type pg from 'pg';
import { validateSnapshot, validateSnapshotKey } from '../decisions/snapshots.ts';
import type { Snapshot, SnapshotKey, SnapshotStore } from '../store.ts';
import type { JsonValue } from '../events.ts';

type Run = <Row extends pg.QueryResultRow>(operation: string, text: string, values: unknown[], signal: AbortSignal | undefined) => Promise<Row[]>;

/**
 * Snapshots in `<schema>.snapshots`. A snapshot counts only while the event at its position is
 * the one that was there when it was saved; after a restore from an older backup it is beyond the
 * head or another event sits there. A save replaces a snapshot at an earlier position or one that
 * no longer counts.
 */
export class PostgresSnapshotStore implements SnapshotStore {
  readonly #run: Run;
  readonly #table: string;
  readonly #head: string;
  readonly #events: string;

  constructor(quotedSchema: string, run: Run) {
    this.#run = run;
    this.#table = `${quotedSchema}.snapshots`;
    this.#head = `${quotedSchema}.head`;
    this.#events = `${quotedSchema}.events`;
  }

  async load(input: SnapshotKey, options: { signal?: AbortSignal } = {}): Promise<Snapshot | undefined> {
    const key = validateSnapshotKey(input);
    const rows = await this.#run<{ position: string; state: JsonValue }>(
      'load snapshot',
      `SELECT s.position, s.state FROM ${this.#table} s
        WHERE s.name = $1 AND s.version = $2 AND s.query_hash = $3
          AND s.event_id IS NOT DISTINCT FROM (SELECT e.id FROM ${this.#events} e WHERE e.position = s.position)`,
      [key.name, key.version, key.queryHash],
      options.signal,
    );
    const row = rows[0];
    return row && { position: BigInt(row.position), state: row.state };
  }

  async save(inputKey: SnapshotKey, input: Snapshot, options: { signal?: AbortSignal } = {}): Promise<void> {
    const key = validateSnapshotKey(inputKey);
    const snapshot = validateSnapshot(input);
    await this.#run(
      'save snapshot',
      `INSERT INTO ${this.#table} AS s (name, version, query_hash, position, event_id, state)
       VALUES ($1, $2, $3, $4, (SELECT e.id FROM ${this.#events} e WHERE e.position = $4), $5::jsonb)
       ON CONFLICT (name, version, query_hash) DO UPDATE SET position = EXCLUDED.position, event_id = EXCLUDED.event_id, state = EXCLUDED.state, created_at = now()
       WHERE s.position < EXCLUDED.position OR s.position > (SELECT h.position FROM ${this.#head} h)
          OR s.event_id IS DISTINCT FROM (SELECT e.id FROM ${this.#events} e WHERE e.position = s.position)`,
      [key.name, key.version, key.queryHash, snapshot.position.toString(), JSON.stringify(snapshot.state)],
      options.signal,
    );
  }
}
