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
  RetriesExhaustedError,
  ConsumerFailedError,
  CheckpointAheadError,
  ConsumerRunningError,
  AppendOutcomeUnknownError,
  EventStoreOverloadedError,
  OperationTimeoutError,
  isAppendConditionFailedError,
  isEventStoreError,
} from './errors.ts';
export type { EventStoreErrorCode } from './errors.ts';
export { startEmbeddedPostgres } from './postgres/embedded.ts';
export type { EmbeddedPostgresOptions, EmbeddedPostgresServer } from './postgres/embedded.ts';
export { schemaSql } from './postgres/migrate.ts';
export { defineProjection } from './decisions/projection.ts';
export type { EventMap, Projection, ProjectionDefinition, ProjectionHandlers, SnapshotOptions } from './decisions/projection.ts';
export { buildDecisionModel, mergeQueries } from './decisions/decision-model.ts';
export type { BuildDecisionModelOptions, DecisionModel, DecisionModelSource, StatesOf } from './decisions/decision-model.ts';
export { defineCommandHandler, executeCommand } from './decisions/command-handler.ts';
export type { CommandHandler, CommandStore, ExecuteOptions, ExecuteResult } from './decisions/command-handler.ts';
export type { Snapshot, SnapshotKey, SnapshotStore } from './decisions/snapshots.ts';
export { eventMatchesQuery } from './query-match.ts';
export type { MatchableEvent } from './query-match.ts';
export type { SubscribeOptions } from './subscriptions/follow.ts';
export type { Consumer, ConsumerContext, ConsumerOptions, ConsumerStatus, ConsumerTransaction, ResetConsumerOptions } from './consumers/consumer.ts';
