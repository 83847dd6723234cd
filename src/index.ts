export { EventStore } from './event-store.ts';
export type { AppendOptions, AppendResult, EventStoreOptions, ReadOptions, ReadResult, StreamOptions } from './event-store.ts';
export { Query, QueryItem } from './query.ts';
export type { QueryItemJSON, QueryJSON } from './query.ts';
export type { AppendCondition, EventInput, JsonValue, SequencedEvent } from './events.ts';
export { MAX_TAG_LENGTH, MAX_TYPE_LENGTH } from './events.ts';
export {
  AppendConditionFailedError,
  DuplicateEventIdError,
  EmbeddedPostgresError,
  EventStoreClosedError,
  EventStoreDatabaseError,
  EventStoreError,
  InvalidInputError,
  MigrationError,
  OperationAbortedError,
  isAppendConditionFailedError,
  isEventStoreError,
} from './errors.ts';
export type { EventStoreErrorCode } from './errors.ts';
export { startEmbeddedPostgres } from './postgres/embedded.ts';
export type { EmbeddedPostgresOptions, EmbeddedPostgresServer } from './postgres/embedded.ts';
export { schemaSql } from './postgres/migrate.ts';
