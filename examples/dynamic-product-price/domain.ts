// Dynamic product price, an example of the DCB specification (dcb.events): an order must use the
// product's current price, yet a customer who saw a price shortly before it changed may still pay
// it. The price a customer may pay depends on the product's price history and on the time of the
// order, so the decision reads exactly that history (events tagged `product:<id>`): orders of the
// same product never conflict with each other, only a price change does.
//
// Time is part of every command (`at`) and of every event (`occurredAt`): decisions never read
// the clock, so they are deterministic and testable.
import { defineCommandHandler, defineProjection, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload per event type. Prices are integers in cents, so that comparing them is exact. */
export interface ProductPriceEvents {
  ProductDefined: { productId: string; price: number };
  ProductPriceChanged: { productId: string; newPrice: number };
  ProductOrdered: { productId: string; price: number };
  ProductsOrdered: { items: OrderedItem[] };
}

export interface OrderedItem {
  productId: string;
  price: number;
}

export const productTag = (productId: string): string => `product:${productId}`;

export function productDefined(productId: string, price: number, at: Date): EventInput<ProductPriceEvents['ProductDefined']> {
  return { type: 'ProductDefined', tags: [productTag(productId)], data: { productId, price }, occurredAt: at };
}

export function productPriceChanged(productId: string, newPrice: number, at: Date): EventInput<ProductPriceEvents['ProductPriceChanged']> {
  return { type: 'ProductPriceChanged', tags: [productTag(productId)], data: { productId, newPrice }, occurredAt: at };
}

export function productOrdered(productId: string, price: number, at: Date): EventInput<ProductPriceEvents['ProductOrdered']> {
  return { type: 'ProductOrdered', tags: [productTag(productId)], data: { productId, price }, occurredAt: at };
}

/** One event for the whole cart, tagged with every product in it. */
export function productsOrdered(items: readonly OrderedItem[], at: Date): EventInput<ProductPriceEvents['ProductsOrdered']> {
  return { type: 'ProductsOrdered', tags: items.map((item) => productTag(item.productId)), data: { items: [...items] }, occurredAt: at };
}

// ---------------------------------------------------------------------------------------------
// Errors

/** After a price change, the previous price is accepted this much longer (10 minutes). */
export const PRICE_GRACE_PERIOD_MS = 10 * 60 * 1000;

export type ProductPriceErrorCode = 'PRODUCT_ALREADY_DEFINED' | 'PRODUCT_NOT_FOUND' | 'INVALID_PRODUCT_PRICE' | 'EMPTY_CART';

/** A rule rejected the command; nothing was appended, and repeating it will not help. */
export class ProductPriceError extends Error {
  readonly code: ProductPriceErrorCode;

  constructor(code: ProductPriceErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class ProductAlreadyDefinedError extends ProductPriceError {
  constructor(readonly productId: string) {
    super('PRODUCT_ALREADY_DEFINED', `product ${productId} is already defined`);
  }
}

export class ProductNotFoundError extends ProductPriceError {
  constructor(readonly productId: string) {
    super('PRODUCT_NOT_FOUND', `product ${productId} does not exist`);
  }
}

/** The displayed price is neither the current price nor one that changed within the grace period. */
export class InvalidProductPriceError extends ProductPriceError {
  constructor(
    readonly productId: string,
    readonly displayedPrice: number,
    /** The prices the customer could pay at the time of the order. */
    readonly validPrices: readonly number[],
  ) {
    super('INVALID_PRODUCT_PRICE', `invalid price for product ${productId}: ${displayedPrice} (valid: ${validPrices.join(', ')})`);
  }
}

export class EmptyCartError extends ProductPriceError {
  constructor() {
    super('EMPTY_CART', 'the cart is empty');
  }
}

export function isProductPriceError(error: unknown, code?: ProductPriceErrorCode): error is ProductPriceError {
  return error instanceof ProductPriceError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// Projections

export const productExists = (productId: string) =>
  defineProjection<boolean, ProductPriceEvents>({
    initialState: false,
    handlers: { ProductDefined: () => true },
    tags: [productTag(productId)],
  });

export interface ProductPrices {
  defined: boolean;
  /** The current price last; before it, the prices that changed within the grace period. */
  validPrices: number[];
}

/**
 * The prices a customer may pay at `at`: the one in effect when the grace period began
 * (`at` minus {@link PRICE_GRACE_PERIOD_MS}) and every price set since. The state depends on the
 * command's time, which is why the projection is a function of it.
 */
export const productPrices = (productId: string, at: Date) =>
  defineProjection<ProductPrices, ProductPriceEvents>({
    initialState: { defined: false, validPrices: [] },
    handlers: {
      ProductDefined: (state, event) => withPrice(state, event.data.price, event.occurredAt, at),
      ProductPriceChanged: (state, event) => withPrice(state, event.data.newPrice, event.occurredAt, at),
    },
    tags: [productTag(productId)],
  });

function withPrice(state: ProductPrices, price: number, setAt: Date, at: Date): ProductPrices {
  // A price set before the grace period began replaces all earlier ones: they had been replaced
  // for longer than the grace period at the time of the order.
  const beforeGracePeriod = setAt.getTime() < at.getTime() - PRICE_GRACE_PERIOD_MS;
  return { defined: true, validPrices: beforeGracePeriod ? [price] : [...state.validPrices, price] };
}

function assertPriceValid(productId: string, prices: ProductPrices | undefined, displayedPrice: number): void {
  if (!prices?.defined) throw new ProductNotFoundError(productId);
  if (!prices.validPrices.includes(displayedPrice)) throw new InvalidProductPriceError(productId, displayedPrice, prices.validPrices);
}

// ---------------------------------------------------------------------------------------------
// Commands

export interface DefineProduct {
  productId: string;
  price: number;
  at: Date;
}

export interface ChangeProductPrice {
  productId: string;
  newPrice: number;
  at: Date;
}

export interface OrderProduct {
  productId: string;
  /** The price the customer saw. */
  displayedPrice: number;
  at: Date;
}

export interface OrderProducts {
  items: ReadonlyArray<{ productId: string; displayedPrice: number }>;
  at: Date;
}

/**
 * Adds a product to the catalogue.
 *
 * Rule: a product is defined once ({@link ProductAlreadyDefinedError}).
 */
export const defineProduct = defineCommandHandler({
  projections: (command: DefineProduct) => ({ exists: productExists(command.productId) }),
  decide: (state, command) => {
    if (state.exists) throw new ProductAlreadyDefinedError(command.productId);
    return productDefined(command.productId, command.price, command.at);
  },
});

/**
 * Sets a new price; the previous one stays valid for {@link PRICE_GRACE_PERIOD_MS}. Setting the
 * price it has already changes nothing.
 *
 * Rule: the product exists ({@link ProductNotFoundError}).
 */
export const changeProductPrice = defineCommandHandler({
  projections: (command: ChangeProductPrice) => ({ prices: productPrices(command.productId, command.at) }),
  decide: (state, command) => {
    if (!state.prices.defined) throw new ProductNotFoundError(command.productId);
    if (state.prices.validPrices.at(-1) === command.newPrice) return;
    return productPriceChanged(command.productId, command.newPrice, command.at);
  },
});

/**
 * Orders one product at the price the customer saw.
 *
 * Rules: the product exists ({@link ProductNotFoundError}); the displayed price is the current
 * price, or one that was replaced at most {@link PRICE_GRACE_PERIOD_MS} before the order
 * ({@link InvalidProductPriceError}). A price change appended between the decision's read and its
 * append fails the append condition, and the order is decided again on the new prices.
 */
export const orderProduct = defineCommandHandler({
  projections: (command: OrderProduct) => ({ prices: productPrices(command.productId, command.at) }),
  decide: (state, command) => {
    assertPriceValid(command.productId, state.prices, command.displayedPrice);
    return productOrdered(command.productId, command.displayedPrice, command.at);
  },
});

/**
 * Orders a cart of products in one event. One decision model spans the price history of every
 * product in the cart (one projection per product, read with one query), so a price change of any
 * of them between read and append fails the append condition, and a change of a product not in
 * the cart does not.
 *
 * Rules: the cart is not empty ({@link EmptyCartError}); for each product, the rules of
 * {@link orderProduct}; the error names the first product that breaks one.
 */
export const orderProducts = defineCommandHandler({
  projections: (command: OrderProducts) => {
    // Checked here, before the decision model is read: a model needs at least one projection.
    if (command.items.length === 0) throw new EmptyCartError();
    return Object.fromEntries(command.items.map((item) => [item.productId, productPrices(item.productId, command.at)]));
  },
  decide: (state, command) => {
    for (const item of command.items) assertPriceValid(item.productId, state[item.productId], item.displayedPrice);
    return productsOrdered(
      command.items.map((item) => ({ productId: item.productId, price: item.displayedPrice })),
      command.at,
    );
  },
});
