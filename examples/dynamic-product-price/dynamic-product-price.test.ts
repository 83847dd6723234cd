// Dynamic product price: Given/When/Then specifications of every rule (in memory), then the same
// handlers on PostgreSQL, racing price changes from several store instances.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  Query,
  executeCommand,
  type EventStore,
  type SequencedEvent,
} from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification } from '../../src/testing/index.ts';
import { connectToSchema, createTestStore, interferingStore, keepEventLoopAliveDuringTests, startGate } from '../../test/helpers.ts';
import {
  EmptyCartError,
  InvalidProductPriceError,
  PRICE_GRACE_PERIOD_MS,
  ProductAlreadyDefinedError,
  ProductNotFoundError,
  changeProductPrice,
  defineProduct,
  isProductPriceError,
  orderProduct,
  orderProducts,
  productDefined,
  productOrdered,
  productPriceChanged,
  productPrices,
  productsOrdered,
  type ProductPriceEvents,
} from './domain.ts';

keepEventLoopAliveDuringTests();

const now = new Date('2025-06-02T12:00:00.000Z');
const minutesAgo = (minutes: number): Date => new Date(now.getTime() - minutes * 60_000);
const invalidPriceFor =
  (productId: string) =>
  (error: unknown): boolean =>
    error instanceof InvalidProductPriceError && error.productId === productId;

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('productPrices (projection)', () => {
  test('before any price: not defined, no valid price', async () => {
    await ProjectionSpecification.for(productPrices('p1', now)).given([]).then({ defined: false, validPrices: [] });
  });

  test('a price set long ago is the only valid one; prices replaced within the grace period stay valid', async () => {
    await ProjectionSpecification.for(productPrices('p1', now))
      .given([productDefined('p1', 100, minutesAgo(60)), productPriceChanged('p1', 110, minutesAgo(30)), productPriceChanged('p1', 120, minutesAgo(8)), productPriceChanged('p1', 130, minutesAgo(2))])
      .then({ defined: true, validPrices: [110, 120, 130] });
  });

  test('only the product’s own price events count: other products and orders are ignored', async () => {
    await ProjectionSpecification.for(productPrices('p1', now))
      .given([productDefined('p1', 100, minutesAgo(60)), productDefined('p2', 999, minutesAgo(1)), productOrdered('p1', 100, minutesAgo(1)), productsOrdered([{ productId: 'p1', price: 100 }], minutesAgo(1))])
      .then({ defined: true, validPrices: [100] });
  });
});

describe('defineProduct', () => {
  const spec = CommandHandlerSpecification.for(defineProduct);

  test('a new product is defined with its price, tagged product:<id>', async () => {
    await spec.given([]).when({ productId: 'p1', price: 123, at: now }).then([productDefined('p1', 123, now)]);
  });

  test('a product already defined: ProductAlreadyDefinedError', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(5))]).when({ productId: 'p1', price: 50, at: now }).thenThrows(ProductAlreadyDefinedError);
  });
});

describe('changeProductPrice', () => {
  const spec = CommandHandlerSpecification.for(changeProductPrice);

  test('the price of a product changes', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(60))]).when({ productId: 'p1', newPrice: 134, at: now }).then([productPriceChanged('p1', 134, now)]);
  });

  test('to the price it has: nothing happens', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(60)), productPriceChanged('p1', 134, minutesAgo(30))]).when({ productId: 'p1', newPrice: 134, at: now }).thenNothing();
  });

  test('back to a price still in its grace period: a change (the current price is another one)', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(60)), productPriceChanged('p1', 134, minutesAgo(2))]).when({ productId: 'p1', newPrice: 123, at: now }).then([productPriceChanged('p1', 123, now)]);
  });

  test('a product never defined: ProductNotFoundError', async () => {
    await spec.given([productDefined('p2', 123, minutesAgo(60))]).when({ productId: 'p1', newPrice: 134, at: now }).thenThrows(ProductNotFoundError);
  });
});

describe('orderProduct', () => {
  const spec = CommandHandlerSpecification.for(orderProduct);
  const order = (displayedPrice: number, at = now) => ({ productId: 'p1', displayedPrice, at });

  test('at the current price: ordered at that price, tagged product:<id>, at the time of the command', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(20))]).when(order(123)).then([productOrdered('p1', 123, now)]);
  });

  test('at a price that was never valid: InvalidProductPriceError naming the product', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(20))]).when(order(100)).thenThrows(invalidPriceFor('p1'));
  });

  test('at the previous price, changed less than 10 minutes ago: ordered at the previous price', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(20)), productPriceChanged('p1', 134, minutesAgo(9))]).when(order(123)).then([productOrdered('p1', 123, now)]);
  });

  test('at the new price, changed less than 10 minutes ago: ordered at the new price', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(20)), productPriceChanged('p1', 134, minutesAgo(9))]).when(order(134)).then([productOrdered('p1', 134, now)]);
  });

  test('at the previous price, changed more than 10 minutes ago: InvalidProductPriceError', async () => {
    await spec.given([productDefined('p1', 123, minutesAgo(20)), productPriceChanged('p1', 134, minutesAgo(11))]).when(order(123)).thenThrows(invalidPriceFor('p1'));
  });

  test('the grace period ends exactly 10 minutes after the change', async () => {
    const given = [productDefined('p1', 123, minutesAgo(20)), productPriceChanged('p1', 134, minutesAgo(10))];
    await spec.given(given).when(order(123)).then([productOrdered('p1', 123, now)]);
    const aMillisecondLater = new Date(now.getTime() + 1);
    await spec.given(given).when(order(123, aMillisecondLater)).thenThrows(InvalidProductPriceError);
    assert.equal(PRICE_GRACE_PERIOD_MS, 10 * 60_000);
  });

  test('several changes within the grace period: each of those prices is valid, the one before them too', async () => {
    const given = [productDefined('p1', 100, minutesAgo(30)), productPriceChanged('p1', 110, minutesAgo(8)), productPriceChanged('p1', 120, minutesAgo(2))];
    for (const price of [100, 110, 120]) await spec.given(given).when(order(price)).then([productOrdered('p1', price, now)]);
    await spec.given(given).when(order(90)).thenThrows(InvalidProductPriceError);
  });

  test('a product never defined: ProductNotFoundError', async () => {
    await spec.given([productDefined('p2', 123, minutesAgo(20))]).when(order(123)).thenThrows(ProductNotFoundError);
  });

  test('errors carry a stable code and the valid prices', async () => {
    const error = new InvalidProductPriceError('p1', 100, [123, 134]);
    assert.equal(error.code, 'INVALID_PRODUCT_PRICE');
    assert.equal(error.name, 'InvalidProductPriceError');
    assert.ok(isProductPriceError(error, 'INVALID_PRODUCT_PRICE'));
    assert.ok(!isProductPriceError(error, 'PRODUCT_NOT_FOUND'));
    assert.ok(!isProductPriceError(new Error('x')));
  });
});

describe('orderProducts (shopping cart)', () => {
  const spec = CommandHandlerSpecification.for(orderProducts);
  const given = [
    productDefined('p1', 123, minutesAgo(60)),
    productDefined('p2', 321, minutesAgo(60)),
    productPriceChanged('p2', 312, minutesAgo(5)),
    productDefined('p3', 50, minutesAgo(60)),
    productPriceChanged('p3', 55, minutesAgo(15)),
  ];

  test('every displayed price valid (current or within the grace period): one event for the cart, tagged with every product', async () => {
    await spec
      .given(given)
      .when({ items: [{ productId: 'p1', displayedPrice: 123 }, { productId: 'p2', displayedPrice: 321 }, { productId: 'p3', displayedPrice: 55 }], at: now })
      .then([productsOrdered([{ productId: 'p1', price: 123 }, { productId: 'p2', price: 321 }, { productId: 'p3', price: 55 }], now)]);
  });

  test('one displayed price out of its grace period: InvalidProductPriceError naming that product, nothing ordered', async () => {
    await spec
      .given(given)
      .when({ items: [{ productId: 'p1', displayedPrice: 123 }, { productId: 'p3', displayedPrice: 50 }, { productId: 'p2', displayedPrice: 312 }], at: now })
      .thenThrows(invalidPriceFor('p3'));
  });

  test('a price that was never valid: InvalidProductPriceError naming that product', async () => {
    await spec
      .given(given)
      .when({ items: [{ productId: 'p1', displayedPrice: 123 }, { productId: 'p2', displayedPrice: 300 }], at: now })
      .thenThrows(invalidPriceFor('p2'));
  });

  test('a product never defined: ProductNotFoundError naming it', async () => {
    await spec
      .given(given)
      .when({ items: [{ productId: 'p1', displayedPrice: 123 }, { productId: 'p9', displayedPrice: 1 }], at: now })
      .thenThrows((error) => error instanceof ProductNotFoundError && error.productId === 'p9');
  });

  test('an empty cart: EmptyCartError', async () => {
    await spec.given(given).when({ items: [], at: now }).thenThrows(EmptyCartError);
  });
});

// ---------------------------------------------------------------------------------------------
// On PostgreSQL

/**
 * The test oracle: replays the log in position order and returns every order whose price was not
 * valid at its time given the price events before it. Written independently of the projection.
 */
function ordersAtInvalidPrices(events: readonly SequencedEvent[]): string[] {
  const history = new Map<string, { price: number; at: number }[]>();
  const invalid: string[] = [];
  const check = (productId: string, price: number, at: Date, position: bigint): void => {
    const graceStart = at.getTime() - PRICE_GRACE_PERIOD_MS;
    const prices = history.get(productId) ?? [];
    const inEffectAtGraceStart = prices.filter((entry) => entry.at < graceStart).at(-1)?.price;
    const setSince = prices.filter((entry) => entry.at >= graceStart).map((entry) => entry.price);
    if (price !== inEffectAtGraceStart && !setSince.includes(price)) invalid.push(`${productId} at ${price} (position ${position})`);
  };
  const record = (productId: string, price: number, at: Date): void => {
    history.set(productId, [...(history.get(productId) ?? []), { price, at: at.getTime() }]);
  };
  for (const event of events) {
    if (event.type === 'ProductDefined') {
      const data = event.data as ProductPriceEvents['ProductDefined'];
      record(data.productId, data.price, event.occurredAt);
    } else if (event.type === 'ProductPriceChanged') {
      const data = event.data as ProductPriceEvents['ProductPriceChanged'];
      record(data.productId, data.newPrice, event.occurredAt);
    } else if (event.type === 'ProductOrdered') {
      const data = event.data as ProductPriceEvents['ProductOrdered'];
      check(data.productId, data.price, event.occurredAt, event.position);
    } else if (event.type === 'ProductsOrdered') {
      for (const item of (event.data as ProductPriceEvents['ProductsOrdered']).items) check(item.productId, item.price, event.occurredAt, event.position);
    }
  }
  return invalid;
}

describe('on PostgreSQL', () => {
  const RACERS = 8;
  let store: EventStore;
  let dispose: () => Promise<void>;
  let racers: EventStore[] = [];
  const newId = (): string => `p-${randomUUID().slice(0, 8)}`;

  before(async () => {
    let schema: string;
    ({ store, schema, dispose } = await createTestStore());
    racers = await Promise.all(Array.from({ length: RACERS + 1 }, () => connectToSchema(schema, { poolSize: 2 })));
  });
  after(async () => {
    await Promise.all(racers.map((racer) => racer.close()));
    await dispose();
  });

  async function wholeLog(): Promise<SequencedEvent[]> {
    return (await store.read(Query.all())).events;
  }

  test('a price change between the read and the append fails the order’s append condition; decided again, the order is refused', async () => {
    const product = newId();
    await store.append(productDefined(product, 100, minutesAgo(60)));
    // The change took effect 11 minutes before the order: once it is known, 100 is stale.
    const racing = interferingStore(store, productPriceChanged(product, 120, minutesAgo(11)));
    await assert.rejects(executeCommand(racing.store, orderProduct, { productId: product, displayedPrice: 100, at: now }), invalidPriceFor(product));
    assert.deepEqual(racing.appends, ['AppendConditionFailedError'], 'the first decision was refused by the store; the second one by the rule');
    assert.deepEqual(ordersAtInvalidPrices(await wholeLog()), []);
  });

  test('the cart: a price change of any product in it conflicts, a change of another product does not', async () => {
    const [inCart, alsoInCart, elsewhere] = [newId(), newId(), newId()];
    await store.append([productDefined(inCart, 100, minutesAgo(60)), productDefined(alsoInCart, 200, minutesAgo(60)), productDefined(elsewhere, 300, minutesAgo(60))]);
    const cart = { items: [{ productId: inCart, displayedPrice: 100 }, { productId: alsoInCart, displayedPrice: 200 }], at: now };

    const unrelated = interferingStore(store, productPriceChanged(elsewhere, 310, minutesAgo(30)));
    await executeCommand(unrelated.store, orderProducts, cart);
    assert.deepEqual(unrelated.appends, ['appended'], 'a change outside the cart is outside the decision’s boundary');

    const related = interferingStore(store, productPriceChanged(alsoInCart, 210, minutesAgo(30)));
    await assert.rejects(executeCommand(related.store, orderProducts, cart), invalidPriceFor(alsoInCart));
    assert.deepEqual(related.appends, ['AppendConditionFailedError']);
    assert.deepEqual(ordersAtInvalidPrices(await wholeLog()), []);
  });

  test('orders of one product never conflict with each other: every order goes through on its first attempt', async () => {
    const product = newId();
    await store.execute(defineProduct, { productId: product, price: 100, at: minutesAgo(60) });
    const gate = startGate();
    const orders = racers.map(async (racer) => {
      await gate.wait();
      return racer.execute(orderProduct, { productId: product, displayedPrice: 100, at: now });
    });
    gate.open();
    const results = await Promise.all(orders);
    assert.deepEqual(results.map((result) => result.attempts), racers.map(() => 1));
  });

  /**
   * Each round: a product defined at 100 an hour ago, then, from separate store instances started
   * at one instant, a change to 120 and orders at 100. Orders placed when the change took effect
   * could still pay 100 (that is the grace period), so here the change reaches the store late: the
   * orders are placed 11 minutes after it took effect. An order that read before the change was
   * appended may go through only if it is also appended before it; once the change is in the log,
   * 100 is stale for these orders.
   */
  async function raceOrdersAgainstAPriceChange(order: (products: string[], racer: EventStore) => Promise<unknown>, productsPerOrder: number): Promise<{ accepted: number; refused: number }> {
    let accepted = 0;
    let refused = 0;
    for (let round = 0; round < 10; round++) {
      const products = Array.from({ length: productsPerOrder }, newId);
      await store.append(products.map((product) => productDefined(product, 100, minutesAgo(60))));
      const gate = startGate();
      const change = (async () => {
        await gate.wait();
        await racers[0]!.execute(changeProductPrice, { productId: products.at(-1)!, newPrice: 120, at: now });
      })();
      const orders = racers.slice(1).map(async (racer) => {
        await gate.wait();
        return order(products, racer);
      });
      gate.open();
      const [changed, ...results] = await Promise.allSettled([change, ...orders]);
      if (changed.status === 'rejected') throw changed.reason;
      for (const result of results) {
        if (result.status === 'fulfilled') accepted++;
        else if (isProductPriceError(result.reason, 'INVALID_PRODUCT_PRICE')) refused++;
        else throw result.reason;
      }
      assert.deepEqual(ordersAtInvalidPrices(await wholeLog()), [], `round ${round}`);
    }
    assert.equal(accepted + refused, 10 * RACERS);
    return { accepted, refused };
  }

  const orderTime = new Date(now.getTime() + 11 * 60_000);

  test(`race: a price change against ${RACERS} orders at the old price from ${RACERS + 1} store instances, 10 rounds: no order at a stale price`, async (t) => {
    const outcome = await raceOrdersAgainstAPriceChange(([product], racer) => racer.execute(orderProduct, { productId: product!, displayedPrice: 100, at: orderTime }), 1);
    t.diagnostic(`${outcome.accepted} orders accepted, ${outcome.refused} refused for an invalid price`);
  });

  test(`race: a price change of one product against ${RACERS} carts holding it and another product, 10 rounds: no cart at a stale price`, async (t) => {
    const outcome = await raceOrdersAgainstAPriceChange((products, racer) => racer.execute(orderProducts, { items: products.map((productId) => ({ productId, displayedPrice: 100 })), at: orderTime }), 2);
    t.diagnostic(`${outcome.accepted} carts accepted, ${outcome.refused} refused for an invalid price`);
  });
});
