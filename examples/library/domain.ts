// The library-lending domain of the Go "Dynamic Streams EventStore" example, written with the
// decision API: each rule needs a small fact (is the copy in circulation? whom is it lent to? how
// many copies does the reader hold?), each fact is a projection over the events of one book copy
// or one reader, and a command handler combines the facts its rules need. `store.execute` reads
// them with one query, decides, and appends on the condition that none of those events changed
// in between (and, if one did, reads and decides again).
//
// There is no aggregate: a lending depends on the book copy's history AND the reader's, and a
// lending event carries both tags, so it belongs to both. Lendings of different copies to
// different readers share no event and never conflict.
import { buildDecisionModel, defineCommandHandler, defineProjection, type DecisionModelSource, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload per event type. Field names follow the Go original. */
export interface LibraryEvents {
  BookCopyAddedToCirculation: {
    BookID: string;
    ISBN: string;
    Title: string;
    Authors: string;
    Edition: string;
    Publisher: string;
    PublicationYear: number;
  };
  BookCopyRemovedFromCirculation: { BookID: string };
  ReaderRegistered: { ReaderID: string; Name: string };
  ReaderContractCanceled: { ReaderID: string };
  BookCopyLentToReader: { BookID: string; ReaderID: string };
  BookCopyReturnedByReader: { BookID: string; ReaderID: string };
}

export const bookTag = (bookId: string): string => `book:${bookId}`;
export const readerTag = (readerId: string): string => `reader:${readerId}`;

export interface BookCopyDetails {
  bookId: string;
  isbn: string;
  title: string;
  authors: string;
  edition?: string;
  publisher?: string;
  publicationYear?: number;
}

export function bookCopyAddedToCirculation(book: BookCopyDetails, at: Date): EventInput<LibraryEvents['BookCopyAddedToCirculation']> {
  return {
    type: 'BookCopyAddedToCirculation',
    tags: [bookTag(book.bookId)],
    data: {
      BookID: book.bookId,
      ISBN: book.isbn,
      Title: book.title,
      Authors: book.authors,
      Edition: book.edition ?? '',
      Publisher: book.publisher ?? '',
      PublicationYear: book.publicationYear ?? 0,
    },
    occurredAt: at,
  };
}

export function bookCopyRemovedFromCirculation(bookId: string, at: Date): EventInput<LibraryEvents['BookCopyRemovedFromCirculation']> {
  return { type: 'BookCopyRemovedFromCirculation', tags: [bookTag(bookId)], data: { BookID: bookId }, occurredAt: at };
}

export function readerRegistered(readerId: string, name: string, at: Date): EventInput<LibraryEvents['ReaderRegistered']> {
  return { type: 'ReaderRegistered', tags: [readerTag(readerId)], data: { ReaderID: readerId, Name: name }, occurredAt: at };
}

export function readerContractCanceled(readerId: string, at: Date): EventInput<LibraryEvents['ReaderContractCanceled']> {
  return { type: 'ReaderContractCanceled', tags: [readerTag(readerId)], data: { ReaderID: readerId }, occurredAt: at };
}

/** Part of the book copy's history and of the reader's: it carries both tags. */
export function bookCopyLentToReader(bookId: string, readerId: string, at: Date): EventInput<LibraryEvents['BookCopyLentToReader']> {
  return { type: 'BookCopyLentToReader', tags: [bookTag(bookId), readerTag(readerId)], data: { BookID: bookId, ReaderID: readerId }, occurredAt: at };
}

/** Part of the book copy's history and of the reader's: it carries both tags. */
export function bookCopyReturnedByReader(bookId: string, readerId: string, at: Date): EventInput<LibraryEvents['BookCopyReturnedByReader']> {
  return { type: 'BookCopyReturnedByReader', tags: [bookTag(bookId), readerTag(readerId)], data: { BookID: bookId, ReaderID: readerId }, occurredAt: at };
}

// ---------------------------------------------------------------------------------------------
// Errors

export const MAX_BOOK_COPIES_PER_READER = 10;

export type LibraryErrorCode =
  | 'BOOK_COPY_NOT_IN_CIRCULATION'
  | 'BOOK_COPY_ALREADY_LENT'
  | 'BOOK_COPY_NOT_LENT_TO_READER'
  | 'READER_NOT_REGISTERED'
  | 'READER_LENDING_LIMIT_REACHED'
  | 'READER_HAS_BOOKS_LENT';

/** A rule rejected the command; nothing was appended, and repeating it will not help. */
export class LibraryError extends Error {
  readonly code: LibraryErrorCode;

  constructor(code: LibraryErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The copy was never added to circulation, or was removed from it. */
export class BookCopyNotInCirculationError extends LibraryError {
  constructor(readonly bookId: string) {
    super('BOOK_COPY_NOT_IN_CIRCULATION', `book copy ${bookId} is not in circulation`);
  }
}

/** The copy is lent to a reader (so it can be neither lent to another one nor removed). */
export class BookCopyAlreadyLentError extends LibraryError {
  constructor(
    readonly bookId: string,
    readonly lentTo: string,
  ) {
    super('BOOK_COPY_ALREADY_LENT', `book copy ${bookId} is lent to reader ${lentTo}`);
  }
}

/** A return of a copy the reader does not hold and never held. */
export class BookCopyNotLentToReaderError extends LibraryError {
  constructor(
    readonly bookId: string,
    readonly readerId: string,
  ) {
    super('BOOK_COPY_NOT_LENT_TO_READER', `book copy ${bookId} was never lent to reader ${readerId}`);
  }
}

/** The reader was never registered, or their contract was canceled. */
export class ReaderNotRegisteredError extends LibraryError {
  constructor(readonly readerId: string) {
    super('READER_NOT_REGISTERED', `reader ${readerId} is not registered`);
  }
}

/** The reader holds {@link MAX_BOOK_COPIES_PER_READER} copies already. */
export class ReaderLendingLimitReachedError extends LibraryError {
  constructor(
    readonly readerId: string,
    readonly lentBookIds: readonly string[],
  ) {
    super('READER_LENDING_LIMIT_REACHED', `reader ${readerId} already holds ${lentBookIds.length} book copies (the limit is ${MAX_BOOK_COPIES_PER_READER})`);
  }
}

/** A contract cannot be canceled while the reader holds book copies. */
export class ReaderHasBooksLentError extends LibraryError {
  constructor(
    readonly readerId: string,
    readonly lentBookIds: readonly string[],
  ) {
    super('READER_HAS_BOOKS_LENT', `reader ${readerId} still holds ${lentBookIds.length} book copies: ${lentBookIds.join(', ')}`);
  }
}

export function isLibraryError(error: unknown, code?: LibraryErrorCode): error is LibraryError {
  return error instanceof LibraryError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// Projections: one fact each, over the events of one book copy or one reader. The decision that
// combines some of them depends on exactly their events, and conflicts with nothing else.

export interface Circulation {
  everAdded: boolean;
  inCirculation: boolean;
}

/** Whether the copy is in circulation. Lendings are not part of it: they do not conflict with adding a copy. */
export const bookCopyCirculation = (bookId: string) =>
  defineProjection<Circulation, LibraryEvents>({
    initialState: { everAdded: false, inCirculation: false },
    handlers: {
      BookCopyAddedToCirculation: () => ({ everAdded: true, inCirculation: true }),
      BookCopyRemovedFromCirculation: (state) => ({ ...state, inCirculation: false }),
    },
    tags: [bookTag(bookId)],
  });

/** The reader holding the copy now, or null. */
export const bookCopyLentTo = (bookId: string) =>
  defineProjection<string | null, LibraryEvents>({
    initialState: null,
    handlers: {
      BookCopyLentToReader: (_, event) => event.data.ReaderID,
      BookCopyReturnedByReader: () => null,
    },
    tags: [bookTag(bookId)],
  });

export interface Registration {
  everRegistered: boolean;
  registered: boolean;
}

export const readerRegistration = (readerId: string) =>
  defineProjection<Registration, LibraryEvents>({
    initialState: { everRegistered: false, registered: false },
    handlers: {
      ReaderRegistered: () => ({ everRegistered: true, registered: true }),
      ReaderContractCanceled: (state) => ({ ...state, registered: false }),
    },
    tags: [readerTag(readerId)],
  });

/** The book copies a reader holds now, in lending order. Also the read model "books lent by a reader". */
export const booksLentByReader = (readerId: string) =>
  defineProjection<string[], LibraryEvents>({
    initialState: [],
    handlers: {
      BookCopyLentToReader: (books, event) => (books.includes(event.data.BookID) ? books : [...books, event.data.BookID]),
      BookCopyReturnedByReader: (books, event) => books.filter((bookId) => bookId !== event.data.BookID),
    },
    tags: [readerTag(readerId)],
  });

export interface Loan {
  everLent: boolean;
  holdsIt: boolean;
}

/** This copy's lendings to, and returns by, this reader: two tags on one query item mean AND. */
export const loanOfBookCopy = (bookId: string, readerId: string) =>
  defineProjection<Loan, LibraryEvents>({
    initialState: { everLent: false, holdsIt: false },
    handlers: {
      BookCopyLentToReader: () => ({ everLent: true, holdsIt: true }),
      BookCopyReturnedByReader: (state) => ({ ...state, holdsIt: false }),
    },
    tags: [bookTag(bookId), readerTag(readerId)],
  });

/** The read-side query "books lent by a reader": the copies the reader holds now, in lending order. */
export async function findBooksLentByReader(store: DecisionModelSource, readerId: string): Promise<string[]> {
  return (await buildDecisionModel(store, { books: booksLentByReader(readerId) })).state.books;
}

// ---------------------------------------------------------------------------------------------
// Commands
//
// Where the Go original is idempotent, so are these: repeating a command that already took
// effect (add a copy that is in circulation, lend a copy to the reader who holds it, ...)
// appends nothing instead of failing, so a client may safely retry after a timeout.

export interface AddBookCopy extends BookCopyDetails {
  at: Date;
}
export interface RemoveBookCopy {
  bookId: string;
  at: Date;
}
export interface RegisterReader {
  readerId: string;
  name: string;
  at: Date;
}
export interface CancelReaderContract {
  readerId: string;
  at: Date;
}
export interface LendBookCopyToReader {
  bookId: string;
  readerId: string;
  at: Date;
}
export interface ReturnBookCopy {
  bookId: string;
  readerId: string;
  at: Date;
}

/**
 * Adds a book copy to circulation (again, after a removal). A copy in circulation: nothing to do.
 */
export const addBookCopy = defineCommandHandler({
  projections: (command: AddBookCopy) => ({ circulation: bookCopyCirculation(command.bookId) }),
  decide: (state, command) => {
    if (state.circulation.inCirculation) return;
    const { at, ...book } = command;
    return bookCopyAddedToCirculation(book, at);
  },
});

/**
 * Removes a book copy from circulation. Already removed: nothing to do.
 *
 * Rules: the copy was added ({@link BookCopyNotInCirculationError}); it is not lent
 * ({@link BookCopyAlreadyLentError}).
 */
export const removeBookCopy = defineCommandHandler({
  projections: (command: RemoveBookCopy) => ({
    circulation: bookCopyCirculation(command.bookId),
    lentTo: bookCopyLentTo(command.bookId),
  }),
  decide: (state, command) => {
    if (!state.circulation.everAdded) throw new BookCopyNotInCirculationError(command.bookId);
    if (!state.circulation.inCirculation) return;
    if (state.lentTo !== null) throw new BookCopyAlreadyLentError(command.bookId, state.lentTo);
    return bookCopyRemovedFromCirculation(command.bookId, command.at);
  },
});

/** Registers a reader (again, after a cancellation). Registered: nothing to do. */
export const registerReader = defineCommandHandler({
  projections: (command: RegisterReader) => ({ registration: readerRegistration(command.readerId) }),
  decide: (state, command) => {
    if (state.registration.registered) return;
    return readerRegistered(command.readerId, command.name, command.at);
  },
});

/**
 * Cancels a reader's contract. Already canceled: nothing to do.
 *
 * Rules: the reader was registered ({@link ReaderNotRegisteredError}); they hold no book copy
 * ({@link ReaderHasBooksLentError}).
 */
export const cancelReaderContract = defineCommandHandler({
  projections: (command: CancelReaderContract) => ({
    registration: readerRegistration(command.readerId),
    lentBooks: booksLentByReader(command.readerId),
  }),
  decide: (state, command) => {
    if (!state.registration.everRegistered) throw new ReaderNotRegisteredError(command.readerId);
    if (!state.registration.registered) return;
    if (state.lentBooks.length > 0) throw new ReaderHasBooksLentError(command.readerId, state.lentBooks);
    return readerContractCanceled(command.readerId, command.at);
  },
});

/**
 * Lends a book copy to a reader. Lent to this reader already: nothing to do.
 *
 * Rules: the reader is registered ({@link ReaderNotRegisteredError}); the copy is in circulation
 * ({@link BookCopyNotInCirculationError}) and not lent ({@link BookCopyAlreadyLentError}); the
 * reader holds fewer than {@link MAX_BOOK_COPIES_PER_READER} copies
 * ({@link ReaderLendingLimitReachedError}).
 *
 * The boundary is the copy's history OR the reader's: two lendings of one copy conflict through
 * the copy, two lendings to one reader through the reader (so the limit holds under concurrency).
 */
export const lendBookCopyToReader = defineCommandHandler({
  projections: (command: LendBookCopyToReader) => ({
    circulation: bookCopyCirculation(command.bookId),
    lentTo: bookCopyLentTo(command.bookId),
    registration: readerRegistration(command.readerId),
    lentBooks: booksLentByReader(command.readerId),
  }),
  decide: (state, command) => {
    if (state.lentTo === command.readerId) return;
    if (!state.registration.registered) throw new ReaderNotRegisteredError(command.readerId);
    if (!state.circulation.inCirculation) throw new BookCopyNotInCirculationError(command.bookId);
    if (state.lentTo !== null) throw new BookCopyAlreadyLentError(command.bookId, state.lentTo);
    if (state.lentBooks.length >= MAX_BOOK_COPIES_PER_READER) throw new ReaderLendingLimitReachedError(command.readerId, state.lentBooks);
    return bookCopyLentToReader(command.bookId, command.readerId, command.at);
  },
});

/**
 * A reader returns a book copy. Returned already: nothing to do.
 *
 * Rule: the copy was lent to this reader ({@link BookCopyNotLentToReaderError}).
 */
export const returnBookCopy = defineCommandHandler({
  projections: (command: ReturnBookCopy) => ({ loan: loanOfBookCopy(command.bookId, command.readerId) }),
  decide: (state, command) => {
    if (!state.loan.everLent) throw new BookCopyNotLentToReaderError(command.bookId, command.readerId);
    if (!state.loan.holdsIt) return;
    return bookCopyReturnedByReader(command.bookId, command.readerId, command.at);
  },
});
