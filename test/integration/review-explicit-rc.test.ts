// Review finding in the explicit READ COMMITTED path (a server whose default isolation is
// stricter): the append runs as BEGIN; append_batch(...); COMMIT, three round trips, and holds the
// head-row lock, which serializes every append of every process, from the second to the third.
// A client that vanishes in between (no FIN, no RST) leaves a backend idle in transaction with
// that lock until the server's TCP keepalive gives up (hours by default): every append of every
// store stops. The implicit path commits inside the server and cannot leave the lock behind.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AppendOutcomeUnknownError, EventStore } from '../../src/index.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';

keepEventLoopAliveDuringTests();

const database = `dses_review_rc_${randomBytes(4).toString('hex')}`;
const schema = 'eventstore';
let direct: string;
let proxy: FaultProxy;

before(async () => {
  await withClient(async (client) => {
    await client.query(`CREATE DATABASE ${database}`);
    await client.query(`ALTER DATABASE ${database} SET default_transaction_isolation = 'serializable'`);
  });
  const url = new URL(databaseUrl());
  url.pathname = `/${database}`;
  direct = url.toString();
  const migrating = await EventStore.connect({ connectionString: direct, schema });
  await migrating.close();
  proxy = await FaultProxy.start({ targetPort: Number(url.port) });
});
after(async () => {
  await proxy?.close();
  await withClient((client) => client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));
});

describe('review: explicit READ COMMITTED appends (server default serializable)', { timeout: 60_000 }, () => {
  test('a client that vanishes after append_batch answered and before its COMMIT arrived does not stop every other store from appending', async () => {
    const vanishing = await EventStore.connect({ connectionString: proxy.connectionString(direct), schema, migrate: false, appendTimeoutMs: 2_000 });
    const other = await EventStore.connect({ connectionString: direct, schema, migrate: false, appendTimeoutMs: 4_000 });
    try {
      await vanishing.head();
      // The COMMIT never reaches the server, nothing more comes back: the peer is gone.
      proxy.arm({ direction: 'to-server', match: (chunk) => chunk.statements.includes('COMMIT'), deliver: false, action: { kind: 'stall', direction: 'both' } });
      const id = randomUUID();
      const lost = await Promise.allSettled([vanishing.append({ id, type: 'Vanished', data: 1 })]);
      const lostOutcome = lost[0]!;
      // Its own outcome is unknown (the COMMIT may still arrive): never a "nothing written".
      assert.ok(lostOutcome.status === 'fulfilled' || lostOutcome.reason instanceof AppendOutcomeUnknownError, String((lostOutcome as PromiseRejectedResult).reason));

      const startedAt = Date.now();
      const outcome = (await Promise.allSettled([other.append({ type: 'Other', data: 1 })]))[0]!;
      const holders = await withClient(async (client) => (await client.query<{ state: string; age: string }>(
        `SELECT state, round(extract(epoch FROM now() - state_change))::text AS age FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'`, [database])).rows);
      assert.equal(
        outcome.status,
        'fulfilled',
        `another store's append failed after ${Date.now() - startedAt} ms with ${String((outcome as PromiseRejectedResult).reason)}; backends idle in transaction: ${JSON.stringify(holders)}`,
      );
    } finally {
      proxy.heal();
      await delay(100);
      await vanishing.close({ timeoutMs: 2_000 });
      await other.close({ timeoutMs: 2_000 });
    }
  });
});
