/** Stable, machine-readable error codes. They never change once released. */
export type EventStoreErrorCode =
  | 'INVALID_INPUT'
  | 'APPEND_CONDITION_FAILED'
  | 'DUPLICATE_EVENT_ID'
  | 'STORE_CLOSED'
  | 'ABORTED'
  | 'MIGRATION_FAILED'
  | 'EMBEDDED_POSTGRES'
  | 'DATABASE_ERROR'
  | 'RETRIES_EXHAUSTED'
  | 'CONSUMER_FAILED'
  | 'CHECKPOINT_AHEAD'
  | 'CONSUMER_RUNNING'
  | 'APPEND_OUTCOME_UNKNOWN'
  | 'OVERLOADED'
  | 'TIMEOUT'
  | 'SCHEMA_TOO_OLD';

/**
 * Base class of every error this library throws. Switch on `code`, which is stable across
 * versions, rather than on the message.
 */
export class EventStoreError extends Error {
  readonly code: EventStoreErrorCode;

  constructor(code: EventStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The caller passed something the store refuses (bad event, bad query, bad option). Nothing was written. */
export class InvalidInputError extends EventStoreError {
  /** Where in the input the problem is, e.g. `events[2].tags[0]`. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super('INVALID_INPUT', `${path}: ${problem}`);
    this.path = path;
  }
}

/**
 * Some of the appended event ids exist already with different content, or only some of them
 * exist. (An exact retry, all ids present with the same content, is not an error: it returns the
 * original position.)
 */
export class DuplicateEventIdError extends EventStoreError {
  readonly ids: readonly string[];
  /** Position of a stored event whose id clashes. */
  readonly existingPosition: bigint | undefined;

  /** `appendCommands`: the index of the command whose ids clash. Undefined for `append`. */
  readonly commandIndex: number | undefined;

  constructor(ids: readonly string[], existingPosition: bigint | undefined, commandIndex?: number) {
    super(
      'DUPLICATE_EVENT_ID',
      `${commandIndex === undefined ? '' : `command ${commandIndex}: `}event id already stored with different content, or only part of the append was stored before: ${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', ...' : ''}`,
    );
    this.ids = ids;
    this.existingPosition = existingPosition;
    this.commandIndex = commandIndex;
  }
}

/**
 * The store's schema lacks a migration this operation needs (it was connected with
 * `migrate: false` and its migrations are applied by another tool). Nothing was written.
 */
export class SchemaTooOldError extends EventStoreError {
  readonly version: number;
  readonly needed: number;

  constructor(operation: string, version: number, needed: number) {
    super('SCHEMA_TOO_OLD', `${operation} needs migration ${needed} of the schema, which is at migration ${version}: apply the migrations (dses migrate); nothing was written`);
    this.version = version;
    this.needed = needed;
  }
}

/** The store was closed; create a new one with `EventStore.connect`. */
export class EventStoreClosedError extends EventStoreError {
  constructor() {
    super('STORE_CLOSED', 'the event store is closed');
  }
}

/**
 * The operation was cancelled through its AbortSignal before it took effect. For an append this
 * means nothing was written. `name` is `AbortError`, as for the platform's own aborts.
 */
export class OperationAbortedError extends EventStoreError {
  constructor(operation: string, reason?: unknown) {
    super('ABORTED', `${operation} was aborted`, { cause: reason });
    this.name = 'AbortError';
  }
}

/** Applying the schema migrations failed; the database was left at the last complete migration. */
export class MigrationError extends EventStoreError {
  constructor(message: string, cause?: unknown) {
    super('MIGRATION_FAILED', message, { cause });
  }
}

/** The embedded PostgreSQL server could not be started or stopped. */
export class EmbeddedPostgresError extends EventStoreError {
  constructor(message: string, cause?: unknown) {
    super('EMBEDDED_POSTGRES', message, { cause });
  }
}

/** PostgreSQL reported an error the store did not expect (connection lost, out of disk, ...). */
export class EventStoreDatabaseError extends EventStoreError {
  /** The PostgreSQL SQLSTATE, when the server sent one. */
  readonly sqlState: string | undefined;

  constructor(message: string, cause: unknown) {
    super('DATABASE_ERROR', message, { cause });
    const code = (cause as { code?: unknown } | null)?.code;
    this.sqlState = typeof code === 'string' ? code : undefined;
  }
}

/**
 * A durable consumer stopped because its handler kept failing on one event. The checkpoint stays
 * just before that event (it is never skipped); fix the handler and run the consumer again, or
 * reset it. `cause` is the handler's last error.
 */
export class ConsumerFailedError extends EventStoreError {
  readonly consumer: string;
  /** Position of the event the handler failed on. */
  readonly position: bigint;
  readonly attempts: number;

  constructor(consumer: string, position: bigint, attempts: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('CONSUMER_FAILED', `consumer "${consumer}" stopped: its handler failed ${attempts} time(s) on the event at position ${position}: ${reason}`, { cause });
    this.consumer = consumer;
    this.position = position;
    this.attempts = attempts;
  }
}

/**
 * A consumer's checkpoint does not fit the store: it is beyond the head, or the event at its
 * position is not the one the consumer processed. The store was restored from an older backup
 * (and perhaps appended to since), or the consumer was pointed at another store. Nothing is
 * processed; reset the consumer (and its read model) to rebuild.
 */
export class CheckpointAheadError extends EventStoreError {
  readonly consumer: string;
  readonly checkpoint: bigint;
  readonly head: bigint;

  constructor(consumer: string, checkpoint: bigint, head: bigint) {
    const mismatch = checkpoint > head ? `but the store's head is ${head}` : 'but another event is at that position now';
    super('CHECKPOINT_AHEAD', `consumer "${consumer}" has processed up to position ${checkpoint}, ${mismatch}: the store lost events it had (restored from an older backup?), or this is another store; reset the consumer to rebuild`);
    this.consumer = consumer;
    this.checkpoint = checkpoint;
    this.head = head;
  }
}

/** The operation needs a consumer that is not running (reset), but an instance holds its lease. */
export class ConsumerRunningError extends EventStoreError {
  readonly consumer: string;

  constructor(consumer: string) {
    super('CONSUMER_RUNNING', `consumer "${consumer}" is running (an instance holds its lease); stop it first`);
    this.consumer = consumer;
  }
}

/**
 * The store cannot tell whether the append was written: the connection was lost (or the caller
 * aborted, or the deadline passed) after the append had been sent, and resending it with the same
 * event ids until `appendTimeoutMs` did not settle the question. It is written entirely or not at
 * all, never partly, and at most once. To settle it, append the same events again with the same
 * `ids` (give your own ids when you need safe retries): an exact repeat of a stored append returns
 * its original position and writes nothing.
 */
export class AppendOutcomeUnknownError extends EventStoreError {
  /** The ids of the append's events, in order: repeat the append with these ids to settle it. */
  readonly ids: readonly string[];

  constructor(ids: readonly string[], reason: string, cause?: unknown) {
    super('APPEND_OUTCOME_UNKNOWN', `the outcome of the append is unknown (${reason}); it was written entirely or not at all: repeat it with the same event ids to find out`, { cause });
    this.ids = ids;
  }
}

/**
 * The store refused the operation at once because too much is waiting already (more than
 * `maxQueuedAppends` appends queued). Nothing was written; retry later, with backoff.
 */
export class EventStoreOverloadedError extends EventStoreError {
  readonly limit: number;

  constructor(what: string, limit: number) {
    super('OVERLOADED', `the event store is overloaded: ${what} (limit ${limit}); nothing was written, retry later`);
    this.limit = limit;
  }
}

/**
 * The operation did not finish within its deadline (`readTimeoutMs`, `connectTimeoutMs`, or
 * `appendTimeoutMs` for an append still queued, which was then never sent). For an append this
 * error means nothing was written; an append that was sent and then timed out gets
 * {@link AppendOutcomeUnknownError} instead.
 */
export class OperationTimeoutError extends EventStoreError {
  readonly operation: string;
  readonly timeoutMs: number;

  constructor(operation: string, timeoutMs: number, detail = '') {
    super('TIMEOUT', `${operation} did not finish within ${timeoutMs} ms${detail ? `: ${detail}` : ''}`);
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }
}

/** True when `error` is an EventStoreError (optionally with the given code). */
export function isEventStoreError(error: unknown, code?: EventStoreErrorCode): error is EventStoreError {
  return error instanceof EventStoreError && (code === undefined || error.code === code);
}

/** True when `error` says an append condition failed. */
