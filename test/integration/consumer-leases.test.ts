// Consumer leases and resets on a real PostgreSQL: a lease is a session advisory lock keyed by
// (the schema's namespace oid, the consumer row's lease_key from a sequence), so two consumers
// never share one — the old key (hashtext(schema), hashtext(name)) let two names with the same
// 32-bit hash block each other; migration 0004 gives existing consumers their keys; and an error
// thrown by resetConsumer's onReset reaches the caller as thrown, with nothing changed.
//
// Each test names, in a comment, the bug it is there to catch.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventStore, Query, QueryItem, type ConsumerTransaction, type EventInput } from '../../src/index.ts';
import { loadMigrations, renderMigration } from '../../src/postgres/schema.ts';
import { createTestStore, databaseUrl, dropSchema, keepEventLoopAliveDuringTests, uniqueSchemaName, withClient } from '../helpers.ts';
import { positions, waitFor } from './fixtures/backends.ts';
import { readModel, type ReadModel } from './fixtures/read-model.ts';

keepEventLoopAliveDuringTests();

const LIMIT = 30_000;
const M = Query.of(QueryItem.types('M'));
const events = (count: number): EventInput[] => Array.from({ length: count }, (_, n) => ({ type: 'M', data: { n } }));

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await Promise.race([cleanup().catch(() => undefined), sleep(5000)]);
});

async function freshStore(): Promise<{ store: EventStore; schema: string }> {
  const created = await createTestStore({ poolSize: 3 });
  cleanups.push(created.dispose);
  return { store: created.store, schema: created.schema };
}

/** Runs consumer `name` in the background; returns its stop. */
function run(store: EventStore, name: string, handle: Parameters<EventStore['consumer']>[1]['handle']): () => Promise<void> {
  const controller = new AbortController();
  const running = store.consumer(name, { query: M, pollIntervalMs: 200, takeoverIntervalMs: 100, handle }).run({ signal: controller.signal });
  running.catch(() => undefined);
  const stop = async (): Promise<void> => {
    controller.abort();
    await running;
  };
  cleanups.push(() => stop().catch(() => undefined));
  return stop;
}

/** Two consumer names whose hashtext() collide (found on this server: hashtext is not guaranteed stable across platforms). */
async function collidingNames(): Promise<[string, string]> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ a: string; b: string }>(
      `SELECT min(n) AS a, max(n) AS b FROM (SELECT 'consumer-' || i AS n FROM generate_series(1, 200000) i) s
        GROUP BY hashtext(n) HAVING count(*) = 2 ORDER BY min(length(n)), min(n) LIMIT 1`,
    );
    assert.ok(rows[0], 'no hashtext collision among 200000 names (expected about four)');
    return [rows[0].a, rows[0].b];
  });
}

/** (pid, objid) of granted two-key advisory locks in `schema`'s namespace: one per held consumer lease. */
async function leasesIn(schema: string): Promise<Array<{ pid: number; objid: number }>> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ pid: number; objid: string }>(
      `SELECT pid, objid::text FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = (SELECT oid FROM pg_namespace WHERE nspname = $1) ORDER BY objid`,
      [schema],
    );
    return rows.map((row) => ({ pid: row.pid, objid: Number(row.objid) }));
  });
}

describe('lease keys', { timeout: LIMIT }, () => {
  // Bugs: two names with equal hashtext share one lock, so the second never runs while the
  // first does (a standby for ever), and consumerStatus reports the second as running when only
  // the first is.
  test('two consumers whose names collide under hashtext: both run at once, and one reads as idle while only the other runs', async () => {
    const [first, second] = await collidingNames();
    const hashes = await withClient(async (client) => (await client.query('SELECT hashtext($1) AS a, hashtext($2) AS b', [first, second])).rows[0]);
    assert.equal(hashes.a, hashes.b, `${first} and ${second} collide under hashtext (the old lease key)`);
    const { store, schema } = await freshStore();
    await store.append(events(10));

    const stopFirst = run(store, first, () => undefined);
    await waitFor(`${first} to catch up`, async () => (await store.consumerStatus(first)).position === 10n, 10_000, 20);
    assert.equal((await store.consumerStatus(first)).state, 'running');

    const stopSecond = run(store, second, () => undefined);
    await waitFor(`${second} to catch up while ${first} runs`, async () => (await store.consumerStatus(second)).position === 10n, 5000, 20);
    assert.equal((await store.consumerStatus(first)).state, 'running');
    assert.equal((await store.consumerStatus(second)).state, 'running');
    const leases = await leasesIn(schema);
    assert.equal(leases.length, 2, 'two leases held');
    assert.notEqual(leases[0]!.pid, leases[1]!.pid, 'by two sessions');
    await store.append(events(5));
    await waitFor('both to follow live appends', async () => (await store.consumerStatus(first)).position === 15n && (await store.consumerStatus(second)).position === 15n, 5000, 20);

    await stopSecond();
    assert.equal((await store.consumerStatus(first)).state, 'running');
    assert.equal((await store.consumerStatus(second)).state, 'idle', `${second} stopped: its status must not show ${first}'s lease`);
    await stopFirst();
    assert.equal((await store.consumerStatus(first)).state, 'idle');
    assert.deepEqual(await leasesIn(schema), [], 'both released');
  });

  // Bugs: a consumer row without a key after the upgrade (the lease query finds nothing), two
  // rows with one key, a checkpoint lost by the migration; a standby burning a key per attempt.
  test('migration 0004 on a schema with consumers: each row gets its own key, checkpoints kept; standbys asking again and again take no new keys', async () => {
    const schema = uniqueSchemaName('lease');
    cleanups.push(() => dropSchema(schema));
    const migrations = loadMigrations();
    assert.ok(migrations.length >= 4);
    await withClient(async (client) => {
      // A schema as the previous version left it: migrations 1..3, two consumers with checkpoints.
      await client.query(`CREATE SCHEMA "${schema}"`);
      await client.query(`CREATE TABLE "${schema}".migrations (version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const migration of migrations.slice(0, 3)) {
        await client.query(renderMigration(migration, schema));
        await client.query(`INSERT INTO "${schema}".migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      }
    });
    const old = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false });
    try {
      await old.append(events(8));
    } finally {
      await old.close();
    }
    await withClient((client) => client.query(`INSERT INTO "${schema}".consumers (name, position) VALUES ('a', 3), ('b', 5), ('c', 0)`));
    const store = await EventStore.connect({ connectionString: databaseUrl(), schema });
    cleanups.push(() => store.close());
    const keys = async (): Promise<Array<{ name: string; position: string; lease_key: number }>> =>
      withClient(async (client) => (await client.query(`SELECT name, position::text, lease_key FROM "${schema}".consumers ORDER BY name`)).rows);
    const migrated = await keys();
    assert.deepEqual(migrated.map((row) => [row.name, row.position]), [['a', '3'], ['b', '5'], ['c', '0']]);
    assert.equal(new Set(migrated.map((row) => row.lease_key)).size, 3, 'distinct keys');
    assert.ok(migrated.every((row) => Number.isInteger(row.lease_key)));

    const seen: bigint[] = [];
    const stop = run(store, 'b', (event) => void seen.push(event.position));
    await waitFor('b to resume', async () => (await store.consumerStatus('b')).position === 8n, 10_000, 20);
    assert.deepEqual(seen, positions(6n, 8n), 'resumed after its checkpoint');
    // A standby of b asks every 100 ms; a new consumer gets the next key.
    const standby = run(store, 'b', () => undefined);
    await sleep(600);
    const stopNew = run(store, 'd', () => undefined);
    await waitFor('d to run', async () => (await store.consumerStatus('d')).position === 8n, 10_000, 20);
    const after = await keys();
    assert.deepEqual(after.slice(0, 3), migrated.slice(0, 3).map((row) => (row.name === 'b' ? { ...row, position: '8' } : row)), 'keys do not change');
    assert.equal(after[3]!.lease_key, Math.max(...migrated.map((row) => row.lease_key)) + 1, 'the standby took no keys while it waited');
    await standby();
    await stop();
    await stopNew();
  });
});

class OnResetFailed extends Error {
  override name = 'OnResetFailed';
}

describe('resetConsumer and onReset errors', { timeout: LIMIT }, () => {
  // Bugs: the error thrown by onReset replaced by an EventStoreDatabaseError (callers cannot
  // tell their own failure apart or match its class), onReset's writes or a moved checkpoint
  // committed anyway, the lease kept (the consumer cannot run afterwards).
  test('an error thrown by onReset (an Error, a non-Error value, a failing statement) reaches the caller as the same object; checkpoint, read model and failure state unchanged; the lease released', async () => {
    const { store, schema } = await freshStore();
    const model: ReadModel = readModel(schema, 'read_model');
    await withClient((client) => model.create(client));
    await store.append(events(6));
    const stop = run(store, 'resettable', (event, context) => model.apply(context.transaction, event, 'i', context.attempt));
    await waitFor('the consumer to catch up', async () => (await store.consumerStatus('resettable')).position === 6n, 10_000, 20);
    await stop();
    const before = await store.consumerStatus('resettable');
    const rowsBefore = await withClient((client) => model.rows(client));
    assert.equal(rowsBefore.length, 6);

    let kept: ConsumerTransaction | undefined;
    let statementError: unknown;
    const cases: Array<[string, unknown, (transaction: ConsumerTransaction) => Promise<void>]> = [];
    const error = new OnResetFailed('the read model could not be emptied');
    cases.push(['an Error subclass', error, async (transaction) => {
      kept = transaction;
      await model.truncate(transaction);
      throw error;
    }]);
    const value = { reason: 'not an Error at all' };
    cases.push(['a plain object', value, async (transaction) => {
      await model.truncate(transaction);
      throw value;
    }]);
    cases.push(['a failing statement', undefined, async (transaction) => {
      await model.truncate(transaction);
      try {
        await transaction.query('SELECT 1 / 0');
      } catch (caught) {
        statementError = caught;
        throw caught;
      }
    }]);

    for (const [description, expected, onReset] of cases) {
      let rejection: unknown;
      await store.resetConsumer('resettable', { onReset }).then(
        () => assert.fail(`${description}: the reset succeeded`),
        (caught: unknown) => (rejection = caught),
      );
      assert.equal(rejection, expected ?? statementError, `${description}: the very object thrown by onReset`);
      const status = await store.consumerStatus('resettable');
      assert.deepEqual({ ...status, updatedAt: null }, { ...before, updatedAt: null }, `${description}: the status is unchanged`);
      assert.equal(status.updatedAt?.getTime(), before.updatedAt?.getTime(), `${description}: the row was not written`);
      assert.deepEqual(await withClient((client) => model.rows(client)), rowsBefore, `${description}: onReset's writes rolled back`);
      assert.deepEqual(await leasesIn(schema), [], `${description}: the lease is released`);
    }
    await assert.rejects(kept!.query('SELECT 1'), /has ended/, 'the reset transaction is closed to a late statement');

    // Nothing is left held: a reset and a run both work at once.
    await store.resetConsumer('resettable', { onReset: (transaction) => model.truncate(transaction) });
    assert.equal((await store.consumerStatus('resettable')).position, 0n);
    const again = run(store, 'resettable', (event, context) => model.apply(context.transaction, event, 'again', context.attempt));
    await waitFor('the rebuild', async () => (await store.consumerStatus('resettable')).position === 6n, 10_000, 20);
    await again();
    assert.deepEqual((await withClient((client) => model.rows(client))).map((row) => row.position), positions(1n, 6n));
  });
});
