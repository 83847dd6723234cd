// `npm start`: the library-lending domain on a real PostgreSQL, step by step, each command run
// with `store.execute`, ending with two lendings of the same book copy racing from two separate
// EventStore instances.
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
  executeCommand,
  startEmbeddedPostgres,
  type CommandStore,
  type EmbeddedPostgresServer,
  type ExecuteResult,
  type ReadOptions,
  type ReadResult,
} from '../../src/index.ts';
import {
  LibraryError,
  MAX_BOOK_COPIES_PER_READER,
  addBookCopy,
  bookTag,
  cancelReaderContract,
  findBooksLentByReader,
  lendBookCopyToReader,
  registerReader,
  removeBookCopy,
  returnBookCopy,
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
async function run(label: string, command: () => Promise<ExecuteResult<unknown>>): Promise<void> {
  try {
    const outcome = await command();
    if (outcome.events.length > 0) {
      accepted++;
      log(`  ok        ${label}  -> ${outcome.events.map((event) => event.type).join(', ')} at position ${outcome.position}`);
    } else {
      unchanged++;
      log(`  no-op     ${label}  -> already so, nothing appended`);
    }
  } catch (error) {
    if (!(error instanceof LibraryError)) throw error;
    rejections.push(error.name);
    log(`  rejected  ${label}  -> ${error.name}: ${error.message}`);
  }
}

/**
 * The desks' stores, as `execute` sees them: each one's first read completes and then waits until
 * every desk has read, so that both decide on the same facts before either appends. Without this,
 * the slower desk might read after the winner committed and be refused by the rules straight
 * away; with it, the store's append condition is what has to stop the second lending. Each
 * refused append is printed, since `execute` then reads and decides again.
 */
function readTogether(stores: EventStore[], name: (index: number) => string, refused: Set<number>): CommandStore[] {
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
          log(`    ${name(index)} read ${result.events.length} relevant events at head ${result.head}: the copy is available, the reader may borrow it`);
          if (--pending === 0) release();
          await allHaveRead;
        }
        return result;
      },
      append: async (events, condition, options) => {
        try {
          return await store.append(events, condition, options);
        } catch (error) {
          if (error instanceof AppendConditionFailedError) {
            refused.add(index);
            log(`    ${name(index)}: LOST  ${error.name}: ${error.message}`);
            log(`            nothing was written; execute reads the new facts and decides again`);
          }
          throw error;
        }
      },
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
    for (const book of BOOKS) await run(`add "${book.title}" (copy ${book.bookId})`, () => store.execute(addBookCopy, { ...book, at: new Date() }));
    await run('add copy ddd-1 again', () => store.execute(addBookCopy, { ...BOOKS[0]!, at: new Date() }));

    step('Registering readers');
    for (const reader of READERS) await run(`register ${reader.name}`, () => store.execute(registerReader, { ...reader, at: new Date() }));

    step('Lending and returning');
    await run(`lend "${title('ddd-1')}" (ddd-1) to Alice`, () => store.execute(lendBookCopyToReader, { bookId: 'ddd-1', readerId: 'alice', at: new Date() }));
    await run('lend ddd-1 to Alice again', () => store.execute(lendBookCopyToReader, { bookId: 'ddd-1', readerId: 'alice', at: new Date() }));
    await run('lend ddd-1 to Bob', () => store.execute(lendBookCopyToReader, { bookId: 'ddd-1', readerId: 'bob', at: new Date() }));
    await run('lend ddd-2 (the other copy) to Bob', () => store.execute(lendBookCopyToReader, { bookId: 'ddd-2', readerId: 'bob', at: new Date() }));
    await run('Alice returns ddd-1', () => store.execute(returnBookCopy, { bookId: 'ddd-1', readerId: 'alice', at: new Date() }));
    await run('lend ddd-1 to Bob', () => store.execute(lendBookCopyToReader, { bookId: 'ddd-1', readerId: 'bob', at: new Date() }));
    await run('Alice returns ddd-2, which she never borrowed', () => store.execute(returnBookCopy, { bookId: 'ddd-2', readerId: 'alice', at: new Date() }));

    step('Rules that reject a command');
    await run('lend ddd-1 to Dave, who never registered', () => store.execute(lendBookCopyToReader, { bookId: 'ddd-1', readerId: 'dave', at: new Date() }));
    await run('lend copy "missing-1", never added, to Alice', () => store.execute(lendBookCopyToReader, { bookId: 'missing-1', readerId: 'alice', at: new Date() }));
    await run('remove ddd-1 from circulation while Bob holds it', () => store.execute(removeBookCopy, { bookId: 'ddd-1', at: new Date() }));
    await run("cancel Bob's contract while he holds two copies", () => store.execute(cancelReaderContract, { readerId: 'bob', at: new Date() }));
    await run('remove iddd-1 from circulation', () => store.execute(removeBookCopy, { bookId: 'iddd-1', at: new Date() }));
    await run('lend iddd-1, now removed, to Alice', () => store.execute(lendBookCopyToReader, { bookId: 'iddd-1', readerId: 'alice', at: new Date() }));
    await run('Bob returns ddd-1', () => store.execute(returnBookCopy, { bookId: 'ddd-1', readerId: 'bob', at: new Date() }));
    await run('Bob returns ddd-2', () => store.execute(returnBookCopy, { bookId: 'ddd-2', readerId: 'bob', at: new Date() }));
    await run("cancel Bob's contract", () => store.execute(cancelReaderContract, { readerId: 'bob', at: new Date() }));
    await run('lend ddd-1 to Bob, whose contract is canceled', () => store.execute(lendBookCopyToReader, { bookId: 'ddd-1', readerId: 'bob', at: new Date() }));

    step(`The lending limit: a reader holds at most ${MAX_BOOK_COPIES_PER_READER} copies`);
    const forCarol = BOOKS.filter((book) => book.bookId !== 'iddd-1').slice(0, MAX_BOOK_COPIES_PER_READER + 1);
    for (const [index, book] of forCarol.entries()) {
      await run(`lend ${book.bookId} to Carol (copy ${index + 1})`, () => store.execute(lendBookCopyToReader, { bookId: book.bookId, readerId: 'carol', at: new Date() }));
    }
    const carolHolds = await findBooksLentByReader(store, 'carol');
    log(`  findBooksLentByReader(carol): ${carolHolds.length} copies: ${carolHolds.join(', ')}`);
    const lastOne = forCarol.at(-1)!.bookId;
    await run(`Carol returns ${carolHolds[0]}`, () => store.execute(returnBookCopy, { bookId: carolHolds[0]!, readerId: 'carol', at: new Date() }));
    await run(`lend ${lastOne} to Carol`, () => store.execute(lendBookCopyToReader, { bookId: lastOne, readerId: 'carol', at: new Date() }));

    step('Two concurrent lendings of the same copy, from two separate EventStore instances');
    const raceBook = 'taocp-1';
    const racers = [
      { desk: 'desk A', readerId: 'alice', name: 'Alice' },
      { desk: 'desk B', readerId: 'dave', name: 'Dave' },
    ];
    await run('register Dave', () => store.execute(registerReader, { readerId: 'dave', name: 'Dave', at: new Date() }));
    log(`  Two processes (own connection pool each) both try to lend "${title(raceBook)}" (${raceBook}):`);
    for (const racer of racers) log(`    ${racer.desk}: lend ${raceBook} to ${racer.name}`);
    const deskStores = await Promise.all(racers.map(() => EventStore.connect({ connectionString, schema, migrate: false, poolSize: 2 })));
    stores.push(...deskStores);
    const refused = new Set<number>();
    const desks = readTogether(deskStores, (index) => racers[index]!.desk, refused);
    // Both commands start in the same tick. executeCommand is what store.execute runs; here it
    // runs on the desks' stores, which hold the first read until both desks have read.
    const outcomes = await Promise.allSettled(
      racers.map((racer, index) => executeCommand(desks[index]!, lendBookCopyToReader, { bookId: raceBook, readerId: racer.readerId, at: new Date() })),
    );
    const winners: string[] = [];
    for (const [index, outcome] of outcomes.entries()) {
      const racer = racers[index]!;
      if (outcome.status === 'fulfilled' && outcome.value.events.length > 0) {
        winners.push(racer.name);
        log(`    ${racer.desk}: WON   ${raceBook} is lent to ${racer.name} (position ${outcome.value.position}, attempt ${outcome.value.attempts})`);
      } else if (outcome.status === 'rejected' && outcome.reason instanceof LibraryError) {
        log(`    ${racer.desk}: decided again on the new facts -> ${outcome.reason.name}: ${outcome.reason.message}`);
      } else {
        log(`    ${racer.desk}: unexpected outcome: ${outcome.status === 'rejected' ? String(outcome.reason) : `${outcome.value.events.length} events appended`}`);
      }
    }
    log(`  The log of ${raceBook} (events tagged ${bookTag(raceBook)}):`);
    const { events: bookLog } = await store.read(Query.of(QueryItem.tags(bookTag(raceBook))));
    for (const event of bookLog) log(`    ${String(event.position).padStart(4)}  ${event.type.padEnd(28)} ${JSON.stringify(event.data)}`);
    const lendings = bookLog.filter((event) => event.type === 'BookCopyLentToReader').length;
    const exactlyOne = winners.length === 1 && lendings === 1 && refused.size === 1;
    if (exactlyOne) {
      log(`  RESULT: exactly one of the 2 concurrent lendings won (${winners[0]}); the other was refused by the append condition, then rejected by the rules.`);
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
    log(`  concurrent lendings of ${raceBook}: ${exactlyOne ? `exactly one won (${winners[0]}), the other got AppendConditionFailedError, then BookCopyAlreadyLentError` : 'FAILED'}`);
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
