// Export and import (dses export / dses import): the SQL a restore needs that the store's
// append/read API does not offer. A restore writes events with their original positions and
// recorded_at, which append_batch never does (it assigns both under the head lock), so it has a
// path of its own here; it takes the same head lock, so it is safe next to running appends.
import pg from 'pg';
import { AppendOutcomeUnknownError, EventStoreDatabaseError } from '../errors.ts';
import type { TextTimedEvent } from '../events.ts';
import type { InternalQuery } from '../query.ts';
import { quoteSchemaName } from './identifiers.ts';
import { buildReadStatement, type ReadRow } from './read-sql.ts';

/** One event as a restore writes it: every column, exactly as exported (the timestamps passed through to timestamptz unchanged). */
export type RestoreEvent = TextTimedEvent;

/**
 * One event as an export writes it: the timestamps exact, as ISO 8601 text in UTC with
 * milliseconds when that is all they have, else microseconds (recorded_at, the server's clock).
 */
export type ExportEvent = TextTimedEvent;

/** A page of an export, and the head in the same snapshot. */
export interface ExportPage {
  events: ExportEvent[];
  head: bigint;
}

/** `2026-12-02T15:28:02.123000Z` -> `2026-12-02T15:28:02.123Z` (what Date#toISOString writes); microseconds kept otherwise. */
function shortest(timestamp: string): string {
  return timestamp.endsWith('000Z') ? `${timestamp.slice(0, -4)}Z` : timestamp;
}

/** The head's position, and the id of the event there (undefined for an empty store). */
export interface HeadEvent {
  position: bigint;
  id: string | undefined;
}

/** The restore's head moved under it: another writer appended while it ran. */
export class RestoreHeadMovedError extends Error {
  constructor(
    readonly expected: bigint,
    readonly actual: bigint,
  ) {
    super(`the store's head is ${actual}, not ${expected}: another writer appended during the import; nothing of this batch was written`);
  }
}

/** A connection for an import: one client, opened once, closed by close(). */
export class TransferConnection {
  readonly #client: pg.Client;
  readonly #schema: string;

  private constructor(client: pg.Client, schema: string) {
    this.#client = client;
    this.#schema = schema;
  }

  /** Connects (whether the schema holds a store is for migrated() to say). */
  static async open(connectionString: string, schema: string, applicationName: string): Promise<TransferConnection> {
    const quoted = quoteSchemaName(schema);
    const client = new pg.Client({ connectionString, application_name: applicationName, connectionTimeoutMillis: 10_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      throw new EventStoreDatabaseError(`connecting to PostgreSQL failed: ${(error as Error).message}`, error);
    }
    return new TransferConnection(client, quoted);
  }

  /** A statement; a failure becomes an EventStoreDatabaseError that says what failed. */
  async #query<Row extends pg.QueryResultRow>(what: string, text: string, values?: unknown[]): Promise<pg.QueryResult<Row>> {
    try {
      return await this.#client.query<Row>(text, values);
    } catch (error) {
      throw new EventStoreDatabaseError(`${what} failed: ${(error as Error).message}`, error);
    }
  }

  /** Whether the schema has the store's tables (an import does not migrate behind the operator's back). */
  async migrated(): Promise<boolean> {
    const { rows } = await this.#query<{ present: boolean }>('looking for the store', 'SELECT to_regclass($1) IS NOT NULL AS present', [`${this.#schema}.head`]);
    return rows[0]!.present;
  }

  /**
   * The events matching `query` after `after`, at most `limit`, in position order, with the
   * timestamps exact (the store's read gives Dates, which keep only milliseconds). The same
   * statement as a read (buildReadStatement), so the same indexes serve it.
   */
  async exportPage(query: InternalQuery, after: bigint, limit: number): Promise<ExportPage> {
    const statement = buildReadStatement(this.#schema, query, { after, limit, backwards: false }, 'text');
    const { rows } = await this.#query<ReadRow<string>>(`reading the events after position ${after}`, statement.text, statement.values);
    const events: ExportEvent[] = [];
    for (const row of rows) {
      if (row.position === null) continue;
      events.push({
        position: BigInt(row.position),
        id: row.id,
        type: row.type,
        tags: row.tags,
        data: row.data,
        metadata: row.metadata,
        occurredAt: shortest(row.occurred_at),
        recordedAt: shortest(row.recorded_at),
      });
    }
    return { events, head: BigInt(rows[0]!.head) };
  }

  async headEvent(): Promise<HeadEvent> {
    const { rows } = await this.#query<{ position: string; id: string | null }>(
      'reading the head',
      `SELECT h.position::text AS position, e.id::text AS id FROM ${this.#schema}.head h LEFT JOIN ${this.#schema}.events e ON e.position = h.position WHERE h.singleton`,
    );
    return { position: BigInt(rows[0]!.position), id: rows[0]!.id ?? undefined };
  }

  /** Which of `ids` are stored already (one indexed lookup for a whole batch). */
  async storedIds(ids: readonly string[]): Promise<Set<string>> {
    const { rows } = await this.#query<{ id: string }>('looking up stored ids', `SELECT id::text AS id FROM ${this.#schema}.events WHERE id = ANY ($1::uuid[])`, [ids]);
    return new Set(rows.map((row) => row.id));
  }

  /**
   * Writes `events` (consecutive positions, the first one right after the head) with their own
   * positions and recorded_at, and moves the head, in one transaction: all of the batch or none.
   * The head row lock is the one appends take, so an append waits for the batch, and a batch that
   * finds the head moved (an append got in first) writes nothing. The head update fires the
   * store's NOTIFY trigger, which wakes subscribers as an append would.
   */
  async restore(events: readonly RestoreEvent[]): Promise<void> {
    if (events.length === 0) return;
    const first = events[0]!.position;
    const last = events.at(-1)!.position;
    const rows = events.map((event) => ({
      position: event.position.toString(),
      id: event.id,
      type: event.type,
      tags: event.tags,
      data: event.data,
      metadata: event.metadata,
      occurred_at: event.occurredAt,
      recorded_at: event.recordedAt,
    }));
    const what = `restoring positions ${first} to ${last}`;
    await this.#query(what, 'BEGIN');
    try {
      const { rows: head } = await this.#query<{ position: string }>(what, `SELECT position::text AS position FROM ${this.#schema}.head WHERE singleton FOR UPDATE`);
      const position = BigInt(head[0]!.position);
      if (position !== first - 1n) throw new RestoreHeadMovedError(first - 1n, position);
      // jsonb_to_recordset turns a JSON null payload into SQL NULL; the key is always present, so
      // NULL here means the payload null (as in append_batch).
      await this.#query(
        what,
        `INSERT INTO ${this.#schema}.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
         SELECT e.position, e.id, e.type, e.tags, COALESCE(e.data, 'null'::jsonb), e.metadata, e.occurred_at, e.recorded_at
           FROM jsonb_to_recordset($1::jsonb) AS e(position bigint, id uuid, type text, tags text[], data jsonb, metadata jsonb, occurred_at timestamptz, recorded_at timestamptz)`,
        [JSON.stringify(rows)],
      );
      await this.#query(what, `UPDATE ${this.#schema}.head SET position = $1 WHERE singleton`, [last.toString()]);
    } catch (error) {
      // Nothing is committed: the server rolls back, also when the connection is gone.
      await this.#client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    try {
      await this.#client.query('COMMIT');
    } catch (error) {
      // The server answered: it did not commit. No answer: it may have, or not.
      if (error instanceof pg.DatabaseError) throw new EventStoreDatabaseError(`${what} failed at COMMIT: ${error.message}`, error);
      throw new AppendOutcomeUnknownError(
        events.map((event) => event.id),
        `the connection failed while committing positions ${first} to ${last}: ${(error as Error).message}`,
        error,
      );
    }
  }

  async close(): Promise<void> {
    await this.#client.end().catch(() => undefined);
  }
}
