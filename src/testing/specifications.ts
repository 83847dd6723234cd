import assert from 'node:assert/strict';
import { buildDecisionModel } from '../decisions/decision-model.ts';
import { InvalidInputError } from '../errors.ts';
import { type EventInput } from '../events.ts';
import { describe } from '../validation.ts';
import { Query } from '../query.ts';
import type { CommandHandler, Projection } from '../store.ts';
import { InMemoryEventStore } from './in-memory-event-store.ts';

/** A store a specification can run against: the in-memory store, or the PostgreSQL one. */
export interface SpecificationStore {
  append: InMemoryEventStore['append'];
  read: InMemoryEventStore['read'];
  execute: InMemoryEventStore['execute'];
  close(): Promise<void>;
}

export interface SpecificationOptions {
  /** A fresh, empty store per scenario. Default: a new InMemoryEventStore. */
  store?: () => SpecificationStore | Promise<SpecificationStore>;
}

/** An expected event: type, tags (any order) and data; metadata, id and occurredAt only if given. */
export type ExpectedEvent = EventInput;

type ErrorExpectation = (new (...args: any[]) => Error) | ((error: unknown) => boolean);

/**
 * Given/When/Then specifications for command handlers: given events already in the store, when a
 * command runs, then exactly these events are appended (or this error is thrown). Assertion
 * failures are `AssertionError`s, so any test runner reports them.
 *
 * @example
 * const spec = CommandHandlerSpecification.for(subscribeStudent);
 * await spec.given([courseDefined('c1', 1)]).when({ studentId: 's1', courseId: 'c1' }).then([studentSubscribed('s1', 'c1')]);
 * await spec.given([courseDefined('c1', 0)]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseFullError);
 */
export class CommandHandlerSpecification<Command> {
  readonly #handler: CommandHandler<Command, any>;
  readonly #options: SpecificationOptions;

  private constructor(handler: CommandHandler<Command, any>, options: SpecificationOptions) {
    this.#handler = handler;
    this.#options = options;
  }

  static for<Command>(handler: CommandHandler<Command, any>, options: SpecificationOptions = {}): CommandHandlerSpecification<Command> {
    if (handler === null || typeof handler !== 'object' || typeof handler.decide !== 'function' || typeof handler.projections !== 'function') {
      throw new InvalidInputError('handler', `must be a command handler, got ${describe(handler)}`);
    }
    return new CommandHandlerSpecification(handler, options);
  }

  given(events: readonly EventInput[] = []): { when(command: Command): CommandScenario } {
    assertEventList(events, 'given');
    return { when: (command: Command) => new CommandScenario(this.#handler, this.#options, events, command) };
  }
}

export class CommandScenario {
  readonly #handler: CommandHandler<any, any>;
  readonly #options: SpecificationOptions;
  readonly #given: readonly EventInput[];
  readonly #command: unknown;

  /** @internal */
  constructor(handler: CommandHandler<any, any>, options: SpecificationOptions, given: readonly EventInput[], command: unknown) {
    this.#handler = handler;
    this.#options = options;
    this.#given = given;
    this.#command = command;
  }

  /** Asserts that the command appends exactly `expected`, in order. `then([])` asserts it appends nothing. */
  then(expected: readonly ExpectedEvent[]): Promise<void> {
    // Not async: `await spec.given(...).when(...)` by mistake calls this with a function, and
    // only a synchronous throw reaches that await (a rejected promise returned here would not).
    if (typeof expected === 'function') throw misplacedAwait('when()');
    assertEventList(expected, 'then');
    return this.#then(expected);
  }

  async #then(expected: readonly ExpectedEvent[]): Promise<void> {
    const outcome = await this.#run();
    if ('error' in outcome) throw new assert.AssertionError({ message: `expected events, but the command threw: ${describeError(outcome.error)}`, actual: outcome.error, expected });
    assert.deepStrictEqual(
      outcome.appended.map((event, index) => comparable(event, expected[index])),
      expected.map((event) => comparable(event, event)),
      'the appended events differ from the expected ones',
    );
  }

  /** Asserts that the command appends nothing (it was carried out already, or has nothing to do). */
  thenNothing(): Promise<void> {
    return this.then([]);
  }

  /**
   * Asserts that the command throws: an instance of the given class, or an error the predicate
   * accepts. Also asserts that nothing was appended.
   */
  async thenThrows(expected: ErrorExpectation): Promise<void> {
    if (typeof expected !== 'function') throw new InvalidInputError('thenThrows', `expects an error class or a predicate, got ${describe(expected)}`);
    const outcome = await this.#run();
    if (!('error' in outcome)) {
      throw new assert.AssertionError({ message: `expected the command to throw, but it appended ${outcome.appended.length} event(s)`, actual: outcome.appended, expected: 'an error' });
    }
    const matches = expected.prototype instanceof Error || expected === Error ? outcome.error instanceof expected : (expected as (error: unknown) => boolean)(outcome.error);
    if (!matches) throw new assert.AssertionError({ message: `the command threw an unexpected error: ${describeError(outcome.error)}`, actual: outcome.error, expected });
  }

  async #run(): Promise<{ appended: EventInput[] } | { error: unknown }> {
    const store = this.#options.store ? await this.#options.store() : new InMemoryEventStore();
    try {
      if (this.#given.length > 0) await store.append(this.#given);
      const before = (await store.read(Query.all())).head;
      try {
        await store.execute(this.#handler, this.#command, { maxAttempts: 1 });
      } catch (error) {
        return { error };
      }
      const { events } = await store.read(Query.all(), { after: before });
      return { appended: events };
    } finally {
      await store.close();
    }
  }
}

/**
 * Given/When/Then specifications for projections: given these events in the store, the
 * projection's state is this. Events the projection's query does not match are ignored, as in
 * production, so the specification also tests the query.
 *
 * @example
 * await ProjectionSpecification.for(courseCapacity('c1'))
 *   .given([courseDefined('c1', 10), studentSubscribed('s1', 'c1')])
 *   .then({ capacity: 10, subscriptions: 1 });
 */
export class ProjectionSpecification<State> {
  readonly #projection: Projection<State>;
  readonly #options: SpecificationOptions;

  private constructor(projection: Projection<State>, options: SpecificationOptions) {
    this.#projection = projection;
    this.#options = options;
  }

  static for<State>(projection: Projection<State>, options: SpecificationOptions = {}): ProjectionSpecification<State> {
    if (projection === null || typeof projection !== 'object' || typeof projection.apply !== 'function' || !(projection.query instanceof Query)) {
      throw new InvalidInputError('projection', `must be a projection made by defineProjection, got ${describe(projection)}`);
    }
    return new ProjectionSpecification(projection, options);
  }

  given(events: readonly EventInput[] = []): { then(expected: State): Promise<void> } {
    assertEventList(events, 'given');
    const check = async (expected: State): Promise<void> => {
      const store = this.#options.store ? await this.#options.store() : new InMemoryEventStore();
      try {
        if (events.length > 0) await store.append(events);
        const { state } = await buildDecisionModel(store, { projection: this.#projection }, { snapshots: false });
        assert.deepStrictEqual(state.projection, expected, 'the projected state differs from the expected one');
      } finally {
        await store.close();
      }
    };
    return {
      // Not async, for the same reason as CommandScenario.then.
      then: (expected: State) => {
        if (typeof expected === 'function') throw misplacedAwait('given()');
        return check(expected);
      },
    };
  }
}

function misplacedAwait(call: string): InvalidInputError {
  return new InvalidInputError('then', `expects what to compare with; did you \`await\` the result of ${call}? (await the result of then() instead)`);
}

function assertEventList(events: unknown, path: string): asserts events is readonly EventInput[] {
  if (!Array.isArray(events)) throw new InvalidInputError(path, `must be an array of events, got ${describe(events)}`);
}

/** The parts of `event` to compare: those `expected` states (tags as a sorted set). */
function comparable(event: EventInput, expected: EventInput | undefined): Record<string, unknown> {
  const result: Record<string, unknown> = { type: event.type, tags: [...new Set(event.tags ?? [])].sort(), data: JSON.parse(JSON.stringify(event.data ?? null)) };
  if (expected?.metadata !== undefined) result.metadata = JSON.parse(JSON.stringify(event.metadata ?? {}));
  if (expected?.id !== undefined) result.id = event.id?.toLowerCase();
  if (expected?.occurredAt !== undefined) result.occurredAt = event.occurredAt?.toISOString();
  return result;
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
