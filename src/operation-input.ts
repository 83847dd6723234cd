// Validation of append and read input, shared by the PostgreSQL and the in-memory store so that
// both reject exactly the same things with the same errors.
import { InvalidInputError, OperationAbortedError } from './errors.ts';
import { type AppendCondition } from './append-condition.ts';
import { normalizeEvent, type EventInput, type NormalizedEvent } from './events.ts';
import { describe, validatePosition } from './validation.ts';
import { Query } from './query.ts';
import type { AppendCommand, ReadResult, StreamOptions } from './store.ts';
import type { SequencedEvent } from './events.ts';

export interface PreparedAppend {
  events: NormalizedEvent[];
  condition: AppendCondition | undefined;
  /** The condition's `after`, validated; undefined without condition or without `after`. */
  after: bigint | undefined;
}

export function prepareAppend(events: EventInput | readonly EventInput[], condition: AppendCondition | undefined, signal: AbortSignal | undefined): PreparedAppend {
  if (signal?.aborted) throw new OperationAbortedError('append', signal.reason);
  const list: readonly EventInput[] = Array.isArray(events) ? events : [events as EventInput];
  if (list.length === 0) throw new InvalidInputError('events', 'needs at least one event');
  const now = new Date();
  // Array.from visits holes too (map skips them): a sparse array's hole is an event that is not an object.
  const normalized = Array.from(list, (event, index) => normalizeEvent(event, `events[${index}]`, now));
  const ids = new Set<string>();
  normalized.forEach((event, index) => {
    if (ids.has(event.id)) throw new InvalidInputError(`events[${index}].id`, `repeats id ${event.id} within the same append`);
    ids.add(event.id);
  });
  let after: bigint | undefined;
  if (condition !== undefined) {
    if (condition === null || typeof condition !== 'object') throw new InvalidInputError('condition', `must be an object, got ${describe(condition)}`);
    if (!(condition.failIfEventsMatch instanceof Query)) {
      throw new InvalidInputError('condition.failIfEventsMatch', `must be a Query, got ${describe(condition.failIfEventsMatch)}`);
    }
    after = condition.after === undefined ? undefined : validatePosition(condition.after, 'condition.after');
  }
  return { events: normalized, condition, after };
}

export interface PreparedCommand extends PreparedAppend {
  /** As the caller gave it. */
  input: AppendCommand;
}

/**
 * Validates appendCommands' input: at least one command, each as `append` takes it (paths name
 * the command: `commands[2].events[0].type`), and no event id twice in the whole call.
 */
export function prepareCommands(commands: readonly AppendCommand[], signal: AbortSignal | undefined): PreparedCommand[] {
  if (signal?.aborted) throw new OperationAbortedError('append', signal.reason);
  if (!Array.isArray(commands)) throw new InvalidInputError('commands', `must be an array of { events, condition? }, got ${describe(commands)}`);
  if (commands.length === 0) throw new InvalidInputError('commands', 'needs at least one command');
  const ids = new Map<string, number>();
  return Array.from(commands, (command: AppendCommand | undefined, index) => {
    if (command === null || typeof command !== 'object' || Array.isArray(command)) {
      throw new InvalidInputError(`commands[${index}]`, `must be an object { events, condition? }, got ${describe(command)}`);
    }
    let prepared: PreparedAppend;
    try {
      prepared = prepareAppend(command.events, command.condition, undefined);
    } catch (error) {
      if (error instanceof InvalidInputError) throw new InvalidInputError(`commands[${index}].${error.path}`, error.message.slice(error.path.length + 2));
      throw error;
    }
    prepared.events.forEach((event, eventIndex) => {
      const earlier = ids.get(event.id);
      if (earlier !== undefined) throw new InvalidInputError(`commands[${index}].events[${eventIndex}].id`, `repeats id ${event.id} of command ${earlier} within the same call`);
      ids.set(event.id, index);
    });
    return { ...prepared, input: command };
  });
}

export interface ValidatedRead {
  after: bigint;
  /** Exclusive upper bound; undefined: none. */
  before: bigint | undefined;
  limit: number | undefined;
  backwards: boolean;
}

export function validateRead(query: unknown, options: { after?: bigint; before?: bigint; limit?: number; backwards?: boolean }): ValidatedRead {
  if (!(query instanceof Query)) throw new InvalidInputError('query', `must be a Query, got ${describe(query)}`);
  const after = options.after === undefined ? 0n : validatePosition(options.after, 'after');
  // Any position is a valid bound, also one that leaves no position between `after` and it
  // (0n, 1n, or at most after + 1): a pager that reached the first event asks for the page
  // below it, and gets an empty page rather than an error.
  const before = options.before === undefined ? undefined : validatePosition(options.before, 'before');
  const limit = options.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw new InvalidInputError('limit', `must be a positive integer, got ${describe(limit)}`);
  if (options.backwards !== undefined && typeof options.backwards !== 'boolean') throw new InvalidInputError('backwards', `must be a boolean, got ${describe(options.backwards)}`);
  return { after, before, limit, backwards: options.backwards ?? false };
}

/**
 * `stream()` on top of a paged read: validates like `stream()`, fetches the next page while the
 * caller works through this one, and ends before `options.before` and at the head the first page
 * saw. Every page is read with the caller's `before` (undefined: none).
 */
export async function* streamPages<Data>(
  readPage: (after: bigint, before: bigint | undefined, limit: number, signal: AbortSignal | undefined) => Promise<ReadResult<Data>>,
  query: unknown,
  options: StreamOptions,
): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
  if (!(query instanceof Query)) throw new InvalidInputError('query', `must be a Query, got ${describe(query)}`);
  const after = options.after === undefined ? 0n : validatePosition(options.after, 'after');
  const before = options.before === undefined ? undefined : validatePosition(options.before, 'before');
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new InvalidInputError('batchSize', `must be a positive integer, got ${describe(batchSize)}`);
  const page = (from: bigint): Promise<ReadResult<Data>> => {
    const fetching = readPage(from, before, batchSize, options.signal);
    // It may fail while the caller is still busy with the previous page: handled here, thrown
    // when awaited.
    fetching.catch(() => undefined);
    return fetching;
  };
  // A caller that stops early leaves the prefetched page unawaited, which is safe: its failure is
  // already handled in page().
  let next: Promise<ReadResult<Data>> | undefined = page(after);
  let end: bigint | undefined;
  while (next) {
    const { events, head } = await next;
    next = undefined;
    // The last position the stream may yield: the first page's head, or below `before`.
    end ??= before !== undefined && before - 1n < head ? before - 1n : head;
    const last = events.at(-1);
    if (events.length === batchSize && last !== undefined && last.position < end) next = page(last.position);
    for (const event of events) {
      if (event.position > end) return;
      yield event;
    }
  }
}
