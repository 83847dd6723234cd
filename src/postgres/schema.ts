// The store's schema as SQL: the numbered migrations in migrations/ and the whole schema for users
// who apply it with their own tool. Applying them (under a lock) is migrate.ts.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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

export function migrationsTableSql(quoted: string): string {
  return `CREATE TABLE IF NOT EXISTS ${quoted}.migrations (
  version    integer     NOT NULL PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);`;
}
