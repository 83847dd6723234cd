// Specifications of the library-lending domain, written Given / When / Then:
//   Given the facts already in the log, When a command runs, Then these events were appended
//   (or: this domain error was thrown and nothing was appended).
// The decisions are pure and tested on their own first; everything else runs against a real
// store, including the races that the store's append condition has to settle.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  AppendConditionFailedError,
  Query,
  type EventStore,
  type ReadOptions,
  type ReadResult,
} from '../../src/index.ts';
import { connectToSchema, createTestStore, databaseUrl, startGate, withClient } from '../../test/helpers.ts';
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
  booksLentByReader,
  cancelReaderContract,
  decideLendBookCopy,
  decideReturnBookCopy,
  foldLending,
  foldReturn,
  isLibraryError,
  lendBookCopyQuery,
  lendBookCopyToReader,
  registerReader,
  removeBookCopy,
  retryOnConflict,
  returnBookCopy,
  toEventInput,
  toLibraryEvent,
  type CommandOutcome,
  type LibraryEvent,
  type LibraryEventStore,
} from './domain.ts';

// ---------------------------------------------------------------------------------------------
// Facts, and the Given / When / Then vocabulary

const added = (bookId: string): LibraryEvent => ({
  type: 'BookCopyAddedToCirculation',
  data: { BookID: bookId, ISBN: '978-0321125217', Title: 'Domain-Driven Design', Authors: 'Eric Evans', Edition: '1st', Publisher: 'Addison-Wesley', PublicationYear: 2003 },
});
const removed = (bookId: string): LibraryEvent => ({ type: 'BookCopyRemovedFromCirculation', data: { BookID: bookId } });
const registered = (readerId: string): LibraryEvent => ({ type: 'ReaderRegistered', data: { ReaderID: readerId, Name: `Reader ${readerId}` } });
const canceled = (readerId: string): LibraryEvent => ({ type: 'ReaderContractCanceled', data: { ReaderID: readerId } });
const lent = (bookId: string, readerId: string): LibraryEvent => ({ type: 'BookCopyLentToReader', data: { BookID: bookId, ReaderID: readerId } });
const returned = (bookId: string, readerId: string): LibraryEvent => ({ type: 'BookCopyReturnedByReader', data: { BookID: bookId, ReaderID: readerId } });

/** Fresh ids per test, so that the tests of this file can share one store. */
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

/** The facts before the command: appended as they are, without a condition. */
async function given(...events: LibraryEvent[]): Promise<void> {
  if (events.length > 0) await store.append(events.map(toEventInput));
}

type ErrorClass = abstract new (...args: never[]) => LibraryError;

/**
 * Runs `when` and checks its outcome: either the events it appended (in the log, with their tags,
 * and nothing else), or the domain error it threw (and nothing appended).
 */
async function then(
  when: () => Promise<CommandOutcome>,
  expected: { appended: LibraryEvent[] } | { rejectedWith: ErrorClass; matching?: Record<string, unknown> },
): Promise<void> {
  const head = await store.head();
  if ('appended' in expected) {
    const outcome = await when();
    assert.deepEqual(outcome.events, expected.appended);
    assert.equal(outcome.appended, expected.appended.length > 0);
  } else {
    await assert.rejects(when(), (error: unknown) => {
      assert.ok(error instanceof expected.rejectedWith, `expected ${expected.rejectedWith.name}, got ${String(error)}`);
      for (const [key, value] of Object.entries(expected.matching ?? {})) assert.deepEqual((error as unknown as Record<string, unknown>)[key], value, key);
      return true;
    });
  }
  const written = (await store.read(Query.all(), { after: head })).events;
  const wanted = 'appended' in expected ? expected.appended : [];
  assert.deepEqual(
    written.map((event) => ({ type: event.type, tags: event.tags, data: event.data })),
    wanted.map((event) => {
      const input = toEventInput(event);
      return { type: input.type, tags: [...(input.tags ?? [])].sort(), data: input.data };
    }),
  );
}

const nothing = { appended: [] };

// ---------------------------------------------------------------------------------------------
// Pure decisions: no database

describe('decisions (pure)', () => {
  test('the lending state takes the book from the book copy events and the count from the reader events only', () => {
    const command = { bookId: 'b1', readerId: 'r1' };
    // What one read of lendBookCopyQuery returns: both histories interleaved.
    const history = [added('b1'), registered('r1'), lent('b2', 'r1'), lent('b1', 'r2'), returned('b1', 'r2'), lent('b3', 'r1'), returned('b2', 'r1')];
    const state = foldLending(history, command);
    assert.deepEqual(state.book, { everAdded: true, inCirculation: true, lentTo: undefined });
    assert.deepEqual(state.reader, { everRegistered: true, registered: true, lentBookIds: ['b3'] });
    assert.deepEqual(decideLendBookCopy(state, command), [lent('b1', 'r1')]);
  });

  test('each lending rule on its own', () => {
    const command = { bookId: 'b1', readerId: 'r1' };
    const decide = (...history: LibraryEvent[]): LibraryEvent[] => decideLendBookCopy(foldLending(history, command), command);
    assert.throws(() => decide(registered('r1')), BookCopyNotInCirculationError);
    assert.throws(() => decide(added('b1'), removed('b1'), registered('r1')), BookCopyNotInCirculationError);
    assert.throws(() => decide(added('b1')), ReaderNotRegisteredError);
    assert.throws(() => decide(added('b1'), registered('r1'), canceled('r1')), ReaderNotRegisteredError);
    assert.throws(() => decide(added('b1'), registered('r1'), registered('r2'), lent('b1', 'r2')), (error: unknown) => error instanceof BookCopyAlreadyLentError && error.lentTo === 'r2');
    const nine = Array.from({ length: MAX_BOOK_COPIES_PER_READER - 1 }, (_, index) => lent(`x${index}`, 'r1'));
    assert.deepEqual(decide(added('b1'), registered('r1'), ...nine), [lent('b1', 'r1')]);
    assert.throws(() => decide(added('b1'), registered('r1'), ...nine, lent('x9', 'r1')), ReaderLendingLimitReachedError);
    assert.deepEqual(decide(added('b1'), registered('r1'), lent('b1', 'r1')), [], 'lending again to the holder is a no-op');
  });

  test('returns: never lent is an error, already returned is a no-op', () => {
    const command = { bookId: 'b1', readerId: 'r1' };
    assert.throws(() => decideReturnBookCopy(foldReturn([]), command), BookCopyNotLentToReaderError);
    assert.deepEqual(decideReturnBookCopy(foldReturn([lent('b1', 'r1')]), command), [returned('b1', 'r1')]);
    assert.deepEqual(decideReturnBookCopy(foldReturn([lent('b1', 'r1'), returned('b1', 'r1')]), command), []);
  });

  test('domain errors carry a stable code and their context', () => {
    const error = new ReaderLendingLimitReachedError('r1', ['a', 'b']);
    assert.equal(error.name, 'ReaderLendingLimitReachedError');
    assert.equal(error.code, 'READER_LENDING_LIMIT_REACHED');
    assert.deepEqual(error.lentBookIds, ['a', 'b']);
    assert.ok(isLibraryError(error, 'READER_LENDING_LIMIT_REACHED'));
    assert.ok(!isLibraryError(error, 'BOOK_COPY_ALREADY_LENT'));
    assert.ok(!isLibraryError(new AppendConditionFailedError({ failIfEventsMatch: Query.all() }, 1n)));
  });

  test('tags: a book copy event carries book:<id>, a reader event reader:<id>, a lending both', () => {
    assert.deepEqual(toEventInput(added('b1')).tags, ['book:b1']);
    assert.deepEqual(toEventInput(canceled('r1')).tags, ['reader:r1']);
    assert.deepEqual(toEventInput(returned('b1', 'r1')).tags, ['book:b1', 'reader:r1']);
    assert.throws(() => toLibraryEvent({ type: 'SomethingElse', data: {} }), /not a library event type/);
  });

  test('retryOnConflict re-runs on AppendConditionFailedError only, up to maxAttempts', async () => {
    const conflict = new AppendConditionFailedError({ failIfEventsMatch: Query.all(), after: 1n }, 2n);
    let calls = 0;
    const retried: number[] = [];
    const result = await retryOnConflict(
      async () => {
        calls++;
        if (calls < 3) throw conflict;
        return 'done';
      },
      { onConflict: (_, attempt) => retried.push(attempt) },
    );
    assert.equal(result, 'done');
    assert.deepEqual(retried, [1, 2]);

    calls = 0;
    await assert.rejects(retryOnConflict(async () => (calls++, Promise.reject(conflict)), { maxAttempts: 4 }), AppendConditionFailedError);
    assert.equal(calls, 4);

    calls = 0;
    await assert.rejects(retryOnConflict(async () => (calls++, Promise.reject(new ReaderNotRegisteredError('r1')))), ReaderNotRegisteredError);
    assert.equal(calls, 1, 'a domain error is final');
    await assert.rejects(retryOnConflict(async () => 1, { maxAttempts: 0 }), RangeError);
  });
});

// ---------------------------------------------------------------------------------------------
// Commands against a real store

describe('addBookCopy', () => {
  test('a new copy is added to circulation, tagged book:<id>', async () => {
    const book = newId('book');
    await then(() => addBookCopy(store, { bookId: book, isbn: '978-0321125217', title: 'Domain-Driven Design', authors: 'Eric Evans', edition: '1st', publisher: 'Addison-Wesley', publicationYear: 2003 }), {
      appended: [added(book)],
    });
  });

  test('a copy already in circulation: nothing happens', async () => {
    const book = newId('book');
    await given(added(book));
    await then(() => addBookCopy(store, { bookId: book, isbn: 'x', title: 'x', authors: 'x' }), nothing);
  });

  test('a removed copy can be added again', async () => {
    const book = newId('book');
    await given(added(book), removed(book));
    const outcome = await addBookCopy(store, { bookId: book, isbn: 'i', title: 't', authors: 'a' });
    assert.equal(outcome.appended, true);
  });
});

describe('removeBookCopy', () => {
  test('a copy in circulation and not lent is removed', async () => {
    const book = newId('book');
    await given(added(book));
    await then(() => removeBookCopy(store, { bookId: book }), { appended: [removed(book)] });
  });

  test('a copy never added: BookCopyNotInCirculationError', async () => {
    const book = newId('book');
    await then(() => removeBookCopy(store, { bookId: book }), { rejectedWith: BookCopyNotInCirculationError, matching: { bookId: book } });
  });

  test('a lent copy: BookCopyAlreadyLentError', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), lent(book, reader));
    await then(() => removeBookCopy(store, { bookId: book }), { rejectedWith: BookCopyAlreadyLentError, matching: { lentTo: reader } });
  });

  test('a copy already removed: nothing happens', async () => {
    const book = newId('book');
    await given(added(book), removed(book));
    await then(() => removeBookCopy(store, { bookId: book }), nothing);
  });
});

describe('registerReader and cancelReaderContract', () => {
  test('a new reader is registered, tagged reader:<id>', async () => {
    const reader = newId('reader');
    await then(() => registerReader(store, { readerId: reader, name: `Reader ${reader}` }), { appended: [registered(reader)] });
  });

  test('registering twice: nothing happens; after a cancellation: registered again', async () => {
    const reader = newId('reader');
    await given(registered(reader));
    await then(() => registerReader(store, { readerId: reader, name: `Reader ${reader}` }), nothing);
    await given(canceled(reader));
    await then(() => registerReader(store, { readerId: reader, name: `Reader ${reader}` }), { appended: [registered(reader)] });
  });

  test('a reader holding no copies: the contract is canceled', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), lent(book, reader), returned(book, reader));
    await then(() => cancelReaderContract(store, { readerId: reader }), { appended: [canceled(reader)] });
  });

  test('a reader holding copies: ReaderHasBooksLentError', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), lent(book, reader));
    await then(() => cancelReaderContract(store, { readerId: reader }), { rejectedWith: ReaderHasBooksLentError, matching: { lentBookIds: [book] } });
  });

  test('a reader never registered: ReaderNotRegisteredError; already canceled: nothing happens', async () => {
    const reader = newId('reader');
    await then(() => cancelReaderContract(store, { readerId: reader }), { rejectedWith: ReaderNotRegisteredError });
    await given(registered(reader), canceled(reader));
    await then(() => cancelReaderContract(store, { readerId: reader }), nothing);
  });
});

describe('lendBookCopyToReader', () => {
  test('a copy in circulation, not lent, to a registered reader: lent, tagged with the book and the reader', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { appended: [lent(book, reader)] });
  });

  test('a copy never added: BookCopyNotInCirculationError', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(registered(reader));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { rejectedWith: BookCopyNotInCirculationError, matching: { bookId: book } });
  });

  test('a copy removed from circulation: BookCopyNotInCirculationError', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), removed(book), registered(reader));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { rejectedWith: BookCopyNotInCirculationError });
  });

  test('a copy lent to another reader: BookCopyAlreadyLentError', async () => {
    const [book, holder, reader] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(holder), registered(reader), lent(book, holder));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { rejectedWith: BookCopyAlreadyLentError, matching: { bookId: book, lentTo: holder } });
  });

  test('a copy already lent to this reader: nothing happens (a retried command is harmless)', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), lent(book, reader));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), nothing);
  });

  test('a reader never registered: ReaderNotRegisteredError', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { rejectedWith: ReaderNotRegisteredError, matching: { readerId: reader } });
  });

  test('a reader whose contract was canceled: ReaderNotRegisteredError', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), canceled(reader));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { rejectedWith: ReaderNotRegisteredError });
  });

  test(`the limit: the ${MAX_BOOK_COPIES_PER_READER}th copy is lent, the ${MAX_BOOK_COPIES_PER_READER + 1}th refused until one is returned`, async () => {
    const reader = newId('reader');
    const books = Array.from({ length: MAX_BOOK_COPIES_PER_READER + 1 }, () => newId('book'));
    const held = books.slice(0, MAX_BOOK_COPIES_PER_READER - 1);
    await given(registered(reader), ...books.map(added), ...held.map((book) => lent(book, reader)));
    const tenth = books[MAX_BOOK_COPIES_PER_READER - 1]!;
    const eleventh = books[MAX_BOOK_COPIES_PER_READER]!;
    await then(() => lendBookCopyToReader(store, { bookId: tenth, readerId: reader }), { appended: [lent(tenth, reader)] });
    assert.deepEqual(await booksLentByReader(store, reader), [...held, tenth]);
    await then(() => lendBookCopyToReader(store, { bookId: eleventh, readerId: reader }), {
      rejectedWith: ReaderLendingLimitReachedError,
      matching: { readerId: reader, lentBookIds: [...held, tenth] },
    });
    await then(() => returnBookCopy(store, { bookId: held[0]!, readerId: reader }), { appended: [returned(held[0]!, reader)] });
    await then(() => lendBookCopyToReader(store, { bookId: eleventh, readerId: reader }), { appended: [lent(eleventh, reader)] });
    assert.deepEqual(await booksLentByReader(store, reader), [...held.slice(1), tenth, eleventh]);
  });

  test('copies held by other readers do not count towards the limit', async () => {
    const [reader, other] = [newId('reader'), newId('reader')];
    const books = Array.from({ length: MAX_BOOK_COPIES_PER_READER + 1 }, () => newId('book'));
    await given(registered(reader), registered(other), ...books.map(added), ...books.slice(1).map((book) => lent(book, other)));
    await then(() => lendBookCopyToReader(store, { bookId: books[0]!, readerId: reader }), { appended: [lent(books[0]!, reader)] });
  });
});

describe('returnBookCopy', () => {
  test('a copy the reader holds is returned; then another reader may borrow it', async () => {
    const [book, first, second] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(first), registered(second), lent(book, first));
    await then(() => returnBookCopy(store, { bookId: book, readerId: first }), { appended: [returned(book, first)] });
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: second }), { appended: [lent(book, second)] });
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: first }), { rejectedWith: BookCopyAlreadyLentError, matching: { lentTo: second } });
    assert.deepEqual(await booksLentByReader(store, first), []);
    assert.deepEqual(await booksLentByReader(store, second), [book]);
  });

  test('the same reader may borrow the same copy again after returning it', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), lent(book, reader), returned(book, reader));
    await then(() => lendBookCopyToReader(store, { bookId: book, readerId: reader }), { appended: [lent(book, reader)] });
  });

  test('a copy never lent to this reader: BookCopyNotLentToReaderError', async () => {
    const [book, holder, reader] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(holder), registered(reader), lent(book, holder));
    await then(() => returnBookCopy(store, { bookId: book, readerId: reader }), { rejectedWith: BookCopyNotLentToReaderError });
  });

  test('a copy already returned: nothing happens', async () => {
    const [book, reader] = [newId('book'), newId('reader')];
    await given(added(book), registered(reader), lent(book, reader), returned(book, reader));
    await then(() => returnBookCopy(store, { bookId: book, readerId: reader }), nothing);
  });
});

// ---------------------------------------------------------------------------------------------
// Consistency boundaries and races

/**
 * Wraps stores so that each one's first read completes and then waits until every wrapped store
 * has read: all racers decide on the same facts before anyone appends. Later reads (a retry)
 * pass straight through.
 */
function readTogether(stores: EventStore[]): LibraryEventStore[] {
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
      append: inner.append.bind(inner),
    };
  });
}

/** `count` more store instances on this file's schema, as `count` processes would have. */
async function moreStores(count: number): Promise<EventStore[]> {
  const stores = await Promise.all(Array.from({ length: count }, () => connectToSchema(schema, { poolSize: 2 })));
  extraStores.push(...stores);
  return stores;
}

interface RaceOutcome {
  winners: string[];
  conflicts: number;
  domainErrors: LibraryError[];
}

function tally(readers: readonly string[], results: PromiseSettledResult<CommandOutcome>[]): RaceOutcome {
  const outcome: RaceOutcome = { winners: [], conflicts: 0, domainErrors: [] };
  results.forEach((result, index) => {
    if (result.status === 'fulfilled') {
      assert.equal(result.value.appended, true);
      outcome.winners.push(readers[index]!);
    } else if (result.reason instanceof AppendConditionFailedError) {
      outcome.conflicts++;
    } else if (result.reason instanceof LibraryError) {
      outcome.domainErrors.push(result.reason);
    } else {
      throw result.reason;
    }
  });
  return outcome;
}

async function lendingsOf(book: string): Promise<string[]> {
  const { events } = await store.read(lendBookCopyQuery({ bookId: book, readerId: 'nobody' }));
  return events.map(toLibraryEvent).flatMap((event) => (event.type === 'BookCopyLentToReader' ? [event.data.ReaderID] : []));
}

describe('consistency boundaries', () => {
  /** The store, except that `interference` is appended right after the first read returned. */
  function withInterference(interference: LibraryEvent): LibraryEventStore {
    let pending = true;
    return {
      read: async <Data,>(query: Query, options?: ReadOptions): Promise<ReadResult<Data>> => {
        const result = await store.read<Data>(query, options);
        if (pending) {
          pending = false;
          await given(interference);
        }
        return result;
      },
      append: store.append.bind(store),
    };
  }

  test('a lending decided on stale facts is refused by the store', async () => {
    const [book, reader, rival] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(reader), registered(rival));
    // Someone lends the copy to the rival between our read and our append.
    const racing = withInterference(lent(book, rival));
    await assert.rejects(lendBookCopyToReader(racing, { bookId: book, readerId: reader }), AppendConditionFailedError);
    assert.deepEqual(await lendingsOf(book), [rival]);
  });

  test('with retryOnConflict the command is decided again on the new facts: a domain error, not a conflict', async () => {
    const [book, reader, rival] = [newId('book'), newId('reader'), newId('reader')];
    await given(added(book), registered(reader), registered(rival));
    const racing = withInterference(lent(book, rival));
    const conflicts: number[] = [];
    await assert.rejects(
      retryOnConflict(() => lendBookCopyToReader(racing, { bookId: book, readerId: reader }), { onConflict: (_, attempt) => conflicts.push(attempt) }),
      (error: unknown) => error instanceof BookCopyAlreadyLentError && error.lentTo === rival,
    );
    assert.deepEqual(conflicts, [1]);
    assert.deepEqual(await lendingsOf(book), [rival]);
  });

  test('a change outside the boundary (another copy, another reader) does not conflict', async () => {
    const [book, reader, otherBook, otherReader] = [newId('book'), newId('reader'), newId('book'), newId('reader')];
    await given(added(book), registered(reader), added(otherBook), registered(otherReader));
    const racing = withInterference(lent(otherBook, otherReader));
    const outcome = await lendBookCopyToReader(racing, { bookId: book, readerId: reader });
    assert.deepEqual(outcome.events, [lent(book, reader)]);
    assert.deepEqual(await lendingsOf(book), [reader]);
    assert.deepEqual(await lendingsOf(otherBook), [otherReader]);
  });

  test('lendings of different copies to different readers do not conflict, even when decided on the same head', async () => {
    const [bookA, bookB, readerA, readerB] = [newId('book'), newId('book'), newId('reader'), newId('reader')];
    await given(added(bookA), added(bookB), registered(readerA), registered(readerB));
    const [deskA, deskB] = readTogether(await moreStores(2));
    const results = await Promise.allSettled([
      lendBookCopyToReader(deskA!, { bookId: bookA, readerId: readerA }),
      lendBookCopyToReader(deskB!, { bookId: bookB, readerId: readerB }),
    ]);
    assert.deepEqual(tally([readerA, readerB], results), { winners: [readerA, readerB], conflicts: 0, domainErrors: [] });
  });

  test('the same reader borrowing two copies at once conflicts through the reader: the limit cannot be exceeded', async () => {
    const reader = newId('reader');
    const books = Array.from({ length: MAX_BOOK_COPIES_PER_READER + 4 }, () => newId('book'));
    const held = books.slice(0, MAX_BOOK_COPIES_PER_READER - 1);
    const wanted = books.slice(MAX_BOOK_COPIES_PER_READER - 1);
    await given(registered(reader), ...books.map(added), ...held.map((book) => lent(book, reader)));
    const desks = readTogether(await moreStores(wanted.length));
    const results = await Promise.allSettled(
      wanted.map((book, index) => retryOnConflict(() => lendBookCopyToReader(desks[index]!, { bookId: book, readerId: reader }))),
    );
    const outcome = tally(wanted, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, 0);
    assert.equal(outcome.domainErrors.length, wanted.length - 1);
    for (const error of outcome.domainErrors) assert.ok(error instanceof ReaderLendingLimitReachedError);
    assert.equal((await booksLentByReader(store, reader)).length, MAX_BOOK_COPIES_PER_READER);
  });
});

describe('ten readers race for one copy', () => {
  const RACERS = 10;

  async function setUpRace(): Promise<{ book: string; readers: string[] }> {
    const book = newId('book');
    const readers = Array.from({ length: RACERS }, () => newId('reader'));
    await given(added(book), ...readers.map(registered));
    return { book, readers };
  }

  test('from 10 store instances, all deciding on the same head: one lending wins, 9 get AppendConditionFailedError', async () => {
    const { book, readers } = await setUpRace();
    const desks = readTogether(await moreStores(RACERS));
    const results = await Promise.allSettled(readers.map((reader, index) => lendBookCopyToReader(desks[index]!, { bookId: book, readerId: reader })));
    const outcome = tally(readers, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, RACERS - 1);
    assert.deepEqual(outcome.domainErrors, []);
    assert.deepEqual(await lendingsOf(book), outcome.winners);
  });

  test('with retryOnConflict: one wins, the 9 others decide again and fail with BookCopyAlreadyLentError, a domain error', async () => {
    const { book, readers } = await setUpRace();
    const desks = readTogether(await moreStores(RACERS));
    const results = await Promise.allSettled(
      readers.map((reader, index) => retryOnConflict(() => lendBookCopyToReader(desks[index]!, { bookId: book, readerId: reader }))),
    );
    const outcome = tally(readers, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, 0);
    assert.equal(outcome.domainErrors.length, RACERS - 1);
    for (const error of outcome.domainErrors) {
      assert.ok(error instanceof BookCopyAlreadyLentError);
      assert.equal(error.lentTo, outcome.winners[0]);
    }
    assert.deepEqual(await lendingsOf(book), outcome.winners);
  });

  test('through one store instance (the appends share a batch): one wins', async () => {
    const { book, readers } = await setUpRace();
    const desks = readTogether(Array.from({ length: RACERS }, () => store));
    const results = await Promise.allSettled(readers.map((reader, index) => lendBookCopyToReader(desks[index]!, { bookId: book, readerId: reader })));
    const outcome = tally(readers, results);
    assert.equal(outcome.winners.length, 1);
    assert.equal(outcome.conflicts, RACERS - 1);
    assert.deepEqual(await lendingsOf(book), outcome.winners);
  });

  test('unsynchronized, started at one instant, 5 rounds: each round exactly one lending, every loser ends in a domain error', async () => {
    const stores = await moreStores(RACERS);
    for (let round = 0; round < 5; round++) {
      const { book, readers } = await setUpRace();
      const gate = startGate();
      const racing = readers.map(async (reader, index) => {
        await gate.wait();
        return retryOnConflict(() => lendBookCopyToReader(stores[index]!, { bookId: book, readerId: reader }));
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
    for (const error of ['BookCopyAlreadyLentError', 'BookCopyNotInCirculationError', 'ReaderNotRegisteredError', 'ReaderLendingLimitReachedError']) {
      assert.match(stdout, new RegExp(`rejected .* -> ${error}: `), `${error} shown\n${output}`);
    }
    const demoSchema = /fresh schema "(demo_\d+_\d+)"/.exec(stdout)?.[1];
    assert.ok(demoSchema, output);
    const { rows } = await withClient((client) => client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [demoSchema]));
    assert.deepEqual(rows, [], 'the demo dropped its schema');
  });
});
