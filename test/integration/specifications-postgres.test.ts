// Given/When/Then specifications run against PostgreSQL through the `store` option: each scenario
// gets a store in a fresh schema, and they pass and fail exactly as on the in-memory store.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { EventStoreClosedError, Query, defineCommandHandler, defineProjection, type EventInput, type EventStore } from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification, type SpecificationOptions } from '../../src/testing/index.ts';
import { createTestStore, dropSchema, keepEventLoopAliveDuringTests, withClient } from '../helpers.ts';

keepEventLoopAliveDuringTests();

const SUITE = { timeout: 30_000 };

const schemas: string[] = [];
const stores: EventStore[] = [];
const onPostgres: SpecificationOptions = {
  store: async () => {
    const { store, schema } = await createTestStore();
    schemas.push(schema);
    stores.push(store);
    return store;
  },
};

after(async () => {
  for (const store of stores) await store.close();
  for (const schema of schemas) await dropSchema(schema);
});

class CourseFullError extends Error {}

const courseDefined = (courseId: string, capacity: number): EventInput => ({ type: 'CourseDefined', tags: [`course:${courseId}`], data: { courseId, capacity } });
const subscribed = (studentId: string, courseId: string): EventInput => ({ type: 'StudentSubscribed', tags: [`student:${studentId}`, `course:${courseId}`], data: { studentId, courseId } });

const course = (courseId: string) =>
  defineProjection<{ capacity: number; subscriptions: number }>({
    initialState: { capacity: 0, subscriptions: 0 },
    handlers: {
      CourseDefined: (state, event) => ({ ...state, capacity: (event.data as { capacity: number }).capacity }),
      StudentSubscribed: (state) => ({ ...state, subscriptions: state.subscriptions + 1 }),
    },
    tags: [`course:${courseId}`],
  });

const subscribe = defineCommandHandler({
  projections: (command: { studentId: string; courseId: string }) => ({ course: course(command.courseId) }),
  decide: (state, command) => {
    if (state.course.subscriptions >= state.course.capacity) throw new CourseFullError();
    return subscribed(command.studentId, command.courseId);
  },
});

describe('specifications on PostgreSQL', SUITE, () => {
  const spec = CommandHandlerSpecification.for(subscribe, onPostgres);

  test('then and thenThrows pass when right; each scenario used its own PostgreSQL store and closed it', async () => {
    const before = schemas.length;
    await spec.given([courseDefined('c1', 1)]).when({ studentId: 's1', courseId: 'c1' }).then([subscribed('s1', 'c1')]);
    await spec.given([courseDefined('c1', 1), subscribed('s2', 'c1')]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseFullError);
    assert.equal(schemas.length, before + 2);
    // The events really went through PostgreSQL.
    const rows = await withClient((client) => client.query<{ type: string }>(`SELECT type FROM "${schemas[before]}".events ORDER BY position`));
    assert.deepEqual(rows.rows.map((row) => row.type), ['CourseDefined', 'StudentSubscribed']);
    for (const store of stores.slice(before)) await assert.rejects(store.read(Query.all()), EventStoreClosedError);
  });

  test('fail with an AssertionError when wrong', async () => {
    const isAssertion = (error: unknown): boolean => error instanceof assert.AssertionError;
    await assert.rejects(spec.given([courseDefined('c1', 1)]).when({ studentId: 's1', courseId: 'c1' }).then([subscribed('s2', 'c1')]), isAssertion);
    await assert.rejects(spec.given([courseDefined('c1', 1)]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseFullError), isAssertion);
    await assert.rejects(spec.given([courseDefined('c1', 0)]).when({ studentId: 's1', courseId: 'c1' }).thenNothing(), isAssertion);
  });

  test('ProjectionSpecification passes when right and fails when wrong', async () => {
    const given = ProjectionSpecification.for(course('c1'), onPostgres).given([courseDefined('c1', 3), courseDefined('c2', 5), subscribed('s1', 'c1'), subscribed('s1', 'c2')]);
    await given.then({ capacity: 3, subscriptions: 1 });
    await assert.rejects(given.then({ capacity: 3, subscriptions: 2 }), assert.AssertionError);
  });
});
