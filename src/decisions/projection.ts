import { InvalidInputError } from '../errors.ts';
import { type SequencedEvent } from '../events.ts';
import { describe, validateTag, validateType } from '../validation.ts';
import { Query, QueryItem } from '../query.ts';
import type { Projection, SnapshotOptions } from '../store.ts';

/** Payload type per event type, e.g. `{ CourseDefined: { courseId: string; capacity: number } }`. */
export type EventMap = Record<string, unknown>;

/** Accepts interfaces as event maps too (they have no index signature). */
export type EventMapOf<Events> = { [Type in keyof Events]: unknown };

/** One fold step per event type: the state after `event`. Must not mutate `state`. */
export type ProjectionHandlers<State, Events extends EventMapOf<Events> = EventMap> = {
  [Type in keyof Events & string]?: (state: State, event: SequencedEvent<Events[Type]>) => State;
};

export interface ProjectionDefinition<State, Events extends EventMapOf<Events>> {
  /** The state before any event. Copied (structuredClone) for every fold, so handlers cannot leak changes into it. */
  initialState: State;
  /** A handler per event type the projection depends on. */
  handlers: ProjectionHandlers<State, Events>;
  /**
   * Only events carrying all these tags. The query is then "any of the handled types, with these
   * tags". Give `query` instead for anything else (payload predicates, several items).
   */
  tags?: readonly string[];
  /** The events the projection depends on, when types + `tags` do not say it. */
  query?: Query;
  snapshot?: SnapshotOptions<State>;
  /**
   * Read and fold only the last event the query matches: for state that the latest event alone
   * determines ("the last invoice number"), so that the read costs the same however long the
   * history is. Default false.
   */
  onlyLastEvent?: boolean;
}

/**
 * Defines a projection: initial state, one handler per event type, and the events it needs.
 * Projections that depend on command arguments are functions returning a projection.
 *
 * @example
 * const courseCapacity = (courseId: string) =>
 *   defineProjection<{ capacity: number; subscriptions: number }, CourseEvents>({
 *     initialState: { capacity: 0, subscriptions: 0 },
 *     handlers: {
 *       CourseDefined: (state, event) => ({ ...state, capacity: event.data.capacity }),
 *       StudentSubscribedToCourse: (state) => ({ ...state, subscriptions: state.subscriptions + 1 }),
 *     },
 *     tags: [`course:${courseId}`],
 *   });
 */
export function defineProjection<State, Events extends EventMapOf<Events> = Record<string, any>>(definition: ProjectionDefinition<State, Events>): Projection<State> {
  if (definition === null || typeof definition !== 'object') throw new InvalidInputError('projection', `must be an object, got ${describe(definition)}`);
  const { handlers, tags, snapshot } = definition;
  if (handlers === null || typeof handlers !== 'object') throw new InvalidInputError('projection.handlers', `must be an object of functions, got ${describe(handlers)}`);
  const table = new Map<string, (state: State, event: SequencedEvent) => State>();
  for (const [type, handler] of Object.entries(handlers)) {
    validateType(type, `projection.handlers.${type}`);
    if (typeof handler !== 'function') throw new InvalidInputError(`projection.handlers.${type}`, `must be a function, got ${describe(handler)}`);
    table.set(type, handler as (state: State, event: SequencedEvent) => State);
  }
  if (table.size === 0) throw new InvalidInputError('projection.handlers', 'needs a handler for at least one event type');
  if (!('initialState' in definition)) throw new InvalidInputError('projection.initialState', 'is required');
  try {
    structuredClone(definition.initialState);
  } catch (error) {
    throw new InvalidInputError('projection.initialState', `must be cloneable (plain data): ${(error as Error).message}`);
  }
  let query: Query;
  if (definition.query !== undefined) {
    if (!(definition.query instanceof Query)) throw new InvalidInputError('projection.query', `must be a Query, got ${describe(definition.query)}`);
    if (tags !== undefined) throw new InvalidInputError('projection.tags', 'give either tags or query, not both (put the tags into the query)');
    query = definition.query;
  } else {
    let item = QueryItem.types(...table.keys());
    if (tags !== undefined) {
      if (!Array.isArray(tags)) throw new InvalidInputError('projection.tags', `must be an array of strings, got ${describe(tags)}`);
      tags.forEach((tag, index) => validateTag(tag, `projection.tags[${index}]`));
      if (tags.length > 0) item = item.tags(...tags);
    }
    query = Query.of(item);
  }
  if (snapshot !== undefined) validateSnapshotOptions(snapshot);
  const onlyLastEvent = definition.onlyLastEvent ?? false;
  if (typeof onlyLastEvent !== 'boolean') throw new InvalidInputError('projection.onlyLastEvent', `must be a boolean, got ${describe(onlyLastEvent)}`);
  if (onlyLastEvent && snapshot !== undefined) throw new InvalidInputError('projection.snapshot', 'is pointless with onlyLastEvent (it reads one event anyway)');
  const initialState = definition.initialState;
  return Object.freeze({
    query,
    initialState,
    snapshot: snapshot && Object.freeze({ ...snapshot }),
    onlyLastEvent,
    apply(state: State, event: SequencedEvent): State {
      const handler = table.get(event.type);
      return handler ? handler(state, event) : state;
    },
  });
}

function validateSnapshotOptions<State>(snapshot: SnapshotOptions<State>): void {
  if (snapshot === null || typeof snapshot !== 'object') throw new InvalidInputError('projection.snapshot', `must be an object, got ${describe(snapshot)}`);
  if (typeof snapshot.name !== 'string' || snapshot.name.length === 0 || snapshot.name.length > 255) {
    throw new InvalidInputError('projection.snapshot.name', `must be a string of 1 to 255 characters, got ${describe(snapshot.name)}`);
  }
  if (!Number.isSafeInteger(snapshot.version) || snapshot.version < 0 || snapshot.version > 2_147_483_647) {
    throw new InvalidInputError('projection.snapshot.version', `must be a non-negative integer, got ${describe(snapshot.version)}`);
  }
  if (snapshot.every !== undefined && (!Number.isSafeInteger(snapshot.every) || snapshot.every < 1)) {
    throw new InvalidInputError('projection.snapshot.every', `must be a positive integer, got ${describe(snapshot.every)}`);
  }
  for (const hook of ['serialize', 'deserialize'] as const) {
    if (snapshot[hook] !== undefined && typeof snapshot[hook] !== 'function') throw new InvalidInputError(`projection.snapshot.${hook}`, `must be a function, got ${describe(snapshot[hook])}`);
  }
}
