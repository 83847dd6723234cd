import type pg from 'pg';
import { MigrationError } from '../errors.ts';
import { quoteSchemaName } from './identifiers.ts';
import { loadMigrations, migrationsTableSql, renderMigration } from './schema.ts';

/**
 * Applies the missing migrations, each in its own transaction, under a transaction-level advisory
 * lock keyed by the schema name: processes starting at once wait for each other, and the second
 * finds the work done.
 */
export async function migrate(client: pg.ClientBase, schema: string): Promise<{ applied: number[] }> {
  const quoted = quoteSchemaName(schema);
  const migrations = loadMigrations();
  return underSchemaLock(client, schema, `migrating schema ${quoted} failed`, async () => {
    const applied: number[] = [];
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoted}`);
    await client.query(migrationsTableSql(quoted));
    const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${quoted}.migrations ORDER BY version`);
    const done = new Set(rows.map((row) => row.version));
    const newest = Math.max(0, ...done);
    if (newest > migrations.length) {
      throw new MigrationError(
        `schema ${quoted} is at migration ${newest}, newer than this library knows (${migrations.length}); upgrade the library`,
      );
    }
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      // One transaction for everything keeps the lock until all are applied; a failure rolls back
      // the failing migration and every one after it in this run.
      await client.query(renderMigration(migration, schema));
      await client.query(`INSERT INTO ${quoted}.migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      applied.push(migration.version);
    }
    return { applied };
  });
}

/**
 * Runs `work` in one transaction holding the transaction-level advisory lock keyed by the schema
 * name, which every schema change of the store takes; rolls back and throws MigrationError
 * (prefixed with `failure`) if anything fails.
 */
async function underSchemaLock<T>(client: pg.ClientBase, schema: string, failure: string, work: () => Promise<T>): Promise<T> {
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`dynamic-streams-eventstore:${schema}`]);
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (error instanceof MigrationError) throw error;
    throw new MigrationError(`${failure}: ${(error as Error).message}`, error);
  }
}

/**
 * Creates the GIN index on payloads (`jsonb_path_ops`) if it is missing, under the same lock as
 * the migrations. It makes payload-only queries fast and costs about as much as the rest of an
 * append's indexing together; queries with a type or a tag do not need it.
 */
export async function ensurePayloadIndex(client: pg.ClientBase, schema: string): Promise<void> {
  const quoted = quoteSchemaName(schema);
  await underSchemaLock(client, schema, `creating the payload index in schema ${quoted} failed`, async () => {
    await client.query(`CREATE INDEX IF NOT EXISTS events_data_idx ON ${quoted}.events USING gin (data jsonb_path_ops) WITH (fastupdate = off)`);
  });
}
