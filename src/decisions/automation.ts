// Automations: processes that react to events by deciding and appending new ones (send a
// reminder, reserve stock, start a saga's next step). What both stores share: the options, the
// decision (with an optional decision model, as command handlers have), and the ids of the
// reactions. How the reactions and the checkpoint commit together is each store's business
// (postgres/automation.ts: one transaction; testing/in-memory-automation.ts: one synchronous step).
import { v5 as uuidv5 } from 'uuid';
import { InvalidInputError } from '../errors.ts';
import type { AppendCondition } from '../append-condition.ts';
import type { EventInput, SequencedEvent } from '../events.ts';
import { Query } from '../query.ts';
import type { Projection, StatesOf } from '../store.ts';
import { assertStorableString, describe } from '../validation.ts';
import { buildDecisionModel, type DecisionModelSource } from './decision-model.ts';

/**
 * A named automation: for every event matching its query, in position order, it calls `decide`
 * and appends what it returns. Create it with `store.automation(name, options)`, start it with
 * `run({ signal })`.
 *
 * Guarantee (exactly-once reactions): the reactions decided for an event are appended in the
 * same transaction that moves the automation's checkpoint past the event. After a crash at any
 * instant, each event the checkpoint passed has its reactions in the log exactly once, and every
 * later event is decided again. `decide` itself may run more than once for an event (a retry, a
 * crash before the commit, a lost race on its decision model): its only effect must be what it
 * returns.
 */
export interface Automation {
  readonly name: string;
  /**
   * Runs until `signal` aborts or the store closes (then resolves), or until `decide` (or the
   * append of its reactions) failed `maxAttempts` times on one event (then rejects with
   * ConsumerFailedError; the checkpoint stays before the event, which is never skipped). While
   * another instance runs, waits as a standby.
   */
  run(options?: { signal?: AbortSignal }): Promise<void>;
  /** The checkpoint, lag, lease and last error. */
  status(options?: { signal?: AbortSignal }): Promise<AutomationStatus>;
}

/** An automation's progress: the same record a durable consumer has. */
export interface AutomationStatus {
  name: string;
  /** Every matching event up to here has its reactions appended. */
  position: bigint;
  head: bigint;
  /** Positions between the checkpoint and the head. */
  lag: bigint;
  /** `running`: an instance holds the lease now. `failed`: it stopped on `lastError`. `idle`: neither. */
  state: 'idle' | 'running' | 'failed';
  owner: string | null;
  failedPosition: bigint | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  updatedAt: Date | null;
}

export interface AutomationContext<States> {
  /** The decision model's state for this event (see `projections`); `{}` without projections. */
  state: States;
  /** Which attempt at this event this is: 1, then 2, ... up to `maxAttempts`. */
  attempt: number;
  /** Aborted when the automation is asked to stop. */
  signal: AbortSignal;
}

/** What `decide` may return: events to append, or nothing. */
export type Reactions = EventInput | readonly EventInput[] | undefined | void;

export interface AutomationOptions<Data = unknown, Projections extends Record<string, Projection<any>> = Record<string, never>> {
  /** The events to react to. */
  query: Query;
  /**
   * The decision model `decide` needs for this event (as a command handler's). It is read before
   * `decide` runs, and the reactions are appended on its condition: if an event it depends on
   * was appended in between, nothing is appended and the event is decided again.
   */
  projections?: (event: SequencedEvent<Data>) => Projections;
  /**
   * The reactions to `event`: events to append, or nothing. Throw to retry the event (see
   * `maxAttempts`). Reactions without an `id` get one derived from (automation name, event id,
   * index), so that an event decided again after a checkpoint reset appends nothing new.
   */
  decide: (event: SequencedEvent<Data>, context: AutomationContext<StatesOf<Projections>>) => Reactions | Promise<Reactions>;
  /** Events decided per transaction. Default 100. */
  batchSize?: number;
  /** Attempts at one event before the automation stops with ConsumerFailedError (a lost race counts as one). Default 10. */
  maxAttempts?: number;
  /** Wait before the second attempt; doubles each time, up to 30 s. Default 20 ms. */
  retryDelayMs?: number;
  /** Longest wait for new events without a wake-up notification. Default 1000 ms. */
  pollIntervalMs?: number;
  /** How often a standby asks for the lease. Default 1000 ms. */
  takeoverIntervalMs?: number;
  /** Longest time one decision (model read and `decide`) may take; then it counts as a failed attempt. Default 60000 ms. */
  handlerTimeoutMs?: number;
  /** Shown in the status as the lease holder. */
  instanceId?: string;
}

/** The stores that run automations. */
export interface AutomationStore {
  automation<Data = unknown, Projections extends Record<string, Projection<any>> = Record<string, never>>(name: string, options: AutomationOptions<Data, Projections>): Automation;
}

/** The reactions to one event, ready to append: ids set, with the decision model's condition. */
export interface Reaction {
  events: EventInput[];
  condition: AppendCondition | undefined;
  /** How many of the events got an id derived from the trigger (the rest brought their own). */
  derivedIds: number;
}

/** Checks what the stores do not check themselves (the consumer machinery checks the rest). */
export function validateAutomationOptions(name: unknown, options: unknown): asserts options is AutomationOptions<any, any> {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) throw new InvalidInputError('name', `must be a string of 1 to 255 characters, got ${describe(name)}`);
  assertStorableString(name, 'name');
  if (options === null || typeof options !== 'object') throw new InvalidInputError('options', `must be an object, got ${describe(options)}`);
  const { query, decide, projections } = options as Record<string, unknown>;
  if (!(query instanceof Query)) throw new InvalidInputError('options.query', `must be a Query, got ${describe(query)}`);
  if (typeof decide !== 'function') throw new InvalidInputError('options.decide', `must be a function, got ${describe(decide)}`);
  if (projections !== undefined && typeof projections !== 'function') throw new InvalidInputError('options.projections', `must be a function of the event, got ${describe(projections)}`);
}

/** The defaults where an automation's differ from a consumer's: lost races are retried soon. */
export const AUTOMATION_DEFAULTS = { maxAttempts: 10, retryDelayMs: 20 } as const;

/**
 * Reads the event's decision model (when the automation has projections), calls `decide`, and
 * returns the reactions with their ids and condition; undefined when there is nothing to append.
 */
export async function decideReactions<Data>(
  source: DecisionModelSource,
  name: string,
  options: AutomationOptions<Data, any>,
  event: SequencedEvent<Data>,
  attempt: number,
  signal: AbortSignal,
): Promise<Reaction | undefined> {
  let state: unknown = {};
  let condition: AppendCondition | undefined;
  if (options.projections) {
    const model = await buildDecisionModel(source, options.projections(event), { signal });
    state = model.state;
    condition = model.appendCondition;
  }
  const decided = await options.decide(event, { state: state as never, attempt, signal });
  const list: readonly EventInput[] = decided === undefined ? [] : Array.isArray(decided) ? decided : [decided as EventInput];
  if (list.length === 0) return undefined;
  let derivedIds = 0;
  const events = list.map((reaction, index) => {
    if (reaction === null || typeof reaction !== 'object') throw new InvalidInputError(`reactions[${index}]`, `must be an event object, got ${describe(reaction)}`);
    if (reaction.id !== undefined) return reaction;
    derivedIds += 1;
    return { ...reaction, id: reactionId(name, event.id, index) };
  });
  return { events, condition, derivedIds };
}

/** Namespace of the reaction ids (UUIDv5): fixed, so that every process derives the same ids. */
const REACTION_ID_NAMESPACE = '5b0c4a52-8d0e-4a7e-9a51-2f6d3c1e7b90';

/**
 * The id of reaction `index` of automation `name` to the event `triggerId`: the same wherever and
 * however often it is computed, so that a reaction appended once is recognised as such (the
 * append function answers "stored already" instead of writing it again).
 */
export function reactionId(name: string, triggerId: string, index: number): string {
  return uuidv5(JSON.stringify([name, triggerId, index]), REACTION_ID_NAMESPACE);
}

/** `run` rejects with this when a decision takes longer than handlerTimeoutMs. */
export class DecisionTimeoutError extends Error {
  override name = 'DecisionTimeoutError';
}

/** `running`, or a DecisionTimeoutError after `timeoutMs` (the call itself cannot be stopped). */
export async function withinTimeout<T>(running: Promise<T>, timeoutMs: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DecisionTimeoutError(message())), timeoutMs);
  });
  running.catch(() => undefined);
  try {
    return await Promise.race([running, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
