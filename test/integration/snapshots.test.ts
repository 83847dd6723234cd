// Snapshots in PostgreSQL (<schema>.snapshots): save and load, a later position replaces a
// snapshot and an earlier one does not (also when saves race), and a snapshot beyond the head (the
// store was restored from an older backup) is ignored by decision models and replaced.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildDecisionModel, defineProjection, type EventInput, type EventStore, type SnapshotKey } from '../../src/index.ts';
import { queryHash } from '../../src/decisions/snapshots.ts';
import { connectToSchema, createTestStore, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';

keepEventLoopAliveDuringTests();

const SUITE = { timeout: 30_000 };

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;

before(async () => {
  ({ store, schema, dispose } = await createTestStore());
  await store.append(Array.from({ length: 10 }, (_, n): EventInput => ({ type: 'Filler', data: { n } })));
});
after(() => dispose());

let keys = 0;
/** A key no other test uses. */
function freshKey(): SnapshotKey {
  keys += 1;
  return { name: `projection-${keys}`, version: 1, queryHash: 'f'.repeat(64) };
}

async function storedRows(key: SnapshotKey): Promise<Array<{ position: string; state: unknown }>> {
  const { rows } = await withClient((client) =>
    client.query<{ position: string; state: unknown }>(`SELECT position::text, state FROM "${schema}".snapshots WHERE name = $1 AND version = $2 AND query_hash = $3`, [key.name, key.version, key.queryHash]),
  );
  return rows;
}

/** Moves a stored snapshot behind the store's back, as a restore from an older backup would leave it. */
async function setPosition(key: SnapshotKey, position: bigint): Promise<void> {
  const { rowCount } = await withClient((client) =>
    client.query(`UPDATE "${schema}".snapshots SET position = $4 WHERE name = $1 AND version = $2 AND query_hash = $3`, [key.name, key.version, key.queryHash, position.toString()]),
  );
  assert.equal(rowCount, 1);
}

describe('PostgreSQL snapshot store', SUITE, () => {
  test('save and load round-trip the state; one row per key', async () => {
    const key = freshKey();
    assert.equal(await store.snapshots.load(key), undefined);
    const state = { count: 3, nested: { list: [1, 'two', null, { three: true }] }, text: 'ünï 📚' };
    await store.snapshots.save(key, { position: 4n, state });
    assert.deepEqual(await store.snapshots.load(key), { position: 4n, state });
    await store.snapshots.save(key, { position: 5n, state: 'scalar state' });
    assert.deepEqual(await store.snapshots.load(key), { position: 5n, state: 'scalar state' });
    assert.deepEqual(await storedRows(key), [{ position: '5', state: 'scalar state' }]);
  });

  test('an older snapshot does not replace a newer one, nor does one at the same position', async () => {
    const key = freshKey();
    await store.snapshots.save(key, { position: 6n, state: 'six' });
    await store.snapshots.save(key, { position: 2n, state: 'two' });
    await store.snapshots.save(key, { position: 6n, state: 'six again' });
    assert.deepEqual(await store.snapshots.load(key), { position: 6n, state: 'six' });
  });

  test('racing saves from two store instances: the latest position wins', async () => {
    const key = freshKey();
    const other = await connectToSchema(schema);
    try {
      const positions = [3n, 9n, 1n, 7n, 10n, 2n, 8n, 5n, 4n, 6n];
      await Promise.all(positions.map((position, index) => (index % 2 === 0 ? store : other).snapshots.save(key, { position, state: { at: Number(position) } })));
      assert.deepEqual(await store.snapshots.load(key), { position: 10n, state: { at: 10 } });
      assert.deepEqual(await other.snapshots.load(key), { position: 10n, state: { at: 10 } });
    } finally {
      await other.close();
    }
  });

  test('name, version and query hash each make a separate snapshot', async () => {
    const key = freshKey();
    await store.snapshots.save(key, { position: 1n, state: 'base' });
    await store.snapshots.save({ ...key, version: 2 }, { position: 2n, state: 'v2' });
    await store.snapshots.save({ ...key, queryHash: 'e'.repeat(64) }, { position: 3n, state: 'other query' });
    assert.deepEqual(await store.snapshots.load(key), { position: 1n, state: 'base' });
    assert.deepEqual(await store.snapshots.load({ ...key, version: 2 }), { position: 2n, state: 'v2' });
    assert.deepEqual(await store.snapshots.load({ ...key, queryHash: 'e'.repeat(64) }), { position: 3n, state: 'other query' });
  });

  test('a snapshot beyond the head is replaced by a save at an earlier position', async () => {
    const key = freshKey();
    await store.snapshots.save(key, { position: 8n, state: 'eight' });
    await setPosition(key, 1000n);
    assert.equal(await store.snapshots.load(key), undefined, 'a snapshot beyond the head does not count');
    assert.equal((await storedRows(key))[0]?.position, '1000');
    await store.snapshots.save(key, { position: 3n, state: 'three' });
    assert.deepEqual(await store.snapshots.load(key), { position: 3n, state: 'three' });
  });

  // Bug caught: checking snapshots against the head only. After a restore from an older backup
  // and new appends, another event sits at the snapshot's position and its state is wrong.
  test('a snapshot whose position now holds another event does not count, and a save at an earlier position replaces it', async () => {
    const key = freshKey();
    await store.snapshots.save(key, { position: 5n, state: 'five' });
    assert.deepEqual(await store.snapshots.load(key), { position: 5n, state: 'five' });
    await withClient((client) =>
      client.query(`UPDATE "${schema}".snapshots SET event_id = gen_random_uuid() WHERE name = $1 AND version = $2 AND query_hash = $3`, [key.name, key.version, key.queryHash]),
    );
    assert.equal(await store.snapshots.load(key), undefined);
    await store.snapshots.save(key, { position: 2n, state: 'two' });
    assert.deepEqual(await store.snapshots.load(key), { position: 2n, state: 'two' });
  });

  test('a decision model ignores a snapshot beyond the head, folds from the first event and saves a valid one', async () => {
    const tagged = (n: number): EventInput => ({ type: 'Counted', tags: ['counter:pg'], data: { n } });
    await store.append([tagged(1), tagged(2), tagged(3)]);
    const counter = defineProjection<{ count: number }>({
      initialState: { count: 0 },
      handlers: { Counted: (state) => ({ count: state.count + 1 }) },
      tags: ['counter:pg'],
      snapshot: { name: 'pg-counter', version: 1, every: 3 },
    });
    const key: SnapshotKey = { name: 'pg-counter', version: 1, queryHash: queryHash(counter.query) };
    const head = await store.head();
    const first = await buildDecisionModel(store, { counter });
    assert.equal(first.state.counter.count, 3);
    assert.deepEqual(await store.snapshots.load(key), { position: head, state: { count: 3 } });
    // Now the snapshot claims a position the store never reached, with a state no fold gives.
    await withClient((client) => client.query(`UPDATE "${schema}".snapshots SET position = 5000, state = '{"count": 1000}' WHERE name = 'pg-counter'`));
    const second = await buildDecisionModel(store, { counter });
    assert.equal(second.state.counter.count, 3);
    assert.equal(second.appendCondition.after, head);
    assert.deepEqual(await store.snapshots.load(key), { position: head, state: { count: 3 } });
  });
});
