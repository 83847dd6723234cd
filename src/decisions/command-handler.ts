import { setTimeout as sleep } from 'node:timers/promises';
import { AppendConditionFailedError, InvalidInputError, OperationAbortedError, RetriesExhaustedError } from '../errors.ts';
import { describe, type EventInput } from '../events.ts';
import type { AppendOptions, AppendResult } from '../event-store.ts';
import type { AppendCondition } from '../events.ts';
import { buildDecisionModel, type DecisionModelSource, type StatesOf } from './decision-model.ts';
import type { Projection } from './projection.ts';

/**
 * A command handler in the DCB style: the projections its rules need (they may depend on the
 * command) and a pure decision on their state. Define it with {@link defineCommandHandler} and run
 * it with `store.execute(handler, command)`.
 */
export interface CommandHandler<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput> {
  projections(command: Command): Projections;
  /**
   * The events to append, or nothing (an empty array or undefined) when the command has nothing
   * to do, e.g. because it was carried out before. Throw a domain error to reject the command: it
   * reaches the caller unchanged.
   */
  decide(state: StatesOf<Projections>, command: Command): Event | readonly Event[] | undefined | void;
}

/**
 * Identity function that gives `decide` its state type from `projections`.
 *
 * @example
 * const subscribeStudent = defineCommandHandler({
 *   projections: (command: { studentId: string; courseId: string }) => ({
 *     course: courseCapacity(command.courseId),
 *     studentCourses: studentSubscriptions(command.studentId),
 *   }),
 *   decide: (state, command) => {
 *     if (state.course.subscriptions >= state.course.capacity) throw new CourseFullError(command.courseId);
 *     return subscribed(command.studentId, command.courseId);
 *   },
 * });
 * await store.execute(subscribeStudent, { studentId: 's1', courseId: 'c1' });
 */
export function defineCommandHandler<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput>(
  handler: CommandHandler<Command, Projections, Event>,
): CommandHandler<Command, Projections, Event> {
  return handler;
}

export interface ExecuteOptions {
  signal?: AbortSignal;
  /** Most attempts (reads + decisions + appends) before {@link RetriesExhaustedError}. Default 10. */
  maxAttempts?: number;
  /** First retry waits up to this long (full jitter: a random time between 0 and the bound). Default 5 ms. */
  initialDelayMs?: number;
  /** Bound of the doubling wait between attempts. Default 500 ms. */
  maxDelayMs?: number;
  /** Called for each lost race (the append's condition failed), before the wait and the next attempt. For logs and metrics. */
  onConflict?: (error: AppendConditionFailedError, attempt: number) => void;
}

export interface ExecuteResult<States, Event extends EventInput = EventInput> {
  /** The events appended (empty when the decision was to do nothing). */
  events: readonly Event[];
  /** Position of the last appended event; undefined when nothing was appended. */
  position: bigint | undefined;
  /** The state the successful decision was made on. */
  state: States;
  /** 1 when the first attempt went through. */
  attempts: number;
}

/** What `execute` needs from a store. */
export interface CommandStore extends DecisionModelSource {
  append(events: EventInput | readonly EventInput[], condition?: AppendCondition, options?: AppendOptions): Promise<AppendResult>;
}

/**
 * Reads the handler's decision model, decides, and appends with the model's condition. When
 * another writer changed what the decision read in between, it reads and decides again after a
 * short random wait (bounded exponential backoff with full jitter), at most `maxAttempts` times,
 * then throws {@link RetriesExhaustedError}. Errors thrown by `decide` pass through unchanged.
 */
export async function executeCommand<Command, Projections extends Record<string, Projection<any>>, Event extends EventInput = EventInput>(
  store: CommandStore,
  handler: CommandHandler<Command, Projections, Event>,
  command: Command,
  options: ExecuteOptions = {},
): Promise<ExecuteResult<StatesOf<Projections>, Event>> {
  if (handler === null || typeof handler !== 'object' || typeof handler.projections !== 'function' || typeof handler.decide !== 'function') {
    throw new InvalidInputError('handler', `must have projections(command) and decide(state, command) functions, got ${describe(handler)}`);
  }
  const maxAttempts = options.maxAttempts ?? 10;
  const initialDelayMs = options.initialDelayMs ?? 5;
  const maxDelayMs = options.maxDelayMs ?? 500;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) throw new InvalidInputError('maxAttempts', `must be a positive integer, got ${describe(maxAttempts)}`);
  for (const [key, value] of [['initialDelayMs', initialDelayMs], ['maxDelayMs', maxDelayMs]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new InvalidInputError(key, `must be a non-negative number, got ${describe(value)}`);
  }
  if (options.onConflict !== undefined && typeof options.onConflict !== 'function') throw new InvalidInputError('onConflict', `must be a function, got ${describe(options.onConflict)}`);
  const signal = options.signal;
  const signalOption = signal ? { signal } : {};
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw new OperationAbortedError('execute', signal.reason);
    const { state, appendCondition } = await buildDecisionModel(store, handler.projections(command), signalOption);
    const decided = handler.decide(state, command);
    const events: readonly Event[] = decided === undefined ? [] : Array.isArray(decided) ? decided : [decided as Event];
    if (events.length === 0) return { events, position: undefined, state, attempts: attempt };
    try {
      const { position } = await store.append(events, appendCondition, signalOption);
      return { events, position, state, attempts: attempt };
    } catch (error) {
      if (!(error instanceof AppendConditionFailedError)) throw error;
      options.onConflict?.(error, attempt);
      if (attempt >= maxAttempts) throw new RetriesExhaustedError(attempt, error);
      const bound = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
      try {
        await sleep(Math.random() * bound, undefined, signalOption);
      } catch {
        throw new OperationAbortedError('execute', signal?.reason);
      }
    }
  }
}
