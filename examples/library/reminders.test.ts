// The return-reminder automation (reminders.ts) on the in-memory store and on PostgreSQL: one
// reminder per lending that is still open when the automation gets to it, due three weeks later;
// none for a copy returned before; lendings while it runs get theirs too.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Query, QueryItem, type Automation, type AutomationStore, type DcbEventStore } from '../../src/index.ts';
import { InMemoryEventStore } from '../../src/testing/index.ts';
import { createTestStore, keepEventLoopAliveDuringTests } from '../../test/helpers.ts';
import { bookCopyLentToReader, bookCopyReturnedByReader } from './domain.ts';
import { RETURN_PERIOD_DAYS, returnReminders, type ReturnReminderScheduled } from './reminders.ts';

keepEventLoopAliveDuringTests();

const disposers: Array<() => Promise<void>> = [];
after(async () => {
  for (const dispose of disposers) await dispose();
});

const stores: Array<[string, () => Promise<DcbEventStore & AutomationStore>]> = [
  ['in memory', async () => {
    const store = new InMemoryEventStore();
    disposers.push(() => store.close());
    return store;
  }],
  ['PostgreSQL', async () => {
    const { store, dispose } = await createTestStore({ poolSize: 3 });
    disposers.push(dispose);
    return store;
  }],
];

async function caughtUp(store: DcbEventStore, automation: Automation): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await automation.status()).position !== (await store.head())) {
    if (Date.now() > deadline) throw new Error('the automation did not reach the head');
    await delay(10);
  }
}

const T0 = new Date('2025-05-01T10:00:00.000Z');
const days = (n: number): Date => new Date(T0.getTime() + n * 24 * 60 * 60 * 1000);

for (const [name, open] of stores) {
  describe(`return reminders (${name})`, { timeout: 30_000 }, () => {
    test('one reminder per open lending, due three weeks after it; none for a copy returned before the automation got to it; later lendings too', async () => {
      const store = await open();
      await store.append([
        bookCopyLentToReader('b1', 'r1', T0),
        bookCopyLentToReader('b2', 'r1', T0),
        bookCopyReturnedByReader('b2', 'r1', days(2)),
        bookCopyLentToReader('b2', 'r2', days(3)), // lent again: this lending gets one, the first none
      ]);
      const automation = store.automation('return-reminders', { ...returnReminders, pollIntervalMs: 50 });
      const controller = new AbortController();
      const running = automation.run({ signal: controller.signal });
      await caughtUp(store, automation);
      await store.append(bookCopyLentToReader('b3', 'r2', days(5)));
      await caughtUp(store, automation);
      controller.abort();
      await running;

      const { events } = await store.read<ReturnReminderScheduled>(Query.of(QueryItem.types('ReturnReminderScheduled')));
      assert.deepEqual(events.map((event) => event.data), [
        { BookID: 'b1', ReaderID: 'r1', DueAt: days(RETURN_PERIOD_DAYS).toISOString() },
        { BookID: 'b2', ReaderID: 'r2', DueAt: days(3 + RETURN_PERIOD_DAYS).toISOString() },
        { BookID: 'b3', ReaderID: 'r2', DueAt: days(5 + RETURN_PERIOD_DAYS).toISOString() },
      ]);
      assert.deepEqual(events[0]!.tags, ['book:b1', 'reader:r1']);
    });
  });
}
