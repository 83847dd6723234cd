// An event-sourced aggregate expressed with DCB, as in the DCB specification's example
// (dcb.events): every event of an order carries the tag `order:<id>`, so the order's "stream" is
// the query for that tag, and the aggregate's state is a projection over it. Loading the
// aggregate is reading that query; saving is appending with the decision model's condition,
// "no event tagged `order:<id>` after the position we read at", which is exactly a stream's
// expected-version check: two writers that loaded the same version cannot both save.
//
// Nothing here needs DCB's flexibility (that is the point): an aggregate is the special case of
// a consistency boundary that is one entity's history. A rule that spans orders (a customer's
// credit limit, say) would add a projection over other tags to the same decision model, without
// a second aggregate or a saga.
import { buildDecisionModel, defineCommandHandler, defineProjection, type DecisionModelSource, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

export interface OrderItem {
  sku: string;
  quantity: number;
}

/** Payload per event type. */
export interface OrderEvents {
  OrderOpened: { orderId: string; customerId: string };
  OrderItemAdded: { orderId: string; sku: string; quantity: number };
  OrderSubmitted: { orderId: string; items: OrderItem[] };
}

export const orderTag = (orderId: string): string => `order:${orderId}`;

export function orderOpened(orderId: string, customerId: string, at: Date): EventInput<OrderEvents['OrderOpened']> {
  return { type: 'OrderOpened', tags: [orderTag(orderId)], data: { orderId, customerId }, occurredAt: at };
}

export function orderItemAdded(orderId: string, sku: string, quantity: number, at: Date): EventInput<OrderEvents['OrderItemAdded']> {
  return { type: 'OrderItemAdded', tags: [orderTag(orderId)], data: { orderId, sku, quantity }, occurredAt: at };
}

export function orderSubmitted(orderId: string, items: readonly OrderItem[], at: Date): EventInput<OrderEvents['OrderSubmitted']> {
  return { type: 'OrderSubmitted', tags: [orderTag(orderId)], data: { orderId, items: items.map((item) => ({ ...item })) }, occurredAt: at };
}

// ---------------------------------------------------------------------------------------------
// Errors

/** An order holds at most this many different SKUs. */
export const MAX_ORDER_ITEMS = 5;

export type OrderErrorCode = 'ORDER_ALREADY_EXISTS' | 'ORDER_NOT_FOUND' | 'ORDER_NOT_OPEN' | 'ORDER_ITEM_LIMIT_REACHED' | 'ORDER_EMPTY' | 'ORDER_VERSION_CONFLICT';

/** A rule rejected the command; nothing was appended, and repeating it will not help. */
export class OrderError extends Error {
  readonly code: OrderErrorCode;

  constructor(code: OrderErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class OrderAlreadyExistsError extends OrderError {
  constructor(readonly orderId: string) {
    super('ORDER_ALREADY_EXISTS', `order ${orderId} exists already`);
  }
}

export class OrderNotFoundError extends OrderError {
  constructor(readonly orderId: string) {
    super('ORDER_NOT_FOUND', `order ${orderId} does not exist`);
  }
}

/** The order was submitted; it no longer changes. */
export class OrderNotOpenError extends OrderError {
  constructor(readonly orderId: string) {
    super('ORDER_NOT_OPEN', `order ${orderId} was submitted and can no longer change`);
  }
}

export class OrderItemLimitReachedError extends OrderError {
  constructor(
    readonly orderId: string,
    readonly sku: string,
  ) {
    super('ORDER_ITEM_LIMIT_REACHED', `order ${orderId} holds ${MAX_ORDER_ITEMS} items already; ${sku} is not one of them`);
  }
}

export class OrderEmptyError extends OrderError {
  constructor(readonly orderId: string) {
    super('ORDER_EMPTY', `order ${orderId} has no items to submit`);
  }
}

/**
 * The command was made for another version of the order than the current one (someone changed
 * it since the client loaded it): load it again and decide again. As a stream's "wrong expected
 * version", or HTTP's 412 on `If-Match`.
 */
export class OrderVersionConflictError extends OrderError {
  constructor(
    readonly orderId: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super('ORDER_VERSION_CONFLICT', `order ${orderId} is at version ${actualVersion}, the command expected version ${expectedVersion}`);
  }
}

export function isOrderError(error: unknown, code?: OrderErrorCode): error is OrderError {
  return error instanceof OrderError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// The aggregate's state: a projection over its tag

export interface Order {
  /** How many events the order has: its stream version. 0 before it was opened. */
  version: number;
  status: 'new' | 'open' | 'submitted';
  customerId: string | null;
  items: OrderItem[];
}

export const orderAggregate = (orderId: string) =>
  defineProjection<Order, OrderEvents>({
    initialState: { version: 0, status: 'new', customerId: null, items: [] },
    handlers: {
      OrderOpened: (order, event) => ({ ...order, version: order.version + 1, status: 'open', customerId: event.data.customerId }),
      OrderItemAdded: (order, event) => ({ ...order, version: order.version + 1, items: withItem(order.items, event.data) }),
      OrderSubmitted: (order) => ({ ...order, version: order.version + 1, status: 'submitted' }),
    },
    tags: [orderTag(orderId)],
  });

/** Adding a SKU the order holds adds to its quantity. */
function withItem(items: readonly OrderItem[], added: OrderItem): OrderItem[] {
  const held = items.some((item) => item.sku === added.sku);
  return held ? items.map((item) => (item.sku === added.sku ? { sku: item.sku, quantity: item.quantity + added.quantity } : item)) : [...items, { sku: added.sku, quantity: added.quantity }];
}

/** Loads an order for display; its `version` is what a client sends back as `expectedVersion`. */
export async function loadOrder(store: DecisionModelSource, orderId: string): Promise<Order> {
  return (await buildDecisionModel(store, { order: orderAggregate(orderId) })).state.order;
}

// ---------------------------------------------------------------------------------------------
// Commands

export interface OrderCommand {
  orderId: string;
  at: Date;
  /** The version the client saw. Given, the command is rejected if the order changed since. */
  expectedVersion?: number;
}

export interface OpenOrder extends OrderCommand {
  customerId: string;
}

export interface AddOrderItem extends OrderCommand {
  sku: string;
  quantity: number;
}

export type SubmitOrder = OrderCommand;

/**
 * A command on one order, written like a method of the aggregate: `decide` gets the order's
 * state, loaded from its events, and returns the new events. The append condition makes the save
 * fail if the order got an event after the load; `store.execute` then loads and decides again.
 */
function orderCommandHandler<Command extends OrderCommand>(decide: (order: Order, command: Command) => EventInput | undefined) {
  return defineCommandHandler({
    projections: (command: Command) => ({ order: orderAggregate(command.orderId) }),
    decide: (state, command) => {
      const { order } = state;
      if (command.expectedVersion !== undefined && command.expectedVersion !== order.version) {
        throw new OrderVersionConflictError(command.orderId, command.expectedVersion, order.version);
      }
      return decide(order, command);
    },
  });
}

function assertOpen(order: Order, orderId: string): void {
  if (order.status === 'new') throw new OrderNotFoundError(orderId);
  if (order.status === 'submitted') throw new OrderNotOpenError(orderId);
}

/**
 * Opens an order for a customer.
 *
 * Rules: the order does not exist yet ({@link OrderAlreadyExistsError}); the expected version, if
 * given, is the current one ({@link OrderVersionConflictError}).
 */
export const openOrder = orderCommandHandler<OpenOrder>((order, command) => {
  if (order.status !== 'new') throw new OrderAlreadyExistsError(command.orderId);
  return orderOpened(command.orderId, command.customerId, command.at);
});

/**
 * Adds a quantity of a SKU to an order.
 *
 * Rules: the order exists ({@link OrderNotFoundError}) and is not submitted
 * ({@link OrderNotOpenError}); it holds fewer than {@link MAX_ORDER_ITEMS} SKUs, or this one
 * ({@link OrderItemLimitReachedError}); the expected version, if given, is the current one
 * ({@link OrderVersionConflictError}).
 */
export const addOrderItem = orderCommandHandler<AddOrderItem>((order, command) => {
  assertOpen(order, command.orderId);
  const held = order.items.some((item) => item.sku === command.sku);
  if (!held && order.items.length >= MAX_ORDER_ITEMS) throw new OrderItemLimitReachedError(command.orderId, command.sku);
  return orderItemAdded(command.orderId, command.sku, command.quantity, command.at);
});

/**
 * Submits an order with the items it holds.
 *
 * Rules: the order exists ({@link OrderNotFoundError}) and is not submitted
 * ({@link OrderNotOpenError}); it holds an item ({@link OrderEmptyError}); the expected version,
 * if given, is the current one ({@link OrderVersionConflictError}).
 */
export const submitOrder = orderCommandHandler<SubmitOrder>((order, command) => {
  assertOpen(order, command.orderId);
  if (order.items.length === 0) throw new OrderEmptyError(command.orderId);
  return orderSubmitted(command.orderId, order.items, command.at);
});
