// The append condition, the error of one that failed, and the error of a command that kept
// losing the race. Apart from errors.ts because a condition names a Query, and queries throw
// the errors below them.
import { EventStoreError } from './errors.ts';
import type { Query } from './query.ts';

/** Guard of an append: fail if an event matching `failIfEventsMatch` exists after `after`. */
export interface AppendCondition {
  failIfEventsMatch: Query;
  /** Exclusive. Absent: fail if any matching event exists at all. */
  after?: bigint;
}

/**
 * An event matching `condition.failIfEventsMatch` exists after `condition.after` (or at all, without
 * `after`). Nothing of the append was written. Re-read, decide again, and retry.
 */
export class AppendConditionFailedError extends EventStoreError {
  readonly condition: AppendCondition;
  /** Position of a conflicting event (the first one after `after` when `after` was given). */
  readonly conflictingPosition: bigint | undefined;
  /** `appendCommands`: the index of the command whose condition failed. Undefined for `append`. */
  readonly commandIndex: number | undefined;
  /**
   * `appendCommands`: the condition matched an event of this earlier command of the same call
   * (which was not written either), not a stored one; `conflictingPosition` is then undefined.
   */
  readonly conflictingCommandIndex: number | undefined;

  constructor(condition: AppendCondition, conflictingPosition: bigint | undefined, commands?: { commandIndex: number; conflictingCommandIndex?: number | undefined }) {
    const after = condition.after === undefined ? 'at all' : `after position ${condition.after}`;
    const which = commands === undefined ? 'append condition failed' : `condition of command ${commands.commandIndex} failed`;
    const message = commands?.conflictingCommandIndex !== undefined
      ? `${which}: an event of command ${commands.conflictingCommandIndex} of the same call matches it (nothing was written)`
      : `${which}: an event matching the condition exists ${after}${conflictingPosition === undefined ? '' : ` (first conflict at position ${conflictingPosition})`}`;
    super('APPEND_CONDITION_FAILED', message);
    this.condition = condition;
    this.conflictingPosition = conflictingPosition;
    this.commandIndex = commands?.commandIndex;
    this.conflictingCommandIndex = commands?.conflictingCommandIndex;
  }
}

/**
 * A command kept losing the race: every attempt's append condition failed because other writers
 * changed the events its decision read. Nothing of this command was written. `cause` is the last
 * {@link AppendConditionFailedError}.
 */
export class RetriesExhaustedError extends EventStoreError {
  readonly attempts: number;

  constructor(attempts: number, cause: AppendConditionFailedError) {
    super('RETRIES_EXHAUSTED', `command gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}: each time, events its decision depends on were appended between its read and its append`, { cause });
    this.attempts = attempts;
  }
}

export function isAppendConditionFailedError(error: unknown): error is AppendConditionFailedError {
  return error instanceof AppendConditionFailedError;
}
