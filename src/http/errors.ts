// How every failure leaves the server: `{ error: { code, message, ...context } }` with a status
// from one table (STATUS_TABLE, also written into the OpenAPI document and the README). The
// library's errors keep their codes; the HTTP layer adds a few of its own (auth, limits, routes).
// Nothing else reaches a client: an unexpected error is `500 INTERNAL_ERROR` without its message
// or stack, and goes to the logger instead.
import { AppendConditionFailedError } from '../append-condition.ts';
import {
  AppendOutcomeUnknownError,
  CheckpointAheadError,
  ConsumerRunningError,
  DuplicateEventIdError,
  EventStoreDatabaseError,
  EventStoreError,
  EventStoreOverloadedError,
  InvalidInputError,
  OperationTimeoutError,
} from '../errors.ts';

/** An error the HTTP layer answers with, with its own code and status. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly context: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ErrorAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: { error: { code: string; message: string; [key: string]: unknown } };
}

/** Seconds a client should wait before retrying an overloaded or closing server. */
const RETRY_AFTER_SECONDS = '1';

/** Status of each error code; documented in the OpenAPI document and the README. */
export const STATUS_TABLE: readonly { status: number; codes: string; meaning: string }[] = [
  { status: 400, codes: 'INVALID_INPUT', meaning: 'the request is malformed or refused by validation (`path` says where); nothing was changed' },
  { status: 401, codes: 'UNAUTHORIZED', meaning: 'a token is configured and the request has none, or a wrong one' },
  { status: 403, codes: 'FORBIDDEN', meaning: 'the read token was used on a route that writes (append, consumer reset)' },
  { status: 404, codes: 'NOT_FOUND, UNKNOWN_CONSUMER', meaning: 'no such route, or no consumer of that name' },
  { status: 409, codes: 'APPEND_CONDITION_FAILED', meaning: 'the append condition failed (`conflictingPosition`; for append-commands also `commandIndex`, and `conflictingCommandIndex` for a conflict with an earlier command of the request); nothing was written' },
  { status: 409, codes: 'DUPLICATE_EVENT_ID', meaning: 'event ids exist already with other content (`ids`, `existingPosition`); nothing was written' },
  { status: 409, codes: 'CONSUMER_RUNNING, CHECKPOINT_AHEAD', meaning: 'a consumer reset was refused: an instance holds its lease / its checkpoint does not fit the store' },
  { status: 413, codes: 'BODY_TOO_LARGE', meaning: 'the body is larger than the server\'s body limit; nothing was written' },
  { status: 415, codes: 'UNSUPPORTED_MEDIA_TYPE', meaning: 'a body that is not `application/json`' },
  { status: 422, codes: 'RESULT_TOO_LARGE', meaning: 'a read without `limit` matches more events than the server returns at once: page with `limit` and `after`' },
  { status: 500, codes: 'DATABASE_ERROR, INTERNAL_ERROR', meaning: 'an unexpected failure (no details are sent; the server logs them)' },
  { status: 500, codes: 'SCHEMA_TOO_OLD', meaning: 'the store\'s schema lacks a migration the request needs (append-commands of several commands needs migration 6): run `dses migrate`; nothing was written' },
  { status: 501, codes: 'NOT_AVAILABLE', meaning: 'the store behind this server has no consumers or stats (an in-memory store)' },
  { status: 503, codes: 'OVERLOADED, TIMEOUT, TOO_MANY_SUBSCRIPTIONS, STORE_CLOSED, NOT_READY', meaning: 'try again later (`Retry-After`); nothing was written' },
  { status: 504, codes: 'APPEND_OUTCOME_UNKNOWN', meaning: 'the append may or may not have been written (entirely or not at all): repeat it with the same event `ids` (given in the body); an exact repeat returns the original position and writes nothing' },
];

/** The answer for any error a route or Fastify itself throws. */
export function errorAnswer(error: unknown): ErrorAnswer {
  if (error instanceof HttpError) return answer(error.statusCode, error.code, error.message, error.context, error.headers);
  if (error instanceof AppendConditionFailedError) {
    return answer(409, error.code, error.message, {
      conflictingPosition: error.conflictingPosition === undefined ? null : error.conflictingPosition.toString(),
      ...(error.commandIndex !== undefined && { commandIndex: error.commandIndex }),
      ...(error.conflictingCommandIndex !== undefined && { conflictingCommandIndex: error.conflictingCommandIndex }),
    });
  }
  if (error instanceof InvalidInputError) return answer(400, error.code, error.message, { path: error.path });
  if (error instanceof DuplicateEventIdError) {
    return answer(409, error.code, error.message, { ids: error.ids, existingPosition: error.existingPosition === undefined ? null : error.existingPosition.toString(), ...(error.commandIndex !== undefined && { commandIndex: error.commandIndex }) });
  }
  if (error instanceof AppendOutcomeUnknownError) return answer(504, error.code, error.message, { ids: error.ids });
  if (error instanceof EventStoreOverloadedError) return answer(503, error.code, error.message, {}, { 'retry-after': RETRY_AFTER_SECONDS });
  if (error instanceof OperationTimeoutError) return answer(503, error.code, error.message, { operation: error.operation }, { 'retry-after': RETRY_AFTER_SECONDS });
  if (error instanceof ConsumerRunningError) return answer(409, error.code, error.message, { consumer: error.consumer });
  if (error instanceof CheckpointAheadError) return answer(409, error.code, error.message, { consumer: error.consumer });
  if (error instanceof EventStoreDatabaseError) return answer(500, error.code, 'the database reported an unexpected error (see the server\'s log)');
  if (error instanceof EventStoreError) {
    if (error.code === 'STORE_CLOSED' || error.code === 'ABORTED') return answer(503, error.code, error.message, {}, { 'retry-after': RETRY_AFTER_SECONDS });
    return answer(500, error.code, error.message);
  }
  const fastify = fastifyError(error);
  if (fastify) return fastify;
  return answer(500, 'INTERNAL_ERROR', 'internal error (see the server\'s log)');
}

/** Fastify's own errors: validation, body parsing and limits. */
function fastifyError(error: unknown): ErrorAnswer | undefined {
  if (error === null || typeof error !== 'object') return undefined;
  const record = error as { code?: unknown; statusCode?: unknown; message?: unknown; validation?: unknown; validationContext?: unknown };
  if (Array.isArray(record.validation)) {
    const first = record.validation[0] as { instancePath?: string; params?: Record<string, unknown>; message?: string } | undefined;
    const path = validationPath(String(record.validationContext ?? ''), first);
    return answer(400, 'INVALID_INPUT', `${path}: ${first?.message ?? 'is invalid'}`, { path });
  }
  if (record.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return answer(413, 'BODY_TOO_LARGE', 'the request body is larger than the server accepts; nothing was written');
  if (record.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return answer(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  const status = typeof record.statusCode === 'number' ? record.statusCode : 0;
  if (status >= 400 && status < 500) {
    // Bad JSON, an empty body, a bad content length: the client's mistake, described by Fastify.
    return answer(400, 'INVALID_INPUT', `body: ${typeof record.message === 'string' ? record.message : 'is invalid'}`, { path: 'body' });
  }
  return undefined;
}

/** `events[0].type` for the body, `after` for a query string parameter: the library's path style. */
function validationPath(context: string, detail: { instancePath?: string; params?: Record<string, unknown> } | undefined): string {
  const segments = (detail?.instancePath ?? '').split('/').filter((segment) => segment !== '').map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
  const extra = detail?.params?.missingProperty ?? detail?.params?.additionalProperty;
  if (typeof extra === 'string') segments.push(extra);
  let path = '';
  for (const segment of segments) path += /^\d+$/.test(segment) ? `[${segment}]` : path === '' ? segment : `.${segment}`;
  if (path === '') return context === 'body' ? 'body' : context === 'querystring' ? 'query string' : context || 'request';
  return path;
}

function answer(statusCode: number, code: string, message: string, context: Record<string, unknown> = {}, headers: Record<string, string> = {}): ErrorAnswer {
  return { statusCode, headers, body: { error: { code, message, ...context } } };
}
