// Closing, schema names and isolation, missing migrations, migrations under concurrency, the
// schema DDL for external tools, immutability of events, and the embedded PostgreSQL server.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  EmbeddedPostgresError,
  EventStore,
  EventStoreClosedError,
  EventStoreDatabaseError,
  EventStoreError,
  InvalidInputError,
  MigrationError,
  Query,
  QueryItem,
  schemaSql,
  startEmbeddedPostgres,
} from '../../src/index.ts';
import { migrate } from '../../src/postgres/migrate.ts';
import { loadMigrations } from '../../src/postgres/schema.ts';
import { createTestStore, databaseUrl, dropSchema, uniqueSchemaName, withClient, keepEventLoopAliveDuringTests } from '../helpers.ts';

const SUITE = { timeout: 120_000 };
keepEventLoopAliveDuringTests();

// Schemas this file creates outside createTestStore; dropped at the end.
const createdSchemas: string[] = [];
function freshSchema(): string {
  const name = uniqueSchemaName('lc');
  createdSchemas.push(name);
  return name;
}
after(async () => {
  for (const name of createdSchemas) await dropSchema(name);
});

function isClosed(error: unknown): boolean {
  assert.ok(error instanceof EventStoreClosedError, `expected EventStoreClosedError, got ${String(error)}`);
  assert.ok(error instanceof EventStoreError, 'error instanceof EventStoreError');
  assert.equal(error.code, 'STORE_CLOSED');
  return true;
}

function isInvalid(path: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    assert.equal(error.code, 'INVALID_INPUT');
    assert.equal(error.path, path);
    return true;
  };
}

async function installSlowTrigger(schema: string): Promise<void> {
  await withClient((client) =>
    client.query(`
      CREATE FUNCTION "${schema}".test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.type = 'Slow' THEN PERFORM pg_sleep((NEW.data->>'sleep')::float8); END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_slow BEFORE INSERT ON "${schema}".events FOR EACH ROW EXECUTE FUNCTION "${schema}".test_slow();`),
  );
}

async function schemaExists(schema: string): Promise<boolean> {
  const { rows } = await withClient((client) => client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]));
  return rows.length > 0;
}

// A port nothing listens on: connecting there fails at once, so an error other than
// InvalidInputError would show that the store tried to connect.
const UNREACHABLE = 'postgres://postgres:postgres@127.0.0.1:1/none';

describe('closing', { timeout: 30_000 }, () => {
  test('every method of a closed store rejects with EventStoreClosedError; close() twice is fine', async () => {
    const { store, schema } = await createTestStore();
    createdSchemas.push(schema);
    await store.append({ type: 'BeforeClose', data: 1 });
    await store.close();
    await store.close();
    await Promise.all([store.close(), store.close()]);
    await assert.rejects(store.append({ type: 'T', data: 1 }), isClosed);
    await assert.rejects(store.append([]), isClosed); // closed is reported before input checks
    await assert.rejects(store.read(Query.all()), isClosed);
    await assert.rejects(store.read(Query.of(QueryItem.types('T')), { after: 1n, limit: 1 }), isClosed);
    await assert.rejects(store.head(), isClosed);
    await assert.rejects(async () => {
      for await (const event of store.stream(Query.all())) void event;
    }, isClosed);
    // The event written before closing is still there.
    const { rows } = await withClient((client) => client.query(`SELECT type FROM "${schema}".events`));
    assert.deepEqual(rows, [{ type: 'BeforeClose' }]);
  });

  test('close() waits for appends already queued: all of them settle successfully and are in the log', async () => {
    const { store, schema } = await createTestStore();
    createdSchemas.push(schema);
    await installSlowTrigger(schema);
    const settled: string[] = [];
    const appends = [
      store.append({ type: 'Slow', data: { sleep: 0.4 } }),
      ...Array.from({ length: 9 }, (_, index) => store.append({ type: 'Queued', tags: [`q:${index}`], data: { index } })),
    ].map((promise, index) =>
      promise.then(
        (result) => {
          settled.push(`append ${index}`);
          return result;
        },
        (error: unknown) => {
          settled.push(`append ${index} failed`);
          throw error;
        },
      ),
    );
    const closing = store.close().then(() => settled.push('close'));
    // Appends after close() began are refused, even while the queue drains.
    await assert.rejects(store.append({ type: 'TooLate', data: 1 }), isClosed);
    const results = await Promise.all(appends);
    await closing;
    assert.deepEqual(results.map((result) => result.position).sort((a, b) => (a < b ? -1 : 1)), Array.from({ length: 10 }, (_, index) => BigInt(index + 1)));
    assert.equal(settled.at(-1), 'close', 'close() resolves only after every queued append settled');
    assert.equal(settled.length, 11);
    const { rows } = await withClient((client) => client.query<{ type: string }>(`SELECT type FROM "${schema}".events ORDER BY position`));
    assert.deepEqual(rows.map((row) => row.type), ['Slow', ...Array.from({ length: 9 }, () => 'Queued')]);
  });

  test('a second close() while the first is still draining also waits until the store is closed', async () => {
    const { store, schema } = await createTestStore();
    createdSchemas.push(schema);
    await installSlowTrigger(schema);
    let appended = false;
    const slow = store.append({ type: 'Slow', data: { sleep: 0.4 } }).then((result) => {
      appended = true;
      return result;
    });
    const first = store.close();
    // E.g. a signal handler and a finally block both closing the store on shutdown.
    await store.close();
    assert.equal(appended, true, 'close() resolved while an append it should wait for was still running');
    await first;
    assert.deepEqual(await slow, { position: 1n });
  });
});

describe('connecting: schema names, isolation, missing migrations, missing connection string', SUITE, () => {
  test('invalid schema names are rejected with InvalidInputError before touching the database', async () => {
    const bad: unknown[] = ['Bad-Name', 'a; drop', '', 'a'.repeat(64), 'pg_x', '1abc', 'UPPER', 'a"b', 'a b', 'é', 42];
    for (const schema of bad) {
      await assert.rejects(EventStore.connect({ connectionString: UNREACHABLE, schema: schema as string }), isInvalid('schema'), `schema ${String(schema)}`);
      assert.throws(() => schemaSql(schema as string), isInvalid('schema'));
    }
    assert.throws(() => schemaSql(null as unknown as string), isInvalid('schema'));
    // With a reachable database nothing is created either.
    await assert.rejects(EventStore.connect({ connectionString: databaseUrl(), schema: 'Bad-Name' }), isInvalid('schema'));
    assert.equal(await schemaExists('Bad-Name'), false);
    // The control: a valid name with the unreachable URL fails while connecting, not on the name.
    await assert.rejects(EventStore.connect({ connectionString: UNREACHABLE, schema: 'fine_name' }), (error: unknown) => {
      assert.ok(error instanceof EventStoreDatabaseError, String(error));
      return true;
    });
  });

  test('a 63-character schema name is valid', async () => {
    const name = `lc_${randomUUID().replaceAll('-', '')}`.padEnd(63, 'x');
    assert.equal(name.length, 63);
    createdSchemas.push(name);
    const store = await EventStore.connect({ connectionString: databaseUrl(), schema: name });
    try {
      assert.equal(store.schema, name);
      assert.deepEqual(await store.append({ type: 'T', data: 1 }), { position: 1n });
    } finally {
      await store.close();
    }
  });

  test('two stores in different schemas of one database are isolated', async () => {
    const a = await createTestStore();
    const b = await createTestStore();
    createdSchemas.push(a.schema, b.schema);
    try {
      const id = randomUUID();
      // The same event id in both schemas is no clash.
      assert.deepEqual(await a.store.append({ id, type: 'InA', tags: ['shared'], data: 'a' }), { position: 1n });
      await a.store.append({ type: 'InA', tags: ['shared'], data: 'a2' });
      assert.deepEqual(await b.store.append({ id, type: 'InB', tags: ['shared'], data: 'b' }), { position: 1n });
      const readA = await a.store.read(Query.of(QueryItem.tags('shared')));
      const readB = await b.store.read(Query.of(QueryItem.tags('shared')));
      assert.deepEqual(readA.events.map((event) => event.data), ['a', 'a2']);
      assert.equal(readA.head, 2n);
      assert.deepEqual(readB.events.map((event) => event.data), ['b']);
      assert.equal(readB.head, 1n);
      // A condition in one schema does not see the other's events.
      await b.store.append({ type: 'InB', data: 'b2' }, { failIfEventsMatch: Query.of(QueryItem.types('InA')) });
      assert.equal(await a.store.head(), 2n);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  test('migrate: false against an empty schema: a clear error on first use that mentions migrations', async () => {
    const empty = freshSchema();
    await withClient((client) => client.query(`CREATE SCHEMA "${empty}"`));
    const store = await EventStore.connect({ connectionString: databaseUrl(), schema: empty, migrate: false });
    try {
      for (const use of [() => store.read(Query.all()), () => store.append({ type: 'T', data: 1 }), () => store.head()]) {
        await assert.rejects(use(), (error: unknown) => {
          assert.ok(error instanceof EventStoreDatabaseError, String(error));
          assert.match(error.message, /migrat/i);
          assert.match(error.message, new RegExp(empty));
          return true;
        });
      }
    } finally {
      await store.close();
    }
    // Nothing was created behind the user's back.
    const { rows } = await withClient((client) => client.query(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`, [empty]));
    assert.equal(rows[0].n, 0);
  });

  test('migrate: false against a schema that does not exist: a clear error on first use that mentions migrations', async () => {
    const missing = freshSchema();
    const store = await EventStore.connect({ connectionString: databaseUrl(), schema: missing, migrate: false });
    try {
      for (const [name, use] of [
        ['read', () => store.read(Query.all())],
        ['append', () => store.append({ type: 'T', data: 1 })],
        ['head', () => store.head()],
      ] as const) {
        await assert.rejects(use(), (error: unknown) => {
          assert.ok(error instanceof EventStoreDatabaseError, `${name}: ${String(error)}`);
          assert.match(error.message, /migrat/i, `${name}: ${error.message}`);
          return true;
        });
      }
    } finally {
      await store.close();
    }
    assert.equal(await schemaExists(missing), false);
  });

  test('no connection string and no DATABASE_URL: InvalidInputError', async () => {
    const saved = process.env.DATABASE_URL;
    try {
      delete process.env.DATABASE_URL;
      await assert.rejects(EventStore.connect({ schema: 'whatever' }), (error: unknown) => {
        isInvalid('connectionString')(error);
        assert.match((error as Error).message, /DATABASE_URL/);
        return true;
      });
      await assert.rejects(EventStore.connect({ schema: 'whatever', connectionString: '' }), isInvalid('connectionString'));
    } finally {
      process.env.DATABASE_URL = saved;
    }
    assert.equal(process.env.DATABASE_URL, saved);
    // With only DATABASE_URL, connecting works.
    const schema = freshSchema();
    const store = await EventStore.connect({ schema });
    await store.close();
  });

  test('bad pool and batch options are rejected before connecting', async () => {
    for (const [key, value] of [
      ['poolSize', 0],
      ['poolSize', 1.5],
      ['maxBatchCommands', 0],
      ['maxBatchEvents', -1],
      ['conditionScanLimit', -1],
      ['payloadIndex', 'yes'],
    ] as const) {
      await assert.rejects(EventStore.connect({ connectionString: UNREACHABLE, schema: 'fine', [key]: value as never }), isInvalid(key));
    }
  });

  test('payloadIndex: true creates the payload index once, also with migrate: false; without it the store has none', async () => {
    const schema = freshSchema();
    const indexes = async (): Promise<number> =>
      (await withClient((client) => client.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = $1 AND indexname = 'events_data_idx'`, [schema]))).rows[0].n;
    const plain = await EventStore.connect({ connectionString: databaseUrl(), schema });
    await plain.append({ type: 'Before', data: { k: 1 } });
    assert.equal(await indexes(), 0);
    const [a, b] = await Promise.all([
      EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, payloadIndex: true }),
      EventStore.connect({ connectionString: databaseUrl(), schema, payloadIndex: true }),
    ]);
    assert.equal(await indexes(), 1);
    const { events } = await a.read(Query.of(QueryItem.anyPredicateOf({ k: 1 })));
    assert.equal(events.length, 1);
    await Promise.all([plain.close(), a.close(), b.close()]);
  });
});

describe('migrations', SUITE, () => {
  async function migrationRows(schema: string): Promise<Array<{ version: number; name: string; applied_at: Date }>> {
    const { rows } = await withClient((client) => client.query(`SELECT version, name, applied_at FROM "${schema}".migrations ORDER BY version`));
    return rows;
  }

  test('6 concurrent connects on a fresh schema all succeed and record each migration once; connecting again applies nothing', async () => {
    const schema = freshSchema();
    const stores = await Promise.all(Array.from({ length: 6 }, () => EventStore.connect({ connectionString: databaseUrl(), schema })));
    try {
      const expected = loadMigrations().map((migration) => ({ version: migration.version, name: migration.name }));
      assert.ok(expected.length >= 1, 'expected.length >= 1');
      const rows = await migrationRows(schema);
      assert.deepEqual(rows.map(({ version, name }) => ({ version, name })), expected);
      // Every store works against the one schema.
      for (const [index, store] of stores.entries()) await store.append({ type: 'FromStore', data: index });
      const { events, head } = await stores[0]!.read(Query.all());
      assert.equal(head, 6n);
      assert.deepEqual(events.map((event) => event.data).sort(), [0, 1, 2, 3, 4, 5]);

      // Connecting again applies nothing and keeps the data.
      const again = await EventStore.connect({ connectionString: databaseUrl(), schema });
      await again.close();
      assert.deepEqual(await migrationRows(schema), rows);
      assert.equal(await stores[1]!.head(), 6n);
      const result = await withClient((client) => migrate(client, schema));
      assert.deepEqual(result, { applied: [] });
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  test('a schema migrated by a newer library version is refused with MigrationError', async () => {
    const schema = freshSchema();
    const store = await EventStore.connect({ connectionString: databaseUrl(), schema });
    await store.close();
    const newer = loadMigrations().length + 1;
    await withClient((client) => client.query(`INSERT INTO "${schema}".migrations (version, name) VALUES ($1, 'from-the-future')`, [newer]));
    await assert.rejects(EventStore.connect({ connectionString: databaseUrl(), schema }), (error: unknown) => {
      assert.ok(error instanceof MigrationError, String(error));
      assert.equal(error.code, 'MIGRATION_FAILED');
      assert.match(error.message, /newer than this library/);
      return true;
    });
  });

  test('store.schemaSql() holds the DDL; applied with a raw client to a fresh schema it gives a working store with migrate: false', async () => {
    const { store, schema } = await createTestStore();
    createdSchemas.push(schema);
    const ddl = store.schemaSql();
    await store.close();
    assert.match(ddl, new RegExp(`CREATE TABLE "${schema}"\\.events \\(`));
    assert.match(ddl, new RegExp(`CREATE TABLE "${schema}"\\.head \\(`));
    assert.match(ddl, new RegExp(`CREATE FUNCTION "${schema}"\\.append_batch\\(`));
    assert.doesNotMatch(ddl, /__SCHEMA__/);
    assert.equal(ddl, schemaSql(schema));

    const target = freshSchema();
    const targetDdl = schemaSql(target);
    assert.ok(!targetDdl.includes(`"${schema}"`), 'the DDL names only its own schema');
    const client = new pg.Client({ connectionString: databaseUrl() });
    await client.connect();
    try {
      await client.query(targetDdl);
    } finally {
      await client.end();
    }
    const external = await EventStore.connect({ connectionString: databaseUrl(), schema: target, migrate: false });
    try {
      const tag = 'ddl:1';
      const { position } = await external.append({ type: 'ViaDdl', tags: [tag], data: { ok: true } }, { failIfEventsMatch: Query.of(QueryItem.tags(tag)) });
      assert.equal(position, 1n);
      await assert.rejects(external.append({ type: 'ViaDdl', tags: [tag], data: 2 }, { failIfEventsMatch: Query.of(QueryItem.tags(tag)) }), { code: 'APPEND_CONDITION_FAILED' });
      const { events, head } = await external.read(Query.of(QueryItem.types('ViaDdl')));
      assert.equal(head, 1n);
      assert.deepEqual(events.map((event) => event.data), [{ ok: true }]);
    } finally {
      await external.close();
    }
    // The DDL also recorded the migrations, so the library's migrator finds nothing to do.
    assert.deepEqual(await withClient((raw) => migrate(raw, target)), { applied: [] });
    assert.deepEqual((await migrationRows(target)).map((row) => row.version), loadMigrations().map((migration) => migration.version));
  });

  test('events are immutable: raw UPDATE, DELETE and TRUNCATE on the events table fail', async () => {
    const { store, schema, dispose } = await createTestStore();
    try {
      await store.append([{ type: 'Fact', data: 1 }, { type: 'Fact', data: 2 }]);
      for (const statement of [
        `UPDATE "${schema}".events SET data = '{"changed":true}' WHERE position = 1`,
        `UPDATE "${schema}".events SET type = 'Other'`,
        `DELETE FROM "${schema}".events WHERE position = 2`,
        `DELETE FROM "${schema}".events`,
        `TRUNCATE "${schema}".events`,
        `TRUNCATE "${schema}".events CASCADE`,
      ]) {
        await assert.rejects(
          withClient((client) => client.query(statement)),
          (error: unknown) => {
            assert.equal((error as { code?: string }).code, '23001', statement);
            assert.match((error as Error).message, /events are immutable/, statement);
            return true;
          },
          statement,
        );
      }
      const { events, head } = await store.read(Query.all());
      assert.equal(head, 2n);
      assert.deepEqual(events.map((event) => [event.position, event.type, event.data]), [
        [1n, 'Fact', 1],
        [2n, 'Fact', 2],
      ]);
    } finally {
      await dispose();
    }
  });
});

describe('embedded PostgreSQL', SUITE, () => {
  test('starts on a free port, answers a query, stops and removes its ephemeral data directory', async () => {
    const dataDir = join(tmpdir(), `dses-embedded-${process.pid}-${randomUUID()}`);
    const server = await startEmbeddedPostgres({ dataDir, port: 0, ephemeral: true });
    let stopped = false;
    try {
      assert.ok(server.port > 0 && server.port < 65536, 'server.port > 0 && server.port < 65536');
      assert.equal(server.dataDir, dataDir);
      assert.equal(server.connectionString, `postgres://postgres:postgres@localhost:${server.port}/postgres`);
      assert.ok(existsSync(join(dataDir, 'PG_VERSION')), "existsSync(join(dataDir, 'PG_VERSION'))");
      const client = new pg.Client({ connectionString: server.connectionString });
      await client.connect();
      try {
        const { rows } = await client.query<{ answer: number; version: string; fsync: string; sync: string }>(
          "SELECT 41 + 1 AS answer, current_setting('server_version_num') AS version, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync",
        );
        assert.equal(rows[0]!.answer, 42);
        assert.match(rows[0]!.version, /^17\d{4}$/);
        assert.equal(rows[0]!.fsync, 'on');
        assert.equal(rows[0]!.sync, 'on');
      } finally {
        await client.end();
      }
      await server.stop();
      stopped = true;
      await server.stop(); // twice is fine
      assert.equal(existsSync(dataDir), false, 'an ephemeral data directory is removed on stop');
      const late = new pg.Client({ connectionString: server.connectionString, connectionTimeoutMillis: 2000 });
      late.on('error', () => undefined);
      await assert.rejects(late.connect());
    } finally {
      if (!stopped) await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a port already in use gives EmbeddedPostgresError with a clear message', async () => {
    const blocker: Server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      blocker.once('error', reject);
      blocker.listen(0, '127.0.0.1', () => {
        const address = blocker.address();
        if (typeof address === 'object' && address) resolve(address.port);
        else reject(new Error('no port'));
      });
    });
    const dataDir = join(tmpdir(), `dses-embedded-busy-${process.pid}-${randomUUID()}`);
    try {
      await assert.rejects(startEmbeddedPostgres({ dataDir, port, ephemeral: true }), (error: unknown) => {
        assert.ok(error instanceof EmbeddedPostgresError, String(error));
        assert.equal(error.code, 'EMBEDDED_POSTGRES');
        assert.match(error.message, new RegExp(`port ${port} is already in use`));
        return true;
      });
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('invalid ports are refused with InvalidInputError', async () => {
    for (const port of [-1, 65536, 1.5]) {
      await assert.rejects(startEmbeddedPostgres({ dataDir: join(tmpdir(), 'dses-never-created'), port }), isInvalid('port'));
    }
    assert.equal(existsSync(join(tmpdir(), 'dses-never-created')), false);
  });

  test('as root, a data directory the postgres user cannot enter gives a clear EmbeddedPostgresError', { skip: process.getuid?.() !== 0 && 'only as root' }, async () => {
    const privateDir = mkdtempSync(join(tmpdir(), 'dses-private-'));
    try {
      chmodSync(privateDir, 0o700);
      const dataDir = join(privateDir, 'sub', 'pg');
      await assert.rejects(startEmbeddedPostgres({ dataDir, port: 0, ephemeral: true }), (error: unknown) => {
        assert.ok(error instanceof EmbeddedPostgresError, String(error));
        assert.equal(error.code, 'EMBEDDED_POSTGRES');
        assert.match(error.message, /"postgres" user, which cannot enter/);
        assert.ok(error.message.includes(privateDir), error.message);
        assert.ok(error.message.includes('mode 700'), error.message);
        return true;
      });
      assert.equal(existsSync(join(privateDir, 'sub')), false, 'nothing is created when the check fails');
    } finally {
      rmSync(privateDir, { recursive: true, force: true });
    }
  });
});
