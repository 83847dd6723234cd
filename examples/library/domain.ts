// The library-lending domain of the Go "Dynamic Streams EventStore" example, written the way we
// recommend writing DCB code with this store:
//
//   1. a command handler builds the Query of exactly the events its decision needs,
//   2. reads them (and the store's head) with `store.read(query)`,
//   3. folds them into a small decision state with a pure function,
//   4. decides with a pure function: new events, nothing (the command was already carried out),
//      or a typed domain error,
//   5. appends with `{ failIfEventsMatch: query, after: head }`, so that the append fails if
//      anything the decision depended on changed in between.
//
// Everything except the handlers (the last section) is pure and testable without a database.
import {
  AppendConditionFailedError,
  Query,
  QueryItem,
  type AppendResult,
  type EventInput,
  type EventStore,
  type SequencedEvent,
} from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload of each event type. Field names follow the Go original. */
export interface LibraryEventPayloads {
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

export type LibraryEventType = keyof LibraryEventPayloads;

/** A domain event: its type and payload. Tags are derived from the payload by {@link toEventInput}. */
export type LibraryEvent = { [Type in LibraryEventType]: { type: Type; data: LibraryEventPayloads[Type] } }[LibraryEventType];

export const BookCopyAddedToCirculation = 'BookCopyAddedToCirculation';
export const BookCopyRemovedFromCirculation = 'BookCopyRemovedFromCirculation';
export const ReaderRegistered = 'ReaderRegistered';
export const ReaderContractCanceled = 'ReaderContractCanceled';
export const BookCopyLentToReader = 'BookCopyLentToReader';
export const BookCopyReturnedByReader = 'BookCopyReturnedByReader';

const EVENT_TYPES: ReadonlySet<string> = new Set<LibraryEventType>([
  BookCopyAddedToCirculation,
  BookCopyRemovedFromCirculation,
  ReaderRegistered,
  ReaderContractCanceled,
  BookCopyLentToReader,
  BookCopyReturnedByReader,
]);

export const bookTag = (bookId: string): string => `book:${bookId}`;
export const readerTag = (readerId: string): string => `reader:${readerId}`;

/**
 * The event as the store takes it. Tags are what queries select on: a book copy's events carry
 * `book:<id>`, a reader's `reader:<id>`, and a lending or return carries both, so it is part of
 * both the book's and the reader's history.
 */
export function toEventInput(event: LibraryEvent): EventInput<LibraryEvent['data']> {
  switch (event.type) {
    case BookCopyAddedToCirculation:
    case BookCopyRemovedFromCirculation:
      return { type: event.type, tags: [bookTag(event.data.BookID)], data: event.data };
    case ReaderRegistered:
    case ReaderContractCanceled:
      return { type: event.type, tags: [readerTag(event.data.ReaderID)], data: event.data };
    case BookCopyLentToReader:
    case BookCopyReturnedByReader:
      return { type: event.type, tags: [bookTag(event.data.BookID), readerTag(event.data.ReaderID)], data: event.data };
  }
}

/** The stored event as a domain event. Throws on a type this domain does not know. */
export function toLibraryEvent(event: Pick<SequencedEvent, 'type' | 'data'>): LibraryEvent {
  if (!EVENT_TYPES.has(event.type)) throw new Error(`not a library event type: ${event.type}`);
  return { type: event.type, data: event.data } as LibraryEvent;
}

// ---------------------------------------------------------------------------------------------
// Domain errors

export type LibraryErrorCode =
  | 'BOOK_COPY_NOT_IN_CIRCULATION'
  | 'BOOK_COPY_ALREADY_LENT'
  | 'BOOK_COPY_NOT_LENT_TO_READER'
  | 'READER_NOT_REGISTERED'
  | 'READER_LENDING_LIMIT_REACHED'
  | 'READER_HAS_BOOKS_LENT';

/** A business rule rejected the command. Nothing was appended; retrying will not help. */
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

/** The copy is lent to a reader (so it cannot be lent to another one, nor removed). */
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
// Commands

export interface AddBookCopy {
  bookId: string;
  isbn: string;
  title: string;
  authors: string;
  edition?: string;
  publisher?: string;
  publicationYear?: number;
}
export interface RemoveBookCopy {
  bookId: string;
}
export interface RegisterReader {
  readerId: string;
  name: string;
}
export interface CancelReaderContract {
  readerId: string;
}
export interface LendBookCopyToReader {
  bookId: string;
  readerId: string;
}
export interface ReturnBookCopy {
  bookId: string;
  readerId: string;
}

export const MAX_BOOK_COPIES_PER_READER = 10;

// ---------------------------------------------------------------------------------------------
// Decisions: for each command, the query of what it depends on, a fold into the decision state,
// and the decision. All pure.
//
// Every decision is idempotent where the Go original is: repeating a command that already took
// effect (add a copy that is in circulation, lend a copy to the reader who holds it, ...) decides
// "no new events" instead of failing, so a client may safely retry after a timeout.

/** The lifecycle of one book copy: added, removed, lent, returned. */
function bookCopyItem(bookId: string, ...types: LibraryEventType[]): QueryItem {
  return QueryItem.types(...types).tags(bookTag(bookId));
}

/** The history of one reader: registered, canceled, and (if asked) what they borrowed and returned. */
function readerItem(readerId: string, ...types: LibraryEventType[]): QueryItem {
  return QueryItem.types(...types).tags(readerTag(readerId));
}

// --- addBookCopy

export const addBookCopyQuery = (command: Pick<AddBookCopy, 'bookId'>): Query =>
  Query.of(bookCopyItem(command.bookId, BookCopyAddedToCirculation, BookCopyRemovedFromCirculation));

export interface BookCirculationState {
  inCirculation: boolean;
}

export function foldBookCirculation(events: readonly LibraryEvent[]): BookCirculationState {
  let inCirculation = false;
  for (const event of events) {
    if (event.type === BookCopyAddedToCirculation) inCirculation = true;
    if (event.type === BookCopyRemovedFromCirculation) inCirculation = false;
  }
  return { inCirculation };
}

export function decideAddBookCopy(state: BookCirculationState, command: AddBookCopy): LibraryEvent[] {
  if (state.inCirculation) return [];
  return [
    {
      type: BookCopyAddedToCirculation,
      data: {
        BookID: command.bookId,
        ISBN: command.isbn,
        Title: command.title,
        Authors: command.authors,
        Edition: command.edition ?? '',
        Publisher: command.publisher ?? '',
        PublicationYear: command.publicationYear ?? 0,
      },
    },
  ];
}

// --- removeBookCopy

export const removeBookCopyQuery = (command: RemoveBookCopy): Query =>
  Query.of(bookCopyItem(command.bookId, BookCopyAddedToCirculation, BookCopyRemovedFromCirculation, BookCopyLentToReader, BookCopyReturnedByReader));

export interface BookCopyState {
  everAdded: boolean;
  inCirculation: boolean;
  /** The reader holding the copy now. */
  lentTo: string | undefined;
}

export function foldBookCopy(events: readonly LibraryEvent[]): BookCopyState {
  const state: BookCopyState = { everAdded: false, inCirculation: false, lentTo: undefined };
  for (const event of events) {
    switch (event.type) {
      case BookCopyAddedToCirculation:
        state.everAdded = true;
        state.inCirculation = true;
        break;
      case BookCopyRemovedFromCirculation:
        state.inCirculation = false;
        break;
      case BookCopyLentToReader:
        state.lentTo = event.data.ReaderID;
        break;
      case BookCopyReturnedByReader:
        state.lentTo = undefined;
        break;
    }
  }
  return state;
}

export function decideRemoveBookCopy(state: BookCopyState, command: RemoveBookCopy): LibraryEvent[] {
  if (!state.everAdded) throw new BookCopyNotInCirculationError(command.bookId);
  if (!state.inCirculation) return [];
  if (state.lentTo !== undefined) throw new BookCopyAlreadyLentError(command.bookId, state.lentTo);
  return [{ type: BookCopyRemovedFromCirculation, data: { BookID: command.bookId } }];
}

// --- registerReader

export const registerReaderQuery = (command: Pick<RegisterReader, 'readerId'>): Query =>
  Query.of(readerItem(command.readerId, ReaderRegistered, ReaderContractCanceled));

export interface ReaderRegistrationState {
  registered: boolean;
}

export function foldReaderRegistration(events: readonly LibraryEvent[]): ReaderRegistrationState {
  let registered = false;
  for (const event of events) {
    if (event.type === ReaderRegistered) registered = true;
    if (event.type === ReaderContractCanceled) registered = false;
  }
  return { registered };
}

export function decideRegisterReader(state: ReaderRegistrationState, command: RegisterReader): LibraryEvent[] {
  if (state.registered) return [];
  return [{ type: ReaderRegistered, data: { ReaderID: command.readerId, Name: command.name } }];
}

// --- cancelReaderContract

export const cancelReaderContractQuery = (command: CancelReaderContract): Query =>
  Query.of(readerItem(command.readerId, ReaderRegistered, ReaderContractCanceled, BookCopyLentToReader, BookCopyReturnedByReader));

export interface ReaderState {
  everRegistered: boolean;
  registered: boolean;
  /** Book copies the reader holds now, in lending order. */
  lentBookIds: string[];
}

export function foldReader(events: readonly LibraryEvent[]): ReaderState {
  const state: ReaderState = { everRegistered: false, registered: false, lentBookIds: [] };
  for (const event of events) {
    switch (event.type) {
      case ReaderRegistered:
        state.everRegistered = true;
        state.registered = true;
        break;
      case ReaderContractCanceled:
        state.registered = false;
        break;
      case BookCopyLentToReader:
        if (!state.lentBookIds.includes(event.data.BookID)) state.lentBookIds.push(event.data.BookID);
        break;
      case BookCopyReturnedByReader:
        state.lentBookIds = state.lentBookIds.filter((bookId) => bookId !== event.data.BookID);
        break;
    }
  }
  return state;
}

export function decideCancelReaderContract(state: ReaderState, command: CancelReaderContract): LibraryEvent[] {
  if (!state.everRegistered) throw new ReaderNotRegisteredError(command.readerId);
  if (!state.registered) return [];
  if (state.lentBookIds.length > 0) throw new ReaderHasBooksLentError(command.readerId, state.lentBookIds);
  return [{ type: ReaderContractCanceled, data: { ReaderID: command.readerId } }];
}

// --- lendBookCopyToReader

/**
 * The consistency boundary of a lending: the book copy's lifecycle (is it in circulation, is it
 * lent?) OR the reader's history (registered? how many copies held?). Two lendings of the same
 * copy conflict through the first item, two lendings to the same reader through the second;
 * lendings of different copies to different readers do not conflict at all.
 */
export const lendBookCopyQuery = (command: LendBookCopyToReader): Query =>
  Query.of(
    bookCopyItem(command.bookId, BookCopyAddedToCirculation, BookCopyRemovedFromCirculation, BookCopyLentToReader, BookCopyReturnedByReader),
    readerItem(command.readerId, ReaderRegistered, ReaderContractCanceled, BookCopyLentToReader, BookCopyReturnedByReader),
  );

export interface LendingState {
  book: BookCopyState;
  reader: ReaderState;
}

/**
 * One read returns both histories interleaved in position order; a lending of this very copy to
 * this very reader belongs to both, so each fold picks the events about its own entity.
 */
export function foldLending(events: readonly LibraryEvent[], command: LendBookCopyToReader): LendingState {
  return {
    book: foldBookCopy(events.filter((event) => 'BookID' in event.data && event.data.BookID === command.bookId)),
    reader: foldReader(events.filter((event) => 'ReaderID' in event.data && event.data.ReaderID === command.readerId)),
  };
}

export function decideLendBookCopy(state: LendingState, command: LendBookCopyToReader): LibraryEvent[] {
  if (state.book.lentTo === command.readerId) return [];
  if (!state.reader.registered) throw new ReaderNotRegisteredError(command.readerId);
  if (!state.book.inCirculation) throw new BookCopyNotInCirculationError(command.bookId);
  if (state.book.lentTo !== undefined) throw new BookCopyAlreadyLentError(command.bookId, state.book.lentTo);
  if (state.reader.lentBookIds.length >= MAX_BOOK_COPIES_PER_READER) throw new ReaderLendingLimitReachedError(command.readerId, state.reader.lentBookIds);
  return [{ type: BookCopyLentToReader, data: { BookID: command.bookId, ReaderID: command.readerId } }];
}

// --- returnBookCopy

/** Only this copy's lendings to, and returns by, this reader: both tags on one item mean AND. */
export const returnBookCopyQuery = (command: ReturnBookCopy): Query =>
  Query.of(QueryItem.types(BookCopyLentToReader, BookCopyReturnedByReader).tags(bookTag(command.bookId), readerTag(command.readerId)));

export interface ReturnState {
  everLent: boolean;
  holdsIt: boolean;
}

export function foldReturn(events: readonly LibraryEvent[]): ReturnState {
  const state: ReturnState = { everLent: false, holdsIt: false };
  for (const event of events) {
    if (event.type === BookCopyLentToReader) {
      state.everLent = true;
      state.holdsIt = true;
    }
    if (event.type === BookCopyReturnedByReader) state.holdsIt = false;
  }
  return state;
}

export function decideReturnBookCopy(state: ReturnState, command: ReturnBookCopy): LibraryEvent[] {
  if (!state.everLent) throw new BookCopyNotLentToReaderError(command.bookId, command.readerId);
  if (!state.holdsIt) return [];
  return [{ type: BookCopyReturnedByReader, data: { BookID: command.bookId, ReaderID: command.readerId } }];
}

// --- the read model "books lent by reader"

export const booksLentByReaderQuery = (readerId: string): Query => Query.of(readerItem(readerId, BookCopyLentToReader, BookCopyReturnedByReader));

/** The book copies a reader holds now, in lending order. */
export function projectBooksLentByReader(events: readonly LibraryEvent[]): string[] {
  return foldReader(events).lentBookIds;
}

// ---------------------------------------------------------------------------------------------
// Command handlers: read -> fold -> decide -> append with the same query as the condition.

/** What a handler needs of the store (an EventStore, or a test double wrapping one). */
export type LibraryEventStore = Pick<EventStore, 'read' | 'append'>;

export type CommandOutcome =
  /** New events were appended; `position` is the last one's. */
  | { appended: true; events: LibraryEvent[]; position: bigint }
  /** The command had already taken effect; nothing was appended. */
  | { appended: false; events: []; position: undefined };

/**
 * The DCB cycle. Throws the decision's LibraryError, or AppendConditionFailedError when an event
 * matching `query` was appended after our read (wrap the call in {@link retryOnConflict} to decide
 * again on the new facts).
 */
export async function handleCommand(
  store: LibraryEventStore,
  query: Query,
  decide: (history: LibraryEvent[]) => LibraryEvent[],
): Promise<CommandOutcome> {
  const { events, head } = await store.read(query);
  const newEvents = decide(events.map(toLibraryEvent));
  if (newEvents.length === 0) return { appended: false, events: [], position: undefined };
  const result: AppendResult = await store.append(newEvents.map(toEventInput), { failIfEventsMatch: query, after: head });
  return { appended: true, events: newEvents, position: result.position };
}

export const addBookCopy = (store: LibraryEventStore, command: AddBookCopy): Promise<CommandOutcome> =>
  handleCommand(store, addBookCopyQuery(command), (history) => decideAddBookCopy(foldBookCirculation(history), command));

export const removeBookCopy = (store: LibraryEventStore, command: RemoveBookCopy): Promise<CommandOutcome> =>
  handleCommand(store, removeBookCopyQuery(command), (history) => decideRemoveBookCopy(foldBookCopy(history), command));

export const registerReader = (store: LibraryEventStore, command: RegisterReader): Promise<CommandOutcome> =>
  handleCommand(store, registerReaderQuery(command), (history) => decideRegisterReader(foldReaderRegistration(history), command));

export const cancelReaderContract = (store: LibraryEventStore, command: CancelReaderContract): Promise<CommandOutcome> =>
  handleCommand(store, cancelReaderContractQuery(command), (history) => decideCancelReaderContract(foldReader(history), command));

export const lendBookCopyToReader = (store: LibraryEventStore, command: LendBookCopyToReader): Promise<CommandOutcome> =>
  handleCommand(store, lendBookCopyQuery(command), (history) => decideLendBookCopy(foldLending(history, command), command));

export const returnBookCopy = (store: LibraryEventStore, command: ReturnBookCopy): Promise<CommandOutcome> =>
  handleCommand(store, returnBookCopyQuery(command), (history) => decideReturnBookCopy(foldReturn(history), command));

/** The book copies a reader holds now. */
export async function booksLentByReader(store: Pick<EventStore, 'read'>, readerId: string): Promise<string[]> {
  const { events } = await store.read(booksLentByReaderQuery(readerId));
  return projectBooksLentByReader(events.map(toLibraryEvent));
}

export interface RetryOptions {
  /** Total attempts, the first included. Default 5. */
  maxAttempts?: number;
  /** Called before each retry. */
  onConflict?: (error: AppendConditionFailedError, attempt: number) => void;
}

/**
 * Runs `handler` again when its append condition failed, i.e. when someone appended an event the
 * decision depended on after we read. The next attempt reads the new facts and decides again,
 * so a lost race usually ends in a domain error (or in "already done"), not in a conflict.
 * No back-off: a conflict means another writer committed, so every round makes progress.
 * Domain errors and other failures are thrown at once.
 *
 * @example
 * await retryOnConflict(() => lendBookCopyToReader(store, { bookId, readerId }));
 */
export async function retryOnConflict<T>(handler: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 5;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
  for (let attempt = 1; ; attempt++) {
    try {
      return await handler();
    } catch (error) {
      if (!(error instanceof AppendConditionFailedError) || attempt >= maxAttempts) throw error;
      options.onConflict?.(error, attempt);
    }
  }
}
