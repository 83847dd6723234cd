// Course subscriptions: every rule as a Given/When/Then specification on the in-memory store,
// then the same handlers on PostgreSQL, where concurrent subscriptions from several store
// instances must never overbook a course nor let a student exceed the limit.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Query, QueryItem, executeCommand, type CommandStore, type EventStore, type ReadOptions } from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification } from '../../src/testing/index.ts';
import { createTestStores, race } from '../../test/helpers.ts';
import {
  CourseAlreadyDefinedError,
  CourseCapacityUnchangedError,
  CourseFullError,
  CourseNotFoundError,
  MAX_COURSES_PER_STUDENT,
  StudentAlreadySubscribedError,
  StudentSubscriptionLimitReachedError,
  changeCourseCapacity,
  courseCapacity,
  courseCapacityChanged,
  courseDefined,
  courseSubscriptionCount,
  courseTag,
  defineCourse,
  isCourseSubscriptionError,
  studentAlreadySubscribed,
  studentSubscribedToCourse,
  studentSubscriptionCount,
  studentTag,
  subscribeStudentToCourse,
} from './domain.ts';

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('defineCourse', () => {
  const spec = CommandHandlerSpecification.for(defineCourse);

  test('a new course is defined with its capacity, tagged course:<id>', async () => {
    await spec.given([]).when({ courseId: 'c1', capacity: 10 }).then([courseDefined('c1', 10)]);
  });

  test('a course defined already: CourseAlreadyDefinedError', async () => {
    await spec.given([courseDefined('c1', 10)]).when({ courseId: 'c1', capacity: 12 }).thenThrows(CourseAlreadyDefinedError);
  });
});

describe('changeCourseCapacity', () => {
  const spec = CommandHandlerSpecification.for(changeCourseCapacity);

  test('the capacity of a course is changed', async () => {
    await spec.given([courseDefined('c1', 10)]).when({ courseId: 'c1', newCapacity: 15 }).then([courseCapacityChanged('c1', 15)]);
  });

  test('it may drop below the current subscriptions', async () => {
    await spec
      .given([courseDefined('c1', 2), studentSubscribedToCourse('s1', 'c1'), studentSubscribedToCourse('s2', 'c1')])
      .when({ courseId: 'c1', newCapacity: 1 })
      .then([courseCapacityChanged('c1', 1)]);
  });

  test('a course never defined: CourseNotFoundError', async () => {
    await spec.given([courseDefined('c2', 10)]).when({ courseId: 'c1', newCapacity: 15 }).thenThrows(CourseNotFoundError);
  });

  test('the same capacity as now (after an earlier change): CourseCapacityUnchangedError', async () => {
    await spec
      .given([courseDefined('c1', 10), courseCapacityChanged('c1', 15)])
      .when({ courseId: 'c1', newCapacity: 15 })
      .thenThrows((error) => error instanceof CourseCapacityUnchangedError && error.capacity === 15);
  });
});

describe('subscribeStudentToCourse', () => {
  const spec = CommandHandlerSpecification.for(subscribeStudentToCourse);

  test('a student subscribes to a course with room: tagged with the student and the course', async () => {
    await spec.given([courseDefined('c1', 10)]).when({ studentId: 's1', courseId: 'c1' }).then([studentSubscribedToCourse('s1', 'c1')]);
  });

  test('a course never defined: CourseNotFoundError', async () => {
    await spec.given([courseDefined('c2', 10)]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseNotFoundError);
  });

  test('subscribed to this course already: StudentAlreadySubscribedError', async () => {
    await spec
      .given([courseDefined('c1', 10), studentSubscribedToCourse('s1', 'c1')])
      .when({ studentId: 's1', courseId: 'c1' })
      .thenThrows(StudentAlreadySubscribedError);
  });

  test('a full course: CourseFullError', async () => {
    await spec
      .given([courseDefined('c1', 2), studentSubscribedToCourse('s1', 'c1'), studentSubscribedToCourse('s2', 'c1')])
      .when({ studentId: 's3', courseId: 'c1' })
      .thenThrows((error) => error instanceof CourseFullError && error.capacity === 2);
  });

  test('a course with capacity 0 is full from the start', async () => {
    await spec.given([courseDefined('c1', 0)]).when({ studentId: 's1', courseId: 'c1' }).thenThrows(CourseFullError);
  });

  test('a raised capacity makes room; a lowered one takes it away', async () => {
    const full = [courseDefined('c1', 1), studentSubscribedToCourse('s1', 'c1')];
    await spec.given([...full, courseCapacityChanged('c1', 2)]).when({ studentId: 's2', courseId: 'c1' }).then([studentSubscribedToCourse('s2', 'c1')]);
    await spec.given([courseDefined('c1', 2), courseCapacityChanged('c1', 0)]).when({ studentId: 's2', courseId: 'c1' }).thenThrows(CourseFullError);
  });

  test(`subscribed to ${MAX_COURSES_PER_STUDENT} courses: StudentSubscriptionLimitReachedError`, async () => {
    const courses = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
    const belowLimit = courses.slice(0, MAX_COURSES_PER_STUDENT - 1);
    const atLimit = courses.slice(0, MAX_COURSES_PER_STUDENT);
    const defined = courses.map((courseId) => courseDefined(courseId, 10));
    await spec
      .given([...defined, ...belowLimit.map((courseId) => studentSubscribedToCourse('s1', courseId))])
      .when({ studentId: 's1', courseId: 'c5' })
      .then([studentSubscribedToCourse('s1', 'c5')]);
    await spec
      .given([...defined, ...atLimit.map((courseId) => studentSubscribedToCourse('s1', courseId))])
      .when({ studentId: 's1', courseId: 'c6' })
      .thenThrows(StudentSubscriptionLimitReachedError);
  });

  test("other students' subscriptions count for the course, not for the student", async () => {
    const others = ['s2', 's3', 's4', 's5', 's6'].map((studentId) => studentSubscribedToCourse(studentId, 'c1'));
    await spec.given([courseDefined('c1', 10), ...others]).when({ studentId: 's1', courseId: 'c1' }).then([studentSubscribedToCourse('s1', 'c1')]);
  });

  test('domain errors carry a stable code', () => {
    assert.equal(new CourseFullError('c1', 3).code, 'COURSE_FULL');
    assert.ok(isCourseSubscriptionError(new StudentSubscriptionLimitReachedError('s1'), 'STUDENT_SUBSCRIPTION_LIMIT_REACHED'));
    assert.ok(!isCourseSubscriptionError(new Error('other')));
  });
});

describe('projections', () => {
  const history = [
    courseDefined('c1', 10),
    courseDefined('c2', 20),
    courseCapacityChanged('c1', 12),
    studentSubscribedToCourse('s1', 'c1'),
    studentSubscribedToCourse('s1', 'c2'),
    studentSubscribedToCourse('s2', 'c1'),
  ];

  test('courseCapacity follows the definition and every change of this course only', async () => {
    await ProjectionSpecification.for(courseCapacity('c1')).given(history).then(12);
    await ProjectionSpecification.for(courseCapacity('c2')).given(history).then(20);
    await ProjectionSpecification.for(courseCapacity('c3')).given(history).then(0);
  });

  test('subscription counts per course and per student', async () => {
    await ProjectionSpecification.for(courseSubscriptionCount('c1')).given(history).then(2);
    await ProjectionSpecification.for(studentSubscriptionCount('s1')).given(history).then(2);
    await ProjectionSpecification.for(studentSubscriptionCount('s2')).given(history).then(1);
  });

  test('studentAlreadySubscribed needs both tags on one event', async () => {
    await ProjectionSpecification.for(studentAlreadySubscribed('s2', 'c1')).given(history).then(true);
    await ProjectionSpecification.for(studentAlreadySubscribed('s2', 'c2')).given(history).then(false);
  });
});

// ---------------------------------------------------------------------------------------------
// On PostgreSQL

describe('on PostgreSQL', () => {
  const INSTANCES = 4;
  let stores: EventStore[] = [];
  let dispose: () => Promise<void>;

  before(async () => ({ stores, dispose } = await createTestStores(INSTANCES, { poolSize: 4 })));
  after(() => dispose?.());

  const newId = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;
  const subscriptionsOf = async (tag: string): Promise<string[]> => {
    const { events } = await stores[0]!.read<{ studentId: string; courseId: string }>(Query.of(QueryItem.types('StudentSubscribedToCourse').tags(tag)));
    return events.map((event) => `${event.data.studentId}@${event.data.courseId}`);
  };


  const rejections = (results: PromiseSettledResult<unknown>[]): unknown[] => results.flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));

  test('define, subscribe and change capacity end to end; a subscription is found through either tag', async () => {
    const [store] = stores as [EventStore];
    const courseId = newId('course');
    const studentId = newId('student');
    await store.execute(defineCourse, { courseId, capacity: 1 });
    const { position } = await store.execute(subscribeStudentToCourse, { studentId, courseId });
    assert.ok(position !== undefined);
    await assert.rejects(store.execute(subscribeStudentToCourse, { studentId: newId('student'), courseId }), CourseFullError);
    await store.execute(changeCourseCapacity, { courseId, newCapacity: 2 });
    await store.execute(subscribeStudentToCourse, { studentId: newId('student'), courseId });
    assert.equal((await subscriptionsOf(courseTag(courseId))).length, 2);
    assert.deepEqual(await subscriptionsOf(studentTag(studentId)), [`${studentId}@${courseId}`]);
  });

  test('a capacity change between the read and the append is inside the boundary: the subscription is decided again', async () => {
    const [store] = stores as [EventStore];
    const courseId = newId('course');
    await store.execute(defineCourse, { courseId, capacity: 1 });
    let interleaved = false;
    const interleaving: CommandStore = {
      read: async <Data>(query: Query, options?: ReadOptions) => {
        const result = await store.read<Data>(query, options);
        if (!interleaved) {
          interleaved = true;
          await store.execute(changeCourseCapacity, { courseId, newCapacity: 0 });
        }
        return result;
      },
      append: (events, condition, options) => store.append(events, condition, options),
    };
    await assert.rejects(executeCommand(interleaving, subscribeStudentToCourse, { studentId: newId('student'), courseId }), CourseFullError);
    assert.deepEqual(await subscriptionsOf(courseTag(courseId)), []);
  });

  test(`30 students race for 3 seats from ${INSTANCES} store instances: exactly 3 subscribe, 27 get CourseFullError`, async () => {
    const courseId = newId('course');
    await stores[0]!.execute(defineCourse, { courseId, capacity: 3 });
    const results = await race(stores, 30, (store) => store.execute(subscribeStudentToCourse, { studentId: newId('student'), courseId }, { maxAttempts: 50 }));
    const errors = rejections(results);
    assert.equal(errors.length, 27);
    for (const error of errors) assert.ok(error instanceof CourseFullError, String(error));
    assert.equal((await subscriptionsOf(courseTag(courseId))).length, 3);
  });

  test(`one student subscribes to 12 courses at once from ${INSTANCES} store instances: exactly ${MAX_COURSES_PER_STUDENT} succeed`, async () => {
    const studentId = newId('student');
    const courseIds = Array.from({ length: 12 }, () => newId('course'));
    for (const courseId of courseIds) await stores[0]!.execute(defineCourse, { courseId, capacity: 10 });
    const results = await race(stores, courseIds.length, (store, index) => store.execute(subscribeStudentToCourse, { studentId, courseId: courseIds[index]! }, { maxAttempts: 50 }));
    const errors = rejections(results);
    assert.equal(errors.length, courseIds.length - MAX_COURSES_PER_STUDENT);
    for (const error of errors) assert.ok(error instanceof StudentSubscriptionLimitReachedError, String(error));
    assert.equal((await subscriptionsOf(studentTag(studentId))).length, MAX_COURSES_PER_STUDENT);
  });

  test('subscriptions of different students to different courses never conflict: each succeeds at the first attempt', async () => {
    const pairs = Array.from({ length: 20 }, () => ({ studentId: newId('student'), courseId: newId('course') }));
    for (const { courseId } of pairs) await stores[0]!.execute(defineCourse, { courseId, capacity: 1 });
    const results = await race(stores, pairs.length, (store, index) => store.execute(subscribeStudentToCourse, pairs[index]!, { maxAttempts: 1 }));
    assert.deepEqual(
      results.map((result) => (result.status === 'fulfilled' ? result.value.attempts : String(result.reason))),
      pairs.map(() => 1),
    );
  });
});
