// The store's connections: the pool for statements, the config for sessions of their own (LISTEN,
// consumers), and the set of every client so that close() can end them all.
import pg from 'pg';

export interface PoolSettings {
  connectionString: string;
  /** Where sessions of their own connect (LISTEN, consumers). */
  sessionConnectionString: string;
  poolSize: number;
  connectTimeoutMs: number;
  preparedStatements: boolean;
  /** Where to track the clients (shared by a store's pools, so close() ends them all). Default: a new set. */
  clients?: Set<pg.Client>;
}

export interface StorePool {
  pool: pg.Pool;
  /** For the connections that need a session of their own. */
  sessionConfig: pg.ClientConfig;
  /** Every client of the pool, also those still connecting or saying goodbye. */
  clients: Set<pg.Client>;
}

export function openPool(settings: PoolSettings): StorePool {
  // Every connection: a bounded connect, and TCP keepalives so that an idle connection whose
  // peer vanished is noticed (busy ones are bounded by the operations' own deadlines).
  const base = { application_name: 'dynamic-streams-eventstore', connectionTimeoutMillis: settings.connectTimeoutMs, keepAlive: true, keepAliveInitialDelayMillis: 10_000 };
  const connectionConfig: pg.PoolConfig = { ...base, connectionString: settings.connectionString };
  const sessionConfig: pg.ClientConfig = { ...base, connectionString: settings.sessionConnectionString };
  const clients = settings.clients ?? new Set<pg.Client>();
  class TrackedClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      clients.add(this);
      this.once('end', () => clients.delete(this));
    }
  }
  const pool = new pg.Pool({ ...connectionConfig, max: settings.poolSize, Client: TrackedClient });
  // An idle connection that dies (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    // pg-pool takes its own 'error' listener off a client while it is checked out. A server that
    // terminates the connection in the same packet as a query's reply makes the client emit
    // 'error' before we release it; unheard, that would crash the process. The query itself
    // still fails, and the pool drops the broken client on release.
    client.on('error', () => undefined);
    // Reads are planned for their values (a tag with 3 events and one with 3 million want
    // different plans); a named statement would switch to a generic plan after 5 runs. A
    // session setting, so only where sessions are ours (not behind a transaction-mode pooler,
    // where reads are unnamed statements, planned for their values anyway). It is queued
    // before the first statement of whoever checks the client out.
    if (settings.preparedStatements) client.query('SET plan_cache_mode = force_custom_plan').catch(() => undefined);
  });
  return { pool, sessionConfig, clients };
}

/** Host, port and database of a connection string, for telemetry and logs (never the credentials). */
export function serverOf(connectionString: string): { host: string | undefined; port: number | undefined; database: string | undefined } {
  try {
    const url = new URL(connectionString);
    const host = url.hostname === '' ? undefined : url.hostname;
    const path = decodeURIComponent(url.pathname.replace(/^\//, ''));
    return { host, port: url.port === '' ? 5432 : Number(url.port), database: path === '' ? undefined : path };
  } catch {
    // key=value form or a socket path: pg understands it; telemetry goes without
    return { host: undefined, port: undefined, database: undefined };
  }
}
