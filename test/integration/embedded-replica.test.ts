// startEmbeddedPostgres({ replicaOf }): a hot standby of an embedded primary, streaming its WAL.
// This file starts its own primary (the suite's DATABASE_URL server belongs to another process,
// so it is not "one of ours"), a standby of it, and a few more servers for the edge cases.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { EmbeddedPostgresError, InvalidInputError, OperationTimeoutError, startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../src/index.ts';
import type { EmbeddedPostgresStandby } from '../../src/postgres/embedded.ts';
import { keepEventLoopAliveDuringTests } from '../helpers.ts';

const SUITE = { timeout: 120_000 };
keepEventLoopAliveDuringTests();

// Every server and directory of this file lives below here (os.tmpdir(): the postgres user can enter it).
const root = mkdtempSync(join(tmpdir(), 'dses-replica-'));
// mkdtemp makes it mode 700; as root the server runs as `postgres`, which must enter it.
chmodSync(root, 0o755);
after(() => rmSync(root, { recursive: true, force: true }));

async function withClient<T>(connectionString: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(server: EmbeddedPostgresServer, text: string, values: unknown[] = []): Promise<T[]> {
  return withClient(server.connectionString, async (client) => (await client.query<T>(text, values)).rows);
}

async function countRows(server: EmbeddedPostgresServer): Promise<number> {
  return (await sql<{ n: number }>(server, 'SELECT count(*)::int AS n FROM replicated'))[0]!.n;
}

async function slotNames(primary: EmbeddedPostgresServer): Promise<string[]> {
  return (await sql<{ slot_name: string }>(primary, 'SELECT slot_name FROM pg_replication_slots ORDER BY slot_name')).map((row) => row.slot_name);
}

function isInvalid(path: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    assert.equal(error.path, path);
    return true;
  };
}

describe('a hot standby of an embedded primary', SUITE, () => {
  let primary: EmbeddedPostgresServer;
  let standby: EmbeddedPostgresStandby;

  before(async () => {
    primary = await startEmbeddedPostgres({ dataDir: join(root, 'primary'), port: 0, ephemeral: true });
    await sql(primary, 'CREATE TABLE replicated (id int PRIMARY KEY)');
    await sql(primary, 'INSERT INTO replicated SELECT generate_series(1, 100)');
    standby = await startEmbeddedPostgres({ replicaOf: primary, dataDir: join(root, 'standby'), port: 0, ephemeral: true });
  });
  after(async () => {
    await standby?.stop();
    await primary?.stop();
  });

  test('starts consistent: what the primary had committed before the call is visible at once', async () => {
    assert.equal(primary.role, 'primary');
    assert.equal(standby.role, 'standby');
    assert.equal(standby.primary, primary);
    // No waitForReplay here: startEmbeddedPostgres resolved only after the standby had caught up.
    assert.equal(await countRows(standby), 100);
    const [state] = await sql<{ recovery: boolean; status: string; slot: string }>(standby, 'SELECT pg_is_in_recovery() AS recovery, status, slot_name AS slot FROM pg_stat_wal_receiver');
    assert.deepEqual(state, { recovery: true, status: 'streaming', slot: standby.slotName });
    assert.ok((await slotNames(primary)).includes(standby.slotName));
  });

  test('an insert on the primary appears on the standby', async () => {
    await sql(primary, 'INSERT INTO replicated VALUES (101)');
    const replayed = await standby.waitForReplay();
    assert.match(replayed, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal((await sql(standby, 'SELECT id FROM replicated WHERE id = 101')).length, 1);
  });

  test('the standby refuses writes with SQLSTATE 25006 (read_only_sql_transaction)', async () => {
    await assert.rejects(sql(standby, 'INSERT INTO replicated VALUES (-1)'), (error: unknown) => {
      assert.equal((error as { code?: string }).code, '25006');
      return true;
    });
    await assert.rejects(sql(standby, 'CREATE TABLE nope (x int)'), (error: unknown) => (error as { code?: string }).code === '25006');
  });

  test('pg_wal_replay_pause() freezes what the standby shows while the primary moves on; pg_wal_replay_resume() catches up', async () => {
    const before = await countRows(standby);
    await sql(standby, 'SELECT pg_wal_replay_pause()');
    try {
      // Pausing is asynchronous: 'pause requested' until the startup process notices.
      for (let i = 0; (await sql<{ s: string }>(standby, 'SELECT pg_get_wal_replay_pause_state() AS s'))[0]!.s !== 'paused'; i++) {
        assert.ok(i < 500, 'replay did not pause within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await sql(primary, 'INSERT INTO replicated SELECT generate_series(1001, 1050)');
      const [{ lsn }] = (await sql<{ lsn: string }>(primary, 'SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
      // The WAL does arrive (received and flushed on the standby), it is only not replayed: the
      // frozen count below is the pause at work, not replication lag.
      for (let i = 0; !(await sql<{ r: boolean }>(standby, 'SELECT pg_last_wal_receive_lsn() >= $1::pg_lsn AS r', [lsn]))[0]!.r; i++) {
        assert.ok(i < 500, 'the standby did not receive the WAL within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(await countRows(standby), before);
      // Waiting for replay while it is paused would wait forever: it fails at once instead.
      await assert.rejects(standby.waitForReplay(lsn), (error: unknown) => error instanceof EmbeddedPostgresError && /paused/.test(error.message));
    } finally {
      await sql(standby, 'SELECT pg_wal_replay_resume()');
    }
    await standby.waitForReplay();
    assert.equal(await countRows(standby), before + 50);
  });

  test('waitForReplay: a bad LSN or timeout is InvalidInputError; a position not reached in time is OperationTimeoutError', async () => {
    await assert.rejects(standby.waitForReplay('not-an-lsn'), isInvalid('lsn'));
    await assert.rejects(standby.waitForReplay(undefined, { timeoutMs: 0 }), isInvalid('timeoutMs'));
    await assert.rejects(standby.waitForReplay('FFFFFFFF/0', { timeoutMs: 200 }), OperationTimeoutError);
  });

  test('bad input is refused with a typed error and leaves nothing behind', async () => {
    const slotsBefore = await slotNames(primary);
    const fresh = join(root, 'bad-standby');
    await assert.rejects(startEmbeddedPostgres({ replicaOf: { ...primary }, dataDir: fresh, port: 0 }), isInvalid('replicaOf'));
    await assert.rejects(startEmbeddedPostgres({ replicaOf: standby, dataDir: fresh, port: 0 }), isInvalid('replicaOf'));
    await assert.rejects(startEmbeddedPostgres({ replicaOf: primary, dataDir: primary.dataDir, port: 0 }), isInvalid('dataDir'));
    await assert.rejects(startEmbeddedPostgres({ replicaOf: primary, dataDir: join(primary.dataDir, 'inside'), port: 0 }), isInvalid('dataDir'));

    // A directory with other files in it is not overwritten.
    const cluttered = join(root, 'cluttered');
    mkdirSync(cluttered);
    writeFileSync(join(cluttered, 'notes.txt'), 'mine');
    await assert.rejects(startEmbeddedPostgres({ replicaOf: primary, dataDir: cluttered, port: 0 }), isInvalid('dataDir'));
    assert.deepEqual(readdirSync(cluttered), ['notes.txt']);

    // A standby that fails to start after its base backup was taken: the copy and its slot go again.
    const failing = join(root, 'failing-standby');
    await assert.rejects(
      startEmbeddedPostgres({ replicaOf: primary, dataDir: failing, port: 0, postgresFlags: ['-c', 'shared_buffers=not-a-size'] }),
      (error: unknown) => error instanceof EmbeddedPostgresError && /starting the standby failed/.test(error.message),
    );
    assert.equal(existsSync(failing), false, 'the half-made standby directory is removed');
    // An empty directory given by the caller stays, empty.
    const empty = join(root, 'empty-given');
    mkdirSync(empty);
    await assert.rejects(startEmbeddedPostgres({ replicaOf: primary, dataDir: empty, port: 0, postgresFlags: ['-c', 'shared_buffers=not-a-size'] }), EmbeddedPostgresError);
    assert.deepEqual(readdirSync(empty), []);

    assert.equal(existsSync(fresh), false);
    assert.deepEqual(await slotNames(primary), slotsBefore);
  });

  test('a non-ephemeral standby directory is started again and catches up through its slot', async () => {
    const dataDir = join(root, 'kept-standby');
    const first = await startEmbeddedPostgres({ replicaOf: primary, dataDir, port: 0 });
    await first.stop();
    assert.ok(existsSync(join(dataDir, 'PG_VERSION')), 'kept');
    // The slot stays while the standby is down, so the primary keeps the WAL it will need.
    assert.ok((await slotNames(primary)).includes(first.slotName));
    await sql(primary, 'INSERT INTO replicated VALUES (5000)');
    const again = await startEmbeddedPostgres({ replicaOf: primary, dataDir, port: 0, ephemeral: true });
    try {
      assert.equal(again.slotName, first.slotName);
      assert.equal((await sql(again, 'SELECT 1 FROM replicated WHERE id = 5000')).length, 1);
    } finally {
      await again.stop();
    }
    assert.equal(existsSync(dataDir), false, 'ephemeral on the second start: removed');
    assert.equal((await slotNames(primary)).includes(first.slotName), false, 'and its slot dropped');
  });

  test('a primary with raised limits, or without replication rules in pg_hba.conf, gets a standby; stopped first, with its standby paused: neither stop hangs; then a stopped primary and its directory are refused', { timeout: 60_000 }, async () => {
    // A primary with more connections than the default: a hot standby must allow at least as many, or it refuses to start.
    const other = await startEmbeddedPostgres({ dataDir: join(root, 'other-primary'), port: 0, postgresFlags: ['-c', 'max_connections=150'] });
    // And one whose pg_hba.conf lost initdb's replication rules: they are put back (and reloaded).
    const hbaFile = join(other.dataDir, 'pg_hba.conf');
    writeFileSync(hbaFile, readFileSync(hbaFile, 'utf8').split('\n').filter((line) => !/^\s*(local|host)\s+replication\s/.test(line)).join('\n'));
    await sql(other, 'SELECT pg_reload_conf()');
    assert.deepEqual(await sql(other, "SELECT 1 FROM pg_hba_file_rules WHERE 'replication' = ANY(database)"), []);
    const otherStandby = await startEmbeddedPostgres({ replicaOf: other, dataDir: join(root, 'other-standby'), port: 0, ephemeral: true });
    assert.match(readFileSync(hbaFile, 'utf8'), /^host\s+replication\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256$/m);
    assert.deepEqual(await sql(otherStandby, "SELECT current_setting('max_connections') AS n"), [{ n: '150' }]);
    await sql(otherStandby, 'SELECT pg_wal_replay_pause()');
    await sql(other, 'CREATE TABLE after_pause (x int)');
    await other.stop();
    // The standby outlives its primary: still readable, and its stop does not wait for the primary.
    assert.deepEqual(await sql(otherStandby, 'SELECT 1 AS one'), [{ one: 1 }]);
    await assert.rejects(otherStandby.waitForReplay(), EmbeddedPostgresError);
    await otherStandby.stop();
    assert.equal(existsSync(otherStandby.dataDir), false);

    const slotsBefore = await slotNames(primary);
    await assert.rejects(startEmbeddedPostgres({ replicaOf: other, dataDir: join(root, 'never'), port: 0 }), isInvalid('replicaOf'));
    // other's (kept) data directory holds another cluster than primary's: not a standby of primary.
    const otherFiles = readdirSync(other.dataDir).sort();
    await assert.rejects(startEmbeddedPostgres({ replicaOf: primary, dataDir: other.dataDir, port: 0 }), (error: unknown) => {
      assert.ok(isInvalid('dataDir')(error));
      assert.match((error as Error).message, /another PostgreSQL cluster/);
      return true;
    });
    assert.deepEqual(readdirSync(other.dataDir).sort(), otherFiles);
    assert.equal(existsSync(join(root, 'never')), false);
    assert.deepEqual(await slotNames(primary), slotsBefore);
  });

  test('standby stopped first, then the primary: ephemeral directories are gone, the slot is dropped', async () => {
    await standby.stop();
    assert.equal(existsSync(standby.dataDir), false);
    assert.equal((await slotNames(primary)).includes(standby.slotName), false);
    await assert.rejects(standby.waitForReplay(), EmbeddedPostgresError);
    await standby.stop(); // a second stop is a no-op
    await primary.stop();
    assert.equal(existsSync(primary.dataDir), false);
  });
});
