// The course list read model on PostgreSQL: it ends equal to what the log says while commands
// race and the consumer's connection is killed again and again; and it can be rebuilt.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { EventStore } from '../../src/index.ts';
import { createTestStore, withClient } from '../../test/helpers.ts';
import { courseList } from './course-list.ts';
import { changeCourseCapacity, defineCourse, isCourseSubscriptionError, subscribeStudentToCourse } from './domain.ts';

describe('course list read model', () => {
  let store: EventStore;
  let dispose: () => Promise<void>;
  let list: ReturnType<typeof courseList>;
  let schema: string;

  before(async () => {
    const created = await createTestStore();
    ({ store, dispose, schema } = created);
    list = courseList(created.schema); // in the test's schema, dropped with it
    await withClient((client) => list.createTable(client));
  });
  after(() => dispose?.());

  async function caughtUp(): Promise<void> {
    const head = await store.head();
    for (let waited = 0; (await store.consumerStatus('course-list')).position < head; waited += 20) {
      assert.ok(waited < 15_000, 'the consumer did not catch up');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  test('follows racing commands exactly once while its connection is killed, then rebuilds', async () => {
    const controller = new AbortController();
    const running = list.consumer(store, { instanceId: 'test' }).run({ signal: controller.signal });
    const courses = ['c1', 'c2', 'c3'].map((id) => `${id}-${randomUUID().slice(0, 6)}`);
    for (const courseId of courses) await store.execute(defineCourse, { courseId, capacity: 4 });

    // Kill the consumer's session (the one holding its lease) again and again while it works:
    // each time its open transaction rolls back, and it must resume from its checkpoint.
    let kills = 0;
    const killer = setInterval(() => {
      withClient((client) =>
        client.query(
          `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.classid = (SELECT oid FROM pg_namespace WHERE nspname = $1)
              AND l.objid = (SELECT lease_key::oid FROM "${schema}".consumers WHERE name = 'course-list')`,
          [schema],
        ),
      ).then((result) => (kills += result.rowCount ?? 0), () => undefined);
    }, 40);
    const subscriptions = courses.flatMap((courseId) => Array.from({ length: 6 }, (_, index) => ({ courseId, studentId: `s${index}` })));
    const outcomes = await Promise.allSettled(subscriptions.map((command) => store.execute(subscribeStudentToCourse, command, { maxAttempts: 50 })));
    await store.execute(changeCourseCapacity, { courseId: courses[0]!, newCapacity: 9 });
    await caughtUp();
    clearInterval(killer);
    for (const outcome of outcomes) if (outcome.status === 'rejected') assert.ok(isCourseSubscriptionError(outcome.reason, 'COURSE_FULL'), String(outcome.reason));

    const expected = Object.fromEntries(courses.map((courseId, index) => [courseId, { capacity: index === 0 ? 9 : 4, subscriptions: 4 }]));
    assert.deepEqual(await withClient((client) => list.rows(client)), expected);
    assert.ok(kills > 0, 'the test never killed the consumer');
    controller.abort();
    await running;

    await list.rebuild(store);
    assert.deepEqual(await withClient((client) => list.rows(client)), {});
    const again = new AbortController();
    const rebuilding = list.consumer(store).run({ signal: again.signal });
    await caughtUp();
    assert.deepEqual(await withClient((client) => list.rows(client)), expected);
    again.abort();
    await rebuilding;
  });
});
