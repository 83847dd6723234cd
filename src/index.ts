export type {
  AppendCommand,
  AppendCommandsResult,
  AppendOptions,
  AppendResult,
  CloseOptions,
  CommandHandler,
  DcbEventStore,
  ExecuteOptions,
  ExecuteResult,
  HeadOptions,
  Projection,
  ReadConsistency,
  ReadOptions,
  ReadResult,
  Snapshot,
  SnapshotKey,
  SnapshotOptions,
  SnapshotStore,
  StatesOf,
  StreamOptions,
  SubscribeOptions,
} from './store.ts';
export { EventStore } from './postgres/event-store.ts';
export type { EventStoreOptions } from './postgres/event-store.ts';
export type { Logger } from './telemetry/log.ts';
export { Query, QueryItem } from './query.ts';
export type { QueryItemJSON, QueryJSON } from './query.ts';
export type { AppendCondition } from './append-condition.ts';
export type { EventInput, JsonValue, SequencedEvent } from './events.ts';
export { MAX_TAG_LENGTH, MAX_TYPE_LENGTH } from './validation.ts';
export { AppendConditionFailedError, RetriesExhaustedError, isAppendConditionFailedError } from './append-condition.ts';
export { DuplicateEventIdError, EmbeddedPostgresError, EventStoreClosedError, EventStoreDatabaseError, EventStoreError, InvalidInputError, MigrationError, OperationAbortedError, ConsumerFailedError, CheckpointAheadError, ConsumerRunningError, AppendOutcomeUnknownError, EventStoreOverloadedError, OperationTimeoutError, SchemaTooOldError, isEventStoreError } from './errors.ts';
export type { EventStoreErrorCode } from './errors.ts';
export { startEmbeddedPostgres } from './postgres/embedded.ts';
export type { EmbeddedPostgresOptions, EmbeddedPostgresServer, EmbeddedPostgresStandby } from './postgres/embedded.ts';
export { schemaSql } from './postgres/schema.ts';
export { defineProjection } from './decisions/projection.ts';
export type { EventMap, ProjectionDefinition, ProjectionHandlers } from './decisions/projection.ts';
export { buildDecisionModel, mergeQueries } from './decisions/decision-model.ts';
export type { BuildDecisionModelOptions, DecisionModel, DecisionModelSource } from './decisions/decision-model.ts';
export { defineCommandHandler, executeCommand } from './decisions/command-handler.ts';
export type { CommandStore } from './decisions/command-handler.ts';
export { eventMatchesQuery } from './query-match.ts';
export type { MatchableEvent } from './query-match.ts';
export type { Consumer, ConsumerContext, ConsumerOptions, ConsumerQueryResult, ConsumerStatus, ConsumerTransaction, ResetConsumerOptions } from './postgres/consumer-types.ts';
export { reactionId } from './decisions/automation.ts';
export type { Automation, AutomationContext, AutomationOptions, AutomationStatus, AutomationStore, Reactions } from './decisions/automation.ts';
