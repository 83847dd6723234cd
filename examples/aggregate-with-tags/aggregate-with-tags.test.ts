// An order aggregate over its tag: Given/When/Then specifications (in memory), then on PostgreSQL
// the proof that the append condition acts as a stream's expected version: writers that loaded
// the same version race from several store instances, and no update is lost.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  AppendConditionFailedError,
  Query,
  QueryItem,
  RetriesExhaustedError,
  executeCommand,
  type EventStore,
  type SequencedEvent,
} from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification } from '../../src/testing/index.ts';
import { connectToSchema, createTestStore, interferingStore, keepEventLoopAliveDuringTests, startGate } from '../../test/helpers.ts';
import {
  MAX_ORDER_ITEMS,
  OrderAlreadyExistsError,
  OrderEmptyError,
  OrderItemLimitReachedError,
  OrderNotFoundError,
  OrderNotOpenError,
  OrderVersionConflictError,
  addOrderItem,
  isOrderError,
  loadOrder,
  openOrder,
  orderAggregate,
  orderItemAdded,
  orderOpened,
  orderSubmitted,
  orderTag,
  submitOrder,
  type OrderEvents,
} from './domain.ts';

keepEventLoopAliveDuringTests();

const now = new Date('2025-06-02T12:00:00.000Z');
const earlier = new Date('2025-06-02T11:00:00.000Z');

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('orderAggregate (projection)', () => {
  test('no events: a new order at version 0', async () => {
    await ProjectionSpecification.for(orderAggregate('o1')).given([]).then({ version: 0, status: 'new', customerId: null, items: [] });
  });

  test('each event of the order is one version; the same SKU twice is one item; other orders are ignored', async () => {
    await ProjectionSpecification.for(orderAggregate('o1'))
      .given([orderOpened('o1', 'c1', earlier), orderOpened('o2', 'c2', earlier), orderItemAdded('o1', 'sku-a', 1, earlier), orderItemAdded('o2', 'sku-x', 9, earlier), orderItemAdded('o1', 'sku-b', 2, earlier), orderItemAdded('o1', 'sku-a', 3, earlier)])
      .then({ version: 4, status: 'open', customerId: 'c1', items: [{ sku: 'sku-a', quantity: 4 }, { sku: 'sku-b', quantity: 2 }] });
  });

  test('submitted', async () => {
    await ProjectionSpecification.for(orderAggregate('o1'))
      .given([orderOpened('o1', 'c1', earlier), orderItemAdded('o1', 'sku-a', 1, earlier), orderSubmitted('o1', [{ sku: 'sku-a', quantity: 1 }], earlier)])
      .then({ version: 3, status: 'submitted', customerId: 'c1', items: [{ sku: 'sku-a', quantity: 1 }] });
  });
});

describe('openOrder', () => {
  const spec = CommandHandlerSpecification.for(openOrder);

  test('a new order is opened, tagged order:<id>', async () => {
    await spec.given([]).when({ orderId: 'o1', customerId: 'c1', at: now }).then([orderOpened('o1', 'c1', now)]);
  });

  test('an order that exists: OrderAlreadyExistsError', async () => {
    await spec.given([orderOpened('o1', 'c1', earlier)]).when({ orderId: 'o1', customerId: 'c2', at: now }).thenThrows(OrderAlreadyExistsError);
  });
});

describe('addOrderItem', () => {
  const spec = CommandHandlerSpecification.for(addOrderItem);
  const opened = orderOpened('o1', 'c1', earlier);
  const full = [opened, ...Array.from({ length: MAX_ORDER_ITEMS }, (_, index) => orderItemAdded('o1', `sku-${index}`, 1, earlier))];

  test('to an open order: the item is added', async () => {
    await spec.given([opened]).when({ orderId: 'o1', sku: 'sku-a', quantity: 2, at: now }).then([orderItemAdded('o1', 'sku-a', 2, now)]);
  });

  test('an order that does not exist: OrderNotFoundError', async () => {
    await spec.given([orderOpened('o2', 'c1', earlier)]).when({ orderId: 'o1', sku: 'sku-a', quantity: 1, at: now }).thenThrows(OrderNotFoundError);
  });

  test('a submitted order: OrderNotOpenError', async () => {
    await spec
      .given([opened, orderItemAdded('o1', 'sku-a', 1, earlier), orderSubmitted('o1', [{ sku: 'sku-a', quantity: 1 }], earlier)])
      .when({ orderId: 'o1', sku: 'sku-b', quantity: 1, at: now })
      .thenThrows(OrderNotOpenError);
  });

  test(`an order holding ${MAX_ORDER_ITEMS} SKUs: another SKU is refused with OrderItemLimitReachedError, more of one it holds is added`, async () => {
    await spec.given(full).when({ orderId: 'o1', sku: 'sku-new', quantity: 1, at: now }).thenThrows(OrderItemLimitReachedError);
    await spec.given(full).when({ orderId: 'o1', sku: 'sku-0', quantity: 1, at: now }).then([orderItemAdded('o1', 'sku-0', 1, now)]);
  });

  test('with the current version as expected version: added', async () => {
    await spec.given([opened, orderItemAdded('o1', 'sku-a', 1, earlier)]).when({ orderId: 'o1', sku: 'sku-b', quantity: 1, at: now, expectedVersion: 2 }).then([orderItemAdded('o1', 'sku-b', 1, now)]);
  });

  test('with a stale expected version: OrderVersionConflictError with both versions', async () => {
    await spec
      .given([opened, orderItemAdded('o1', 'sku-a', 1, earlier)])
      .when({ orderId: 'o1', sku: 'sku-b', quantity: 1, at: now, expectedVersion: 1 })
      .thenThrows((error) => error instanceof OrderVersionConflictError && error.expectedVersion === 1 && error.actualVersion === 2);
  });
});

describe('submitOrder', () => {
  const spec = CommandHandlerSpecification.for(submitOrder);
  const opened = orderOpened('o1', 'c1', earlier);

  test('an open order with items: submitted with its items', async () => {
    await spec
      .given([opened, orderItemAdded('o1', 'sku-a', 1, earlier), orderItemAdded('o1', 'sku-b', 2, earlier), orderItemAdded('o1', 'sku-a', 1, earlier)])
      .when({ orderId: 'o1', at: now })
      .then([orderSubmitted('o1', [{ sku: 'sku-a', quantity: 2 }, { sku: 'sku-b', quantity: 2 }], now)]);
  });

  test('an empty order: OrderEmptyError', async () => {
    await spec.given([opened]).when({ orderId: 'o1', at: now }).thenThrows(OrderEmptyError);
  });

  test('a submitted order: OrderNotOpenError', async () => {
    await spec
      .given([opened, orderItemAdded('o1', 'sku-a', 1, earlier), orderSubmitted('o1', [{ sku: 'sku-a', quantity: 1 }], earlier)])
      .when({ orderId: 'o1', at: now })
      .thenThrows(OrderNotOpenError);
  });

  test('an order that does not exist: OrderNotFoundError', async () => {
    await spec.given([]).when({ orderId: 'o1', at: now }).thenThrows(OrderNotFoundError);
  });

  test('with a stale expected version: OrderVersionConflictError', async () => {
    await spec.given([opened, orderItemAdded('o1', 'sku-a', 1, earlier)]).when({ orderId: 'o1', at: now, expectedVersion: 1 }).thenThrows(OrderVersionConflictError);
  });

  test('errors carry a stable code', () => {
    const error = new OrderVersionConflictError('o1', 1, 2);
    assert.equal(error.code, 'ORDER_VERSION_CONFLICT');
    assert.equal(error.name, 'OrderVersionConflictError');
    assert.ok(isOrderError(error, 'ORDER_VERSION_CONFLICT'));
    assert.ok(!isOrderError(error, 'ORDER_EMPTY'));
  });
});

// ---------------------------------------------------------------------------------------------
// On PostgreSQL

/**
 * The test oracle: replays an order's events in position order, checking each against the state
 * before it (what a writer holding the latest version would have decided on). Returns the
 * violations: an update decided on an older version shows up as one of them.
 */
function violations(events: readonly SequencedEvent[]): string[] {
  const found: string[] = [];
  let opened = false;
  let submitted = false;
  const items = new Map<string, number>();
  for (const event of events) {
    const at = `position ${event.position}`;
    if (event.type === 'OrderOpened') {
      if (opened) found.push(`${at}: opened twice`);
      opened = true;
    } else if (event.type === 'OrderItemAdded') {
      const { sku, quantity } = event.data as OrderEvents['OrderItemAdded'];
      if (!opened || submitted) found.push(`${at}: item added to an order that is not open`);
      if (!items.has(sku) && items.size >= MAX_ORDER_ITEMS) found.push(`${at}: item ${sku} beyond the limit`);
      items.set(sku, (items.get(sku) ?? 0) + quantity);
    } else if (event.type === 'OrderSubmitted') {
      if (submitted) found.push(`${at}: submitted twice`);
      const submittedItems = (event.data as OrderEvents['OrderSubmitted']).items;
      if (JSON.stringify(submittedItems) !== JSON.stringify([...items].map(([sku, quantity]) => ({ sku, quantity })))) found.push(`${at}: submitted items differ from the order's items`);
      submitted = true;
    }
  }
  return found;
}

describe('on PostgreSQL', () => {
  const RACERS = 10;
  let store: EventStore;
  let dispose: () => Promise<void>;
  let racers: EventStore[] = [];
  const newOrderId = (): string => `o-${randomUUID().slice(0, 8)}`;

  before(async () => {
    let schema: string;
    ({ store, schema, dispose } = await createTestStore());
    racers = await Promise.all(Array.from({ length: RACERS }, () => connectToSchema(schema, { poolSize: 2 })));
  });
  after(async () => {
    await Promise.all(racers.map((racer) => racer.close()));
    await dispose();
  });

  async function historyOf(orderId: string): Promise<SequencedEvent[]> {
    return (await store.read(Query.of(QueryItem.tags(orderTag(orderId))))).events;
  }

  async function openWithItems(orderId: string, count: number): Promise<void> {
    await store.append([orderOpened(orderId, 'c1', earlier), ...Array.from({ length: count }, (_, index) => orderItemAdded(orderId, `sku-${index}`, 1, earlier))]);
  }

  test('the append condition is the expected version: saving after someone else saved fails, and nothing is written', async () => {
    const orderId = newOrderId();
    await openWithItems(orderId, 1);
    const loaded = await loadOrder(store, orderId);
    assert.equal(loaded.version, 2);
    const racing = interferingStore(store, orderItemAdded(orderId, 'sku-theirs', 1, now)).store;
    // One attempt only: the conflict itself, instead of a retry.
    await assert.rejects(
      executeCommand(racing, addOrderItem, { orderId, sku: 'sku-mine', quantity: 1, at: now }, { maxAttempts: 1 }),
      (error: unknown) => error instanceof RetriesExhaustedError && error.cause instanceof AppendConditionFailedError,
    );
    assert.deepEqual((await loadOrder(store, orderId)).items.map((item) => item.sku), ['sku-0', 'sku-theirs']);
  });

  test('with the retry of execute: loaded again and decided again on the new version; both updates are kept', async () => {
    const orderId = newOrderId();
    await openWithItems(orderId, 1);
    const result = await executeCommand(interferingStore(store, orderItemAdded(orderId, 'sku-theirs', 1, now)).store, addOrderItem, { orderId, sku: 'sku-mine', quantity: 1, at: now });
    assert.equal(result.attempts, 2);
    assert.equal(result.state.order.version, 3);
    const order = await loadOrder(store, orderId);
    assert.deepEqual([order.version, order.items.map((item) => item.sku)], [4, ['sku-0', 'sku-theirs', 'sku-mine']]);
  });

  test('with an expected version from the client: decided again, the command is rejected with OrderVersionConflictError', async () => {
    const orderId = newOrderId();
    await openWithItems(orderId, 1);
    await assert.rejects(
      executeCommand(interferingStore(store, orderItemAdded(orderId, 'sku-theirs', 1, now)).store, addOrderItem, { orderId, sku: 'sku-mine', quantity: 1, at: now, expectedVersion: 2 }),
      (error: unknown) => error instanceof OrderVersionConflictError && error.actualVersion === 3,
    );
  });

  test('another order’s event is outside the boundary: no conflict', async () => {
    const [orderId, otherId] = [newOrderId(), newOrderId()];
    await openWithItems(orderId, 1);
    await openWithItems(otherId, 1);
    const result = await executeCommand(interferingStore(store, orderItemAdded(otherId, 'sku-x', 1, now)).store, addOrderItem, { orderId, sku: 'sku-mine', quantity: 1, at: now });
    assert.equal(result.attempts, 1);
  });

  test(`race: ${RACERS} store instances add an item expecting the same version, 5 rounds: exactly one succeeds, the others get OrderVersionConflictError`, async () => {
    for (let round = 0; round < 5; round++) {
      const orderId = newOrderId();
      await openWithItems(orderId, 1);
      const { version } = await loadOrder(store, orderId);
      const gate = startGate();
      const adding = racers.map(async (racer, index) => {
        await gate.wait();
        return racer.execute(addOrderItem, { orderId, sku: `sku-racer-${index}`, quantity: 1, at: now, expectedVersion: version });
      });
      gate.open();
      const results = await Promise.allSettled(adding);
      const succeeded = results.filter((result) => result.status === 'fulfilled').length;
      for (const result of results) if (result.status === 'rejected') assert.ok(result.reason instanceof OrderVersionConflictError, `round ${round}: ${String(result.reason)}`);
      assert.equal(succeeded, 1, `round ${round}`);
      const history = await historyOf(orderId);
      assert.equal(history.length, version + 1, `round ${round}: one new version`);
      assert.deepEqual(violations(history), [], `round ${round}`);
    }
  });

  test(`race: ${RACERS} store instances add items and submit at once, 10 rounds: every event decided on the latest version (no item beyond the limit or after submission, the submission lists every item)`, async () => {
    const preloaded = MAX_ORDER_ITEMS - 2;
    for (let round = 0; round < 10; round++) {
      const orderId = newOrderId();
      await openWithItems(orderId, preloaded);
      const gate = startGate();
      const commands = racers.map(async (racer, index) => {
        await gate.wait();
        return index % 3 === 0 ? racer.execute(submitOrder, { orderId, at: now }) : racer.execute(addOrderItem, { orderId, sku: `sku-racer-${index}`, quantity: 1, at: now });
      });
      gate.open();
      for (const result of await Promise.allSettled(commands)) {
        if (result.status === 'rejected' && !isOrderError(result.reason)) throw result.reason;
      }
      const history = await historyOf(orderId);
      assert.deepEqual(violations(history), [], `round ${round}`);
      assert.equal(history.filter((event) => event.type === 'OrderSubmitted').length, 1, `round ${round}: submitted once`);
    }
  });
});
