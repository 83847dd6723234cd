// The names operators see: span names, metric names and units, attribute keys. Dashboards,
// alerts and the tests read them from here, so a rename is one change that the dashboard test
// catches.

export const TRACER_NAME = 'dynamic-streams-eventstore';

export const SPAN = {
  append: 'eventstore.append',
  read: 'eventstore.read',
  stream: 'eventstore.stream',
  execute: 'eventstore.execute',
  consumerHandle: 'eventstore.consumer.handle',
} as const;

export const METRIC = {
  appendDuration: { name: 'eventstore.append.duration', kind: 'histogram', unit: 's' },
  appendEvents: { name: 'eventstore.append.events', kind: 'counter', unit: '{event}' },
  appendBatchCommands: { name: 'eventstore.append.batch.commands', kind: 'histogram', unit: '{command}' },
  readDuration: { name: 'eventstore.read.duration', kind: 'histogram', unit: 's' },
  readEvents: { name: 'eventstore.read.events', kind: 'counter', unit: '{event}' },
  executeAttempts: { name: 'eventstore.execute.attempts', kind: 'histogram', unit: '{attempt}' },
  consumerLag: { name: 'eventstore.consumer.lag', kind: 'gauge', unit: '{event}' },
  replicaLag: { name: 'eventstore.replica.lag', kind: 'gauge', unit: '{event}' },
  replicaFallbacks: { name: 'eventstore.replica.fallbacks', kind: 'counter', unit: '{read}' },
  poolConnections: { name: 'eventstore.pool.connections', kind: 'gauge', unit: '{connection}' },
} as const;

export const ATTRIBUTE = {
  dbSystemName: 'db.system.name',
  dbNamespace: 'db.namespace',
  dbOperationName: 'db.operation.name',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  schema: 'eventstore.schema',
  eventCount: 'eventstore.event.count',
  appendCondition: 'eventstore.append.condition',
  /** appendCommands: how many commands the call carried (absent for append). */
  appendCommands: 'eventstore.append.commands',
  appendOutcome: 'eventstore.append.outcome',
  position: 'eventstore.position',
  batchCommands: 'eventstore.batch.commands',
  readConsistency: 'eventstore.read.consistency',
  readReplica: 'eventstore.read.replica',
  executeAttempts: 'eventstore.execute.attempts',
  consumerName: 'eventstore.consumer.name',
  poolState: 'state',
  poolName: 'db.client.connection.pool.name',
  replica: 'eventstore.replica',
  fallbackReason: 'eventstore.replica.fallback_reason',
} as const;

export type AppendOutcome = 'appended' | 'condition_failed' | 'idempotent' | 'duplicate_id' | 'aborted' | 'unknown';

/** The metadata key under which `append` stores the W3C trace context of the span that wrote an event. */
export const TRACEPARENT_KEY = 'traceparent';
