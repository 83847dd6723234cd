/**
 * The benchmark's PostgreSQL: DATABASE_URL when set, else its own embedded PostgreSQL 17 with
 * durability explicitly on and honest tuning flags. Every workload family of every library gets
 * a fresh database on it.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/index.ts';

/** Durability stays at PostgreSQL's safest; only memory, WAL sizing and checkpoints are tuned. */
export const TUNING_FLAGS: readonly string[] = [
  '-c', 'fsync=on',
  '-c', 'synchronous_commit=on',
  '-c', 'full_page_writes=on',
  '-c', 'shared_buffers=2GB',
  '-c', 'max_connections=300',
  '-c', 'max_wal_size=8GB',
  '-c', 'checkpoint_timeout=30min',
  '-c', 'wal_buffers=64MB',
  '-c', 'effective_cache_size=16GB',
  '-c', 'maintenance_work_mem=512MB',
];

export interface BenchServer {
  /** Connection string of the server's `postgres` database (used for administration). */
  readonly adminUrl: string;
  readonly embedded: boolean;
  /** How every client (libraries and pgbench alike) reaches the server. */
  readonly transport: string;
  stop(): Promise<void>;
}

export async function startBenchServer(tcp = false): Promise<BenchServer> {
  const external = process.env.DATABASE_URL;
  if (external) return { adminUrl: external, embedded: false, transport: 'as DATABASE_URL says', stop: async () => undefined };
  const server = await startEmbeddedPostgres({
    dataDir: join(tmpdir(), `dses-bench-${process.pid}-${Date.now()}`),
    port: 0,
    ephemeral: true,
    postgresFlags: [...TUNING_FLAGS, '-c', 'unix_socket_directories=/tmp'],
  });
  // Every client, pgbench included, talks over the Unix-domain socket (as an application on the
  // database host would): on this VM a loopback TCP round trip costs about 0.1 ms of CPU more.
  // --tcp keeps TCP for everyone.
  const socketDirectory = '/tmp';
  if (!tcp && existsSync(join(socketDirectory, `.s.PGSQL.${server.port}`))) {
    const url = new URL(server.connectionString);
    url.searchParams.set('host', socketDirectory);
    return { adminUrl: url.toString(), embedded: true, transport: `Unix-domain socket in ${socketDirectory}`, stop: () => server.stop() };
  }
  return { adminUrl: server.connectionString, embedded: true, transport: 'TCP on localhost', stop: () => server.stop() };
}

export async function withAdminClient<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function quoteDatabaseName(name: string): string {
  if (!DATABASE_NAME.test(name)) throw new Error(`invalid database name ${JSON.stringify(name)}: use 1-63 of a-z, 0-9 and _`);
  return `"${name}"`;
}

/** The connection string of another database on the same server. */
export function databaseUrl(adminUrl: string, name: string): string {
  quoteDatabaseName(name);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops (if present) and creates a database; returns its connection string. */
export async function createFreshDatabase(adminUrl: string, name: string): Promise<string> {
  const quoted = quoteDatabaseName(name);
  await withAdminClient(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${quoted}`);
  });
  return databaseUrl(adminUrl, name);
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const quoted = quoteDatabaseName(name);
  await withAdminClient(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`));
}

/** What a DBA (or autovacuum, eventually) does after a bulk load: statistics and visibility map. */
export async function vacuumAnalyze(url: string): Promise<void> {
  await withAdminClient(url, (client) => client.query('VACUUM (ANALYZE)'));
}

export interface ServerDescription {
  version: string;
  /** Every setting not at its built-in default, as SHOW prints it, plus the durability settings. */
  settings: Record<string, string>;
}

export async function describeServer(adminUrl: string): Promise<ServerDescription> {
  return withAdminClient(adminUrl, async (client) => {
    const version = (await client.query<{ version: string }>('SELECT version()')).rows[0]!.version;
    const { rows } = await client.query<{ name: string; value: string }>(
      `SELECT name, current_setting(name) AS value FROM pg_settings
        WHERE source NOT IN ('default', 'override', 'client', 'session') OR name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')
        ORDER BY name`,
    );
    const settings: Record<string, string> = {};
    for (const row of rows) settings[row.name] = row.value;
    return { version, settings };
  });
}
