import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { MigrationError } from '../errors.ts';
import { quoteSchemaName } from './identifiers.ts';

export interface Migration {
  /** 1, 2, 3, ... from the file name `0001-name.sql`. */
  version: number;
  name: string;
  /** The SQL with the schema placeholder still in it. */
  template: string;
}

const MIGRATIONS_DIRECTORY = fileURLToPath(new URL('./migrations/', import.meta.url));

let cached: Migration[] | undefined;

/** The migrations shipped with this version of the library, in order. */
export function loadMigrations(): Migration[] {
  if (cached) return cached;
  const files = readdirSync(MIGRATIONS_DIRECTORY).filter((file) => /^\d{4}-[a-z0-9-]+\.sql$/.test(file)).sort();
  cached = files.map((file, index) => {
    const version = Number(file.slice(0, 4));
    if (version !== index + 1) throw new MigrationError(`migration files must be numbered 0001, 0002, ... without gaps; found ${file}`);
    return { version, name: file.slice(5, -4), template: readFileSync(MIGRATIONS_DIRECTORY + file, 'utf8') };
  });
  return cached;
}

/** The SQL of one migration for a schema. */
export function renderMigration(migration: Migration, schema: string): string {
  return migration.template.replaceAll('__SCHEMA__', quoteSchemaName(schema));
}

/** Every statement needed to create the store's objects from scratch, for users with their own migration tool. */
export function schemaSql(schema: string): string {
  const quoted = quoteSchemaName(schema);
  const parts = [
    `-- dynamic-streams-eventstore schema ${quoted}, generated from the library's migrations. Do not edit.`,
    `CREATE SCHEMA IF NOT EXISTS ${quoted};`,
    migrationsTableSql(quoted),
  ];
  for (const migration of loadMigrations()) {
    parts.push(`-- migration ${migration.version}: ${migration.name}`, renderMigration(migration, schema).trim());
    parts.push(`INSERT INTO ${quoted}.migrations (version, name) VALUES (${migration.version}, '${migration.name}');`);
  }
  return parts.join('\n\n') + '\n';
}

function migrationsTableSql(quoted: string): string {
  return `CREATE TABLE IF NOT EXISTS ${quoted}.migrations (
  version    integer     NOT NULL PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);`;
}

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
