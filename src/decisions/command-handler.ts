import { setTimeout as sleep } from 'node:timers/promises';
import { AppendConditionFailedError, RetriesExhaustedError } from '../append-condition.ts';
import { InvalidInputError, OperationAbortedError } from '../errors.ts';
import { type EventInput } from '../events.ts';
import { describe } from '../validation.ts';
import { backoffDelay } from '../util/backoff.ts';
import type { AppendOptions, AppendResult, CommandHandler, ExecuteOptions, ExecuteResult, Projection, StatesOf } from '../store.ts';
import type { AppendCondition } from '../append-condition.ts';
import { buildDecisionModel, type DecisionModelSource } from './decision-model.ts';

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
      try {
        await sleep(backoffDelay(attempt, { baseMs: initialDelayMs, capMs: maxDelayMs, jitter: 'full' }), undefined, signalOption);
      } catch {
        throw new OperationAbortedError('execute', signal?.reason);
      }
    }
  }
}
