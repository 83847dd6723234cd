// The JSON schemas of every request and response. Fastify validates each request against them
// (Ajv, no type coercion, unknown fields refused), and the OpenAPI document is generated from
// the same objects, so the document cannot drift from what the server checks. The query-size
// limits are part of the schemas: an oversized query is refused before it reaches the store.
import { MAX_TAG_LENGTH, MAX_TYPE_LENGTH } from '../validation.ts';

export type JsonSchema = Record<string, unknown>;

export interface SchemaLimits {
  maxEventsPerAppend: number;
  maxQueryItems: number;
  maxTypesPerItem: number;
  maxTagsPerItem: number;
  maxPredicatesPerItem: number;
  maxReadLimit: number;
}

/** A position: a decimal string, so that it stays exact beyond 2^53. */
export const positionSchema: JsonSchema = { type: 'string', pattern: '^(0|[1-9][0-9]{0,18})$', description: 'a position, as a decimal string', examples: ['42'] };

export function schemas(limits: SchemaLimits) {
  const type = { type: 'string', minLength: 1, maxLength: MAX_TYPE_LENGTH };
  const tag = { type: 'string', minLength: 1, maxLength: MAX_TAG_LENGTH };
  const predicates = { type: 'array', minItems: 1, maxItems: limits.maxPredicatesPerItem, items: {} };
  const queryItem: JsonSchema = {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    description: 'matches events whose type is one of `types` AND that carry all `tags` AND whose data contains any (or all) of the predicates',
    properties: {
      types: { type: 'array', minItems: 1, maxItems: limits.maxTypesPerItem, items: type },
      tags: { type: 'array', minItems: 1, maxItems: limits.maxTagsPerItem, items: tag },
      anyPredicateOf: predicates,
      allPredicatesOf: predicates,
    },
  };
  const query: JsonSchema = {
    type: 'object',
    additionalProperties: false,
    required: ['items'],
    description: 'a DCB query: the OR of its items; `{ "items": [] }` matches every event',
    properties: {
      items: { type: 'array', maxItems: limits.maxQueryItems, items: queryItem },
      occurredFrom: { type: 'string', description: 'ISO 8601, inclusive' },
      occurredUntil: { type: 'string', description: 'ISO 8601, inclusive' },
    },
    examples: [{ items: [{ types: ['CourseDefined', 'StudentSubscribed'], tags: ['course:c1'] }] }],
  };
  const eventInput: JsonSchema = {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'data'],
    properties: {
      type,
      data: { description: 'any JSON value (null for none)' },
      tags: { type: 'array', maxItems: 1000, items: tag },
      metadata: { type: 'object' },
      id: { type: 'string', description: 'a UUID; give it to make a retry idempotent' },
      occurredAt: { type: 'string', description: 'ISO 8601; default now' },
    },
  };
  const sequencedEvent: JsonSchema = {
    type: 'object',
    required: ['position', 'id', 'type', 'tags', 'data', 'metadata', 'occurredAt', 'recordedAt'],
    properties: {
      position: positionSchema,
      id: { type: 'string' },
      type: { type: 'string' },
      tags: { type: 'array', items: { type: 'string' } },
      data: {},
      metadata: { type: 'object' },
      occurredAt: { type: 'string' },
      recordedAt: { type: 'string' },
    },
  };
  const readResult: JsonSchema = {
    type: 'object',
    required: ['events', 'head'],
    properties: { events: { type: 'array', items: sequencedEvent }, head: { ...positionSchema, description: 'the head of the snapshot the events were read from: use it as the condition\'s `after`' } },
  };
  const limit = { type: 'integer', minimum: 1, maximum: limits.maxReadLimit };
  const limitText = { type: 'string', pattern: '^[1-9][0-9]{0,9}$', description: `at most this many events (up to ${limits.maxReadLimit})` };
  const booleanText = { type: 'string', enum: ['true', 'false'] };

  // The dcb.events test-suite shape: items may name empty lists (no constraint), positions are numbers.
  const dcbQuery: JsonSchema = {
    type: 'object',
    required: ['items'],
    properties: {
      items: {
        type: 'array',
        maxItems: limits.maxQueryItems,
        items: {
          type: 'object',
          properties: { types: { type: 'array', maxItems: limits.maxTypesPerItem, items: type }, tags: { type: 'array', maxItems: limits.maxTagsPerItem, items: tag } },
        },
      },
    },
  };
  const appendCondition = {
    type: 'object',
    additionalProperties: false,
    required: ['failIfEventsMatch'],
    properties: { failIfEventsMatch: query, after: { ...positionSchema, description: 'exclusive; absent: fail if any matching event exists at all' } },
  };
  return {
    query,
    queryItem,
    eventInput,
    sequencedEvent,
    readResult,
    appendBody: {
      type: 'object',
      additionalProperties: false,
      required: ['events'],
      properties: {
        events: { type: 'array', minItems: 1, maxItems: limits.maxEventsPerAppend, items: eventInput },
        condition: appendCondition,
      },
    } as JsonSchema,
    appendResult: { type: 'object', required: ['position'], properties: { position: { ...positionSchema, description: 'position of the last event written' } } } as JsonSchema,
    appendCommandsBody: {
      type: 'object',
      additionalProperties: false,
      required: ['commands'],
      properties: {
        commands: {
          type: 'array',
          minItems: 1,
          maxItems: limits.maxEventsPerAppend,
          description: `all written, or none; at most ${limits.maxEventsPerAppend} events in all`,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['events'],
            properties: {
              events: { type: 'array', minItems: 1, maxItems: limits.maxEventsPerAppend, items: eventInput },
              condition: { ...appendCondition, description: 'checked in order: it sees the stored events and those of the commands before it' },
            },
          },
        },
      },
    } as JsonSchema,
    appendCommandsResult: {
      type: 'object',
      required: ['positions', 'position'],
      properties: {
        positions: { type: 'array', items: positionSchema, description: "position of each command's last event, in the order given" },
        position: { ...positionSchema, description: 'position of the last event written' },
      },
    } as JsonSchema,
    readBody: {
      type: 'object',
      additionalProperties: false,
      required: ['query'],
      properties: {
        query,
        after: { ...positionSchema, description: 'only events after this position (exclusive)' },
        before: { ...positionSchema, description: 'only events before this position (exclusive); with `backwards` and `limit`, the next older page is `before` = the oldest position of this one' },
        limit,
        backwards: { type: 'boolean' },
      },
    } as JsonSchema,
    eventsQueryString: {
      type: 'object',
      additionalProperties: false,
      properties: {
        types: { type: 'string', minLength: 1, description: 'event types, comma-separated (one query item with the tags)' },
        tags: { type: 'string', minLength: 1, description: 'tags the events all carry, comma-separated' },
        after: { ...positionSchema, description: 'only events after this position (exclusive)' },
        before: { ...positionSchema, description: 'only events before this position (exclusive)' },
        limit: limitText,
        backwards: booleanText,
      },
    } as JsonSchema,
    headResult: { type: 'object', required: ['head'], properties: { head: positionSchema } } as JsonSchema,
    subscribeQueryString: {
      type: 'object',
      additionalProperties: false,
      properties: { query, after: { ...positionSchema, description: 'start after this position (exclusive); `Last-Event-ID` wins over it' } },
    } as JsonSchema,
    subscribeHeaders: { type: 'object', properties: { 'last-event-id': { ...positionSchema, description: 'the `id` of the last event received: resume after it' } } } as JsonSchema,
    consumerParams: { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 200 } } } as JsonSchema,
    resetBody: {
      type: ['object', 'null'],
      additionalProperties: false,
      properties: { position: { ...positionSchema, description: 'the new checkpoint (default 0: rebuild from the first event)' } },
    } as JsonSchema,
    dcbReadQueryString: {
      type: 'object',
      additionalProperties: false,
      required: ['query'],
      properties: {
        query: dcbQuery,
        options: {
          type: 'object',
          additionalProperties: false,
          properties: { from: { type: 'integer', minimum: 0, description: 'inclusive' }, limit: { type: 'integer', minimum: 1 }, backwards: { type: 'boolean' } },
        },
      },
    } as JsonSchema,
    dcbAppendBody: {
      type: 'object',
      required: ['events'],
      properties: {
        events: {
          type: 'array',
          minItems: 1,
          maxItems: limits.maxEventsPerAppend,
          items: { type: 'object', required: ['type'], properties: { type, tags: { type: 'array', items: tag }, data: {} } },
        },
        condition: { type: ['object', 'null'], required: ['failIfEventsMatch'], properties: { failIfEventsMatch: dcbQuery, after: { type: ['integer', 'null'], minimum: 0 } } },
      },
    } as JsonSchema,
    dcbReadResult: {
      type: 'array',
      items: { type: 'object', required: ['type', 'tags', 'data', 'position'], properties: { type: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } }, data: {}, position: { type: 'integer' } } },
    } as JsonSchema,
    dcbAppendResult: {
      type: 'object',
      required: ['durationInMicroseconds', 'appendConditionFailed'],
      properties: { durationInMicroseconds: { type: 'integer' }, appendConditionFailed: { type: 'boolean' } },
    } as JsonSchema,
    error: {
      type: 'object',
      required: ['error'],
      properties: {
        error: {
          type: 'object',
          required: ['code', 'message'],
          additionalProperties: true,
          properties: {
            code: { type: 'string' },
            message: { type: 'string' },
            path: { type: 'string', description: 'INVALID_INPUT: where in the request' },
            conflictingPosition: { type: ['string', 'null'], description: 'APPEND_CONDITION_FAILED: a conflicting event\'s position' },
            ids: { type: 'array', items: { type: 'string' }, description: 'APPEND_OUTCOME_UNKNOWN: the event ids to repeat the append with' },
          },
        },
      },
    } as JsonSchema,
  };
}

export type Schemas = ReturnType<typeof schemas>;
