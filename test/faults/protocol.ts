// What the fault suite's processes say to each other. Writers and the observer append NDJSON
// records to their own file with a synchronous write before and after every call, so that a
// process killed with SIGKILL leaves a record of each call it had started (those count as
// unknown). IPC carries only control messages (run, stop, progress).
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { QueryJSON } from '../../src/index.ts';

/** The store's deadlines for the suite (short, so that a stall outlasts them in seconds). */
export interface Deadlines {
  appendTimeoutMs: number;
  readTimeoutMs: number;
  connectTimeoutMs: number;
}

export interface WriterConfig extends Deadlines {
  /** Unique across the run (a replacement for a killed writer gets a new name). */
  writer: string;
  connectionString: string;
  schema: string;
  seed: number;
  /** client: the writer picks every event id (settles by repeating); generated: the store does. */
  ids: 'client' | 'generated';
  /** Concurrent read-decide-append loops in this process (they share the store, so their appends batch). */
  loops: number;
  /** Hot boundaries: account tags every loop reads and appends to. */
  accounts: string[];
  /** Names for uniqueness claims (`username:<name>`). */
  usernames: number;
  /** Share of operations that are uniqueness claims. */
  claimShare: number;
  /** Think time between a loop's operations, ms (uniform in [0, thinkMs]). */
  thinkMs: number;
  /** Share of appends (and reads) under AbortSignal.timeout(abortAfterMs[0]..abortAfterMs[1]). */
  abortShare: number;
  abortAfterMs: [number, number];
  /**
   * Share of operations that append a 'Poison' event, which a trigger in the scenario's schema
   * makes fail in the database: it breaks the whole batch it rides in (the store must then isolate
   * it without failing the others); or (half of them) a 'Slow' one, which holds the append lock
   * for 40 ms.
   */
  poisonShare: number;
  recordFile: string;
}

export interface ObserverConfig extends Deadlines {
  connectionString: string;
  schema: string;
  consumerName: string;
  recordFile: string;
}

export type ParentMessage =
  | { type: 'run'; config: WriterConfig | ObserverConfig }
  /** Change the abort and poison shares while running (abort storms). */
  | { type: 'set'; abortShare: number; poisonShare: number }
  | { type: 'stop' }
  | { type: 'exit' };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'running' }
  | { type: 'progress'; seen: string; subscriptionErrors: number; consumerErrors: number }
  | { type: 'done' }
  | { type: 'fatal'; message: string };

export interface WireCondition {
  query: QueryJSON;
  /** Decimal, or null without `after` (uniqueness). */
  after: string | null;
}

export interface WireEvent {
  id?: string;
  type: string;
  tags: string[];
  data: unknown;
  occurredAt: string;
}

export type WireOutcome =
  | { status: 'appended'; position: string }
  | { status: 'condition-failed'; conflictingPosition: string | null }
  | { status: 'nothing-written'; code: string; message: string }
  | { status: 'unknown'; code: string; message: string; ids: string[] | null };

export type WriterRecord =
  /** Written before append() is called. `settle`: a repeat of an unknown attempt (same ids). */
  | { k: 'start'; attempt: string; t: number; events: WireEvent[]; condition: WireCondition | null; ids: 'client' | 'generated'; abortMs: number | null; settle: number }
  | { k: 'end'; attempt: string; t: number; outcome: WireOutcome; settle: number }
  | { k: 'read-start'; read: string; t: number; abortMs: number | null }
  | { k: 'read-end'; read: string; t: number; code: string | null }
  | { k: 'note'; t: number; text: string };

export type ObserverRecord =
  | { k: 'seen'; p: string; a: string | null }
  | { k: 'subscription-error'; t: number; code: string; message: string }
  | { k: 'consumer-error'; t: number; code: string; message: string }
  | { k: 'note'; t: number; text: string };

/** An append-only NDJSON file written synchronously (it survives SIGKILL of its writer). */
export class RecordFile<T> {
  readonly #fd: number;

  constructor(path: string) {
    this.#fd = openSync(path, 'a');
  }

  write(record: T): void {
    writeSync(this.#fd, `${JSON.stringify(record)}\n`);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

export function readRecords<T>(path: string): T[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const records: T[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      // A line cut short by SIGKILL mid-write: the call it describes counts as never recorded.
    }
  }
  return records;
}

/** The error's stable code, or what kind of thing it was. */
export function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? `UNTYPED:${error.name}` : 'UNTYPED';
}
