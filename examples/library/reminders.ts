// An automation in the library domain: when a book copy is lent, schedule a reminder to return
// it, due three weeks after the lending. It reacts to `BookCopyLentToReader` and appends
// `ReturnReminderScheduled` in the same transaction that moves its checkpoint, so every lending
// gets exactly one reminder however often the process running it crashes.
//
// Its decision depends on state: a copy returned before the automation got to its lending (it
// lags after a restart) needs no reminder. That state is a decision model (the copy's current
// open lending), read before deciding; the reminder is appended on its condition, so a return that
// arrives between the read and the append makes the automation decide again, and append nothing.
import { Query, QueryItem, defineProjection, type AutomationOptions, type EventInput, type SequencedEvent } from '../../src/index.ts';
import { bookTag, readerTag, type LibraryEvents } from './domain.ts';

export const RETURN_PERIOD_DAYS = 21;

export interface ReturnReminderScheduled {
  BookID: string;
  ReaderID: string;
  /** ISO 8601: when the copy is due back. */
  DueAt: string;
}

export function returnReminderScheduled(bookId: string, readerId: string, dueAt: Date): EventInput<ReturnReminderScheduled> {
  return { type: 'ReturnReminderScheduled', tags: [bookTag(bookId), readerTag(readerId)], data: { BookID: bookId, ReaderID: readerId, DueAt: dueAt.toISOString() }, occurredAt: dueAt };
}

type Lent = SequencedEvent<LibraryEvents['BookCopyLentToReader']>;

/** The id of the copy's open lending event, or null while it is on the shelf. */
export const openLending = (bookId: string) =>
  defineProjection<string | null, LibraryEvents>({
    initialState: null,
    handlers: {
      BookCopyLentToReader: (_, event) => event.id,
      BookCopyReturnedByReader: () => null,
    },
    tags: [bookTag(bookId)],
  });

/** `store.automation('return-reminders', returnReminders)` on either store. */
export const returnReminders = {
  query: Query.of(QueryItem.types('BookCopyLentToReader')),
  projections: (event: Lent) => ({ lending: openLending(event.data.BookID) }),
  decide: (event: Lent, { state }) => {
    // Returned since (and maybe lent again): this lending is over, nothing to remind of.
    if (state.lending !== event.id) return undefined;
    const due = new Date(event.occurredAt.getTime() + RETURN_PERIOD_DAYS * 24 * 60 * 60 * 1000);
    return returnReminderScheduled(event.data.BookID, event.data.ReaderID, due);
  },
} satisfies AutomationOptions<LibraryEvents['BookCopyLentToReader'], { lending: ReturnType<typeof openLending> }>;
