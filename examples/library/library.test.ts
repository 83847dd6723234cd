// The library-lending domain: every rule as a Given/When/Then specification, run on the in-memory
// store and again on PostgreSQL (a fresh schema per scenario); then, on PostgreSQL, the
// consistency boundaries and the races the append condition has to settle; and `npm start`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  AppendConditionFailedError,
  Query,
  QueryItem,
  RetriesExhaustedError,
  executeCommand,
  type CommandStore,
  type EventInput,
  type EventStore,
  type ExecuteResult,
  type ReadOptions,
  type ReadResult,
} from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification, type SpecificationOptions } from '../../src/testing/index.ts';
import { connectToSchema, createTestStore, databaseUrl, interferingStore, keepEventLoopAliveDuringTests, startGate, withClient } from '../../test/helpers.ts';
import {
  BookCopyAlreadyLentError,
  BookCopyNotInCirculationError,
  BookCopyNotLentToReaderError,
  LibraryError,
  MAX_BOOK_COPIES_PER_READER,
  ReaderHasBooksLentError,
  ReaderLendingLimitReachedError,
  ReaderNotRegisteredError,
  addBookCopy,
  bookCopyAddedToCirculation,
  bookCopyCirculation,
  bookCopyLentTo,
  bookCopyLentToReader,
  bookCopyRemovedFromCirculation,
  bookCopyReturnedByReader,
  bookTag,
  booksLentByReader,
  cancelReaderContract,
  findBooksLentByReader,
  isLibraryError,
  lendBookCopyToReader,
  loanOfBookCopy,
  readerContractCanceled,
  readerRegistered,
  readerRegistration,
  readerTag,
  registerReader,
  removeBookCopy,
  returnBookCopy,
} from './domain.ts';

keepEventLoopAliveDuringTests();

// ---------------------------------------------------------------------------------------------
// Facts

const at = new Date('2025-06-02T12:00:00.000Z');
const earlier = new Date('2025-06-01T12:00:00.000Z');
const ddd = { isbn: '978-0321125217', title: 'Domain-Driven Design', authors: 'Eric Evans', edition: '1st', publisher: 'Addison-Wesley', publicationYear: 2003 };
const added = (bookId: string, when = earlier): EventInput => bookCopyAddedToCirculation({ bookId, ...ddd }, when);
const removed = (bookId: string): EventInput => bookCopyRemovedFromCirculation(bookId, earlier);
const registered = (readerId: string, when = earlier): EventInput => readerRegistered(readerId, `Reader ${readerId}`, when);
const canceled = (readerId: string): EventInput => readerContractCanceled(readerId, earlier);
const lent = (bookId: string, readerId: string, when = earlier): EventInput => bookCopyLentToReader(bookId, readerId, when);
const returned = (bookId: string, readerId: string, when = earlier): EventInput => bookCopyReturnedByReader(bookId, readerId, when);

/** `count` book ids b0, b1, ... */
const books = (count: number, prefix = 'b'): string[] => Array.from({ length: count }, (_, index) => `${prefix}${index}`);

const errorWith =
  <E extends LibraryError>(type: abstract new (...args: never[]) => E, properties: Partial<Record<keyof E, unknown>>) =>
  (error: unknown): boolean => {
    if (!(error instanceof type)) return false;
    for (const [key, value] of Object.entries(properties)) assert.deepEqual((error as unknown as Record<string, unknown>)[key], value, key);
    return true;
  };

// ---------------------------------------------------------------------------------------------
// Specifications, on both stores

/** A fresh schema per scenario: specifications need an empty store. */
const onPostgres: SpecificationOptions = {
  store: async () => {
    const { store, dispose } = await createTestStore();
    return { append: store.append.bind(store), read: store.read.bind(store), execute: store.execute.bind(store), close: dispose };
  },
};

for (const [where, options] of [
  ['in memory', {}],
  ['on PostgreSQL', onPostgres],
] as const) {
  describe(`projections (${where})`, () => {
    test('bookCopyCirculation: added, removed, added again; other copies do not count', async () => {
      const spec = ProjectionSpecification.for(bookCopyCirculation('b1'), options);
      await spec.given([added('b2')]).then({ everAdded: false, inCirculation: false });
      await spec.given([added('b1')]).then({ everAdded: true, inCirculation: true });
      await spec.given([added('b1'), removed('b1')]).then({ everAdded: true, inCirculation: false });
      await spec.given([added('b1'), removed('b1'), added('b1')]).then({ everAdded: true, inCirculation: true });
    });

    test('bookCopyLentTo: the reader holding the copy, or null', async () => {
      const spec = ProjectionSpecification.for(bookCopyLentTo('b1'), options);
      await spec.given([added('b1'), lent('b2', 'r1')]).then(null);
      await spec.given([added('b1'), lent('b1', 'r1')]).then('r1');
      await spec.given([added('b1'), lent('b1', 'r1'), returned('b1', 'r1')]).then(null);
      await spec.given([added('b1'), lent('b1', 'r1'), returned('b1', 'r1'), lent('b1', 'r2')]).then('r2');
    });

    test('readerRegistration: registered, canceled, registered again', async () => {
      const spec = ProjectionSpecification.for(readerRegistration('r1'), options);
      await spec.given([registered('r2')]).then({ everRegistered: false, registered: false });
      await spec.given([registered('r1'), canceled('r1')]).then({ everRegistered: true, registered: false });
      await spec.given([registered('r1'), canceled('r1'), registered('r1')]).then({ everRegistered: true, registered: true });
    });

    test('booksLentByReader: the copies the reader holds now, in lending order, from the reader’s events only', async () => {
      // What a lending decision reads: the copy's and the reader's histories interleaved.
      await ProjectionSpecification.for(booksLentByReader('r1'), options)
        .given([added('b1'), registered('r1'), lent('b2', 'r1'), lent('b1', 'r2'), returned('b1', 'r2'), lent('b3', 'r1'), returned('b2', 'r1'), lent('b4', 'r1')])
        .then(['b3', 'b4']);
    });

    test('loanOfBookCopy: needs both tags on one event', async () => {
      const spec = ProjectionSpecification.for(loanOfBookCopy('b1', 'r1'), options);
      await spec.given([lent('b1', 'r2'), lent('b2', 'r1')]).then({ everLent: false, holdsIt: false });
      await spec.given([lent('b1', 'r1')]).then({ everLent: true, holdsIt: true });
      await spec.given([lent('b1', 'r1'), returned('b1', 'r1')]).then({ everLent: true, holdsIt: false });
    });
  });

  describe(`addBookCopy (${where})`, () => {
    const spec = CommandHandlerSpecification.for(addBookCopy, options);

    test('a new copy is added to circulation, tagged book:<id>, at the time of the command', async () => {
      await spec.given([]).when({ bookId: 'b1', ...ddd, at }).then([added('b1', at)]);
    });

    test('a copy already in circulation: nothing happens', async () => {
      await spec.given([added('b1')]).when({ bookId: 'b1', isbn: 'x', title: 'x', authors: 'x', at }).thenNothing();
    });

    test('a removed copy is added again; optional details default to empty', async () => {
      await spec
        .given([added('b1'), removed('b1')])
        .when({ bookId: 'b1', isbn: 'i', title: 't', authors: 'a', at })
        .then([{ type: 'BookCopyAddedToCirculation', tags: [bookTag('b1')], data: { BookID: 'b1', ISBN: 'i', Title: 't', Authors: 'a', Edition: '', Publisher: '', PublicationYear: 0 } }]);
    });
  });

  describe(`removeBookCopy (${where})`, () => {
    const spec = CommandHandlerSpecification.for(removeBookCopy, options);

    test('a copy in circulation and not lent is removed', async () => {
      await spec.given([added('b1'), lent('b1', 'r1'), returned('b1', 'r1')]).when({ bookId: 'b1', at }).then([bookCopyRemovedFromCirculation('b1', at)]);
    });

    test('a copy never added: BookCopyNotInCirculationError', async () => {
      await spec.given([added('b2')]).when({ bookId: 'b1', at }).thenThrows(errorWith(BookCopyNotInCirculationError, { bookId: 'b1' }));
    });

    test('a lent copy: BookCopyAlreadyLentError', async () => {
      await spec.given([added('b1'), registered('r1'), lent('b1', 'r1')]).when({ bookId: 'b1', at }).thenThrows(errorWith(BookCopyAlreadyLentError, { lentTo: 'r1' }));
    });

    test('a copy already removed: nothing happens', async () => {
      await spec.given([added('b1'), removed('b1')]).when({ bookId: 'b1', at }).thenNothing();
    });
  });

  describe(`registerReader and cancelReaderContract (${where})`, () => {
    const register = CommandHandlerSpecification.for(registerReader, options);
    const cancel = CommandHandlerSpecification.for(cancelReaderContract, options);

    test('a new reader is registered, tagged reader:<id>', async () => {
      await register.given([]).when({ readerId: 'r1', name: 'Reader r1', at }).then([registered('r1', at)]);
    });

    test('registering twice: nothing happens; after a cancellation: registered again', async () => {
      await register.given([registered('r1')]).when({ readerId: 'r1', name: 'Reader r1', at }).thenNothing();
      await register.given([registered('r1'), canceled('r1')]).when({ readerId: 'r1', name: 'Reader r1', at }).then([registered('r1', at)]);
    });

    test('a reader holding no copies: the contract is canceled', async () => {
      await cancel.given([added('b1'), registered('r1'), lent('b1', 'r1'), returned('b1', 'r1')]).when({ readerId: 'r1', at }).then([readerContractCanceled('r1', at)]);
    });

    test('a reader holding copies: ReaderHasBooksLentError listing them', async () => {
      await cancel
        .given([added('b1'), added('b2'), registered('r1'), lent('b1', 'r1'), lent('b2', 'r1')])
        .when({ readerId: 'r1', at })
        .thenThrows(errorWith(ReaderHasBooksLentError, { lentBookIds: ['b1', 'b2'] }));
    });

    test('a reader never registered: ReaderNotRegisteredError; already canceled: nothing happens', async () => {
      await cancel.given([registered('r2')]).when({ readerId: 'r1', at }).thenThrows(errorWith(ReaderNotRegisteredError, { readerId: 'r1' }));
      await cancel.given([registered('r1'), canceled('r1')]).when({ readerId: 'r1', at }).thenNothing();
    });
  });

  describe(`lendBookCopyToReader (${where})`, () => {
    const spec = CommandHandlerSpecification.for(lendBookCopyToReader, options);
    const lend = (bookId: string, readerId: string) => ({ bookId, readerId, at });

    test('a copy in circulation, not lent, to a registered reader: lent, tagged with the book and the reader', async () => {
      await spec.given([added('b1'), registered('r1')]).when(lend('b1', 'r1')).then([lent('b1', 'r1', at)]);
      assert.deepEqual(lent('b1', 'r1').tags, [bookTag('b1'), readerTag('r1')]);
    });

    test('a copy never added: BookCopyNotInCirculationError', async () => {
      await spec.given([registered('r1')]).when(lend('b1', 'r1')).thenThrows(errorWith(BookCopyNotInCirculationError, { bookId: 'b1' }));
    });

    test('a copy removed from circulation: BookCopyNotInCirculationError', async () => {
      await spec.given([added('b1'), removed('b1'), registered('r1')]).when(lend('b1', 'r1')).thenThrows(BookCopyNotInCirculationError);
    });

    test('a copy lent to another reader: BookCopyAlreadyLentError', async () => {
      await spec.given([added('b1'), registered('r1'), registered('r2'), lent('b1', 'r2')]).when(lend('b1', 'r1')).thenThrows(errorWith(BookCopyAlreadyLentError, { bookId: 'b1', lentTo: 'r2' }));
    });

    test('a copy already lent to this reader: nothing happens (a retried command is harmless)', async () => {
      await spec.given([added('b1'), registered('r1'), lent('b1', 'r1')]).when(lend('b1', 'r1')).thenNothing();
    });

    test('a copy returned by its previous reader: another reader, or the same one again, may borrow it', async () => {
      const history = [added('b1'), registered('r1'), registered('r2'), lent('b1', 'r1'), returned('b1', 'r1')];
      await spec.given(history).when(lend('b1', 'r2')).then([lent('b1', 'r2', at)]);
      await spec.given(history).when(lend('b1', 'r1')).then([lent('b1', 'r1', at)]);
    });

    test('a reader never registered: ReaderNotRegisteredError', async () => {
      await spec.given([added('b1')]).when(lend('b1', 'r1')).thenThrows(errorWith(ReaderNotRegisteredError, { readerId: 'r1' }));
    });

    test('a reader whose contract was canceled: ReaderNotRegisteredError', async () => {
      await spec.given([added('b1'), registered('r1'), canceled('r1')]).when(lend('b1', 'r1')).thenThrows(ReaderNotRegisteredError);
    });

    test(`the limit: the ${MAX_BOOK_COPIES_PER_READER}th copy is lent, the ${MAX_BOOK_COPIES_PER_READER + 1}th refused until one is returned`, async () => {
      const held = books(MAX_BOOK_COPIES_PER_READER - 1);
      const copies = [...held, 'tenth', 'eleventh'];
      const holdingNine = [registered('r1'), ...copies.map((bookId) => added(bookId)), ...held.map((bookId) => lent(bookId, 'r1'))];
      await spec.given(holdingNine).when(lend('tenth', 'r1')).then([lent('tenth', 'r1', at)]);
      const holdingTen = [...holdingNine, lent('tenth', 'r1')];
      await spec.given(holdingTen).when(lend('eleventh', 'r1')).thenThrows(errorWith(ReaderLendingLimitReachedError, { readerId: 'r1', lentBookIds: [...held, 'tenth'] }));
      await spec.given([...holdingTen, returned(held[0]!, 'r1')]).when(lend('eleventh', 'r1')).then([lent('eleventh', 'r1', at)]);
    });

    test('copies held by other readers do not count towards the limit', async () => {
      const others = books(MAX_BOOK_COPIES_PER_READER, 'x');
      await spec
        .given([registered('r1'), registered('r2'), added('b1'), ...others.map((bookId) => added(bookId)), ...others.map((bookId) => lent(bookId, 'r2'))])
        .when(lend('b1', 'r1'))
        .then([lent('b1', 'r1', at)]);
    });
  });

  describe(`returnBookCopy (${where})`, () => {
    const spec = CommandHandlerSpecification.for(returnBookCopy, options);

    test('a copy the reader holds is returned', async () => {
      await spec.given([added('b1'), registered('r1'), lent('b1', 'r1')]).when({ bookId: 'b1', readerId: 'r1', at }).then([returned('b1', 'r1', at)]);
    });

    test('a copy never lent to this reader: BookCopyNotLentToReaderError', async () => {
      await spec
        .given([added('b1'), registered('r1'), registered('r2'), lent('b1', 'r2')])
        .when({ bookId: 'b1', readerId: 'r1', at })
        .thenThrows(errorWith(BookCopyNotLentToReaderError, { bookId: 'b1', readerId: 'r1' }));
    });

    test('a copy already returned: nothing happens', async () => {
      await spec.given([added('b1'), registered('r1'), lent('b1', 'r1'), returned('b1', 'r1')]).when({ bookId: 'b1', readerId: 'r1', at }).thenNothing();
    });
  });
}

test('domain errors carry a stable code and their context', () => {
  const error = new ReaderLendingLimitReachedError('r1', ['a', 'b']);
  assert.equal(error.name, 'ReaderLendingLimitReachedError');
  assert.equal(error.code, 'READER_LENDING_LIMIT_REACHED');
  assert.deepEqual(error.lentBookIds, ['a', 'b']);
  assert.ok(isLibraryError(error, 'READER_LENDING_LIMIT_REACHED'));
  assert.ok(!isLibraryError(error, 'BOOK_COPY_ALREADY_LENT'));
  assert.ok(!isLibraryError(new AppendConditionFailedError({ failIfEventsMatch: Query.all() }, 1n)));
});

// ---------------------------------------------------------------------------------------------
// On PostgreSQL: one store for the rest of the file, with fresh ids per test

/** Fresh ids per test, so that the tests can share one store. */
const newId = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;
const extraStores: EventStore[] = [];
before(async () => ({ store, schema, dispose } = await createTestStore()));
after(async () => {
  await Promise.all(extraStores.splice(0).map((extra) => extra.close()));
  await dispose();
});

async function given(...events: EventInput[]): Promise<void> {
  if (events.length > 0) await store.append(events);
}

async function lendingsOf(bookId: string): Promise<string[]> {
  const { events } = await store.read<{ ReaderID: string }>(Query.of(QueryItem.types('BookCopyLentToReader').tags(bookTag(bookId))));
  return events.map((event) => event.data.ReaderID);
}

/** `count` more store instances on this file's schema, as `count` processes would have. */
async function moreStores(count: number): Promise<EventStore[]> {
  const stores = await Promise.all(Array.from({ length: count }, () => connectToSchema(schema, { poolSize: 2 })));
  extraStores.push(...stores);
  return stores;
}

/**
 * The stores as `execute` sees them, except that each one's first read completes and then waits
 * until every one has read: all racers decide on the same facts before anyone appends. Later
 * reads (a retry) pass straight through.
 */
function readTogether(stores: EventStore[]): CommandStore[] {
  let pending = stores.length;
  let release!: () => void;
  const allHaveRead = new Promise<void>((resolve) => (release = resolve));
  return stores.map((inner) => {
    let first = true;
    return {
      read: async <Data,>(query: Query, options?: ReadOptions): Promise<ReadResult<Data>> => {
        const result = await inner.read<Data>(query, options);
        if (first) {
          first = false;
          if (--pending === 0) release();
          await allHaveRead;
        }
        return result;
      },
      append: (events, condition, options) => inner.append(events, condition, options),
    };
  });
}

interface RaceOutcome {
  winners: string[];
  /** Commands whose only attempt was refused by the append condition. */
  conflicts: number;
  domainErrors: LibraryError[];
}

function tally(racers: readonly string[], results: PromiseSettledResult<ExecuteResult<unknown>>[]): RaceOutcome {
  const outcome: RaceOutcome = { winners: [], conflicts: 0, domainErrors: [] };
  results.forEach((result, index) => {
    if (result.status === 'fulfilled') {
      assert.equal(result.value.events.length, 1);
      outcome.winners.push(racers[index]!);
    } else if (result.reason instanceof RetriesExhaustedError && result.reason.cause instanceof AppendConditionFailedError) {
      outcome.conflicts++;
    } else if (result.reason instanceof LibraryError) {
      outcome.domainErrors.push(result.reason);
    } else {
      throw result.reason;
    }
  });
  return outcome;
}

describe('on PostgreSQL', () => {
  test('store.execute end to end: the appended events and their position, or nothing for a command already carried out', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await store.execute(addBookCopy, { bookId: book, ...ddd, at });
    await store.execute(registerReader, { readerId: reader, name: 'Ann', at });
    const result = await store.execute(lendBookCopyToReader, { bookId: book, readerId: reader, at });
    assert.deepEqual(result.events, [lent(book, reader, at)]);
    assert.equal(result.position, await store.head());
    assert.equal(result.attempts, 1);
    assert.deepEqual(result.state.lentBooks, []);
    const again = await store.execute(lendBookCopyToReader, { bookId: book, readerId: reader, at });
    assert.deepEqual([again.events, again.position], [[], undefined]);
    const [stored] = (await store.read(Query.of(QueryItem.types('BookCopyLentToReader').tags(bookTag(book))))).events;
    assert.deepEqual([stored?.tags, stored?.occurredAt], [[bookTag(book), readerTag(reader)].sort(), at]);
  });

  test('the read model "books lent by a reader": the copies held now, in lending order', async () => {
    const reader = newId('reader');
    const copies = [newId('book'), newId('book'), newId('book')];
    await given(registered(reader), ...copies.map((bookId) => added(bookId)));
    for (const bookId of copies) await store.execute(lendBookCopyToReader, { bookId, readerId: reader, at });
    await store.execute(returnBookCopy, { bookId: copies[1]!, readerId: reader, at });
    assert.deepEqual(await findBooksLentByReader(store, reader), [copies[0], copies[2]]);
    assert.deepEqual(await findBooksLentByReader(store, newId('reader')), []);
  });
});

describe('consistency boundaries', () => {
  test('a lending decided on stale facts is refused by the store', async () => {
    const [book, reader, rival] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(reader), registered(rival));
    // Someone lends the copy to the rival between our read and our append; one attempt only.
    const racing = interferingStore(store, lent(book, rival));
    await assert.rejects(
      executeCommand(racing.store, lendBookCopyToReader, { bookId: book, readerId: reader, at }, { maxAttempts: 1 }),
      (error: unknown) => error instanceof RetriesExhaustedError && error.cause instanceof AppendConditionFailedError,
    );
    assert.deepEqual(await lendingsOf(book), [rival]);
  });

  test('execute decides again on the new facts: a domain error, not a conflict', async () => {
    const [book, reader, rival] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(reader), registered(rival));
    const racing = interferingStore(store, lent(book, rival));
    await assert.rejects(executeCommand(racing.store, lendBookCopyToReader, { bookId: book, readerId: reader, at }), errorWith(BookCopyAlreadyLentError, { lentTo: rival }));
    assert.deepEqual(racing.appends, ['AppendConditionFailedError']);
    assert.deepEqual(await lendingsOf(book), [rival]);
  });

  test('a change outside the boundary (another copy, another reader) does not conflict', async () => {
    const [book, reader, otherBook, otherReader] = [newId('book'), newId('reader'), newId('book'), newId('reader')];
    await given(added(book), registered(reader), added(otherBook), registered(otherReader));
    const racing = interferingStore(store, lent(otherBook, otherReader));
    const result = await executeCommand(racing.store, lendBookCopyToReader, { bookId: book, readerId: reader, at });
    assert.equal(result.attempts, 1);
    assert.deepEqual(await lendingsOf(book), [reader]);
    assert.deepEqual(await lendingsOf(otherBook), [otherReader]);
  });

  test('lendings of different copies to different readers do not conflict, even when decided on the same head', async () => {
    const [bookA, bookB, readerA, readerB] = [newId('book'), newId('book'), newId('reader'), newId('reader')];
    await given(added(bookA), added(bookB), registered(readerA), registered(readerB));
    const [deskA, deskB] = readTogether(await moreStores(2));
    const results = await Promise.all([
      executeCommand(deskA!, lendBookCopyToReader, { bookId: bookA, readerId: readerA, at }, { maxAttempts: 1 }),
      executeCommand(deskB!, lendBookCopyToReader, { bookId: bookB, readerId: readerB, at }, { maxAttempts: 1 }),
    ]);
    assert.deepEqual(results.map((result) => result.events.length), [1, 1]);
  });

  test('the same reader borrowing several copies at once conflicts through the reader: the limit cannot be exceeded', async () => {
    const reader = newId('reader');
    const copies = Array.from({ length: MAX_BOOK_COPIES_PER_READER + 4 }, () => newId('book'));
    const held = copies.slice(0, MAX_BOOK_COPIES_PER_READER - 1);
    const wanted = copies.slice(MAX_BOOK_COPIES_PER_READER - 1);
    await given(registered(reader), ...copies.map((bookId) => added(bookId)), ...held.map((bookId) => lent(bookId, reader)));
    const desks = readTogether(await moreStores(wanted.length));
    const results = await Promise.allSettled(wanted.map((bookId, index) => executeCommand(desks[index]!, lendBookCopyToReader, { bookId, readerId: reader, at })));
    const outcome = tally(wanted, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, 0);
    assert.equal(outcome.domainErrors.length, wanted.length - 1);
    for (const error of outcome.domainErrors) assert.ok(error instanceof ReaderLendingLimitReachedError);
    assert.equal((await findBooksLentByReader(store, reader)).length, MAX_BOOK_COPIES_PER_READER);
  });
});

describe('ten readers race for one copy', () => {
  const RACERS = 10;

  async function setUpRace(): Promise<{ book: string; readers: string[] }> {
    const book = newId('book');
    const readers = Array.from({ length: RACERS }, () => newId('reader'));
    await given(added(book), ...readers.map((readerId) => registered(readerId)));
    return { book, readers };
  }

  test('from 10 store instances, all deciding on the same head, one attempt each: one lending wins, 9 are refused by the append condition', async () => {
    const { book, readers } = await setUpRace();
    const desks = readTogether(await moreStores(RACERS));
    const results = await Promise.allSettled(readers.map((readerId, index) => executeCommand(desks[index]!, lendBookCopyToReader, { bookId: book, readerId, at }, { maxAttempts: 1 })));
    const outcome = tally(readers, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, RACERS - 1);
    assert.deepEqual(outcome.domainErrors, []);
    assert.deepEqual(await lendingsOf(book), outcome.winners);
  });

  test('with execute’s retry: one wins, the 9 others decide again and fail with BookCopyAlreadyLentError, a domain error', async () => {
    const { book, readers } = await setUpRace();
    const desks = readTogether(await moreStores(RACERS));
    const results = await Promise.allSettled(readers.map((readerId, index) => executeCommand(desks[index]!, lendBookCopyToReader, { bookId: book, readerId, at })));
    const outcome = tally(readers, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, 0);
    assert.equal(outcome.domainErrors.length, RACERS - 1);
    for (const error of outcome.domainErrors) assert.ok(errorWith(BookCopyAlreadyLentError, { lentTo: outcome.winners[0] })(error));
    assert.deepEqual(await lendingsOf(book), outcome.winners);
  });

  test('through one store instance (the appends share a batch): one wins', async () => {
    const { book, readers } = await setUpRace();
    const desks = readTogether(Array.from({ length: RACERS }, () => store));
    const results = await Promise.allSettled(readers.map((readerId, index) => executeCommand(desks[index]!, lendBookCopyToReader, { bookId: book, readerId, at }, { maxAttempts: 1 })));
    const outcome = tally(readers, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, RACERS - 1);
    assert.deepEqual(await lendingsOf(book), outcome.winners);
  });

  test('store.execute from 10 store instances, unsynchronized, started at one instant, 5 rounds: each round exactly one lending, every loser ends in a domain error', async () => {
    const stores = await moreStores(RACERS);
    for (let round = 0; round < 5; round++) {
      const { book, readers } = await setUpRace();
      const gate = startGate();
      const racing = readers.map(async (readerId, index) => {
        await gate.wait();
        return stores[index]!.execute(lendBookCopyToReader, { bookId: book, readerId, at });
      });
      gate.open();
      const outcome = tally(readers, await Promise.allSettled(racing));
      assert.equal(outcome.winners.length, 1, `round ${round}`);
      assert.equal(outcome.conflicts, 0, `round ${round}`);
      for (const error of outcome.domainErrors) assert.ok(error instanceof BookCopyAlreadyLentError, `round ${round}: ${error.name}`);
      assert.deepEqual(await lendingsOf(book), outcome.winners, `round ${round}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The demo

describe('demo', () => {
  test('npm start runs end to end: exit code 0, exactly one of the two concurrent lendings won, its schema dropped', async () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/library/demo.ts'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: databaseUrl() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', (exitCode) => resolve(exitCode)));
    clearTimeout(timer);
    const output = `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
    assert.equal(code, 0, output);
    assert.match(stdout, /RESULT: exactly one of the 2 concurrent lendings won \((Alice|Dave)\)/, output);
    assert.equal(stdout.match(/: WON /g)?.length, 1, output);
    assert.equal(stdout.match(/: LOST {2}AppendConditionFailedError/g)?.length, 1, output);
    assert.equal(stdout.match(/decided again on the new facts -> BookCopyAlreadyLentError/g)?.length, 1, output);
    for (const error of ['BookCopyAlreadyLentError', 'BookCopyNotInCirculationError', 'ReaderNotRegisteredError', 'ReaderLendingLimitReachedError', 'ReaderHasBooksLentError', 'BookCopyNotLentToReaderError']) {
      assert.match(stdout, new RegExp(`rejected .* -> ${error}: `), `${error} shown\n${output}`);
    }
    const demoSchema = /fresh schema "(demo_\d+_\d+)"/.exec(stdout)?.[1];
    assert.ok(demoSchema, output);
    const { rows } = await withClient((client) => client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [demoSchema]));
    assert.deepEqual(rows, [], 'the demo dropped its schema');
  });
});
