// dses append, dses read, dses tail.
import type { Command } from 'commander';
import { Query, QueryItem } from '../../query.ts';
import type { AppendCondition } from '../../append-condition.ts';
import { normalizeEvent, type EventInput, type SequencedEvent } from '../../events.ts';
import type { AppendCommand } from '../../store.ts';
import { EventStoreError } from '../../errors.ts';
import { EventTable, eventLine, outputFormat, type OutputFormat } from '../format.ts';
import { parseJsonFlag, parsePosition, parsePositiveInteger, say, usage, withStore, writeOut, type GlobalOptions } from '../context.ts';

/** The query of --types/--tags (one item) or --query (the DCB JSON shape); every event without either. */
export function queryOf(options: { types?: string; tags?: string; query?: string }): Query {
  if (options.query !== undefined) {
    if (options.types !== undefined || options.tags !== undefined) throw usage('give either --query or --types/--tags, not both');
    return asUsage(() => Query.fromJSON(parseJsonFlag('--query', options.query!)), '--query');
  }
  const types = splitList(options.types);
  const tags = splitList(options.tags);
  if (types === undefined && tags === undefined) return Query.all();
  return asUsage(() => {
    let item = types === undefined ? QueryItem.tags(...tags!) : QueryItem.types(...types);
    if (types !== undefined && tags !== undefined) item = item.tags(...tags);
    return Query.of(item);
  }, '--types/--tags');
}

function splitList(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const values = text.split(',').map((value) => value.trim()).filter((value) => value !== '');
  if (values.length === 0) throw usage(`an empty list: ${JSON.stringify(text)}`);
  return values;
}

/** The library's InvalidInputError for a flag's value, as a usage error naming the flag. */
function asUsage<T>(build: () => T, flag: string): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof EventStoreError && error.code === 'INVALID_INPUT') throw usage(error.message.startsWith(flag) ? error.message : `${flag}: ${error.message}`);
    throw error;
  }
}

/** One command of `append --commands`, a line of stdin: `{ events: [...], condition?: { failIfEventsMatch, after? } }`. */
function commandOf(json: unknown, where: string): AppendCommand {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw usage(`${where}: a command must be a JSON object {"events":[...],"condition":{...}}, got ${JSON.stringify(json)}`);
  const record = json as Record<string, unknown>;
  const unknown = Object.keys(record).filter((key) => key !== 'events' && key !== 'condition');
  if (unknown.length > 0) throw usage(`${where}: unknown field ${JSON.stringify(unknown[0])} (a command has "events" and "condition")`);
  if (!Array.isArray(record.events) || record.events.length === 0) throw usage(`${where}: "events" must be a non-empty array of events`);
  const events = record.events.map((event, index) => eventInputOf(event, `${where} events[${index}]`));
  if (record.condition === undefined) return { events };
  const condition = record.condition as Record<string, unknown> | null;
  if (condition === null || typeof condition !== 'object' || Array.isArray(condition) || !('failIfEventsMatch' in condition)) throw usage(`${where}: "condition" must be an object with "failIfEventsMatch" (and "after")`);
  const extra = Object.keys(condition).filter((key) => key !== 'failIfEventsMatch' && key !== 'after');
  if (extra.length > 0) throw usage(`${where}: unknown condition field ${JSON.stringify(extra[0])}`);
  const failIfEventsMatch = asUsage(() => Query.fromJSON(condition.failIfEventsMatch), `${where} condition.failIfEventsMatch`);
  if (condition.after === undefined) return { events, condition: { failIfEventsMatch } };
  if (typeof condition.after !== 'string') throw usage(`${where}: condition.after must be a position as a decimal string, got ${JSON.stringify(condition.after)}`);
  return { events, condition: { failIfEventsMatch, after: parsePosition(`${where} condition.after`, condition.after) } };
}

/** One event given as JSON (a line of stdin, or built from flags), in the append shape. */
function eventInputOf(json: unknown, where: string): EventInput {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw usage(`${where}: an event must be a JSON object with "type" and "data", got ${JSON.stringify(json)}`);
  const record = json as Record<string, unknown>;
  const event: Record<string, unknown> = { type: record.type, data: record.data };
  if (!('data' in record)) throw usage(`${where}: "data" is required (null for an event without payload)`);
  if (record.tags !== undefined) event.tags = record.tags;
  if (record.metadata !== undefined) event.metadata = record.metadata;
  if (record.id !== undefined) event.id = record.id;
  if (record.occurredAt !== undefined) {
    const date = typeof record.occurredAt === 'string' ? new Date(record.occurredAt) : undefined;
    if (date === undefined || Number.isNaN(date.getTime())) throw usage(`${where}: "occurredAt" must be an ISO 8601 date string, got ${JSON.stringify(record.occurredAt)}`);
    event.occurredAt = date;
  }
  // Validated here, before anything is appended: a bad event anywhere in the input writes nothing.
  asUsage(() => normalizeEvent(event as unknown as EventInput, where, new Date()), where);
  return event as unknown as EventInput;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

interface AppendFlags {
  type?: string;
  tags?: string;
  data?: string;
  metadata?: string;
  id?: string;
  batch?: boolean;
  commands?: boolean;
  failIfEventsMatch?: string;
  after?: string;
}

interface ReadFlags {
  types?: string;
  tags?: string;
  query?: string;
  after?: string;
  before?: string;
  limit?: string;
  backwards?: boolean;
  format?: string;
}

const FORMATS = ['table', 'ndjson', 'json'];

export function registerEvents(program: Command, globals: () => GlobalOptions): void {
  program
    .command('append')
    .description('append one event from flags, or NDJSON events from stdin (one append per line, or --batch for one atomic append of all), or NDJSON commands with --commands; prints the position(s)')
    .option('--type <type>', 'event type (one event from flags)')
    .option('--tags <a,b>', 'tags, comma-separated')
    .option('--data <json>', 'the payload as JSON (default null)')
    .option('--metadata <json>', 'metadata as a JSON object')
    .option('--id <uuid>', 'the event id (makes a retry idempotent)')
    .option('--batch', 'stdin: append every line in one atomic append')
    .option('--commands', 'stdin: each line a command {"events":[...],"condition":{"failIfEventsMatch":<query>,"after":"N"}}, all in one atomic appendCommands; prints each command\'s last position')
    .option('--fail-if-events-match <query>', 'condition: fail if an event matching this query (DCB JSON) exists after --after')
    .option('--after <position>', 'the position the condition is checked after')
    .action(async (flags: AppendFlags) => {
      if (flags.commands) {
        for (const flag of ['type', 'tags', 'data', 'metadata', 'id', 'failIfEventsMatch', 'after'] as const) {
          if (flags[flag] !== undefined) throw usage(`--commands reads commands from stdin, each with its own condition; it does not go with --${flag.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`);
        }
        if (flags.batch) throw usage('give either --batch (events) or --commands (commands), not both');
        if (process.stdin.isTTY) throw usage('--commands reads NDJSON commands from stdin');
        const lines = (await readStdin()).split('\n').map((line, index) => ({ line: line.trim(), number: index + 1 })).filter(({ line }) => line !== '');
        if (lines.length === 0) throw usage('no commands on stdin');
        // Every line is checked before anything is appended: bad input writes nothing.
        const commands = lines.map(({ line, number }) => commandOf(parseJsonFlag(`stdin line ${number}`, line), `stdin line ${number}`));
        await withStore(globals(), async (store) => {
          const { positions } = await asUsageAsync(() => store.appendCommands(commands));
          await writeOut(positions.map((position) => `${position}\n`).join(''));
        });
        return;
      }
      let condition: AppendCondition | undefined;
      if (flags.failIfEventsMatch !== undefined) {
        const failIfEventsMatch = asUsage(() => Query.fromJSON(parseJsonFlag('--fail-if-events-match', flags.failIfEventsMatch!)), '--fail-if-events-match');
        condition = { failIfEventsMatch, ...(flags.after !== undefined && { after: parsePosition('--after', flags.after) }) };
      } else if (flags.after !== undefined) {
        throw usage('--after needs --fail-if-events-match');
      }
      let appends: EventInput[][];
      if (flags.type !== undefined) {
        if (flags.batch) throw usage('--batch reads events from stdin; it does not go with --type');
        const event: Record<string, unknown> = { type: flags.type, data: flags.data === undefined ? null : parseJsonFlag('--data', flags.data) };
        if (flags.tags !== undefined) event.tags = splitList(flags.tags);
        if (flags.metadata !== undefined) event.metadata = parseJsonFlag('--metadata', flags.metadata);
        if (flags.id !== undefined) event.id = flags.id;
        appends = [[eventInputOf(event, 'flags')]];
      } else {
        for (const flag of ['tags', 'data', 'metadata', 'id'] as const) if (flags[flag] !== undefined) throw usage(`--${flag} needs --type (stdin events carry their own)`);
        if (process.stdin.isTTY) throw usage('give --type (and --data) for one event, or pipe NDJSON events into stdin');
        // Every line is parsed before anything is appended: bad input writes nothing.
        const lines = (await readStdin()).split('\n').map((line, index) => ({ line: line.trim(), number: index + 1 })).filter(({ line }) => line !== '');
        if (lines.length === 0) throw usage('no events on stdin');
        const events = lines.map(({ line, number }) => eventInputOf(parseJsonFlag(`stdin line ${number}`, line), `stdin line ${number}`));
        appends = flags.batch ? [events] : events.map((event) => [event]);
      }
      await withStore(globals(), async (store) => {
        for (const events of appends) {
          const { position } = await asUsageAsync(() => store.append(events, condition));
          await writeOut(`${position}\n`);
        }
      });
    });

  const readOptions = (command: Command): Command =>
    command
      .option('--types <A,B>', 'event types (one query item), comma-separated')
      .option('--tags <t1,t2>', 'tags the events all carry (one query item), comma-separated')
      .option('--query <json>', 'a query in the DCB JSON shape: {"items":[{"types":[...],"tags":[...]}]}')
      .option('--after <position>', 'only events after this position')
      .option('--format <format>', `${FORMATS.join(' | ')} (default: table on a terminal, ndjson when piped)`);

  readOptions(program.command('read'))
    .description('read the events matching a query, then the head (table, ndjson or json)')
    .option('--before <position>', 'only events before this position (with --backwards --limit n: the page below it)')
    .option('--limit <n>', 'at most this many events')
    .option('--backwards', 'newest first')
    .action(async (flags: ReadFlags) => {
      const query = queryOf(flags);
      const format = formatOf(flags.format);
      const after = flags.after === undefined ? undefined : parsePosition('--after', flags.after);
      const before = flags.before === undefined ? undefined : parsePosition('--before', flags.before);
      const limit = flags.limit === undefined ? undefined : parsePositiveInteger('--limit', flags.limit);
      await withStore(globals(), async (store) => {
        const bounds = { ...(after !== undefined && { after }), ...(before !== undefined && { before }), ...(limit !== undefined && { limit }) };
        const { events, head } = await store.read(query, { ...bounds, ...(flags.backwards && { backwards: true }) });
        if (format === 'json') {
          await writeOut(`{"events":[${events.map(eventLine).join(',')}],"head":"${head}"}\n`);
          return;
        }
        const sink = eventSink(format);
        for (const event of events) await sink(event);
        // The head ends the output: in the table, or on stderr next to NDJSON data.
        if (format === 'table') await writeOut(`head: ${head}\n`);
        else say(`head: ${head}`);
      });
    });

  readOptions(program.command('tail'))
    .description('like read, then follow live appends until Ctrl-C (never skipping or repeating an event)')
    .option('--from-now', 'only events appended from now on')
    .action(async (flags: ReadFlags & { fromNow?: boolean }) => {
      const query = queryOf(flags);
      const format = formatOf(flags.format);
      if (format === 'json') throw usage('tail writes a stream: --format table or ndjson');
      if (flags.fromNow && flags.after !== undefined) throw usage('give either --from-now or --after');
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await withStore(globals(), async (store) => {
          const after = flags.fromNow ? await store.head() : flags.after === undefined ? 0n : parsePosition('--after', flags.after);
          const sink = eventSink(format);
          for await (const event of store.subscribe(query, { after, signal: controller.signal })) await sink(event);
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}

function formatOf(flag: string | undefined): OutputFormat {
  if (flag !== undefined && !FORMATS.includes(flag)) throw usage(`--format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(flag)}`);
  return outputFormat(flag);
}

function eventSink(format: OutputFormat): (event: SequencedEvent) => Promise<void> {
  const table = format === 'table' ? new EventTable() : undefined;
  return async (event) => {
    await writeOut(table ? table.line(event) : `${eventLine(event)}\n`);
  };
}

/** A store call whose InvalidInputError (bad event, bad id) is a usage error. */
async function asUsageAsync<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof EventStoreError && error.code === 'INVALID_INPUT') throw usage(error.message);
    throw error;
  }
}
