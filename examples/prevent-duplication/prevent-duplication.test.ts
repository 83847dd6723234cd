// Prevent record duplication: Given/When/Then specifications (in memory), then both variants and
// client-supplied event ids on PostgreSQL, with orders racing for one token from several store
// instances.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DuplicateEventIdError, Query, QueryItem, type EventStore } from '../../src/index.ts';
import { CommandHandlerSpecification, InMemoryEventStore, ProjectionSpecification } from '../../src/testing/index.ts';
import { connectToSchema, createTestStore, keepEventLoopAliveDuringTests, startGate } from '../../test/helpers.ts';
import { OrderAlreadyPlacedError, idempotencyTag, isOrderError, orderPlaced, orderPlacedWithToken, placeOrder, placeOrderUnlessTokenUsed, type PlaceOrder } from './domain.ts';

keepEventLoopAliveDuringTests();

const now = new Date('2025-06-02T12:00:00.000Z');
const alreadyPlacedAs =
  (orderId: string) =>
  (error: unknown): boolean =>
    error instanceof OrderAlreadyPlacedError && error.orderId === orderId;

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('orderPlacedWithToken (projection)', () => {
  test('an unused token: null', async () => {
    await ProjectionSpecification.for(orderPlacedWithToken('t1')).given([orderPlaced('o1', 't2', now)]).then(null);
  });

  test('a used token: the id of the order placed with it', async () => {
    await ProjectionSpecification.for(orderPlacedWithToken('t1')).given([orderPlaced('o0', 't0', now), orderPlaced('o1', 't1', now)]).then('o1');
  });
});

describe('placeOrder', () => {
  const spec = CommandHandlerSpecification.for(placeOrder);

  test('a new token: the order is placed, tagged order:<id> and idempotency:<token>', async () => {
    await spec.given([]).when({ orderId: 'o1', idempotencyToken: 't1', at: now }).then([orderPlaced('o1', 't1', now)]);
    assert.deepEqual(orderPlaced('o1', 't1', now).tags, ['order:o1', 'idempotency:t1']);
  });

  test('other orders with other tokens do not matter', async () => {
    await spec.given([orderPlaced('o0', 't0', now)]).when({ orderId: 'o1', idempotencyToken: 't1', at: now }).then([orderPlaced('o1', 't1', now)]);
  });

  test('a token used before: OrderAlreadyPlacedError naming the order placed with it', async () => {
    await spec.given([orderPlaced('o1', 't1', now)]).when({ orderId: 'o2', idempotencyToken: 't1', at: now }).thenThrows(alreadyPlacedAs('o1'));
  });

  test('the same order sent again (a retry after a timeout): rejected too, and the error names the client’s own order', async () => {
    await spec.given([orderPlaced('o1', 't1', now)]).when({ orderId: 'o1', idempotencyToken: 't1', at: now }).thenThrows(alreadyPlacedAs('o1'));
  });

  test('the error carries a stable code', () => {
    const error = new OrderAlreadyPlacedError('t1', 'o1');
    assert.equal(error.code, 'ORDER_ALREADY_PLACED');
    assert.equal(error.name, 'OrderAlreadyPlacedError');
    assert.ok(isOrderError(error, 'ORDER_ALREADY_PLACED'));
    assert.ok(!isOrderError(new Error('x')));
  });
});

describe('placeOrderUnlessTokenUsed (an append condition without `after`, no read)', () => {
  test('a new token: placed; a used one: OrderAlreadyPlacedError naming the first order, and nothing appended', async () => {
    const store = new InMemoryEventStore();
    await store.append(orderPlaced('o0', 't0', now));
    assert.deepEqual(await placeOrderUnlessTokenUsed(store, { orderId: 'o1', idempotencyToken: 't1', at: now }), { position: 2n });
    await assert.rejects(placeOrderUnlessTokenUsed(store, { orderId: 'o2', idempotencyToken: 't1', at: now }), alreadyPlacedAs('o1'));
    assert.deepEqual(store.events.map((event) => event.data), [
      { orderId: 'o0', idempotencyToken: 't0' },
      { orderId: 'o1', idempotencyToken: 't1' },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The alternative: the client's own event id. The store keeps ids unique; an append whose events
// all exist already with the same content is an exact retry and returns the original position.
// It makes one append safe to retry (e.g. after the connection dropped during COMMIT), not a
// resubmitted form: a new submission gets a new id. Run against both stores.

for (const [name, open] of [
  ['in memory', async () => ({ store: new InMemoryEventStore(), dispose: async () => undefined })],
  ['on PostgreSQL', () => createTestStore()],
] as const) {
  describe(`client-supplied event ids (${name})`, () => {
    test('an exact retry of an append returns the original position and stores nothing new', async () => {
      const { store, dispose } = await open();
      try {
        const event = { ...orderPlaced('o1', 't1', now), id: randomUUID() };
        const first = await store.append(event);
        await store.append(orderPlaced('o2', 't2', now));
        assert.deepEqual(await store.append(event), first);
        assert.equal((await store.read(Query.all())).events.length, 2);
      } finally {
        await dispose();
      }
    });

    test('the retry returns the original position even though its uniqueness condition would now fail', async () => {
      const { store, dispose } = await open();
      try {
        const event = { ...orderPlaced('o1', 't1', now), id: randomUUID() };
        const condition = { failIfEventsMatch: Query.of(QueryItem.tags(idempotencyTag('t1'))) };
        const first = await store.append(event, condition);
        assert.deepEqual(await store.append(event, condition), first);
      } finally {
        await dispose();
      }
    });

    test('the same id with other content: DuplicateEventIdError, nothing written', async () => {
      const { store, dispose } = await open();
      try {
        const id = randomUUID();
        await store.append({ ...orderPlaced('o1', 't1', now), id });
        await assert.rejects(store.append({ ...orderPlaced('o2', 't1', now), id }), DuplicateEventIdError);
        assert.equal((await store.read(Query.all())).events.length, 1);
      } finally {
        await dispose();
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Races on PostgreSQL

describe('on PostgreSQL', () => {
  const RACERS = 10;
  const ROUNDS = 10;
  let store: EventStore;
  let dispose: () => Promise<void>;
  let racers: EventStore[] = [];

  before(async () => {
    let schema: string;
    ({ store, schema, dispose } = await createTestStore());
    racers = await Promise.all(Array.from({ length: RACERS }, () => connectToSchema(schema, { poolSize: 2 })));
  });
  after(async () => {
    await Promise.all(racers.map((racer) => racer.close()));
    await dispose();
  });

  async function ordersWithToken(token: string): Promise<string[]> {
    const { events } = await store.read<{ orderId: string }>(Query.of(QueryItem.tags(idempotencyTag(token))));
    return events.map((event) => event.data.orderId);
  }

  /**
   * Each round, every racer places its own order with one shared token, all started at one
   * instant from their own store instance: exactly one order is placed, and every other racer
   * gets OrderAlreadyPlacedError naming it.
   */
  async function raceForOneToken(place: (racer: EventStore, command: PlaceOrder) => Promise<unknown>): Promise<void> {
    for (let round = 0; round < ROUNDS; round++) {
      const token = randomUUID();
      const orderIds = racers.map(() => `o-${randomUUID().slice(0, 8)}`);
      const gate = startGate();
      const placing = racers.map(async (racer, index) => {
        await gate.wait();
        return place(racer, { orderId: orderIds[index]!, idempotencyToken: token, at: now });
      });
      gate.open();
      const results = await Promise.allSettled(placing);
      const placed = await ordersWithToken(token);
      assert.equal(placed.length, 1, `round ${round}: one order per token, got ${placed.length}`);
      const winner = orderIds.findIndex((orderId) => orderId === placed[0]);
      results.forEach((result, index) => {
        if (index === winner) assert.equal(result.status, 'fulfilled', `round ${round}: the placed order succeeded`);
        else assert.ok(result.status === 'rejected' && alreadyPlacedAs(placed[0]!)(result.reason), `round ${round}: ${result.status === 'rejected' ? String(result.reason) : 'fulfilled'}`);
      });
    }
  }

  test(`race: ${RACERS} store instances execute placeOrder with one token, ${ROUNDS} rounds: one order per token`, async () => {
    await raceForOneToken((racer, command) => racer.execute(placeOrder, command));
  });

  test(`race: ${RACERS} store instances call placeOrderUnlessTokenUsed with one token, ${ROUNDS} rounds: one order per token`, async () => {
    await raceForOneToken((racer, command) => placeOrderUnlessTokenUsed(racer, command));
  });

  test('orders with different tokens never conflict: each goes through on its first attempt', async () => {
    const gate = startGate();
    const placing = racers.map(async (racer) => {
      await gate.wait();
      return racer.execute(placeOrder, { orderId: randomUUID(), idempotencyToken: randomUUID(), at: now });
    });
    gate.open();
    assert.deepEqual((await Promise.all(placing)).map((result) => result.attempts), racers.map(() => 1));
  });

  test(`race: ${RACERS} store instances append the same event (one client id) at once: all get its position, it is stored once`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const token = randomUUID();
      const event = { ...orderPlaced(`o-${round}`, token, now), id: randomUUID() };
      const gate = startGate();
      const appending = racers.map(async (racer) => {
        await gate.wait();
        return racer.append(event);
      });
      gate.open();
      const positions = new Set((await Promise.all(appending)).map((result) => result.position));
      assert.equal(positions.size, 1, `round ${round}`);
      assert.deepEqual(await ordersWithToken(token), [`o-${round}`]);
    }
  });
});
