// appendCommands against a real PostgreSQL beyond the shared contract: real connections racing
// overlapping multi-command appends while a reader looks for a partly written call, a lost
// reply (fault proxy) answered with the original positions, mixed batches with plain appends,
// and a schema too old for groups.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  AppendConditionFailedError,
  EventStore,
  Query,
  QueryItem,
  SchemaTooOldError,
  type AppendCommand,
  type EventInput,
} from '../../src/index.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { createTestStore, databaseUrl, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';
import { carriesAppend, within } from './fixtures/appends.ts';
import { seededRandom } from '../seeded-random.ts';

keepEventLoopAliveDuringTests();
const SUITE = { timeout: 180_000 };

const registered = (meter: string, call: string, of: number): EventInput => ({ type: 'MeterRegistered', tags: [`meter:${meter}`, `call:${call}`], data: { meter, call, of } });
const unlessRegistered = (meter: string) => ({ failIfEventsMatch: Query.of(QueryItem.types('MeterRegistered').tags(`meter:${meter}`)) });

describe('appendCommands under real concurrency', SUITE, () => {
  let schema: string;
  let dispose: () => Promise<void>;
  before(async () => {
    ({ schema, dispose } = await createTestStore());
  });
  after(() => dispose());

  test('overlapping calls from several stores (connections): one winner per meter, every call whole or absent, never partly visible to a reader', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const next = seededRandom(seed);
    const random = { int: (n: number): number => Math.floor(next() * n) };
    const stores = await Promise.all(Array.from({ length: 4 }, () => EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false })));
    const calls = new Map<string, { meters: string[]; outcome?: 'won' | 'lost'; positions?: bigint[]; failedOn?: { commandIndex: number; conflictingPosition: bigint | undefined } }>();
    let writing = true;
    let reads = 0;
    const partial: string[] = [];
    // A reader that keeps reading while the writers race: it must never see only part of a call.
    const reader = (async () => {
      while (writing) {
        const { events } = await stores[0]!.read(Query.of(QueryItem.types('MeterRegistered')));
        const seen = new Map<string, number>();
        for (const event of events) {
          const { call } = event.data as { call: string };
          seen.set(call, (seen.get(call) ?? 0) + 1);
        }
        for (const [call, count] of seen) if (count !== (events.find((event) => (event.data as { call: string }).call === call)!.data as { of: number }).of) partial.push(call);
        reads++;
      }
    })();
    try {
      // 4 stores x 8 callers, 12 rounds each; a call registers 2 to 4 meters of 40.
      await Promise.all(stores.flatMap((store) => Array.from({ length: 8 }, async () => {
        for (let round = 0; round < 12; round++) {
          const call = randomUUID();
          const count = 2 + random.int(3);
          const meters = new Set<string>();
          while (meters.size < count) meters.add(`m${random.int(40)}`);
          const list = [...meters];
          calls.set(call, { meters: list });
          const commands: AppendCommand[] = list.map((meter) => ({ events: registered(meter, call, count), condition: unlessRegistered(meter) }));
          try {
            const result = await store.appendCommands(commands);
            Object.assign(calls.get(call)!, { outcome: 'won', positions: result.positions });
          } catch (error) {
            assert.ok(error instanceof AppendConditionFailedError, `seed ${seed}: ${String(error)}`);
            assert.ok(error.commandIndex !== undefined && error.commandIndex >= 0 && error.commandIndex < count);
            Object.assign(calls.get(call)!, { outcome: 'lost', failedOn: { commandIndex: error.commandIndex, conflictingPosition: error.conflictingPosition } });
          }
        }
      })));
    } finally {
      writing = false;
      await reader;
      await Promise.all(stores.map((store) => store.close()));
    }
    assert.deepEqual(partial, [], `seed ${seed}: a reader saw part of a call`);
    assert.ok(reads > 0);
    const rows = await withClient(async (client) => (await client.query<{ position: string; meter: string; call: string }>(`SELECT position, data->>'meter' AS meter, data->>'call' AS call FROM "${schema}".events WHERE type = 'MeterRegistered' ORDER BY position`)).rows);
    const meters = rows.map((row) => row.meter);
    assert.equal(new Set(meters).size, meters.length, `seed ${seed}: a meter was registered twice`);
    for (const [call, { meters: wanted, outcome, positions }] of calls) {
      const stored = rows.filter((row) => row.call === call);
      if (outcome === 'lost') {
        assert.equal(stored.length, 0, `seed ${seed}: a failed call wrote ${stored.length} events`);
        continue;
      }
      assert.equal(outcome, 'won');
      assert.deepEqual(stored.map((row) => row.meter), wanted, `seed ${seed}: a won call's events are its meters in order`);
      assert.deepEqual(stored.map((row) => BigInt(row.position)), positions, `seed ${seed}: the returned positions are where its events are`);
      const first = BigInt(stored[0]!.position);
      assert.deepEqual(positions, wanted.map((_, index) => first + BigInt(index)), `seed ${seed}: one call's events are consecutive`);
    }
    // No false failure: the meter a lost call failed on was registered, by another call, before
    // the position the failure names.
    for (const { outcome, meters: wanted, failedOn } of calls.values()) {
      if (outcome !== 'lost') continue;
      const winner = rows.find((row) => row.meter === wanted[failedOn!.commandIndex]);
      assert.ok(winner, `seed ${seed}: a call failed on ${wanted[failedOn!.commandIndex]}, which nobody registered`);
      assert.equal(BigInt(winner.position), failedOn!.conflictingPosition, `seed ${seed}: the conflicting position is that registration`);
    }
    assert.ok([...calls.values()].some((call) => call.outcome === 'lost') && [...calls.values()].some((call) => call.outcome === 'won'), 'the race had winners and losers');
  });

  test('calls and plain appends batched together: each call is all-or-nothing, each append on its own', async () => {
    const store = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false });
    try {
      const tag = randomUUID().slice(0, 8);
      // Fired together, so they share batches: pairs of calls contest meters, appends contest nothing.
      const results = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => i % 3 === 2
        ? store.append({ type: 'Plain', tags: [`batch:${tag}`], data: { i } })
        : store.appendCommands([
          { events: registered(`${tag}-${Math.floor(i / 3)}`, `${tag}-${i}`, 2), condition: unlessRegistered(`${tag}-${Math.floor(i / 3)}`) },
          { events: registered(`${tag}-own-${i}`, `${tag}-${i}`, 2), condition: unlessRegistered(`${tag}-own-${i}`) },
        ])));
      const failed = results.filter((result) => result.status === 'rejected');
      for (const failure of failed) assert.ok((failure as PromiseRejectedResult).reason instanceof AppendConditionFailedError, String((failure as PromiseRejectedResult).reason));
      // Of each pair of calls (i = 3k, 3k + 1) exactly one wins the shared meter.
      assert.equal(failed.length, 20);
      const rows = await withClient(async (client) => (await client.query<{ call: string; n: string }>(`SELECT data->>'call' AS call, count(*) AS n FROM "${schema}".events WHERE data->>'call' LIKE $1 GROUP BY 1`, [`${tag}-%`])).rows);
      assert.equal(rows.length, 20);
      for (const row of rows) assert.equal(row.n, '2');
    } finally {
      await store.close();
    }
  });
});

describe('appendCommands when the reply of a committed call is lost', SUITE, () => {
  let schema: string;
  let dispose: () => Promise<void>;
  let proxy: FaultProxy;
  before(async () => {
    ({ schema, dispose } = await createTestStore());
    proxy = await FaultProxy.start({ targetPort: Number(new URL(databaseUrl()).port) });
  });
  after(async () => {
    await proxy.close();
    await dispose();
  });

  test('the store resends the whole call and resolves with the original positions; every event stored once', async () => {
    const store = await EventStore.connect({ connectionString: proxy.connectionString(databaseUrl()), schema, migrate: false, appendTimeoutMs: 10_000 });
    try {
      await store.head();
      const trigger = proxy.arm({ direction: 'to-server', match: carriesAppend, deliver: true, action: { kind: 'cut', side: 'client' } });
      const call = randomUUID();
      const outcome = await within(10_000, 'appendCommands', store.appendCommands([
        { events: registered('lost-1', call, 2), condition: unlessRegistered('lost-1') },
        { events: registered('lost-2', call, 2), condition: unlessRegistered('lost-2') },
      ]));
      await trigger.fired;
      assert.equal(outcome.status, 'fulfilled', `a committed call must not be reported as failed: ${String((outcome as PromiseRejectedResult).reason)}`);
      const rows = await withClient(async (client) => (await client.query<{ position: string }>(`SELECT position FROM "${schema}".events WHERE data->>'call' = $1 ORDER BY position`, [call])).rows);
      assert.deepEqual(rows.map((row) => BigInt(row.position)), outcome.value.positions);
    } finally {
      proxy.heal();
      await store.close();
    }
  });
});

describe('appendCommands on a schema below migration 6', SUITE, () => {
  test('several commands: SchemaTooOldError and nothing written; a single command still works', async () => {
    const { schema, dispose } = await createTestStore();
    try {
      // A schema whose migrations another tool applies, one behind this library.
      await withClient((client) => client.query(`DELETE FROM "${schema}".migrations WHERE version >= 6`));
      const store = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false });
      try {
        await assert.rejects(store.appendCommands([{ events: { type: 'A', data: {} } }, { events: { type: 'B', data: {} } }]), (error: unknown) => {
          assert.ok(error instanceof SchemaTooOldError, String(error));
          assert.equal(error.code, 'SCHEMA_TOO_OLD');
          assert.equal(error.version, 5);
          return true;
        });
        assert.equal(await store.head(), 0n);
        assert.deepEqual((await store.appendCommands([{ events: { type: 'A', data: {} } }])).positions, [1n]);
      } finally {
        await store.close();
      }
    } finally {
      await dispose();
    }
  });
});
