// The store's structured log records, produced by real events on a real PostgreSQL: migrations
// applied, slow statements, a resend after a lost connection, an unknown outcome, the LISTEN
// connection lost and back, and a consumer's lease, retries and failure. Each record has the
// store's schema; the library never writes to the console itself.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { AppendOutcomeUnknownError, ConsumerFailedError, EventStore, Query, QueryItem, type EventStoreOptions } from '../../src/index.ts';
import { loadMigrations } from '../../src/postgres/schema.ts';
import { databaseUrl, dropSchema, holdAppendLock, keepEventLoopAliveDuringTests, uniqueSchemaName } from '../helpers.ts';
import { recordingLogger, type LogRecord } from './fixtures/replication.ts';

keepEventLoopAliveDuringTests();
const schema = uniqueSchemaName('logs');
const logger = recordingLogger();
let store: EventStore;
let admin: pg.Client;

async function connect(options: EventStoreOptions = {}): Promise<EventStore> {
  return EventStore.connect({ connectionString: databaseUrl(), schema, logger, ...options });
}

before(async () => {
  admin = new pg.Client({ connectionString: databaseUrl() });
  await admin.connect();
  store = await connect({ slowOperationMs: 100 });
});
after(async () => {
  await store.close();
  await admin.end();
  await dropSchema(schema);
});

/** Records logged while `body` runs. */
async function during(body: () => Promise<unknown>): Promise<LogRecord[]> {
  const from = logger.records.length;
  await body();
  return logger.records.slice(from);
}

async function waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !predicate(); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(logger.records.slice(-5))}`);
    await sleep(20);
  }
}


describe('log records', { timeout: 120_000 }, () => {
  test('migrations applied to a fresh schema: one info record listing them; none when the schema is current', async () => {
    const fresh = uniqueSchemaName('logm');
    const own = recordingLogger();
    const first = await EventStore.connect({ connectionString: databaseUrl(), schema: fresh, logger: own });
    await first.close();
    const second = await EventStore.connect({ connectionString: databaseUrl(), schema: fresh, logger: own });
    await second.close();
    await dropSchema(fresh);
    const records = own.records.filter((record) => Array.isArray(record.fields.migrations));
    assert.equal(records.length, 1, JSON.stringify(own.records));
    assert.equal(records[0]!.level, 'info');
    assert.equal(records[0]!.fields.schema, fresh);
    assert.equal((records[0]!.fields.migrations as unknown[]).length, loadMigrations().length, 'every migration, once');
  });

  test('a statement slower than slowOperationMs: a warn record with the operation and its duration', async () => {
    await store.append({ type: 'Seen', data: {} });
    // A read waits for a lock on the events table that another session holds for 300 ms.
    await admin.query('BEGIN');
    await admin.query(`LOCK TABLE "${schema}".events IN ACCESS EXCLUSIVE MODE`);
    const records = await during(async () => {
      const reading = store.read(Query.all());
      await sleep(300);
      await admin.query('COMMIT');
      await reading;
    });
    const slow = records.find((record) => record.message.startsWith('slow read'));
    assert.ok(slow, JSON.stringify(records));
    assert.equal(slow.level, 'warn');
    assert.equal(slow.fields.operation, 'read');
    assert.equal(slow.fields.schema, schema);
    assert.ok((slow.fields.duration_ms as number) >= 250, String(slow.fields.duration_ms));
  });

  test('a connection lost with an append in flight: a warn record for the resend, and the append succeeds once', async () => {
    const release = await holdAppendLock(schema);
    const records = await during(async () => {
      const appending = store.append({ type: 'Resent', data: {} });
      // The append waits for the lock on its connection: end that backend.
      let pid: number | undefined;
      for (let tries = 0; pid === undefined && tries < 100; tries++) {
        const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE strpos(query, $1) > 0 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`, [`"${schema}".append_batch(`]);
        pid = rows[0]?.pid;
        if (pid === undefined) await sleep(20);
      }
      assert.ok(pid, 'the append is waiting for the lock');
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await sleep(100);
      await release();
      await appending;
    });
    const resend = records.find((record) => record.message.includes('resending the same events'));
    assert.ok(resend, JSON.stringify(records));
    assert.equal(resend.level, 'warn');
    assert.equal(resend.fields.commands, 1);
    assert.equal(typeof resend.fields.error, 'string');
    const { events } = await store.read(Query.of(QueryItem.types('Resent')));
    assert.equal(events.length, 1, 'written once');
  });

  test('an append whose outcome is unknown: a warn record with its event ids and the reason', async () => {
    const release = await holdAppendLock(schema);
    let error: unknown;
    const id = '01890a5d-ac96-774b-bcce-b302099a8099';
    const records = await during(async () => {
      error = await store.append({ id, type: 'Unknown', data: {} }, undefined, { timeoutMs: 1500 }).catch((caught: unknown) => caught);
    });
    await release();
    assert.ok(error instanceof AppendOutcomeUnknownError);
    const unknown = records.find((record) => record.message.startsWith('append outcome unknown'));
    assert.ok(unknown, JSON.stringify(records));
    assert.equal(unknown.level, 'warn');
    assert.deepEqual(unknown.fields.event_ids, [id]);
    assert.match(String(unknown.fields.reason), /no answer within/);
  });

  test('the LISTEN connection lost and back: a warn record, then an info record', async () => {
    const controller = new AbortController();
    const seen: bigint[] = [];
    const following = (async () => {
      for await (const event of store.subscribe(Query.of(QueryItem.types('Followed')), { signal: controller.signal, pollIntervalMs: 200 })) seen.push(event.position);
    })();
    try {
      let pid: number | undefined;
      for (let tries = 0; pid === undefined && tries < 200; tries++) {
        const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE query = $1`, [`LISTEN "${schema}"`]);
        pid = rows[0]?.pid;
        if (pid === undefined) await sleep(20);
      }
      assert.ok(pid, 'the LISTEN connection is open');
      const from = logger.records.length;
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor(() => logger.records.slice(from).some((record) => record.message.includes('LISTEN connection is back')), 'the LISTEN connection to come back');
      const records = logger.records.slice(from);
      const lost = records.find((record) => record.message.includes('LISTEN connection that wakes subscriptions was lost'));
      assert.ok(lost, JSON.stringify(records));
      assert.equal(lost.level, 'warn');
      const back = records.find((record) => record.message.includes('LISTEN connection is back'))!;
      assert.equal(back.level, 'info');
      assert.ok(records.indexOf(lost) < records.indexOf(back));
      const { position } = await store.append({ type: 'Followed', data: {} });
      await waitFor(() => seen.includes(position), 'the subscription to see the append');
    } finally {
      controller.abort();
      await following;
    }
  });

  test('a consumer: the lease taken (info), each failed attempt (warn), the stop after the last (error)', async () => {
    await store.append({ type: 'Poison', data: {} });
    const consumer = store.consumer('poisoned', {
      query: Query.of(QueryItem.types('Poison')),
      maxAttempts: 3,
      retryDelayMs: 1,
      handle: () => {
        throw new Error('cannot handle this');
      },
    });
    let error: unknown;
    const records = await during(async () => {
      error = await consumer.run().catch((caught: unknown) => caught);
    });
    assert.ok(error instanceof ConsumerFailedError);
    const mine = records.filter((record) => record.fields.consumer === 'poisoned');
    assert.deepEqual(mine.map((record) => record.level), ['info', 'warn', 'warn', 'error'], JSON.stringify(mine));
    assert.match(mine[0]!.message, /holds the lease/);
    assert.deepEqual(mine.slice(1, 3).map((record) => record.fields.attempt), [1, 2]);
    assert.equal(mine[3]!.fields.attempts, 3);
    assert.equal(mine[3]!.fields.error, 'cannot handle this');
    for (const record of mine) assert.equal(record.fields.schema, schema);
  });

  test('a logger that throws does not break the operation that logs', async () => {
    const throwing = { debug: () => { throw new Error('x'); }, info: () => { throw new Error('x'); }, warn: () => { throw new Error('x'); }, error: () => { throw new Error('x'); } };
    const fresh = uniqueSchemaName('logt');
    const own = await EventStore.connect({ connectionString: databaseUrl(), schema: fresh, logger: throwing });
    try {
      assert.deepEqual(await own.append({ type: 'Fine', data: {} }), { position: 1n });
    } finally {
      await own.close();
      await dropSchema(fresh);
    }
  });

  test('the library never writes to the console itself (the command line in src/cli/ is the one part that does)', () => {
    const root = fileURLToPath(new URL('../../src/', import.meta.url));
    for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.ts') && !name.startsWith('cli/'))) {
      const code = readFileSync(join(root, file), 'utf8').split('\n').filter((line) => !/^\s*(\/\/|\*)/.test(line)).join('\n');
      assert.doesNotMatch(code, /\bconsole\.(log|info|warn|error|debug|trace)\b|process\.(stdout|stderr)\.write/, `src/${file}`);
    }
  });
});
