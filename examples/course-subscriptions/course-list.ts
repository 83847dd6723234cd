// A read model for screens and reports: one row per course with its capacity and the number of
// students subscribed, kept by a durable consumer. Decisions never read it (they read the events
// through their own projections); it may lag the log by a moment, but it never misses or doubles
// an event: each batch of events and the consumer's checkpoint commit in one transaction.
import { Query, QueryItem, type ConsumerTransaction, type EventStore, type SequencedEvent } from '../../src/index.ts';
import type { CourseSubscriptionEvents } from './domain.ts';

export const COURSE_LIST_CONSUMER = 'course-list';

type CourseEvent = { [Type in keyof CourseSubscriptionEvents]: SequencedEvent<CourseSubscriptionEvents[Type]> & { type: Type } }[keyof CourseSubscriptionEvents];

/**
 * The course list in table `<schema>.course_list`, in the store's database (so that its writes
 * share the consumer's transaction). The schema name is validated, then quoted: identifiers are
 * never spliced into SQL unchecked.
 */
export function courseList(schema = 'public') {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema name: ${JSON.stringify(schema)}`);
  const table = `"${schema}".course_list`;

  async function apply(event: CourseEvent, transaction: ConsumerTransaction): Promise<void> {
    switch (event.type) {
      case 'CourseDefined':
        await transaction.query(`INSERT INTO ${table} (course_id, capacity) VALUES ($1, $2)`, [event.data.courseId, event.data.capacity]);
        return;
      case 'CourseCapacityChanged':
        await transaction.query(`UPDATE ${table} SET capacity = $2 WHERE course_id = $1`, [event.data.courseId, event.data.newCapacity]);
        return;
      case 'StudentSubscribedToCourse':
        // Not idempotent on its own: safe because it commits with the checkpoint.
        await transaction.query(`UPDATE ${table} SET subscriptions = subscriptions + 1 WHERE course_id = $1`, [event.data.courseId]);
        return;
    }
  }

  return {
    async createTable(transaction: ConsumerTransaction): Promise<void> {
      await transaction.query(`CREATE TABLE IF NOT EXISTS ${table} (
        course_id     text    PRIMARY KEY,
        capacity      integer NOT NULL,
        subscriptions integer NOT NULL DEFAULT 0
      )`);
    },

    /**
     * The durable consumer that keeps the table. Run one, or several: the others wait as
     * standbys and take over when the running one dies.
     */
    consumer(store: EventStore, options: { instanceId?: string } = {}) {
      return store.consumer(COURSE_LIST_CONSUMER, {
        query: Query.of(QueryItem.types('CourseDefined', 'CourseCapacityChanged', 'StudentSubscribedToCourse')),
        handle: (event, { transaction }) => apply(event as CourseEvent, transaction),
        ...options,
      });
    },

    /** Empties the table and starts the consumer over from the first event (say, after fixing `apply`). */
    rebuild(store: EventStore): Promise<void> {
      return store.resetConsumer(COURSE_LIST_CONSUMER, {
        onReset: async (transaction) => {
          await transaction.query(`TRUNCATE ${table}`);
        },
      });
    },

    async rows(transaction: ConsumerTransaction): Promise<Record<string, { capacity: number; subscriptions: number }>> {
      const { rows } = await transaction.query<{ course_id: string; capacity: number; subscriptions: number }>(`SELECT * FROM ${table} ORDER BY course_id`);
      return Object.fromEntries(rows.map((row) => [row.course_id, { capacity: row.capacity, subscriptions: row.subscriptions }]));
    },
  };
}
