// occurredAt at the limits of what the store accepts, on a real PostgreSQL, whatever the session's
// TimeZone: the server writes timestamptz in the session's zone (year 1 in New York is
// "0001-12-31 19:03:58-04:56:02 BC", the last millisecond of 9999 in Kiritimati falls in year
// 10000), and node-postgres must read each back as the same instant. Dates beyond the limits are
// refused before anything reaches the server, so they cannot fail a batch of other appends.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { EventStore, InvalidInputError, Query, QueryItem } from '../../src/index.ts';
import { databaseUrl, dropSchema, keepEventLoopAliveDuringTests, uniqueSchemaName } from '../helpers.ts';

keepEventLoopAliveDuringTests();

const EARLIEST = new Date('0001-01-01T00:00:00.000Z');
const LATEST = new Date('9999-12-31T23:59:59.999Z');

const schemas: string[] = [];
after(async () => {
  for (const schema of schemas) await dropSchema(schema);
});

/** A store whose sessions run with `TimeZone` = `zone` (a startup option in the connection string). */
async function storeIn(zone: string, schema: string, migrate: boolean): Promise<EventStore> {
  const url = new URL(databaseUrl());
  url.searchParams.set('options', `-c TimeZone=${zone}`);
  return EventStore.connect({ connectionString: url.toString(), schema, migrate });
}

describe('occurredAt at the limits, in several session time zones', { timeout: 30_000 }, () => {
  test('written in one zone, read back equal in every zone, and matched by time bounds at the limits', async () => {
    const schema = uniqueSchemaName('dates');
    schemas.push(schema);
    const writer = await storeIn('UTC', schema, true);
    try {
      await writer.append([
        { type: 'Earliest', data: 1, occurredAt: EARLIEST },
        { type: 'Latest', data: 2, occurredAt: LATEST },
      ]);
    } finally {
      await writer.close();
    }
    for (const zone of ['UTC', 'Pacific/Kiritimati', 'America/New_York', 'Europe/Berlin', 'Asia/Kolkata']) {
      const store = await storeIn(zone, schema, false);
      try {
        // Each zone also writes its own pair, so that the write path is covered in every zone.
        await store.append([
          { type: 'Earliest', data: zone, occurredAt: EARLIEST },
          { type: 'Latest', data: zone, occurredAt: LATEST },
        ]);
        const { events } = await store.read(Query.all());
        for (const stored of events) {
          const expected = stored.type === 'Earliest' ? EARLIEST : LATEST;
          assert.equal(stored.occurredAt.toISOString(), expected.toISOString(), `${zone}: ${stored.type} at ${stored.position}`);
        }
        const count = events.length;
        const positionsOf = async (query: Query): Promise<number> => (await store.read(query)).events.length;
        assert.equal(await positionsOf(Query.all().occurredUntil(EARLIEST)), count / 2, `${zone}: occurredUntil the earliest`);
        assert.equal(await positionsOf(Query.of(QueryItem.types('Latest')).occurredFrom(LATEST)), count / 2, `${zone}: occurredFrom the latest`);
        await assert.rejects(store.append({ type: 'X', data: 0 }, { failIfEventsMatch: Query.all().occurredFrom(LATEST), after: BigInt(count - 1) }), /append condition failed/);
      } finally {
        await store.close();
      }
    }
  });

  test('a date beyond the limits among concurrent appends: that append gets InvalidInputError, the others commit', async () => {
    const schema = uniqueSchemaName('dates');
    schemas.push(schema);
    const store = await storeIn('UTC', schema, true);
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, index) =>
          store.append({ type: 'T', data: index, occurredAt: index === 7 ? new Date('+010000-01-01T00:00:00.000Z') : new Date() }),
        ),
      );
      const rejected = outcomes.flatMap((outcome, index) => (outcome.status === 'rejected' ? [[index, outcome.reason]] : []));
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0]![0], 7);
      assert.ok(rejected[0]![1] instanceof InvalidInputError, `got ${String(rejected[0]![1])}`);
      assert.equal((rejected[0]![1] as InvalidInputError).path, 'events[0].occurredAt');
      assert.equal(await store.head(), 19n);
    } finally {
      await store.close();
    }
  });
});
