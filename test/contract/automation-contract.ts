// The automation contract both stores keep (test/unit/automation-in-memory.test.ts,
// test/integration/automations.test.ts): reactions appended once per triggering event and in its
// order, nothing for "nothing to do", retries and the failed state as consumers have them, a
// lost race decided again on fresh state, stop and resume continuing where it left off.
// Every test gets a fresh, empty store from the factory.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  AppendConditionFailedError,
  ConsumerFailedError,
  InvalidInputError,
  Query,
  QueryItem,
  defineProjection,
  reactionId,
  type Automation,
  type AutomationStore,
  type EventInput,
  type SequencedEvent,
} from '../../src/index.ts';
import type { ContractStore } from './event-store-contract.ts';

export type AutomationContractStore = ContractStore & AutomationStore;
export type AutomationContractFactory = () => Promise<{ store: AutomationContractStore; dispose(): Promise<void> }>;

const LENT = Query.of(QueryItem.types('BookLent'));
const REMINDERS = Query.of(QueryItem.types('ReminderScheduled'));
const FAST = { pollIntervalMs: 50, takeoverIntervalMs: 50, retryDelayMs: 1 } as const;

const lent = (book: string, reader: string): EventInput => ({ type: 'BookLent', tags: [`book:${book}`, `reader:${reader}`], data: { book, reader } });
const other = (n: number): EventInput => ({ type: 'Unrelated', data: { n } });
const reminderFor = (event: SequencedEvent<{ book: string; reader: string }>): EventInput => ({
  type: 'ReminderScheduled',
  tags: [`reader:${event.data.reader}`],
  data: { trigger: event.id, book: event.data.book },
});

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

/** Runs `automation` in the background; `stop()` aborts it and returns how the run ended. */
function start(automation: Automation): { stop: () => Promise<void>; running: Promise<void> } {
  const controller = new AbortController();
  const running = automation.run({ signal: controller.signal });
  running.catch(() => undefined);
  return {
    running,
    stop: async () => {
      controller.abort();
      await running;
    },
  };
}

/** Waits until the automation's checkpoint reached the store's head. */
async function caughtUp(store: AutomationContractStore, automation: Automation): Promise<void> {
  await waitFor(`automation ${automation.name} to reach the head`, async () => {
    const status = await automation.status();
    return status.position === (await store.head());
  });
}

async function reminders(store: AutomationContractStore): Promise<SequencedEvent<{ trigger: string; book: string; n?: number }>[]> {
  return (await store.read<{ trigger: string; book: string; n?: number }>(REMINDERS)).events;
}

export function defineAutomationContract(name: string, factory: AutomationContractFactory): void {
  describe(`${name}: automations`, { timeout: 60_000 }, () => {
    const withStore = (body: (store: AutomationContractStore) => Promise<void>) => async () => {
      const { store, dispose } = await factory();
      try {
        await body(store);
      } finally {
        await dispose();
      }
    };

    test('one reaction per triggering event, in the order of the triggers, with ids derived from (name, trigger, index); other events are not decided', withStore(async (store) => {
      await store.append([lent('b1', 'r1'), other(1), lent('b2', 'r1'), other(2), lent('b3', 'r2')]);
      const decided: bigint[] = [];
      const automation = store.automation<{ book: string; reader: string }>('reminders', {
        query: LENT,
        ...FAST,
        decide: (event) => {
          decided.push(event.position);
          return reminderFor(event);
        },
      });
      const run = start(automation);
      await caughtUp(store, automation);
      await store.append([lent('b4', 'r3'), other(3)]);
      await caughtUp(store, automation);
      await run.stop();
      const triggers = (await store.read(LENT)).events;
      const written = await reminders(store);
      assert.deepEqual(written.map((event) => event.data.trigger), triggers.map((event) => event.id));
      assert.deepEqual(written.map((event) => event.id), triggers.map((event) => reactionId('reminders', event.id, 0)));
      assert.deepEqual(decided, triggers.map((event) => event.position));
      const status = await automation.status();
      assert.equal(status.state, 'idle');
      assert.equal(status.position, await store.head());
      assert.equal(status.lag, 0n);
      assert.equal(status.lastError, null);
    }));

    test('decide returning nothing, an empty array or several events: nothing, nothing, all of them in order', withStore(async (store) => {
      await store.append([lent('b1', 'r1'), lent('b2', 'r1'), lent('b3', 'r1')]);
      const automation = store.automation<{ book: string; reader: string }>('varied', {
        query: LENT,
        ...FAST,
        decide: (event) => {
          if (event.data.book === 'b1') return undefined;
          if (event.data.book === 'b2') return [];
          return [0, 1, 2].map((n) => ({ ...reminderFor(event), data: { ...reminderFor(event).data as object, n } }));
        },
      });
      const run = start(automation);
      await caughtUp(store, automation);
      await run.stop();
      const written = await reminders(store);
      assert.deepEqual(written.map((event) => event.data.n), [0, 1, 2]);
      assert.deepEqual(written.map((event) => event.position), [4n, 5n, 6n]);
      const trigger = (await store.read(LENT)).events[2]!;
      assert.deepEqual(written.map((event) => event.id), [0, 1, 2].map((index) => reactionId('varied', trigger.id, index)));
    }));

    test('stopped and started again (a new object, same name): continues after the last event it reacted to, deciding no event twice', withStore(async (store) => {
      await store.append([lent('b1', 'r1'), lent('b2', 'r1')]);
      const decided: string[] = [];
      const make = (): Automation => store.automation<{ book: string; reader: string }>('resumable', {
        query: LENT,
        ...FAST,
        decide: (event) => {
          decided.push(event.data.book);
          return reminderFor(event);
        },
      });
      const first = make();
      const run = start(first);
      await caughtUp(store, first);
      await run.stop();
      await store.append([lent('b3', 'r1'), lent('b4', 'r2')]);
      assert.equal((await first.status()).lag, 2n, 'the events appended while it was stopped are its lag');
      const second = make();
      const again = start(second);
      await caughtUp(store, second);
      await again.stop();
      assert.deepEqual(decided, ['b1', 'b2', 'b3', 'b4']);
      assert.deepEqual((await reminders(store)).map((event) => event.data.book), ['b1', 'b2', 'b3', 'b4']);
    }));

    test('decide throws twice on one event: retried (attempt 3 succeeds), its reaction appended once, the events after it too', withStore(async (store) => {
      await store.append([lent('b1', 'r1'), lent('b2', 'r1'), lent('b3', 'r1')]);
      const attempts: Array<[string, number]> = [];
      const automation = store.automation<{ book: string; reader: string }>('flaky', {
        query: LENT,
        ...FAST,
        decide: (event, { attempt }) => {
          attempts.push([event.data.book, attempt]);
          if (event.data.book === 'b2' && attempt < 3) throw new Error('mail server down');
          return reminderFor(event);
        },
      });
      const run = start(automation);
      await caughtUp(store, automation);
      await run.stop();
      assert.deepEqual((await reminders(store)).map((event) => event.data.book), ['b1', 'b2', 'b3']);
      assert.deepEqual(attempts.filter(([book]) => book === 'b2').map(([, attempt]) => attempt), [1, 2, 3]);
    }));

    test('decide always throws on one event: run() rejects with ConsumerFailedError after maxAttempts, the status shows it; the events before it keep their reactions, none after it; a fixed run resumes at it', withStore(async (store) => {
      await store.append([lent('b1', 'r1'), lent('b2', 'r1'), lent('b3', 'r1')]);
      const failing = store.automation<{ book: string; reader: string }>('failing', {
        query: LENT,
        ...FAST,
        maxAttempts: 3,
        decide: (event) => {
          if (event.data.book === 'b2') throw new Error('cannot decide b2');
          return reminderFor(event);
        },
      });
      const error = await failing.run().then(() => undefined, (caught: unknown) => caught);
      assert.ok(error instanceof ConsumerFailedError, String(error));
      assert.equal(error.position, 2n);
      assert.equal(error.attempts, 3);
      const status = await failing.status();
      assert.equal(status.state, 'failed');
      assert.equal(status.failedPosition, 2n);
      assert.match(status.lastError ?? '', /cannot decide b2/);
      assert.equal(status.position, 1n);
      assert.deepEqual((await reminders(store)).map((event) => event.data.book), ['b1']);

      const fixed = store.automation<{ book: string; reader: string }>('failing', { query: LENT, ...FAST, decide: reminderFor });
      const run = start(fixed);
      await caughtUp(store, fixed);
      await run.stop();
      assert.deepEqual((await reminders(store)).map((event) => event.data.book), ['b1', 'b2', 'b3']);
      const after = await fixed.status();
      assert.equal(after.state, 'idle');
      assert.equal(after.failedPosition, null);
    }));

    test('with projections: decide sees the decision model; an event it depends on appended between its read and the append makes the append fail, and the event is decided again on the new state', withStore(async (store) => {
      // At most two reminders per reader: the third trigger of r1 gets none.
      const remindersOfReader = (reader: string) => defineProjection({
        initialState: 0,
        handlers: { ReminderScheduled: (count: number) => count + 1 },
        tags: [`reader:${reader}`],
      });
      await store.append([lent('b1', 'r1'), lent('b2', 'r1')]);
      const seen: Array<[string, number, number]> = [];
      let interfered = false;
      const automation = store.automation('limited', {
        query: LENT,
        ...FAST,
        batchSize: 1, // the interference comes between two events' commits on both stores
        projections: (event: SequencedEvent<{ book: string; reader: string }>) => ({ count: remindersOfReader(event.data.reader) }),
        decide: async (event, { state, attempt }) => {
          seen.push([event.data.book, attempt, state.count]);
          if (event.data.book === 'b2' && !interfered) {
            // Another writer gets in between this decision's read and its append.
            interfered = true;
            await store.append({ type: 'ReminderScheduled', tags: ['reader:r1'], data: { trigger: 'manual', book: 'x' } });
          }
          return state.count < 2 ? reminderFor(event) : undefined;
        },
      });
      const run = start(automation);
      await caughtUp(store, automation);
      await run.stop();
      assert.deepEqual(seen, [['b1', 1, 0], ['b2', 1, 1], ['b2', 2, 2]], 'b2 was decided again, on the state with the interfering reminder');
      assert.deepEqual((await reminders(store)).map((event) => event.data.book), ['b1', 'x']);
    }));

    test('with projections: reactions that a later event\'s decision depends on count, also within one batch (the later one is decided again)', withStore(async (store) => {
      const remindersOfReader = (reader: string) => defineProjection({ initialState: 0, handlers: { ReminderScheduled: (count: number) => count + 1 }, tags: [`reader:${reader}`] });
      await store.append([lent('b1', 'r1'), lent('b2', 'r1'), lent('b3', 'r1'), lent('b4', 'r2')]);
      const automation = store.automation('limited-in-batch', {
        query: LENT,
        ...FAST,
        projections: (event: SequencedEvent<{ book: string; reader: string }>) => ({ count: remindersOfReader(event.data.reader) }),
        decide: (event, { state }) => (state.count < 2 ? reminderFor(event) : undefined),
      });
      const run = start(automation);
      await caughtUp(store, automation);
      await run.stop();
      assert.deepEqual((await reminders(store)).map((event) => event.data.book), ['b1', 'b2', 'b4']);
    }));

    test('a decision model that loses every race: the automation fails at that event with the lost race as the cause', withStore(async (store) => {
      await store.append(lent('b1', 'r1'));
      const automation = store.automation('always-losing', {
        query: LENT,
        ...FAST,
        maxAttempts: 2,
        projections: () => ({ count: defineProjection({ initialState: 0, handlers: { Noise: (count: number) => count + 1 } }) }),
        decide: async (event: SequencedEvent<{ book: string; reader: string }>) => {
          await store.append({ type: 'Noise', data: {} });
          return reminderFor(event);
        },
      });
      const error = await automation.run().then(() => undefined, (caught: unknown) => caught);
      assert.ok(error instanceof ConsumerFailedError, String(error));
      assert.ok(error.cause instanceof AppendConditionFailedError, String(error.cause));
      assert.deepEqual(await reminders(store), []);
    }));

    test('invalid options are rejected at once', withStore(async (store) => {
      const untyped = store as unknown as { automation(name: unknown, options: unknown): Automation };
      assert.throws(() => untyped.automation('', { query: LENT, decide: () => undefined }), InvalidInputError);
      assert.throws(() => untyped.automation('x', { decide: () => undefined }), InvalidInputError);
      assert.throws(() => untyped.automation('x', { query: LENT }), InvalidInputError);
      assert.throws(() => untyped.automation('x', { query: LENT, decide: () => undefined, projections: {} }), InvalidInputError);
      assert.throws(() => untyped.automation('x', { query: LENT, decide: () => undefined, batchSize: 0 }), InvalidInputError);
    }));
  });
}
