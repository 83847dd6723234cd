// Given/When/Then specifications (dynamic-streams-eventstore/testing) on the in-memory store: they
// pass when the handler or projection does what they state, and fail with an AssertionError (which
// every test runner reports) when it does not. A specification that cannot fail proves nothing,
// so most tests here are of the failing kind.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventStoreClosedError, InvalidInputError, Query, defineCommandHandler, defineProjection, type EventInput, type Projection } from '../../src/index.ts';
import { CommandHandlerSpecification, InMemoryEventStore, ProjectionSpecification, type SpecificationStore } from '../../src/testing/index.ts';

/** No test here waits on anything slow; a hang (e.g. an unbounded retry wait) fails fast instead. */
const SUITE = { timeout: 5000 };

// ---------------------------------------------------------------------------------------------
// A small course domain

class CourseNotFoundError extends Error {
  constructor(readonly courseId: string) {
    super(`course ${courseId} does not exist`);
    this.name = 'CourseNotFoundError';
  }
}

class CourseFullError extends Error {
  constructor(readonly courseId: string) {
    super(`course ${courseId} is full`);
    this.name = 'CourseFullError';
  }
}

const courseDefined = (courseId: string, capacity: number): EventInput => ({ type: 'CourseDefined', tags: [`course:${courseId}`], data: { courseId, capacity } });
const subscribed = (studentId: string, courseId: string): EventInput => ({
  type: 'StudentSubscribed',
  tags: [`student:${studentId}`, `course:${courseId}`],
  data: { studentId, courseId },
});
const welcomed = (studentId: string, courseId: string): EventInput => ({ type: 'StudentWelcomed', tags: [`student:${studentId}`, `course:${courseId}`], data: { studentId } });

interface Course {
  defined: boolean;
  capacity: number;
  students: string[];
}

type CourseEvents = {
  CourseDefined: { courseId: string; capacity: number };
  StudentSubscribed: { studentId: string; courseId: string };
};

const course = (courseId: string): Projection<Course> =>
  defineProjection<Course, CourseEvents>({
    initialState: { defined: false, capacity: 0, students: [] },
    handlers: {
      CourseDefined: (state, event) => ({ ...state, defined: true, capacity: event.data.capacity }),
      StudentSubscribed: (state, event) => ({ ...state, students: [...state.students, event.data.studentId] }),
    },
    tags: [`course:${courseId}`],
  });

type Subscribe = { studentId: string; courseId: string };

/** Subscribes a student; nothing to do when subscribed already; domain errors otherwise. */
const subscribe = defineCommandHandler({
  projections: (command: Subscribe) => ({ course: course(command.courseId) }),
  decide: (state, command): EventInput | undefined => {
    if (!state.course.defined) throw new CourseNotFoundError(command.courseId);
    if (state.course.students.includes(command.studentId)) return undefined;
    if (state.course.students.length >= state.course.capacity) throw new CourseFullError(command.courseId);
    return subscribed(command.studentId, command.courseId);
  },
});

/** Like `subscribe`, but also appends a welcome event: "one event too many" for a spec of subscribe. */
const subscribeAndWelcome = defineCommandHandler({
  projections: (command: Subscribe) => ({ course: course(command.courseId) }),
  decide: (_state, command) => [subscribed(command.studentId, command.courseId), welcomed(command.studentId, command.courseId)],
});

/** Lets a test pass what the types forbid, as untyped JavaScript callers can. */
function loose<T>(value: unknown): T {
  return value as T;
}

function isAssertion(pattern?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof assert.AssertionError, `expected an AssertionError, got ${String(error)}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

/** Awaits `promise`, failing (instead of hanging the file) if it has not settled within `ms`. */
async function settleWithin<T>(promise: PromiseLike<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([Promise.resolve(promise), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------

describe('CommandHandlerSpecification: passes when the handler does what it states', SUITE, () => {
  const spec = CommandHandlerSpecification.for(subscribe);

  test('then: exactly the expected events (given events are not counted as appended)', async () => {
    await spec.given([courseDefined('c1', 2)]).when({ studentId: 's1', courseId: 'c1' }).then([subscribed('s1', 'c1')]);
    await spec.given([courseDefined('c1', 2), subscribed('s2', 'c1')]).when({ studentId: 's1', courseId: 'c1' }).then([subscribed('s1', 'c1')]);
  });

  test('tags compare as sets (order and duplicates do not matter); metadata, id and occurredAt only when expected', async () => {
    const expected: EventInput = { type: 'StudentSubscribed', tags: ['course:c1', 'student:s1', 'course:c1'], data: { courseId: 'c1', studentId: 's1' } };
    await spec.given([courseDefined('c1', 2)]).when({ studentId: 's1', courseId: 'c1' }).then([expected]);
  });

  test('then([]) and thenNothing(): the command appends nothing', async () => {
    const scenario = spec.given([courseDefined('c1', 2), subscribed('s1', 'c1')]).when({ studentId: 's1', courseId: 'c1' });
    await scenario.then([]);
    await scenario.thenNothing();
  });

  test('thenThrows: an error class, or a predicate', async () => {
    await spec.given([]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseNotFoundError);
    await spec.given([courseDefined('c1', 0)]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseFullError);
    await spec.given([courseDefined('c1', 0)]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(Error);
    await spec
      .given([courseDefined('c1', 0)])
      .when({ studentId: 's1', courseId: 'c1' })
      .thenThrows((error) => error instanceof CourseFullError && error.courseId === 'c1');
  });

  test('the same scenario runs again from scratch (a fresh store each time)', async () => {
    const scenario = spec.given([courseDefined('c1', 1)]).when({ studentId: 's1', courseId: 'c1' });
    await scenario.then([subscribed('s1', 'c1')]);
    await scenario.then([subscribed('s1', 'c1')]);
  });
});

describe('CommandHandlerSpecification: fails with an AssertionError when the handler does something else', SUITE, () => {
  const spec = CommandHandlerSpecification.for(subscribe);
  const scenario = spec.given([courseDefined('c1', 2)]).when({ studentId: 's1', courseId: 'c1' });

  test('other data', async () => {
    await assert.rejects(scenario.then([subscribed('s2', 'c1')]), isAssertion(/differ/));
  });

  test('another type', async () => {
    await assert.rejects(scenario.then([{ ...subscribed('s1', 'c1'), type: 'StudentEnrolled' }]), isAssertion());
  });

  test('other tags (a missing one, an extra one)', async () => {
    await assert.rejects(scenario.then([{ ...subscribed('s1', 'c1'), tags: ['course:c1'] }]), isAssertion());
    await assert.rejects(scenario.then([{ ...subscribed('s1', 'c1'), tags: ['course:c1', 'student:s1', 'extra'] }]), isAssertion());
  });

  test('expected metadata that the appended event does not have', async () => {
    await assert.rejects(scenario.then([{ ...subscribed('s1', 'c1'), metadata: { by: 'admin' } }]), isAssertion());
  });

  test('an extra event appended', async () => {
    const twice = CommandHandlerSpecification.for(subscribeAndWelcome).given([courseDefined('c1', 2)]).when({ studentId: 's1', courseId: 'c1' });
    await assert.rejects(twice.then([subscribed('s1', 'c1')]), isAssertion());
    await twice.then([subscribed('s1', 'c1'), welcomed('s1', 'c1')]);
  });

  test('an expected event missing', async () => {
    await assert.rejects(scenario.then([subscribed('s1', 'c1'), welcomed('s1', 'c1')]), isAssertion());
  });

  test('the right events in the wrong order', async () => {
    const twice = CommandHandlerSpecification.for(subscribeAndWelcome).given([courseDefined('c1', 2)]).when({ studentId: 's1', courseId: 'c1' });
    await assert.rejects(twice.then([welcomed('s1', 'c1'), subscribed('s1', 'c1')]), isAssertion());
  });

  test('nothing expected, but an event appended', async () => {
    await assert.rejects(scenario.then([]), isAssertion());
    await assert.rejects(scenario.thenNothing(), isAssertion());
  });

  test('events expected, but the command threw', async () => {
    await assert.rejects(spec.given([]).when({ studentId: 's1', courseId: 'c1' }).then([subscribed('s1', 'c1')]), isAssertion(/threw.*CourseNotFoundError/));
  });

  test('an error expected, but the command appended events', async () => {
    await assert.rejects(scenario.thenThrows(CourseFullError), isAssertion(/appended 1 event/));
  });

  test('an error expected, but the command did nothing', async () => {
    const nothing = spec.given([courseDefined('c1', 2), subscribed('s1', 'c1')]).when({ studentId: 's1', courseId: 'c1' });
    await assert.rejects(nothing.thenThrows(CourseFullError), isAssertion());
  });

  test('another error class than expected', async () => {
    const notFound = spec.given([]).when({ studentId: 's1', courseId: 'c1' });
    await assert.rejects(notFound.thenThrows(CourseFullError), isAssertion(/unexpected error/));
  });

  test('a predicate that rejects the error', async () => {
    const full = spec.given([courseDefined('c1', 0)]).when({ studentId: 's1', courseId: 'c1' });
    await assert.rejects(full.thenThrows((error) => error instanceof CourseFullError && error.courseId === 'c2'), isAssertion());
  });
});

describe('CommandHandlerSpecification: misuse gives a clear InvalidInputError', SUITE, () => {
  const spec = CommandHandlerSpecification.for(subscribe);

  test('awaiting when() instead of then(): InvalidInputError that says so (not a hang)', async () => {
    const scenario = spec.given([courseDefined('c1', 2)]).when({ studentId: 's1', courseId: 'c1' });
    await assert.rejects(
      settleWithin(loose<PromiseLike<unknown>>(scenario), 1000, 'await spec.given(...).when(...)'),
      (error: unknown) => {
        assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
        assert.equal(error.path, 'then');
        assert.match(error.message, /await/);
        return true;
      },
    );
  });

  test('a handler without decide or projections, a given that is not a list, thenThrows without a class or predicate', async () => {
    assert.throws(() => CommandHandlerSpecification.for(loose<typeof subscribe>({ projections: () => ({}) })), (error: unknown) => error instanceof InvalidInputError && error.path === 'handler');
    assert.throws(() => CommandHandlerSpecification.for(loose<typeof subscribe>(null)), (error: unknown) => error instanceof InvalidInputError && error.path === 'handler');
    assert.throws(() => spec.given(loose<EventInput[]>(courseDefined('c1', 1))), (error: unknown) => error instanceof InvalidInputError && error.path === 'given');
    const scenario = spec.given([]).when({ studentId: 's1', courseId: 'c1' });
    assert.throws(() => scenario.then(loose<EventInput[]>(subscribed('s1', 'c1'))), (error: unknown) => error instanceof InvalidInputError && error.path === 'then');
    await assert.rejects(scenario.thenThrows(loose<ErrorConstructor>('CourseNotFoundError')), (error: unknown) => error instanceof InvalidInputError && error.path === 'thenThrows');
  });
});

describe('ProjectionSpecification', SUITE, () => {
  test('passes when the state is right; events its query does not match are ignored', async () => {
    await ProjectionSpecification.for(course('c1'))
      .given([courseDefined('c1', 3), courseDefined('c2', 9), subscribed('s1', 'c1'), subscribed('s2', 'c2'), subscribed('s3', 'c1')])
      .then({ defined: true, capacity: 3, students: ['s1', 's3'] });
    await ProjectionSpecification.for(course('c1')).given([]).then({ defined: false, capacity: 0, students: [] });
  });

  test('fails with an AssertionError when the state differs', async () => {
    const given = ProjectionSpecification.for(course('c1')).given([courseDefined('c1', 3), subscribed('s1', 'c1')]);
    await assert.rejects(given.then({ defined: true, capacity: 4, students: ['s1'] }), isAssertion(/state differs/));
    await assert.rejects(given.then({ defined: true, capacity: 3, students: [] }), isAssertion());
    await assert.rejects(given.then({ defined: true, capacity: 3, students: ['s1', 's1'] }), isAssertion());
  });

  test('fails when the query lets in events it should not (the spec tests the query too)', async () => {
    const leaky = defineProjection<number>({ initialState: 0, handlers: { StudentSubscribed: (count) => count + 1 } });
    await assert.rejects(ProjectionSpecification.for(leaky).given([subscribed('s1', 'c1'), subscribed('s2', 'c2')]).then(1), isAssertion());
  });

  test('awaiting given() instead of then(): InvalidInputError that says so (not a hang)', async () => {
    const given = ProjectionSpecification.for(course('c1')).given([courseDefined('c1', 3)]);
    await assert.rejects(settleWithin(loose<PromiseLike<unknown>>(given), 1000, 'await ProjectionSpecification.for(...).given(...)'), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
      assert.match(error.message, /await/);
      return true;
    });
  });

  test('not a projection: InvalidInputError', () => {
    assert.throws(() => ProjectionSpecification.for(loose<Projection<number>>({ apply: () => 0 })), (error: unknown) => error instanceof InvalidInputError && error.path === 'projection');
  });
});

describe('the store option', SUITE, () => {
  test('each scenario asks for its own store, appends the given events to it and closes it', async () => {
    const stores: InMemoryEventStore[] = [];
    const store = (): SpecificationStore => {
      const created = new InMemoryEventStore();
      stores.push(created);
      return created;
    };
    const spec = CommandHandlerSpecification.for(subscribe, { store });
    await spec.given([courseDefined('c1', 1)]).when({ studentId: 's1', courseId: 'c1' }).then([subscribed('s1', 'c1')]);
    await spec.given([]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseNotFoundError);
    await ProjectionSpecification.for(course('c1'), { store }).given([courseDefined('c1', 5)]).then({ defined: true, capacity: 5, students: [] });
    assert.equal(stores.length, 3);
    assert.deepEqual(stores.map((created) => created.events.map((event) => event.type)), [['CourseDefined', 'StudentSubscribed'], [], ['CourseDefined']]);
    for (const created of stores) await assert.rejects(created.read(Query.all()), EventStoreClosedError, 'closed after the scenario');
  });
});
