// Review findings in the append batcher's outcome rules (src/append-batcher.ts), each a test that
// fails on the code it was written against. Real PostgreSQL; slow and failing inserts come from
// the test trigger (fixtures/fault-trigger.ts), waits from a held head-row lock.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { AppendOutcomeUnknownError, EventStore, OperationAbortedError, OperationTimeoutError } from '../../src/index.ts';
import { createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { installFaultTrigger } from './fixtures/fault-trigger.ts';

const SUITE = { timeout: 60_000 };
keepEventLoopAliveDuringTests();

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;

before(async () => {
  ({ store, schema, dispose } = await createTestStore());
  await installFaultTrigger(schema);
});
after(() => dispose());

async function storedPosition(id: string): Promise<bigint | undefined> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ position: string }>(`SELECT position FROM "${schema}".events WHERE id = $1`, [id]);
    return rows[0] === undefined ? undefined : BigInt(rows[0].position);
  });
}

/** Holds the head row lock from another session: appends wait behind it until `release()`. */
async function holdAppendLock(): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`SELECT 1 FROM "${schema}".head FOR UPDATE`);
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await client.query('COMMIT');
      await client.end();
    },
  };
}

function settled<T>(promise: Promise<T>): Promise<PromiseSettledResult<T>> {
  return promise.then(
    (value): PromiseSettledResult<T> => ({ status: 'fulfilled', value }),
    (reason: unknown): PromiseSettledResult<T> => ({ status: 'rejected', reason }),
  );
}

describe('review: a batch that fails as a whole', SUITE, () => {
  test("the culprit's caller aborts while the batch runs: the innocent append in the same batch is re-run alone and stored, not failed with the culprit's error", async () => {
    // [bad, good] go as one batch; bad's insert sleeps 0.5 s and then raises, which rolls back the
    // whole batch. Meanwhile bad's caller aborts: it is detached (unknown), good keeps waiting.
    // After the rollback only good is unsettled, and the batcher takes "one command left" for
    // "this command is the culprit": good gets bad's error, although nothing is wrong with it and
    // it was never run alone. Without the abort good would have been re-run alone and stored.
    const lock = await holdAppendLock();
    try {
      const ahead = settled(store.append({ type: 'Ahead', data: 1 }));
      await delay(100); // in flight, waiting for the lock: the next two form one batch
      const controller = new AbortController();
      const bad = settled(store.append([{ type: 'Slow', data: { sleep: 0.5 } }, { type: 'Boom', data: 1 }], undefined, { signal: controller.signal }));
      const goodId = randomUUID();
      const good = settled(store.append({ id: goodId, type: 'Innocent', data: 1 }));
      await lock.release();
      assert.equal((await ahead).status, 'fulfilled');
      await delay(200); // [bad, good] runs: bad's first event sleeps
      controller.abort();
      const badOutcome = await bad;
      assert.ok(badOutcome.status === 'rejected' && (badOutcome.reason instanceof AppendOutcomeUnknownError || badOutcome.reason instanceof OperationAbortedError), String((badOutcome as PromiseRejectedResult).reason));
      const goodOutcome = await good;
      assert.equal(goodOutcome.status, 'fulfilled', `an abort failed another caller's valid append with: ${String((goodOutcome as PromiseRejectedResult).reason)}`);
      assert.equal(await storedPosition(goodId), (goodOutcome as PromiseFulfilledResult<{ position: bigint }>).value.position);
    } finally {
      await lock.release();
    }
  });
});

describe('review: the per-attempt timeout', SUITE, () => {
  test('an append whose statement needs 1.3 s on a healthy connection is stored within appendTimeoutMs 4000 (not cancelled and re-run until the deadline)', async () => {
    // The attempt timeout (max(1 s, appendTimeoutMs / 4)) is meant to catch a dead peer, but it
    // cancels any statement that is merely slow, and every resend is as slow: the append can
    // never succeed, although its deadline leaves room for three runs of it.
    const bounded = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, appendTimeoutMs: 4_000 });
    try {
      const id = randomUUID();
      const outcome = await settled(bounded.append({ id, type: 'Slow', data: { sleep: 1.3 } }));
      const reason = (outcome as PromiseRejectedResult).reason as unknown;
      assert.equal(outcome.status, 'fulfilled', `a healthy 1.3 s append within a 4 s deadline failed with ${reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason)}`);
      assert.equal(await storedPosition(id), (outcome as PromiseFulfilledResult<{ position: bigint }>).value.position);
    } finally {
      await bounded.close();
    }
  });
});
