import { EventStoreClosedError, InvalidInputError, OperationAbortedError } from '../errors.ts';
import { type SequencedEvent } from '../events.ts';
import { describe, validatePosition } from '../validation.ts';
import type { ReadOptions, ReadResult, SubscribeOptions } from '../store.ts';
import { backoffDelay } from '../util/backoff.ts';
import { MAX_TIMER_MS, pause } from '../util/wait.ts';
import { Query } from '../query.ts';

/** What a subscription needs from a store. */
export interface FollowSource {
  read<Data>(query: Query, options: ReadOptions): Promise<ReadResult<Data>>;
  /** A mark taken before a read, for waitForAppend: which wake-ups the read may have missed. */
  mark(): number;
  /**
   * Resolves once an append may have moved the head beyond `position` (also one announced since
   * `since` = mark() taken before the read that returned `position`), after `timeoutMs`, or when
   * `signal` aborts or the store closes, whichever is first. Never rejects.
   */
  waitForAppend(position: bigint, since: number, timeoutMs: number, signal: AbortSignal): Promise<void>;
  readonly closed: boolean;
  /**
   * Aborted when the store closes. Every wait of a subscription (a read, the backoff after a
   * failed one, the wait for appends) ends on it, so close() ends a subscription promptly even
   * while the server is unreachable.
   */
  readonly closedSignal: AbortSignal;
  /** Errors after which reading again may succeed (connection lost, server restarting). */
  isTransient(error: unknown): boolean;
}

export interface ValidatedSubscribeOptions {
  after: bigint;
  batchSize: number;
  pollIntervalMs: number;
  signal: AbortSignal | undefined;
}

export function validateSubscribeOptions(query: unknown, options: SubscribeOptions): ValidatedSubscribeOptions {
  if (!(query instanceof Query)) throw new InvalidInputError('query', `must be a Query, got ${describe(query)}`);
  if (options === null || typeof options !== 'object') throw new InvalidInputError('options', `must be an object, got ${describe(options)}`);
  const after = options.after === undefined ? 0n : validatePosition(options.after, 'after');
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new InvalidInputError('batchSize', `must be a positive integer, got ${describe(batchSize)}`);
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  if (typeof pollIntervalMs !== 'number' || !Number.isFinite(pollIntervalMs) || pollIntervalMs < 1 || pollIntervalMs > MAX_TIMER_MS) {
    throw new InvalidInputError('pollIntervalMs', `must be a number from 1 to ${MAX_TIMER_MS}, got ${describe(pollIntervalMs)}`);
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new InvalidInputError('signal', `must be an AbortSignal, got ${describe(options.signal)}`);
  return { after, batchSize, pollIntervalMs, signal: options.signal };
}

/**
 * The events matching `query` after `options.after`, then every matching event appended later, in
 * position order, each once. Ends when the signal aborts or the store closes.
 *
 * Why nothing is skipped: a read returns the events up to its head from one snapshot, and every
 * event at or below that head is already visible (positions are assigned under the append lock,
 * in commit order). So after a read that returned fewer than `batchSize` events, everything
 * matching up to the head has been seen and the cursor may jump to the head; the next read asks
 * only for later positions. Why nothing repeats: the cursor only moves forward, and each read
 * asks for positions above it.
 */
export function follow<Data>(source: FollowSource, query: Query, options: ValidatedSubscribeOptions): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
  // One controller per subscription, aborted by the caller's signal, by the store's close() and by
  // return()/throw(). A generator's own return() waits behind a pending next() (one waiting for
  // new events may wait for the whole poll interval); aborting first makes that next() finish at
  // once.
  const controller = new AbortController();
  const generator = followEvents<Data>(source, query, options, controller);
  const subscription: AsyncGenerator<SequencedEvent<Data>, void, undefined> = {
    next: () => generator.next(),
    return: (value) => {
      controller.abort();
      return generator.return(value);
    },
    throw: (error) => {
      controller.abort();
      return generator.throw(error);
    },
    [Symbol.asyncIterator]() {
      return subscription;
    },
  };
  return subscription;
}

async function* followEvents<Data>(source: FollowSource, query: Query, options: ValidatedSubscribeOptions, controller: AbortController): AsyncGenerator<SequencedEvent<Data>, void, undefined> {
  const outer = options.signal;
  const closed = source.closedSignal;
  const onAbort = (): void => controller.abort(outer?.reason);
  const onClose = (): void => controller.abort(closed.reason);
  if (outer?.aborted || closed.aborted) return;
  outer?.addEventListener('abort', onAbort, { once: true });
  closed.addEventListener('abort', onClose, { once: true });
  const signal = controller.signal;
  let cursor = options.after;
  let failures = 0;
  try {
    while (!signal.aborted && !source.closed) {
      let result: ReadResult<Data>;
      const mark = source.mark();
      try {
        result = await source.read<Data>(query, { after: cursor, limit: options.batchSize, signal });
        failures = 0;
      } catch (error) {
        if (signal.aborted || error instanceof OperationAbortedError || error instanceof EventStoreClosedError) return;
        if (!source.isTransient(error)) throw error;
        // Connection lost or server restarting: try again, backing off up to the poll interval.
        failures += 1;
        await pause(backoffDelay(failures, { baseMs: 50, capMs: options.pollIntervalMs, jitter: 'equal' }), signal);
        continue;
      }
      for (const event of result.events) {
        if (event.position <= cursor) continue; // cannot happen; keeps the order promise local
        yield event;
        cursor = event.position;
        if (signal.aborted) return;
      }
      if (result.events.length === options.batchSize) continue;
      if (result.head > cursor) cursor = result.head;
      await source.waitForAppend(cursor, mark, options.pollIntervalMs, signal);
    }
  } finally {
    outer?.removeEventListener('abort', onAbort);
    closed.removeEventListener('abort', onClose);
    controller.abort();
  }
}
