// `npm start`: the library-lending domain on a real PostgreSQL, step by step, ending with two
// lendings of the same book copy racing from two separate EventStore instances.
//
// Without DATABASE_URL it starts an embedded PostgreSQL 17 (data directory under os.tmpdir(),
// kept between runs so that the next start is fast). Each run works in a fresh schema and drops
// it at the end.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  AppendConditionFailedError,
  EventStore,
  Query,
  QueryItem,
  startEmbeddedPostgres,
  type EmbeddedPostgresServer,
  type ReadOptions,
  type ReadResult,
} from '../../src/index.ts';
import {
  LibraryError,
  MAX_BOOK_COPIES_PER_READER,
  addBookCopy,
  bookTag,
  booksLentByReader,
  cancelReaderContract,
  lendBookCopyToReader,
  registerReader,
  removeBookCopy,
  returnBookCopy,
  type CommandOutcome,
  type LibraryEventStore,
} from './domain.ts';

const started = performance.now();
const log = console.log;

const BOOKS = [
  { bookId: 'ddd-1', isbn: '978-0321125217', title: 'Domain-Driven Design', authors: 'Eric Evans' },
  { bookId: 'ddd-2', isbn: '978-0321125217', title: 'Domain-Driven Design', authors: 'Eric Evans' },
  { bookId: 'iddd-1', isbn: '978-0321834577', title: 'Implementing Domain-Driven Design', authors: 'Vaughn Vernon' },
  { bookId: 'sicp-1', isbn: '978-0262510875', title: 'Structure and Interpretation of Computer Programs', authors: 'Harold Abelson, Gerald Jay Sussman' },
  { bookId: 'ddia-1', isbn: '978-1449373320', title: 'Designing Data-Intensive Applications', authors: 'Martin Kleppmann' },
  { bookId: 'pp-1', isbn: '978-0135957059', title: 'The Pragmatic Programmer', authors: 'David Thomas, Andrew Hunt' },
  { bookId: 'refactoring-1', isbn: '978-0134757599', title: 'Refactoring', authors: 'Martin Fowler' },
  { bookId: 'peaa-1', isbn: '978-0321127426', title: 'Patterns of Enterprise Application Architecture', authors: 'Martin Fowler' },
  { bookId: 'eip-1', isbn: '978-0321200686', title: 'Enterprise Integration Patterns', authors: 'Gregor Hohpe, Bobby Woolf' },
  { bookId: 'goos-1', isbn: '978-0321503626', title: 'Growing Object-Oriented Software, Guided by Tests', authors: 'Steve Freeman, Nat Pryce' },
  { bookId: 'tdd-1', isbn: '978-0321146533', title: 'Test Driven Development: By Example', authors: 'Kent Beck' },
  { bookId: 'wewlc-1', isbn: '978-0131177055', title: 'Working Effectively with Legacy Code', authors: 'Michael Feathers' },
  { bookId: 'mythical-1', isbn: '978-0201835953', title: 'The Mythical Man-Month', authors: 'Frederick P. Brooks Jr.' },
  { bookId: 'clrs-1', isbn: '978-0262046305', title: 'Introduction to Algorithms', authors: 'Cormen, Leiserson, Rivest, Stein' },
  { bookId: 'taocp-1', isbn: '978-0201896831', title: 'The Art of Computer Programming, Vol. 1', authors: 'Donald E. Knuth' },
];
const title = (bookId: string): string => BOOKS.find((book) => book.bookId === bookId)?.title ?? bookId;
const READERS = [
  { readerId: 'alice', name: 'Alice' },
  { readerId: 'bob', name: 'Bob' },
  { readerId: 'carol', name: 'Carol' },
];

let accepted = 0;
let unchanged = 0;
const rejections: string[] = [];

function step(text: string): void {
  log(`\n== ${text}`);
}

/** Runs one command and prints its outcome; a rule violation is printed, anything else thrown. */
async function run(label: string, command: () => Promise<CommandOutcome>): Promise<CommandOutcome | LibraryError> {
  try {
    const outcome = await command();
    if (outcome.appended) {
      accepted++;
      log(`  ok        ${label}  -> ${outcome.events.map((event) => event.type).join(', ')} at position ${outcome.position}`);
    } else {
      unchanged++;
      log(`  no-op     ${label}  -> already so, nothing appended`);
    }
    return outcome;
  } catch (error) {
    if (!(error instanceof LibraryError)) throw error;
    rejections.push(error.name);
    log(`  rejected  ${label}  -> ${error.name}: ${error.message}`);
    return error;
  }
}

/**
 * Lets each wrapped store's first read complete, then holds it until every racer has read: all
 * decide on the same facts before anyone appends. Without this, the slower racer might read after
 * the winner committed and be refused by the rules instead; with it, the store's append condition
 * is what has to stop the second lending.
 */
function readTogether(stores: EventStore[], onRead: (index: number, result: ReadResult) => void): LibraryEventStore[] {
  let pending = stores.length;
  let release!: () => void;
  const allHaveRead = new Promise<void>((resolve) => (release = resolve));
  return stores.map((store, index) => {
    let first = true;
    return {
      read: async <Data,>(query: Query, options?: ReadOptions): Promise<ReadResult<Data>> => {
        const result = await store.read<Data>(query, options);
        if (first) {
          first = false;
          onRead(index, result);
          if (--pending === 0) release();
          await allHaveRead;
        }
        return result;
      },
      append: store.append.bind(store),
    };
  });
}

async function main(): Promise<void> {
  step('Connecting');
  let server: EmbeddedPostgresServer | undefined;
  let connectionString = process.env.DATABASE_URL;
  if (connectionString) {
    log(`  using the PostgreSQL server in DATABASE_URL (${new URL(connectionString).host})`);
  } else {
    const dataDir = join(tmpdir(), 'dynamic-streams-eventstore-demo');
    log(`  no DATABASE_URL: starting an embedded PostgreSQL 17 in ${dataDir} ...`);
    server = await startEmbeddedPostgres({ dataDir, port: 0 });
    connectionString = server.connectionString;
    log(`  embedded PostgreSQL is listening on port ${server.port}`);
  }
  const schema = `demo_${Date.now()}_${process.pid}`;
  const stores: EventStore[] = [];
  let schemaCreated = false;
  try {
    const store = await EventStore.connect({ connectionString, schema });
    stores.push(store);
    schemaCreated = true;
    log(`  event store ready in the fresh schema "${schema}"`);

    step('Adding book copies to circulation');
    for (const book of BOOKS) await run(`add "${book.title}" (copy ${book.bookId})`, () => addBookCopy(store, book));
    await run('add copy ddd-1 again', () => addBookCopy(store, BOOKS[0]!));

    step('Registering readers');
    for (const reader of READERS) await run(`register ${reader.name}`, () => registerReader(store, reader));

    step('Lending and returning');
    await run(`lend "${title('ddd-1')}" (ddd-1) to Alice`, () => lendBookCopyToReader(store, { bookId: 'ddd-1', readerId: 'alice' }));
    await run('lend ddd-1 to Alice again', () => lendBookCopyToReader(store, { bookId: 'ddd-1', readerId: 'alice' }));
    await run('lend ddd-1 to Bob', () => lendBookCopyToReader(store, { bookId: 'ddd-1', readerId: 'bob' }));
    await run('lend ddd-2 (the other copy) to Bob', () => lendBookCopyToReader(store, { bookId: 'ddd-2', readerId: 'bob' }));
    await run('Alice returns ddd-1', () => returnBookCopy(store, { bookId: 'ddd-1', readerId: 'alice' }));
    await run('lend ddd-1 to Bob', () => lendBookCopyToReader(store, { bookId: 'ddd-1', readerId: 'bob' }));
    await run('Alice returns ddd-2, which she never borrowed', () => returnBookCopy(store, { bookId: 'ddd-2', readerId: 'alice' }));

    step('Rules that reject a command');
    await run('lend ddd-1 to Dave, who never registered', () => lendBookCopyToReader(store, { bookId: 'ddd-1', readerId: 'dave' }));
    await run('lend copy "missing-1", never added, to Alice', () => lendBookCopyToReader(store, { bookId: 'missing-1', readerId: 'alice' }));
    await run('remove ddd-1 from circulation while Bob holds it', () => removeBookCopy(store, { bookId: 'ddd-1' }));
    await run("cancel Bob's contract while he holds two copies", () => cancelReaderContract(store, { readerId: 'bob' }));
    await run('remove iddd-1 from circulation', () => removeBookCopy(store, { bookId: 'iddd-1' }));
    await run('lend iddd-1, now removed, to Alice', () => lendBookCopyToReader(store, { bookId: 'iddd-1', readerId: 'alice' }));
    await run('Bob returns ddd-1', () => returnBookCopy(store, { bookId: 'ddd-1', readerId: 'bob' }));
    await run('Bob returns ddd-2', () => returnBookCopy(store, { bookId: 'ddd-2', readerId: 'bob' }));
    await run("cancel Bob's contract", () => cancelReaderContract(store, { readerId: 'bob' }));
    await run('lend ddd-1 to Bob, whose contract is canceled', () => lendBookCopyToReader(store, { bookId: 'ddd-1', readerId: 'bob' }));

    step(`The lending limit: a reader holds at most ${MAX_BOOK_COPIES_PER_READER} copies`);
    const forCarol = BOOKS.filter((book) => book.bookId !== 'iddd-1').slice(0, MAX_BOOK_COPIES_PER_READER + 1);
    for (const [index, book] of forCarol.entries()) {
      await run(`lend ${book.bookId} to Carol (copy ${index + 1})`, () => lendBookCopyToReader(store, { bookId: book.bookId, readerId: 'carol' }));
    }
    const carolHolds = await booksLentByReader(store, 'carol');
    log(`  booksLentByReader(carol): ${carolHolds.length} copies: ${carolHolds.join(', ')}`);
    const lastOne = forCarol.at(-1)!.bookId;
    await run(`Carol returns ${carolHolds[0]}`, () => returnBookCopy(store, { bookId: carolHolds[0]!, readerId: 'carol' }));
    await run(`lend ${lastOne} to Carol`, () => lendBookCopyToReader(store, { bookId: lastOne, readerId: 'carol' }));

    step('Two concurrent lendings of the same copy, from two separate EventStore instances');
    const raceBook = 'taocp-1';
    const racers = [
      { desk: 'desk A', readerId: 'alice', name: 'Alice' },
      { desk: 'desk B', readerId: 'dave', name: 'Dave' },
    ];
    await run('register Dave', () => registerReader(store, { readerId: 'dave', name: 'Dave' }));
    log(`  Two processes (own connection pool each) both try to lend "${title(raceBook)}" (${raceBook}):`);
    for (const racer of racers) log(`    ${racer.desk}: lend ${raceBook} to ${racer.name}`);
    const deskStores = await Promise.all(racers.map(() => EventStore.connect({ connectionString, schema, migrate: false, poolSize: 2 })));
    stores.push(...deskStores);
    const desks = readTogether(deskStores, (index, result) => {
      log(`    ${racers[index]!.desk} read ${result.events.length} relevant events at head ${result.head}: the copy is available, ${racers[index]!.name} may borrow it`);
    });
    // Both commands start in the same tick.
    const outcomes = await Promise.allSettled(
      racers.map((racer, index) => lendBookCopyToReader(desks[index]!, { bookId: raceBook, readerId: racer.readerId })),
    );
    const winners: string[] = [];
    for (const [index, outcome] of outcomes.entries()) {
      const racer = racers[index]!;
      if (outcome.status === 'fulfilled' && outcome.value.appended) {
        winners.push(racer.name);
        log(`    ${racer.desk}: WON   ${raceBook} is lent to ${racer.name} (position ${outcome.value.position})`);
      } else if (outcome.status === 'rejected' && outcome.reason instanceof AppendConditionFailedError) {
        log(`    ${racer.desk}: LOST  ${outcome.reason.name}: ${outcome.reason.message}`);
        log(`            nothing was written; re-running the command would read the new lending and answer BookCopyAlreadyLentError`);
      } else {
        log(`    ${racer.desk}: unexpected outcome: ${outcome.status === 'rejected' ? String(outcome.reason) : JSON.stringify(outcome.value, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
      }
    }
    log(`  The log of ${raceBook} (events tagged ${bookTag(raceBook)}):`);
    const { events: bookLog } = await store.read(Query.of(QueryItem.tags(bookTag(raceBook))));
    for (const event of bookLog) log(`    ${String(event.position).padStart(4)}  ${event.type.padEnd(28)} ${JSON.stringify(event.data)}`);
    const lendings = bookLog.filter((event) => event.type === 'BookCopyLentToReader').length;
    const exactlyOne = winners.length === 1 && lendings === 1;
    if (exactlyOne) {
      log(`  RESULT: exactly one of the 2 concurrent lendings won (${winners[0]}); the other was refused by the append condition.`);
    } else {
      log(`  RESULT: ${winners.length} of the 2 concurrent lendings won and the book has ${lendings} lendings: this is a bug.`);
    }

    step('Summary');
    const all = await store.read(Query.all());
    const byType = new Map<string, number>();
    for (const event of all.events) byType.set(event.type, (byType.get(event.type) ?? 0) + 1);
    log(`  ${all.events.length} events in the log (head ${all.head}):`);
    for (const [type, count] of byType) log(`    ${String(count).padStart(3)}  ${type}`);
    log(`  ${accepted} commands appended events, ${unchanged} were already carried out (no-op), ${rejections.length} were rejected by a rule:`);
    const counts = new Map<string, number>();
    for (const name of rejections) counts.set(name, (counts.get(name) ?? 0) + 1);
    for (const [name, count] of counts) log(`    ${String(count).padStart(3)}  ${name}`);
    log(`  concurrent lendings of ${raceBook}: ${exactlyOne ? `exactly one won (${winners[0]}), one got AppendConditionFailedError` : 'FAILED'}`);
    if (!exactlyOne) process.exitCode = 1;
  } finally {
    await Promise.all(stores.map((store) => store.close()));
    if (schemaCreated) {
      const client = new pg.Client({ connectionString });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    }
    await server?.stop();
    log(`\nDone in ${((performance.now() - started) / 1000).toFixed(1)} s (schema "${schema}" dropped${server ? ', embedded PostgreSQL stopped' : ''}).`);
  }
}

try {
  await main();
} catch (error) {
  console.error('\nThe demo failed:', error);
  process.exitCode = 1;
}
