// Store administration for operators (the CLI): what lies outside a store's append/read API and
// needs SQL of its own. Every function opens one connection and closes it.
import pg from 'pg';
import { quoteSchemaName } from './identifiers.ts';
import { loadMigrations, renderMigration } from './schema.ts';

export interface PendingMigration {
  version: number;
  name: string;
  /** The SQL that would run, for this schema. */
  sql: string;
}

/**
 * Runs `work` on a connection of its own, closed afterwards. A connection error while it runs
 * fails `work`'s statement, not the process. `connectionTimeoutMillis` 0: no limit.
 */
export async function withConnection<T>(
  connectionString: string,
  work: (client: pg.Client) => Promise<T>,
  { applicationName = 'dses', connectionTimeoutMillis = 10_000 }: { applicationName?: string; connectionTimeoutMillis?: number } = {},
): Promise<T> {
  const client = new pg.Client({ connectionString, application_name: applicationName, connectionTimeoutMillis });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The migrations `migrate` would apply to `schema` now, in order (all of them for a schema that does not exist). */
export async function pendingMigrations(connectionString: string, schema: string): Promise<PendingMigration[]> {
  const quoted = quoteSchemaName(schema);
  const done = await withConnection(connectionString, async (client) => {
    const { rows } = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [`${quoted}.migrations`]);
    if (!rows[0]!.present) return new Set<number>();
    const applied = await client.query<{ version: number }>(`SELECT version FROM ${quoted}.migrations`);
    return new Set(applied.rows.map((row) => row.version));
  });
  return loadMigrations()
    .filter((migration) => !done.has(migration.version))
    .map((migration) => ({ version: migration.version, name: migration.name, sql: renderMigration(migration, schema) }));
}
