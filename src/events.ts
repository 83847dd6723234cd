import { validate as isUuid } from 'uuid';
import { uuidv7 } from './uuid7.ts';
import { InvalidInputError } from './errors.ts';
import { assertJson, describe, validateStorableDate, validateTag, validateType } from './validation.ts';

/** Any value that survives a JSON round trip unchanged. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** An event to append. */
export interface EventInput<Data = unknown> {
  /** Event type, 1 to 255 characters. */
  type: string;
  /** JSON payload (object, array or scalar). */
  data: Data;
  /** Opaque strings such as `book:42`, 1 to 255 characters each; duplicates are removed. */
  tags?: readonly string[];
  /** JSON object of metadata (correlation id, user, ...). Defaults to `{}`. */
  metadata?: Record<string, unknown>;
  /** UUID of the event. Generated (UUIDv7) when absent. Supply it to make retries idempotent. */
  id?: string;
  /** When it happened in the domain. Defaults to now. */
  occurredAt?: Date;
}

/** An event as stored, with its position in the log. */
export interface SequencedEvent<Data = unknown> {
  /** Gap-free, strictly increasing in commit order, starting at 1. */
  position: bigint;
  id: string;
  type: string;
  /** Sorted, without duplicates. */
  tags: string[];
  data: Data;
  metadata: Record<string, unknown>;
  occurredAt: Date;
  /** Set by the store when the event was committed. */
  recordedAt: Date;
}

/** An event with its timestamps as ISO 8601 text (an export's, exact to the microsecond). */
export type TextTimedEvent = Omit<SequencedEvent, 'occurredAt' | 'recordedAt'> & { occurredAt: string; recordedAt: string };

/**
 * An event as the JSON formats carry it (the CLI's NDJSON and export lines, the HTTP API), in
 * this key order: positions as decimal strings (exact beyond 2^53), timestamps as ISO 8601.
 */
export interface EventJson {
  position: string;
  id: string;
  type: string;
  tags: string[];
  data: unknown;
  metadata: Record<string, unknown>;
  occurredAt: string;
  recordedAt: string;
}

export function eventJson(event: SequencedEvent): EventJson {
  return textTimedEventJson(event, event.occurredAt.toISOString(), event.recordedAt.toISOString());
}

/** eventJson with the timestamps given as text. */
export function textTimedEventJson(event: Omit<SequencedEvent, 'occurredAt' | 'recordedAt'>, occurredAt: string, recordedAt: string): EventJson {
  return {
    position: event.position.toString(),
    id: event.id,
    type: event.type,
    tags: event.tags,
    data: event.data,
    metadata: event.metadata,
    occurredAt,
    recordedAt,
  };
}

/** An event after validation, in the shape the append function reads (snake_case keys). */
export interface NormalizedEvent {
  id: string;
  type: string;
  tags: string[];
  data: unknown;
  metadata: unknown;
  occurred_at: string;
  /**
   * The event as the append function reads it, serialized when `append()` was called: a caller
   * changing its objects afterwards (while the append waits in the batch queue) changes nothing.
   */
  json: string;
}

/** De-duplicated and sorted, so that equal tag sets are stored (and compared on retry) identically. */
export function normalizeTags(tags: unknown, path: string): string[] {
  if (tags === undefined) return [];
  if (!Array.isArray(tags)) throw new InvalidInputError(path, `must be an array of strings, got ${describe(tags)}`);
  const set = new Set<string>();
  tags.forEach((tag, index) => set.add(validateTag(tag, `${path}[${index}]`)));
  return [...set].sort();
}

export function normalizeEvent(input: EventInput, path: string, now: Date): NormalizedEvent {
  if (input === null || typeof input !== 'object') throw new InvalidInputError(path, `must be an event object, got ${describe(input)}`);
  const type = validateType(input.type, `${path}.type`);
  const tags = normalizeTags(input.tags, `${path}.tags`);
  if (!('data' in input)) throw new InvalidInputError(`${path}.data`, 'is required (use null for an event without payload)');
  assertJson(input.data, `${path}.data`);
  let metadata: unknown = {};
  if (input.metadata !== undefined) {
    if (input.metadata === null || typeof input.metadata !== 'object' || Array.isArray(input.metadata)) {
      throw new InvalidInputError(`${path}.metadata`, `must be a JSON object, got ${describe(input.metadata)}`);
    }
    assertJson(input.metadata, `${path}.metadata`);
    // What is stored is the JSON: an object whose toJSON gives null (a NOT NULL column) or a
    // string (a Date) would not be the JSON object metadata is.
    const toJSON = (input.metadata as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const json: unknown = toJSON.call(input.metadata);
      if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new InvalidInputError(`${path}.metadata`, `must be a JSON object, but its toJSON() gives ${describe(json)}`);
    }
    metadata = input.metadata;
  }
  let id: string;
  if (input.id === undefined) {
    id = uuidv7();
  } else {
    if (typeof input.id !== 'string' || !isUuid(input.id)) throw new InvalidInputError(`${path}.id`, `must be a UUID string, got ${describe(input.id)}`);
    id = input.id.toLowerCase();
  }
  const occurredAt = input.occurredAt === undefined ? now : validateStorableDate(input.occurredAt, `${path}.occurredAt`);
  const occurred_at = occurredAt.toISOString();
  const json = JSON.stringify({ id, type, tags, data: input.data, metadata, occurred_at });
  return { id, type, tags, data: input.data, metadata, occurred_at, json };
}

/**
 * The event with one more metadata entry, unless its metadata has that key already (or is not a
 * plain object: a toJSON decides what is stored then). Used for the trace context. The entry is
 * spliced into the JSON made when append() was called (the metadata object's JSON closes right
 * before `,"occurred_at":...}`), so the event is not serialized a second time.
 */
export function withMetadataEntry(event: NormalizedEvent, key: string, value: string): NormalizedEvent {
  const metadata = event.metadata as Record<string, unknown>;
  if (Object.hasOwn(metadata, key) || typeof metadata.toJSON === 'function') return event;
  const tail = `,"occurred_at":${JSON.stringify(event.occurred_at)}}`;
  const close = event.json.length - tail.length - 1; // the metadata object's closing brace
  const entry = `${event.json[close - 1] === '{' ? '' : ','}${JSON.stringify(key)}:${JSON.stringify(value)}`;
  const json = event.json.slice(0, close) + entry + event.json.slice(close);
  return { id: event.id, type: event.type, tags: event.tags, data: event.data, metadata: { [key]: value, ...metadata }, occurred_at: event.occurred_at, json };
}
