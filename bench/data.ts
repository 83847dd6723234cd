/**
 * Deterministic benchmark data: the same seed gives the same events, on every run and for every
 * library. Entities 0 .. PRELOAD_ENTITIES-1 are the ones the scale workloads preload; workloads
 * that need boundaries nobody wrote yet take entity numbers from `freshEntities`.
 */
import type { BenchEvent, BenchQuery } from './adapter.ts';

export const PRELOAD_ENTITIES = 100_000;
export const TENANTS = 50;
export const REGIONS = ['eu-west', 'eu-central', 'us-east', 'us-west', 'ap-south'] as const;

export const EVENT_TYPES = [
  'CustomerRegistered',
  'OrderPlaced',
  'PaymentReceived',
  'OrderShipped',
  'OrderCancelled',
  'AddressChanged',
] as const;

/**
 * The types a decision about an entity reads, by entity class (entity % 3). Three fixed classes
 * let the pgbench baseline send the very same queries with one script per class.
 */
export const DECISION_TYPES: readonly (readonly string[])[] = [
  ['CustomerRegistered', 'OrderPlaced'],
  ['OrderPlaced', 'PaymentReceived', 'OrderCancelled'],
  ['OrderShipped', 'OrderCancelled', 'AddressChanged'],
];

import { seededRandom } from '../test/seeded-random.ts';

export { seededRandom };

export function randomInt(random: () => number, bound: number): number {
  return Math.floor(random() * bound);
}

export function entityTag(entity: number): string {
  return `entity:${entity}`;
}

export function decisionTypes(entity: number): readonly string[] {
  return DECISION_TYPES[entity % DECISION_TYPES.length]!;
}

/** The decision query for an entity: 2-3 of the types AND its `entity:` tag. */
export function decisionQuery(entity: number): BenchQuery {
  return { types: [...decisionTypes(entity)], tag: entityTag(entity) };
}

/** Tags: `entity:<n>` always, `tenant:<k>` always, `region:<r>` for about a third of the events. */
export function eventTags(entity: number, random: () => number): string[] {
  const tags = [entityTag(entity), `tenant:${entity % TENANTS}`];
  if (random() < 1 / 3) tags.push(`region:${REGIONS[randomInt(random, REGIONS.length)]}`);
  return tags;
}

const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Barbara', 'Edsger', 'Margaret', 'Donald', 'Frances', 'Niklaus', 'Radia'];
const LAST_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Liskov', 'Dijkstra', 'Hamilton', 'Knuth', 'Allen', 'Wirth', 'Perlman'];
const CITIES = ['Berlin', 'Lisbon', 'Toronto', 'Osaka', 'Nairobi', 'Santiago', 'Oslo', 'Austin'];
const BASE_TIME = Date.UTC(2025, 0, 1);

function hex(random: () => number, length: number): string {
  let text = '';
  while (text.length < length) text += Math.floor(random() * 0x100000000).toString(16).padStart(8, '0');
  return text.slice(0, length);
}

function uuidLike(random: () => number): string {
  const h = hex(random, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function pick<T>(random: () => number, values: readonly T[]): T {
  return values[randomInt(random, values.length)]!;
}

/** A realistic payload of about 300 bytes: ids, an amount, a name, dates and a nested address. */
export function eventData(entity: number, random: () => number): Record<string, unknown> {
  const placedAt = new Date(BASE_TIME + randomInt(random, 365 * 24 * 3600) * 1000);
  return {
    entityId: entity,
    orderId: uuidLike(random),
    customerId: uuidLike(random),
    amount: Math.round(random() * 1_000_000) / 100,
    currency: pick(random, ['EUR', 'USD', 'GBP', 'JPY']),
    customerName: `${pick(random, FIRST_NAMES)} ${pick(random, LAST_NAMES)}`,
    placedAt: placedAt.toISOString(),
    dueDate: new Date(placedAt.getTime() + 14 * 24 * 3600 * 1000).toISOString().slice(0, 10),
    address: {
      street: `${1 + randomInt(random, 250)} ${pick(random, LAST_NAMES)} Street`,
      city: pick(random, CITIES),
      postalCode: String(10000 + randomInt(random, 89999)),
    },
    lines: 1 + randomInt(random, 5),
  };
}

/** An event for the entity whose type is one its decision query reads (so boundaries grow). */
export function decisionEvent(entity: number, random: () => number): BenchEvent {
  return { type: pick(random, decisionTypes(entity)), tags: eventTags(entity, random), data: eventData(entity, random) };
}

/** Preload event number `index` (0-based): a random preload entity and any of the 6 types. */
export function preloadEvent(index: number): BenchEvent {
  const random = seededRandom(Math.imul(index + 1, 0x9e3779b1));
  const entity = randomInt(random, PRELOAD_ENTITIES);
  return { type: pick(random, EVENT_TYPES), tags: eventTags(entity, random), data: eventData(entity, random) };
}

/** Preload events [from, to). */
export function preloadEvents(from: number, to: number): BenchEvent[] {
  const events: BenchEvent[] = [];
  for (let index = from; index < to; index++) events.push(preloadEvent(index));
  return events;
}

/**
 * Entity numbers nobody wrote yet: each workload launch gets its own `base` (from the
 * orchestrator), each client its own range of a million, so clients and processes never share one.
 */
export function freshEntities(base: number, client: number): () => number {
  let next = base + client * 1_000_000;
  return () => next++;
}
