// Concurrency proofs of the three guarantees (see DCB.md) against a real PostgreSQL:
// A. two appends whose conditions overlap never both succeed, and disjoint ones never conflict;
// B. positions are gap-free and follow commit order;
// C. reads are prefix-complete: a read returning head H sees every event up to H, and never
//    waits for an append in flight.
// Several EventStore instances on one schema stand in for separate processes (own pool, own
// batcher); several appends on one instance ride in one batch.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import {
  AppendConditionFailedError,
  Query,
  QueryItem,
  type AppendCondition,
  type AppendResult,
  type EventInput,
  type EventStore,
  type EventStoreOptions,
  type SequencedEvent,
} from '../../src/index.ts';
import { connectToSchema, createTestStore, startGate, withClient, seededRandom } from '../helpers.ts';
import { checkHistory, matchesQuery, type AttemptRecord, type AttemptStamp } from './history-checker.ts';

const LENT = 'BookCopyLentToReader';
const RETURNED = 'BookCopyReturnedByReader';

// ---------------------------------------------------------------------------------------------
// Fixtures

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  const errors: unknown[] = [];
  for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => errors.push(error));
  if (errors.length > 0) throw errors[0];
});

/**
 * `count` store instances on one fresh schema, as `count` processes would have. Closed (and the
 * schema dropped) by the file's `after` hook.
 */
async function openStores(count: number, options: (index: number) => EventStoreOptions = () => ({})): Promise<{ stores: EventStore[]; schema: string }> {
  const first = await createTestStore({ poolSize: 3, ...options(0) });
  let others: EventStore[] = [];
  cleanups.push(async () => {
    await Promise.all(others.map((store) => store.close()));
    await first.dispose();
  });
  const connected = await Promise.allSettled(Array.from({ length: count - 1 }, (_, index) => connectToSchema(first.schema, { poolSize: 3, ...options(index + 1) })));
  others = connected.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failure = connected.find((result) => result.status === 'rejected');
  if (failure) throw failure.reason;
  return { stores: [first.store, ...others], schema: first.schema };
}

/** Odd instances check conditions through the indexes, even ones by walking recent events. */
const alternateScanPaths = (index: number): EventStoreOptions => (index % 2 === 1 ? { conditionScanLimit: 0 } : {});

interface Racer {
  store: EventStore;
  query: Query;
  events: EventInput[];
}

/**
 * Every racer reads its query, then all wait at a start gate, then all append under
 * `{ failIfEventsMatch: query, after: head }` at once.
 */
async function race(racers: Racer[]): Promise<{ heads: bigint[]; results: PromiseSettledResult<AppendResult>[] }> {
  const reads = await Promise.all(racers.map((racer) => racer.store.read(racer.query)));
  const gate = startGate();
  const appends = racers.map(async (racer, index) => {
    await gate.wait();
    return racer.store.append(racer.events, { failIfEventsMatch: racer.query, after: reads[index]!.head });
  });
  gate.open();
  return { heads: reads.map((read) => read.head), results: await Promise.allSettled(appends) };
}

interface Tally {
  winners: number[];
  positions: bigint[];
  conflicts: bigint[];
}

/** Splits settled appends into winners and AppendConditionFailedError losers; anything else fails the test. */
function tally(results: PromiseSettledResult<AppendResult>[]): Tally {
  const out: Tally = { winners: [], positions: [], conflicts: [] };
  results.forEach((result, index) => {
    if (result.status === 'fulfilled') {
      out.winners.push(index);
      out.positions.push(result.value.position);
    } else {
      assert.ok(result.reason instanceof AppendConditionFailedError, `racer ${index} failed with something other than AppendConditionFailedError: ${String(result.reason)}`);
      assert.ok(result.reason.conflictingPosition !== undefined, `racer ${index}: the error names no conflicting position`);
      out.conflicts.push(result.reason.conflictingPosition);
    }
  });
  return out;
}

function assertExactlyOneWinner(results: PromiseSettledResult<AppendResult>[], context: string): { winner: number; position: bigint } {
  const { winners, positions, conflicts } = tally(results);
  assert.equal(winners.length, 1, `${context}: expected exactly one winner, got ${winners.length} (racers ${winners.join(', ')})`);
  assert.equal(conflicts.length, results.length - 1, `${context}: expected ${results.length - 1} condition failures`);
  return { winner: winners[0]!, position: positions[0]! };
}

function range(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)]!;
}

/** Positions 1..head exactly, ascending: what a prefix-complete read of Query.all() returns. */
function assertPrefix(events: readonly SequencedEvent[], from: bigint, head: bigint, context: string): void {
  const positions = events.map((event) => event.position);
  const expected = [];
  for (let position = from + 1n; position <= head; position++) expected.push(position);
  assert.deepEqual(positions, expected, `${context}: a read with head ${head} after ${from} must return exactly positions ${from + 1n}..${head}`);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------
// 1-3: one shared schema, 8 instances (as 8 processes)

describe('guarantee A: atomic check-then-insert', () => {
  let cluster: EventStore[];
  let schema: string;
  before(async () => ({ stores: cluster, schema } = await openStores(8, alternateScanPaths)));

  test('8 instances racing on one boundary: exactly one wins, every round', async () => {
    for (let round = 0; round < 30; round++) {
      const book = `book:x${round}`;
      const query = Query.of(QueryItem.types(LENT, RETURNED).tags(book));
      // Half the rounds already have an event in the boundary (before the racers' `after`).
      if (round % 2 === 1) await cluster[round % 8]!.append({ type: RETURNED, tags: [book], data: { seed: round } });
      const { heads, results } = await race(cluster.map((store, racer) => ({ store, query, events: [{ type: LENT, tags: [book, `reader:r${racer}`], data: { racer } }] })));
      assert.equal(new Set(heads).size, 1, 'all racers read the same head');
      const { winner, position } = assertExactlyOneWinner(results, `round ${round}`);
      for (const conflict of tally(results).conflicts) assert.equal(conflict, position, `round ${round}: losers must cite the winner's event`);
      const { events } = await cluster[0]!.read(query, { after: heads[0]! });
      assert.deepEqual(events.map((event) => [event.position, (event.data as { racer: number }).racer]), [[position, winner]], `round ${round}: only the winner's event is stored`);
    }
  });

  test('racers inside one instance ride in one batch: the first wins, later commands see its event', async () => {
    for (const store of [cluster[0]!, cluster[1]!]) {
      for (let round = 0; round < 15; round++) {
        const book = `book:one-${store === cluster[0] ? 'walk' : 'index'}-${round}`;
        const query = Query.of(QueryItem.types(LENT, RETURNED).tags(book));
        const { head } = await store.read(query);
        // Occupies the instance's single in-flight batch, so that everything below queues and
        // then goes as one batch, checked in submission order.
        const blocker = store.append({ type: 'Noise', tags: [`noise:${round}`], data: {} });
        const racers = range(8).map((racer) => store.append({ type: LENT, tags: [book, `reader:r${racer}`], data: { racer } }, { failIfEventsMatch: query, after: head }));
        const marker = store.append({ type: 'Marker', tags: [book], data: {} });
        const [blocked, markerResult, ...results] = await Promise.allSettled([blocker, marker, ...racers]);
        assert.equal(blocked.status, 'fulfilled');
        assert.equal(markerResult.status, 'fulfilled');
        const { winner, position } = assertExactlyOneWinner(results, `one instance, round ${round}`);
        assert.equal(winner, 0, 'the batch checks commands in submission order: the first racer wins');
        for (const conflict of tally(results).conflicts) assert.equal(conflict, position, 'losers cite the winner, written earlier in the same batch');
        assert.equal(markerResult.value.position, position + 1n, 'the losers wrote nothing: the marker follows the winner directly');
        // Same transaction (recorded_at is per batch, to the microsecond), different from the blocker's.
        const stamps = await withClient(async (client) => {
          const { rows } = await client.query<{ position: string; recorded: string }>(
            `SELECT e.position::text, e.recorded_at::text AS recorded FROM "${schema}".events e WHERE e.position = ANY ($1::bigint[]) ORDER BY e.position`,
            [[blocked.value.position, position, markerResult.value.position].map(String)],
          );
          return rows.map((row) => row.recorded);
        });
        assert.equal(stamps[1], stamps[2], 'the winner and the marker were written by one batch');
        assert.notEqual(stamps[0], stamps[1], 'the blocker went in an earlier batch');
      }
    }
  });

  test('a mix: 2 racers in each of 8 instances on one boundary, exactly one wins', async () => {
    for (let round = 0; round < 20; round++) {
      const book = `book:mix${round}`;
      const query = Query.of(QueryItem.types(LENT, RETURNED).tags(book));
      const racers: Racer[] = [];
      for (const [index, store] of cluster.entries()) {
        for (const copy of [0, 1]) racers.push({ store, query, events: [{ type: LENT, tags: [book, `reader:r${index}-${copy}`], data: {} }] });
      }
      const { results } = await race(racers);
      assertExactlyOneWinner(results, `mix round ${round}`);
      assert.equal((await cluster[0]!.read(query)).events.length, 1);
    }
  });

  test('overlapping boundaries: events carry more tags than the condition; one wins per book', async () => {
    for (let round = 0; round < 20; round++) {
      const book = `book:o${round}`;
      const racers = cluster.map((store, racer): Racer => {
        const reader = `reader:o${round}-${racer}`;
        // Even rounds: every racer guards the book; odd rounds: the book OR its own reader
        // (the usual "book available and reader under the limit" decision).
        const query =
          round % 2 === 0
            ? Query.of(QueryItem.types(LENT).tags(book))
            : Query.of(QueryItem.types(LENT, RETURNED).tags(book), QueryItem.types(LENT).tags(reader));
        return { store, query, events: [{ type: LENT, tags: [book, reader], data: {} }] };
      });
      const { results } = await race(racers);
      assertExactlyOneWinner(results, `overlap round ${round}`);
    }
  });

  test('two queries overlapping only in one type/tag combination conflict exactly there', async () => {
    for (let round = 0; round < 12; round++) {
      const t1 = `t1:${round}`;
      const t2 = `t2:${round}`;
      const queryA = Query.of(QueryItem.types('X', 'Y').tags(t1));
      const queryB = Query.of(QueryItem.types('Y', 'Z').tags(t2));
      const racers = (eventA: EventInput, eventB: EventInput): Racer[] =>
        cluster.map((store, index) => (index % 2 === 0 ? { store, query: queryA, events: [eventA] } : { store, query: queryB, events: [eventB] }));

      // In the overlap (type Y, both tags), every event matches both queries: one winner overall.
      const inside = await race(racers({ type: 'Y', tags: [t1, t2], data: { round } }, { type: 'Y', tags: [t1, t2], data: { round } }));
      assertExactlyOneWinner(inside.results, `overlap round ${round}`);

      // Outside it, A's events only match A and B's only match B: one winner per side.
      const variants: Array<[EventInput, EventInput]> = [
        [{ type: 'X', tags: [t1, t2], data: {} }, { type: 'Z', tags: [t1, t2], data: {} }],
        [{ type: 'Y', tags: [t1], data: {} }, { type: 'Y', tags: [t2], data: {} }],
      ];
      const [eventA, eventB] = variants[round % 2]!;
      const outside = await race(racers(eventA, eventB));
      const { winners } = tally(outside.results);
      assert.equal(winners.length, 2, `round ${round}: expected one winner per query outside the overlap, got racers ${winners.join(', ')}`);
      assert.equal(winners.filter((index) => index % 2 === 0).length, 1, 'one A racer wins');
      assert.equal(winners.filter((index) => index % 2 === 1).length, 1, 'one B racer wins');
    }
  });

  test('disjoint boundaries across instances never conflict, even with stale heads', async () => {
    for (let round = 0; round < 20; round++) {
      const racers: Racer[] = [];
      for (const [index, store] of cluster.entries()) {
        for (const copy of range(4)) {
          const book = `book:d${round}-${index}-${copy}`;
          // A type-only-overlapping second item that nobody writes, to make the query non-trivial.
          const query = Query.of(QueryItem.types(LENT, RETURNED).tags(book), QueryItem.types('ReaderSuspended').tags(`reader:d${round}-${index}-${copy}`));
          racers.push({ store, query, events: [{ type: LENT, tags: [book, 'reader:shared'], data: {} }, { type: 'Noise', tags: ['reader:shared'], data: {} }] });
        }
      }
      // Each boundary already holds an event before the reads (it must not count either).
      await Promise.all(racers.map((racer) => racer.store.append({ type: RETURNED, tags: racer.events[0]!.tags ?? [], data: {} })));
      const { results } = await race(racers);
      const { winners, conflicts } = tally(results);
      assert.equal(conflicts.length, 0, `round ${round}: disjoint appends must not conflict (false conflicts at ${conflicts.join(', ')})`);
      assert.equal(winners.length, racers.length);
    }
  });

  test('disjoint boundaries inside one instance all succeed, in one batch', async () => {
    for (const store of [cluster[0]!, cluster[1]!]) {
      for (let round = 0; round < 10; round++) {
        const books = range(24).map((index) => `book:di${round}-${index}-${store === cluster[0] ? 'w' : 'i'}`);
        const queries = books.map((book) => Query.of(QueryItem.types(LENT, RETURNED).tags(book)));
        await Promise.all(books.map((book) => store.append({ type: LENT, tags: [book], data: {} })));
        const heads = (await Promise.all(queries.map((query) => store.read(query)))).map((read) => read.head);
        const results = await Promise.allSettled(books.map((book, index) => store.append({ type: RETURNED, tags: [book], data: {} }, { failIfEventsMatch: queries[index]!, after: heads[index]! })));
        const { winners, positions, conflicts } = tally(results);
        assert.equal(conflicts.length, 0, `round ${round}: false conflicts inside one batch`);
        assert.equal(winners.length, books.length);
        // The first went alone, the other 23 queued behind it and went together.
        const batches = await withClient(async (client) => {
          const { rows } = await client.query<{ n: number }>(`SELECT count(DISTINCT e.recorded_at)::int AS n FROM "${schema}".events e WHERE e.position = ANY ($1::bigint[])`, [positions.map(String)]);
          return rows[0]!.n;
        });
        assert.ok(batches <= 2, `round ${round}: 24 concurrent appends of one instance took ${batches} transactions`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 4: positions

describe('guarantee B: positions', () => {
  test('a concurrent burst from 6 instances gives positions 1..N, one contiguous block per append, recordedAt in order; a concurrent reader never skips', async () => {
    const { stores } = await openStores(6, alternateScanPaths);
    const random = seededRandom(4242);
    const reader = stores[0]!;
    let writing = true;
    let seen = 0n;
    const delivered: SequencedEvent[] = [];
    let polls = 0;
    const subscriber = (async () => {
      for (;;) {
        const done = !writing;
        const { events, head } = await reader.read(Query.all(), { after: seen });
        assertPrefix(events, seen, head, `poll ${polls}`);
        delivered.push(...events);
        seen = head;
        polls++;
        if (done) return;
      }
    })();

    const appended: Array<{ ids: string[]; position: bigint }> = [];
    try {
      for (let burst = 0; burst < 3; burst++) {
        const jobs = stores.flatMap((store, index) =>
          range(12).map(async (job) => {
            const size = 1 + Math.floor(random() * 5);
            const entity = `entity:${burst}-${index}-${job}`;
            const ids = range(size).map(() => randomUUID());
            const events = ids.map((id, n) => ({ id, type: n === 0 ? 'Opened' : 'Changed', tags: [entity], data: { n } }));
            const conditional = random() < 0.5;
            const condition: AppendCondition | undefined = conditional ? { failIfEventsMatch: Query.of(QueryItem.tags(entity)), after: 0n } : undefined;
            const { position } = await store.append(events, condition);
            appended.push({ ids, position });
          }),
        );
        const results = await Promise.allSettled(jobs);
        const failures = results.filter((result) => result.status === 'rejected');
        assert.deepEqual(failures, [], 'no append of the burst may fail');
      }
    } finally {
      writing = false;
      await subscriber;
    }

    const { events, head } = await stores[1]!.read(Query.all());
    const total = appended.reduce((sum, { ids }) => sum + ids.length, 0);
    assert.equal(head, BigInt(total));
    assert.equal(await stores[2]!.head(), BigInt(total));
    assertPrefix(events, 0n, head, 'final read');
    const byPosition = new Map(events.map((event) => [event.position, event]));
    for (const { ids, position } of appended) {
      const block = ids.map((_, n) => byPosition.get(position - BigInt(ids.length - 1 - n)));
      assert.deepEqual(block.map((event) => event?.id), ids, `the append acknowledged at ${position} must own the contiguous block ending there, in order`);
      assert.equal(new Set(block.map((event) => event?.recordedAt.getTime())).size, 1, 'one append is recorded at one instant');
    }
    for (let index = 1; index < events.length; index++) {
      assert.ok(events[index]!.recordedAt >= events[index - 1]!.recordedAt, `recordedAt decreases at position ${events[index]!.position}`);
    }
    assert.deepEqual(
      delivered.map((event) => event.id),
      events.map((event) => event.id),
      'the polling reader saw every event exactly once, in position order',
    );
    assert.ok(polls > 3, `the reader polled during the burst (${polls} polls)`);
  });
});

// ---------------------------------------------------------------------------------------------
// 5: randomized history

describe('randomized concurrent history', () => {
  test('4 instances x 3 writers for 3 s: the final log satisfies every condition in position order', async (t) => {
    const { stores } = await openStores(4, (index) => [{}, { conditionScanLimit: 0 }, { conditionScanLimit: 3 }, {}][index]!);
    const TYPES = [LENT, RETURNED, 'ReaderRegistered'];
    const TAGS = ['book:b1', 'book:b2', 'book:b3', 'reader:r1', 'reader:r2'];
    const pool: Query[] = [
      Query.of(QueryItem.types(LENT, RETURNED).tags('book:b1')),
      Query.of(QueryItem.types(LENT, RETURNED).tags('book:b2')),
      Query.of(QueryItem.types(LENT).tags('reader:r1')),
      Query.of(QueryItem.types(LENT, RETURNED).tags('book:b1'), QueryItem.types(LENT).tags('reader:r2')),
      Query.of(QueryItem.tags('book:b3')),
      Query.of(QueryItem.types('ReaderRegistered')),
      Query.of(QueryItem.tags('book:b2', 'reader:r1')),
      Query.of(QueryItem.types(RETURNED).tags('reader:r2'), QueryItem.types('ReaderRegistered').tags('book:b3')),
    ];
    const attempts: AttemptRecord[] = [];
    const unexpected: unknown[] = [];
    const deadline = Date.now() + 3000;

    const writer = async (store: EventStore, seed: number): Promise<void> => {
      const random = seededRandom(seed);
      for (let n = 0; Date.now() < deadline; n++) {
        const attempt = `${seed}-${n}`;
        const roll = random();
        // A uniqueness claim (no `after`) on one of a few keys: the first claim wins, later ones fail.
        const unique = roll >= 0.78 && roll < 0.88;
        const query = unique
          ? Query.of(QueryItem.types('ReaderRegistered').tags(`reader:u${Math.floor(random() * 40)}`))
          : random() < 0.03
            ? Query.all()
            : pick(random, pool);
        const { events: seen, head } = await store.read(query);
        assert.ok(seen.every((event) => event.position <= head), 'a read returns nothing above its head');
        let condition: AppendCondition | undefined;
        if (unique) condition = { failIfEventsMatch: query };
        else if (roll < 0.65) condition = { failIfEventsMatch: query, after: head };
        else if (roll < 0.78) condition = { failIfEventsMatch: query, after: head > 5n ? head - BigInt(Math.floor(random() * 5)) : head };
        else if (roll < 0.9) condition = { failIfEventsMatch: query };
        const json = query.toJSON();
        const stamp = (index: number, count: number): AttemptStamp => ({
          attempt,
          index,
          count,
          condition: condition ? { query: json, after: condition.after === undefined ? null : condition.after.toString() } : null,
        });
        const count = 1 + Math.floor(random() * 3);
        const events: EventInput[] = range(count).map((index) => {
          // The first event falls inside the query (so that conflicts are real); the rest anywhere.
          const item = index === 0 ? json.items[Math.floor(random() * json.items.length)] : undefined;
          const type = item?.types ? pick(random, item.types) : pick(random, TYPES);
          const tags = new Set(item?.tags ?? []);
          for (let extra = Math.floor(random() * 3); extra > 0; extra--) tags.add(pick(random, TAGS));
          return { type, tags: [...tags], data: { stamp: stamp(index, count) } };
        });
        if (unique) events[0]!.tags = [...(json.items[0]!.tags ?? [])];
        if (random() < 0.3) await sleep(Math.floor(random() * 4));
        const record: AttemptRecord = {
          attempt,
          eventCount: count,
          condition: condition ? { query: json, after: condition.after } : null,
          outcome: { status: 'error', message: 'pending' },
        };
        attempts.push(record);
        try {
          const { position } = await store.append(events, condition);
          record.outcome = { status: 'appended', position };
        } catch (error) {
          if (error instanceof AppendConditionFailedError) record.outcome = { status: 'condition-failed', conflictingPosition: error.conflictingPosition };
          else {
            record.outcome = { status: 'error', message: String(error) };
            unexpected.push(error);
          }
        }
      }
    };

    await Promise.all(stores.flatMap((store, index) => range(3).map((loop) => writer(store, 1000 + index * 10 + loop))));
    assert.deepEqual(unexpected, [], 'no append failed other than by its condition');

    const { events, head } = await stores[3]!.read(Query.all());
    assertPrefix(events, 0n, head, 'final read');
    const violations = checkHistory(events, attempts);
    assert.deepEqual(violations, [], `history violations:\n${violations.join('\n')}`);

    const appended = attempts.filter((record) => record.outcome.status === 'appended').length;
    const failed = attempts.filter((record) => record.outcome.status === 'condition-failed').length;
    const staleWins = attempts.filter(
      (record) => record.outcome.status === 'appended' && record.condition?.after !== undefined && record.outcome.position - BigInt(record.eventCount) > record.condition.after,
    ).length;
    t.diagnostic(`${attempts.length} attempts: ${appended} appended (${staleWins} over a stale after), ${failed} condition failures; ${events.length} events`);
    // Not vacuous: plenty of both outcomes, and many wins over a head that had moved on meanwhile.
    assert.ok(appended >= 60, `only ${appended} appends succeeded`);
    assert.ok(failed >= 30, `only ${failed} appends hit their condition`);
    assert.ok(staleWins >= 20, `only ${staleWins} appends succeeded with a stale after`);
    // The JS matcher agrees with the store's own query evaluation.
    for (const query of pool) {
      const { events: matched } = await stores[0]!.read(query);
      assert.deepEqual(
        matched.map((event) => event.position),
        events.filter((event) => matchesQuery(query.toJSON(), event)).map((event) => event.position),
        `the checker's matcher disagrees with the store on ${JSON.stringify(query.toJSON())}`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 6: a slow append held open

describe('guarantee C: prefix-complete reads while an append is held open', () => {
  test('reads neither wait nor run ahead; a conditional append waits and then sees the slow event', async () => {
    const { stores, schema } = await openStores(4);
    const [storeA, storeB, storeC, storeD] = stores as [EventStore, EventStore, EventStore, EventStore];
    await storeA.append([1, 2, 3].map((n) => ({ type: 'Seed', tags: ['seed'], data: { n } })));
    await withClient(async (client) => {
      await client.query(`CREATE FUNCTION "${schema}".test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$`);
      await client.query(
        `CREATE TRIGGER test_slow_insert BEFORE INSERT ON "${schema}".events FOR EACH ROW WHEN (NEW.type = 'Slow') EXECUTE FUNCTION "${schema}".test_slow_insert()`,
      );
    });

    let slowDone = false;
    const slow = storeA.append({ type: 'Slow', tags: ['slow'], data: {} }).finally(() => (slowDone = true));
    slow.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
    // Wait until it sleeps inside the append function, holding the head lock.
    await withClient((client) =>
      waitFor('the slow append to sleep in its trigger', async () => {
        const { rows } = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%' || $1 || '%append_batch%'`,
          [schema],
        );
        return rows[0]!.n > 0;
      }),
    );
    const sleeping = Date.now();

    // (a) Reads from another instance: immediate, and at the old head.
    const slowQuery = Query.of(QueryItem.types('Slow'));
    const readStart = Date.now();
    const all = await storeB.read(Query.all());
    const slowRead = await storeB.read(slowQuery);
    const headNow = await storeB.head();
    const readTime = Date.now() - readStart;
    assert.equal(slowDone, false, 'precondition: the slow append is still in flight');
    assert.ok(readTime < 1000, `reads must not wait for the append in flight (took ${readTime} ms)`);
    assert.equal(all.head, 3n, 'the head does not include the uncommitted event');
    assertPrefix(all.events, 0n, 3n, 'read during the slow append');
    assert.deepEqual(slowRead.events, []);
    assert.equal(slowRead.head, 3n);
    assert.equal(headNow, 3n);

    // (b) A conditional append under the head read meanwhile, whose query matches the slow event.
    // (c) A non-matching append from another instance.
    const started = Date.now();
    const timed = <T>(promise: Promise<T>): Promise<{ value: T; ms: number }> => promise.then((value) => ({ value, ms: Date.now() - sleeping }));
    const matching = timed(storeC.append({ type: LENT, tags: ['book:slow'], data: {} }, { failIfEventsMatch: slowQuery, after: slowRead.head }));
    const other = timed(storeD.append({ type: LENT, tags: ['book:other'], data: {} }, { failIfEventsMatch: Query.of(QueryItem.tags('book:other')), after: slowRead.head }));
    // Settle handlers attached now: they may finish before the slow append's own promise does.
    const waiting = Promise.allSettled([matching, other]);

    // Keep polling from B while they all wait: never ahead of what committed, always a prefix.
    const polled: bigint[] = [];
    while (!slowDone) {
      const pollStart = Date.now();
      const { events, head } = await storeB.read(Query.all());
      assert.ok(Date.now() - pollStart < 1000, 'a read during the slow append was slow');
      assertPrefix(events, 0n, head, 'poll during the slow append');
      if (Date.now() < sleeping + 1000) assert.equal(head, 3n, 'nothing can have committed yet');
      polled.push(head);
      await sleep(50);
    }
    assert.ok(polled.length >= 3, `polled ${polled.length} times`);

    assert.equal((await slow).position, 4n);
    const [matchingResult, otherResult] = await waiting;
    assert.equal(matchingResult.status, 'rejected', 'the condition must see the slow event committed at 4 > after 3');
    assert.ok(matchingResult.reason instanceof AppendConditionFailedError, String(matchingResult.reason));
    assert.equal(matchingResult.reason.conflictingPosition, 4n);
    assert.equal(otherResult.status, 'fulfilled', String(otherResult.status === 'rejected' && otherResult.reason));
    assert.equal(otherResult.value.value.position, 5n, 'the waiting append is positioned after the slow one (commit order)');
    assert.ok(otherResult.value.ms >= 1000, `the non-matching append waited for the lock (done ${otherResult.value.ms} ms after the sleep began)`);
    assert.ok(Date.now() - started < 5000);

    const final = await storeB.read(Query.all());
    assertPrefix(final.events, 0n, 5n, 'final read');
    assert.deepEqual(final.events.map((event) => event.type), ['Seed', 'Seed', 'Seed', 'Slow', LENT]);
  });
});

// ---------------------------------------------------------------------------------------------
// 7: raw SQL

describe('append_batch from raw sessions', () => {
  let schema: string;
  before(async () => ({ schema } = await openStores(1)));

  const commandFor = (book: string, after: bigint): string =>
    JSON.stringify([
      {
        events: [{ id: randomUUID(), type: LENT, tags: [book], data: {}, metadata: {}, occurred_at: new Date().toISOString() }],
        condition: { query: { all: false, items: [{ types: [LENT], tags: [book], any_of: null, all_of: null }], from: null, until: null }, after: after.toString() },
      },
    ]);
  const call = (client: pg.Client, command: string, scanLimit: number): Promise<{ r_status: number; r_position: string | null; r_conflict: string | null }> =>
    client
      .query<{ r_status: number; r_position: string | null; r_conflict: string | null }>(`SELECT r_status, r_position::text, r_conflict::text FROM "${schema}".append_batch($1::jsonb, false, $2::bigint)`, [command, scanLimit])
      .then(({ rows }) => rows[0]!);
  const headOf = async (client: pg.Client): Promise<bigint> => BigInt((await client.query<{ position: string }>(`SELECT position::text FROM "${schema}".head`)).rows[0]!.position);

  test('a session blocked behind an uncommitted append re-checks after the lock and fails (not a one-statement CTE guard)', async () => {
    // pg_stat_activity is snapshotted per transaction: poll it from a third session.
    await withClient((observer) => withClient((first) =>
      withClient(async (second) => {
        for (const scanLimit of [2000, 0]) {
          const book = `book:raw-hold-${scanLimit}`;
          const stale = await headOf(first);
          await first.query('BEGIN');
          const won = await call(first, commandFor(book, stale), scanLimit);
          assert.equal(won.r_status, 0);
          // The second session's statement starts while the first has not committed: a guard
          // checked in the statement's own snapshot would see nothing and insert too.
          const secondPid = (await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
          const blocked = call(second, commandFor(book, stale), scanLimit);
          await waitFor('the second session to wait on the head lock', async () => {
            const { rows } = await observer.query<{ waiting: boolean }>(`SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`, [secondPid]);
            return rows[0]?.waiting === true;
          });
          await first.query('COMMIT');
          const lost = await blocked;
          assert.equal(lost.r_status, 1, `scan limit ${scanLimit}: the blocked session must see the committed event`);
          assert.equal(lost.r_conflict, won.r_position);
        }
      }),
    ));
  });

  test('two sessions calling with the same stale after at once: one status 0, one status 1', async () => {
    await withClient((first) =>
      withClient(async (second) => {
        for (let round = 0; round < 20; round++) {
          const book = `book:raw-race-${round}`;
          const scanLimit = round % 2 === 0 ? 2000 : 0;
          const stale = await headOf(first);
          const results = await Promise.all([call(first, commandFor(book, stale), scanLimit), call(second, commandFor(book, stale), scanLimit)]);
          assert.deepEqual(results.map((result) => result.r_status).sort(), [0, 1], `round ${round}`);
        }
      }),
    );
  });
});
