// dses export, dses import: the store as NDJSON (one event per line, eventLine's format), in
// constant memory at any size, and back, resumable after an interruption.
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { once } from 'node:events';
import { Readable, pipeline, type Writable } from 'node:stream';
import { finished, pipeline as pipelinePromise } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip, createGzip } from 'node:zlib';
import type { Command } from 'commander';
import type { EventInput } from '../../events.ts';
import type { InternalQuery } from '../../query.ts';
import { AppendOutcomeUnknownError, InvalidInputError } from '../../errors.ts';
import { normalizeEvent, normalizeTags } from '../../events.ts';
import { assertJson, validateType } from '../../validation.ts';
import { RestoreHeadMovedError, TransferConnection, type RestoreEvent } from '../../postgres/transfer.ts';
import { exportLine } from '../format.ts';
import { CliError, EXIT, connectionStringOf, parsePosition, parsePositiveInteger, usage, withStore, writeOut, type GlobalOptions } from '../context.ts';
import { Progress } from '../progress.ts';
import { queryOf } from './events.ts';

const DEFAULT_BATCH = 1000;
/**
 * Events per write of an import. 5000 rather than the 1000 of a typical bulk append: measured
 * with bench/transfer.ts (100,000 events), the import without --preserve-positions went from
 * 0.76 to 1.35 of the store's bulk append rate at 1000 per call, the restore from 0.91 to 1.48;
 * memory stays constant (two batches at a time).
 */
const DEFAULT_IMPORT_BATCH = 5000;
/** Export lines are collected into writes of about this size (fewer, larger writes). */
const WRITE_CHUNK = 64 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const POSITION = /^[1-9]\d*$/;

interface ExportFlags {
  query?: string;
  after?: string;
  until?: string;
  output?: string;
  batchSize?: string;
}

interface ImportFlags {
  preservePositions?: boolean;
  dryRun?: boolean;
  batchSize?: string;
}

export function registerTransfer(program: Command, globals: () => GlobalOptions): void {
  program
    .command('export')
    .description('write events as NDJSON (one event per line, every field), to stdout or a file (gzip when it ends in .gz)')
    .option('--query <json>', 'only events matching this query (DCB JSON shape); default all')
    .option('--after <position>', 'only events after this position')
    .option('--until <position>', 'only events up to this position')
    .option('-o, --output <file>', 'write to this file instead of stdout (.gz: gzip-compressed)')
    .option('--batch-size <n>', 'events read per round trip', String(DEFAULT_BATCH))
    .action(async (flags: ExportFlags) => {
      const query = queryOf({ ...(flags.query !== undefined && { query: flags.query }) });
      const after = flags.after === undefined ? 0n : parsePosition('--after', flags.after);
      const until = flags.until === undefined ? undefined : parsePosition('--until', flags.until);
      const batchSize = parsePositiveInteger('--batch-size', flags.batchSize ?? String(DEFAULT_BATCH));
      if (until !== undefined && until < after) throw usage(`--until (${until}) is before --after (${after})`);
      const options = globals();
      const connection = await TransferConnection.open(connectionStringOf(options), options.schema, 'dses export');
      try {
        if (!(await connection.migrated())) throw notMigrated(options.schema);
        await exportEvents(connection, query.toInternal(), after, until, batchSize, flags.output);
      } finally {
        await connection.close();
      }
    });

  program
    .command('import')
    .description('append the events of an export (a file, or - for stdin; gzip is detected); resumable: run it again after an interruption')
    .argument('<file>', 'the NDJSON export, or - for stdin')
    .option('--preserve-positions', 'a restore: write every event at its original position with its original recordedAt (into an empty store, or resuming the same file)')
    .option('--dry-run', 'check every line (and, resuming, the store) and say what would be written; write nothing')
    .option('--batch-size <n>', 'events written per transaction', String(DEFAULT_IMPORT_BATCH))
    .action(async (file: string, flags: ImportFlags) => {
      const batchSize = parsePositiveInteger('--batch-size', flags.batchSize ?? String(DEFAULT_IMPORT_BATCH));
      if (file === '-' && process.stdin.isTTY) throw usage('import - reads the export from stdin: pipe it in, or give a file');
      const options = globals();
      const connection = await TransferConnection.open(connectionStringOf(options), options.schema, 'dses import');
      try {
        if (!(await connection.migrated())) throw notMigrated(options.schema);
        const input = openInput(file);
        const progress = new Progress('import', input.total);
        let summary: { text: string; events: number } | undefined;
        try {
          const dryRun = flags.dryRun === true;
          summary = flags.preservePositions
            ? await restore(connection, input, batchSize, progress, dryRun)
            : dryRun
              ? await migrate(connection, undefined, input, batchSize, progress)
              : await withStore(options, (store) => migrate(connection, store.append.bind(store), input, batchSize, progress), { maxBatchEvents: Math.max(10_000, batchSize) });
        } catch (error) {
          if (error instanceof AppendOutcomeUnknownError) {
            throw new CliError(`${error.message}; for an import: run the same command again, it continues from what the store holds`, EXIT.outcomeUnknown, error.code);
          }
          if (error instanceof RestoreHeadMovedError) throw new CliError(error.message, EXIT.failure, 'HEAD_MOVED');
          throw error;
        } finally {
          progress.stop(summary?.text, summary?.events);
        }
      } finally {
        await connection.close();
      }
    });
}

function notMigrated(schema: string): CliError {
  return new CliError(`schema ${schema} has no event store: run \`dses migrate --schema ${schema}\` first`, EXIT.failure, 'NOT_MIGRATED');
}

/**
 * Pages through the events after `after` up to the head of the first page (or `until`), the next
 * page read while this one is written out. Pages are keyed by position, not a transaction, so a
 * long export holds back no vacuum; positions become visible in order (appends take the head
 * lock), so no page can miss an event below the head it saw.
 */
async function exportEvents(connection: TransferConnection, query: InternalQuery, after: bigint, until: bigint | undefined, batchSize: number, file: string | undefined): Promise<void> {
  let page = await connection.exportPage(query, after, batchSize);
  const end = until !== undefined && until < page.head ? until : page.head;
  const output = openOutput(file);
  const progress = new Progress('export', end > after ? Number(end - after) : undefined);
  let count = 0;
  let chunk = '';
  let done = false;
  try {
    for (;;) {
      const last = page.events.at(-1)?.position;
      const next = last !== undefined && last < end && page.events.length === batchSize ? connection.exportPage(query, last, batchSize) : undefined;
      // A prefetch that fails while this page is written out is reported when awaited.
      next?.catch(() => undefined);
      for (const event of page.events) {
        if (event.position > end) break;
        chunk += `${exportLine(event)}\n`;
        count += 1;
        if (chunk.length >= WRITE_CHUNK) {
          await output.write(chunk);
          chunk = '';
          progress.update(Number(event.position - after), count);
        }
      }
      if (next === undefined) break;
      page = await next;
    }
    if (chunk !== '') await output.write(chunk);
    await output.end();
    done = true;
  } finally {
    progress.stop(done ? `exported ${count} events${file === undefined ? '' : ` to ${file}`}` : undefined, count);
  }
}

// ---------------------------------------------------------------------------------------------
// Export output

interface Output {
  write(text: string): Promise<void>;
  end(): Promise<void>;
}

function openOutput(file: string | undefined): Output {
  if (file === undefined) {
    return {
      write: async (text) => writeOut(text),
      end: async () => undefined,
    };
  }
  const target = createWriteStream(file);
  const gzip = file.endsWith('.gz') ? createGzip() : undefined;
  const sink: Writable = gzip ?? target;
  const done: Promise<void> = gzip ? pipelinePromise(gzip, target) : finished(target);
  // A write error rejects `done`; it is awaited by end(), or by a write waiting for drain.
  done.catch(() => undefined);
  return {
    write: async (text) => {
      if (!sink.write(text)) await Promise.race([once(sink, 'drain'), done.then(() => Promise.reject(new Error(`${file}: closed while writing`)))]);
    },
    end: async () => {
      sink.end();
      await done;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Import input

interface Input {
  /** Lines of the export, in order, a chunk at a time (pull-based: reading waits for the writer). */
  lines: AsyncGenerator<string[], void, undefined>;
  /** Raw bytes read so far, and the input's size when known (for progress). */
  bytesRead: () => number;
  total: number | undefined;
}

function openInput(file: string): Input {
  let total: number | undefined;
  if (file !== '-') {
    try {
      total = statSync(file).size;
    } catch (error) {
      throw usage(`cannot read ${file}: ${(error as Error).message}`);
    }
  }
  const raw: Readable = file === '-' ? process.stdin : createReadStream(file, { highWaterMark: 256 * 1024 });
  let bytes = 0;
  async function* bytesOf(): AsyncGenerator<Buffer> {
    let first = true;
    for await (const chunk of raw) {
      const buffer = chunk as Buffer;
      bytes += buffer.length;
      if (first) {
        first = false;
        // gzip by name, or by its magic bytes (a compressed export piped into stdin).
        if (file.endsWith('.gz') || (buffer[0] === 0x1f && buffer[1] === 0x8b)) {
          yield* gunzipped(buffer, raw, (length) => (bytes += length));
          return;
        }
      }
      yield buffer;
    }
  }
  return { lines: linesOf(bytesOf()), bytesRead: () => bytes, total };
}

async function* gunzipped(first: Buffer, rest: Readable, counted: (length: number) => void): AsyncGenerator<Buffer> {
  const compressed = Readable.from(
    (async function* () {
      yield first;
      for await (const chunk of rest) {
        counted((chunk as Buffer).length);
        yield chunk as Buffer;
      }
    })(),
    { objectMode: false },
  );
  const gunzip = createGunzip();
  pipeline(compressed, gunzip, () => undefined);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (error) {
    throw usage(`the input is not valid gzip: ${(error as Error).message}`);
  }
}

async function* linesOf(chunks: AsyncIterable<Buffer>): AsyncGenerator<string[], void, undefined> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of chunks) {
    const parts = (rest + decoder.write(chunk)).split('\n');
    rest = parts.pop()!;
    if (parts.length > 0) yield parts;
  }
  rest += decoder.end();
  if (rest !== '') yield [rest];
}

// ---------------------------------------------------------------------------------------------
// Parsing and checking the export's lines

interface ExportedEvent extends RestoreEvent {
  line: number;
}

function parseLine(text: string, line: number, restoring: boolean): ExportedEvent {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw usage(`line ${line}: not valid JSON: ${(error as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw usage(`line ${line}: an event must be a JSON object`);
  const record = json as Record<string, unknown>;
  const bad = (field: string, expected: string): CliError => usage(`line ${line}: "${field}" must be ${expected}, got ${record[field] === undefined ? 'nothing' : JSON.stringify(record[field])}`);
  if (typeof record.position !== 'string' || !POSITION.test(record.position)) throw bad('position', 'a positive integer as a string');
  if (typeof record.id !== 'string' || !UUID.test(record.id)) throw bad('id', 'a UUID');
  if (typeof record.type !== 'string' || record.type === '') throw bad('type', 'a non-empty string');
  if (!Array.isArray(record.tags) || !record.tags.every((tag) => typeof tag === 'string')) throw bad('tags', 'an array of strings');
  if (!('data' in record)) throw bad('data', 'present (null for an event without payload)');
  if (record.metadata === null || typeof record.metadata !== 'object' || Array.isArray(record.metadata)) throw bad('metadata', 'a JSON object');
  for (const field of ['occurredAt', 'recordedAt'] as const) {
    if (typeof record[field] !== 'string' || Number.isNaN(Date.parse(record[field] as string))) throw bad(field, 'an ISO 8601 date string');
  }
  // A restore writes its rows itself, so it checks them here, with the line's number, before
  // anything of its batch is written. An import appends, and append() checks every event (the
  // line is found from the error's path): not checked twice.
  if (restoring) checkStorable(record, line);
  return {
    line,
    position: BigInt(record.position),
    id: record.id.toLowerCase(),
    type: record.type,
    tags: record.tags as string[],
    data: record.data,
    metadata: record.metadata as Record<string, unknown>,
    occurredAt: record.occurredAt as string,
    recordedAt: record.recordedAt as string,
  };
}

/**
 * What the store would refuse (a type or tag too long, a NUL in a string, ...), and tags that are
 * not the sorted set the store writes (verify reports those): a restore writes tags as they are,
 * where an append sorts them.
 */
function checkStorable(record: Record<string, unknown>, line: number): void {
  try {
    validateType(record.type, 'type');
    const given = record.tags as string[];
    const tags = normalizeTags(given, 'tags');
    if (tags.length !== given.length || tags.some((tag, index) => tag !== given[index])) {
      throw usage(`line ${line}: "tags" must be a sorted set (in order, no duplicates), as the store writes them, got ${JSON.stringify(given)}; import without --preserve-positions to have them sorted`);
    }
    assertJson(record.data, 'data');
    assertJson(record.metadata, 'metadata');
  } catch (error) {
    if (error instanceof InvalidInputError) throw usage(`line ${line}: ${error.message}`);
    throw error;
  }
}

/**
 * The export's events in batches of `batchSize`, every line parsed and checked before its batch
 * is handed out (a bad line writes nothing of its batch). Positions must increase; with
 * `consecutive`, by exactly one (a restore has no gaps to fill).
 */
async function* batchesOf(input: Input, batchSize: number, consecutive: boolean): AsyncGenerator<ExportedEvent[], void, undefined> {
  let line = 0;
  let previous: ExportedEvent | undefined;
  let batch: ExportedEvent[] = [];
  for await (const lines of input.lines) {
    for (const text of lines) {
      line += 1;
      if (text.trim() === '') continue;
      const event = parseLine(text, line, consecutive);
      if (previous !== undefined) {
        if (consecutive && event.position !== previous.position + 1n) {
          throw usage(`line ${line}: position ${event.position} does not follow position ${previous.position} (line ${previous.line}); a restore needs every position in order, without gaps`);
        }
        if (event.position <= previous.position) throw usage(`line ${line}: position ${event.position} is not after position ${previous.position} (line ${previous.line})`);
      }
      previous = event;
      batch.push(event);
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
      }
    }
  }
  if (batch.length > 0) yield batch;
}

// ---------------------------------------------------------------------------------------------
// The two ways to import

/**
 * --preserve-positions: every event at its own position with its own recordedAt. Into an empty
 * store the file must start at position 1; into a non-empty one only as the resumption of the
 * same file: the head's event must be the file's event at that position, and the rest follows.
 */
async function restore(connection: TransferConnection, input: Input, batchSize: number, progress: Progress, dryRun: boolean): Promise<{ text: string; events: number }> {
  const head = await connection.headEvent();
  let checkedHead = head.position === 0n;
  let written = 0;
  let skipped = 0;
  let pending: Promise<void> | undefined;
  let firstPosition: bigint | undefined;
  let lastPosition = head.position;
  try {
    for await (const batch of batchesOf(input, batchSize, true)) {
      firstPosition ??= batch[0]!.position;
      if (firstPosition > head.position + 1n) {
        throw usage(
          head.position === 0n
            ? `line ${batch[0]!.line}: the file starts at position ${firstPosition}, but a restore into an empty store starts at 1 (was it exported with --after or --query?)`
            : `the store has events up to position ${head.position} and the file starts at ${firstPosition}: --preserve-positions only resumes the same file; import without it to append`,
        );
      }
      let rest = batch;
      if (batch[0]!.position <= head.position) {
        const atHead = batch.find((event) => event.position === head.position);
        if (atHead !== undefined) {
          if (atHead.id !== head.id) {
            throw usage(`line ${atHead.line}: the store's event at its head (position ${head.position}) has id ${head.id}, the file's has ${atHead.id}: not a resumption of this file; --preserve-positions needs an empty store`);
          }
          checkedHead = true;
        }
        rest = batch.filter((event) => event.position > head.position);
        skipped += batch.length - rest.length;
      }
      if (rest.length === 0) continue;
      if (!checkedHead) {
        throw usage(`the store has events up to position ${head.position} and the file starts at ${firstPosition}, after it: the store's event at its head cannot be checked against the file; --preserve-positions only resumes the same file`);
      }
      if (pending) await pending;
      if (!dryRun) {
        pending = connection.restore(rest);
        pending.catch(() => undefined);
      }
      written += rest.length;
      lastPosition = rest.at(-1)!.position;
      progress.update(input.bytesRead(), written + skipped);
    }
  } catch (error) {
    // The batch in flight was good: it commits before the command ends with the bad line's error.
    await pending?.catch(() => undefined);
    throw error;
  }
  if (pending) await pending;
  if (firstPosition !== undefined && !checkedHead) {
    throw usage(`the store has events up to position ${head.position}, the file only up to ${firstPosition + BigInt(skipped) - 1n}: it is not the file this store was restored from`);
  }
  const verb = dryRun ? 'would restore' : 'restored';
  return { text: `${verb} ${written} events (head ${lastPosition})${skipped > 0 ? `, skipped ${skipped} already restored` : ''}${dryRun ? '; nothing written (--dry-run)' : ''}`, events: written };
}

type Append = (events: readonly EventInput[]) => Promise<{ position: bigint }>;

/**
 * Without --preserve-positions: the events appended after whatever the store has, in order, with
 * their ids and occurredAt. Resuming: the leading batches whose ids are stored already are
 * skipped (one indexed lookup per batch), until the first batch with an id not stored yet.
 */
async function migrate(connection: TransferConnection, append: Append | undefined, input: Input, batchSize: number, progress: Progress): Promise<{ text: string; events: number }> {
  // --dry-run: each event checked as append() would check it, nothing appended.
  const now = new Date();
  const check: Append = async (events) => {
    events.forEach((event, index) => normalizeEvent(event, `events[${index}]`, now));
    return { position: 0n };
  };
  const dryRun = append === undefined;
  let resuming = true;
  let written = 0;
  let skipped = 0;
  let pending: Promise<unknown> | undefined;
  let lastPosition: bigint | undefined;
  try {
    for await (const batch of batchesOf(input, batchSize, false)) {
      let rest = batch;
      if (resuming) {
        const stored = await connection.storedIds(batch.map((event) => event.id));
        if (stored.size > 0) {
          rest = batch.filter((event) => !stored.has(event.id));
          skipped += batch.length - rest.length;
        }
        if (rest.length > 0) resuming = false;
      }
      if (rest.length === 0) continue;
      const events: EventInput[] = rest.map((event) => ({ id: event.id, type: event.type, tags: event.tags, data: event.data, metadata: event.metadata, occurredAt: new Date(event.occurredAt) }));
      if (pending) await pending;
      const lines = `lines ${rest[0]!.line} to ${rest.at(-1)!.line}`;
      pending = (append ?? check)(events).then(
        ({ position }) => (lastPosition = position),
        (error: unknown) => {
          if (error instanceof InvalidInputError) {
            // events[3].type: ... -> line <the line of rest[3]>: type: ...
            const index = /^events\[(\d+)\]/.exec(error.path)?.[1];
            const event = index === undefined ? undefined : rest[Number(index)];
            throw usage(event === undefined ? `${lines}: ${error.message}` : `line ${event.line}: ${error.message.replace(/^events\[\d+\]\.?/, '')}`);
          }
          throw error;
        },
      );
      pending.catch(() => undefined);
      written += rest.length;
      progress.update(input.bytesRead(), written + skipped);
    }
  } catch (error) {
    await pending?.catch(() => undefined);
    throw error;
  }
  if (pending) await pending;
  if (dryRun) return { text: `would import ${written} events${skipped > 0 ? `, skipped ${skipped} already imported` : ''}; nothing written (--dry-run)`, events: written };
  return { text: `imported ${written} events${lastPosition === undefined ? '' : ` (head ${lastPosition})`}${skipped > 0 ? `, skipped ${skipped} already imported` : ''}`, events: written };
}
