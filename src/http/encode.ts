// Values between the store's types and the API's JSON: positions as decimal strings, dates as
// ISO 8601, and the request shapes turned into queries and events.
import { Query, QueryItem, type QueryJSON } from '../query.ts';
import type { EventInput } from '../events.ts';
import { InvalidInputError } from '../errors.ts';

export { eventJson, type EventJson } from '../events.ts';

/** A position the schema let through (a decimal string of at most 19 digits), within the store's range. */
export function position(text: string, path: string): bigint {
  const value = BigInt(text);
  if (value > 9_223_372_036_854_775_807n) throw new InvalidInputError(path, `is beyond the largest position (2^63 - 1), got ${text}`);
  return value;
}

/** The library's own parsing, with its paths prefixed by where the query was in the request. */
export function queryOf(json: unknown, path: string): Query {
  try {
    return Query.fromJSON(json as QueryJSON);
  } catch (error) {
    if (error instanceof InvalidInputError) throw new InvalidInputError(`${path}${error.path.replace(/^Query/, '')}`, error.message.slice(error.path.length + 2));
    throw error;
  }
}

export interface EventInputJson {
  type: string;
  data: unknown;
  tags?: string[];
  metadata?: Record<string, unknown>;
  id?: string;
  occurredAt?: string;
}

export function eventInputOf(json: EventInputJson, path: string): EventInput {
  const event: EventInput = { type: json.type, data: json.data };
  if (json.tags !== undefined) event.tags = json.tags;
  if (json.metadata !== undefined) event.metadata = json.metadata;
  if (json.id !== undefined) event.id = json.id;
  if (json.occurredAt !== undefined) {
    const date = new Date(json.occurredAt);
    if (Number.isNaN(date.getTime())) throw new InvalidInputError(`${path}.occurredAt`, `is not an ISO 8601 date: ${JSON.stringify(json.occurredAt)}`);
    event.occurredAt = date;
  }
  return event;
}

/** The dcb.events query shape: empty `types` or `tags` mean no constraint, an item with neither matches every event. */
export function dcbQueryOf(json: { items: { types?: string[]; tags?: string[] }[] }, path: string): Query {
  const items: QueryItem[] = [];
  for (const [index, item] of json.items.entries()) {
    const types = item.types ?? [];
    const tags = item.tags ?? [];
    if (types.length === 0 && tags.length === 0) return Query.all();
    try {
      let built = types.length > 0 ? QueryItem.types(...types) : QueryItem.tags(...tags);
      if (types.length > 0 && tags.length > 0) built = built.tags(...tags);
      items.push(built);
    } catch (error) {
      if (error instanceof InvalidInputError) throw new InvalidInputError(`${path}.items[${index}]`, error.message);
      throw error;
    }
  }
  return items.length === 0 ? Query.all() : Query.of(...items);
}
