// What every command shares: exit codes, the error a command fails with, the connection from
// --url/--schema, and where data (stdout) and messages (stderr) go. Data never mixes with
// progress or messages: stdout carries only what a pipe downstream reads.
import { AppendConditionFailedError } from '../append-condition.ts';
import { AppendOutcomeUnknownError, EventStoreError } from '../errors.ts';
import { EventStore, type EventStoreOptions } from '../postgres/event-store.ts';

/** The documented exit codes. */
export const EXIT = {
  ok: 0,
  /** The command failed (a database error, a failed integrity check, ...). */
  failure: 1,
  /** Bad usage: unknown flag or command, bad JSON, a bad value. Nothing was changed. */
  usage: 2,
  /** An append's condition failed. Nothing was written. */
  conditionFailed: 3,
  /** An append's outcome is unknown: it may or may not have been written. */
  outcomeUnknown: 4,
} as const;

/** A command's failure: a one-line message (with the error's code) and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** A usage error (exit 2). */
export function usage(message: string): CliError {
  return new CliError(message, EXIT.usage, 'USAGE');
}

/** The exit code and one-line message for any error a command ends with. */
export function describeFailure(error: unknown): { exitCode: number; line: string } {
  if (error instanceof CliError) return { exitCode: error.exitCode, line: `error${error.code ? ` [${error.code}]` : ''}: ${error.message}` };
  if (error instanceof AppendConditionFailedError) return { exitCode: EXIT.conditionFailed, line: `error [${error.code}]: ${error.message}` };
  if (error instanceof AppendOutcomeUnknownError) return { exitCode: EXIT.outcomeUnknown, line: `error [${error.code}]: ${error.message}` };
  if (error instanceof EventStoreError) {
    // The library's hint names its own API; on the command line it is `dses migrate`.
    const hint = /tables or functions are missing/.test(error.message) ? ' (run `dses migrate` to create them)' : '';
    return { exitCode: error.code === 'INVALID_INPUT' ? EXIT.usage : EXIT.failure, line: `error [${error.code}]: ${oneLine(error.message)}${hint}` };
  }
  return { exitCode: EXIT.failure, line: `error: ${oneLine(error instanceof Error ? error.message : String(error))}` };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}

/** The options every command takes. */
export interface GlobalOptions {
  url?: string;
  schema: string;
}

/** The connection string from --url, else DATABASE_URL. */
export function connectionStringOf(options: GlobalOptions): string {
  const url = options.url ?? process.env.DATABASE_URL;
  if (url === undefined || url === '') throw usage('no database: pass --url <connection string> or set DATABASE_URL (`dses dev` starts a local PostgreSQL and prints its URL)');
  return url;
}

/**
 * Opens the store for a command and closes it afterwards. Commands that only read do not
 * migrate: a missing or older schema is reported instead of created behind the operator's back.
 */
export async function withStore<T>(options: GlobalOptions, run: (store: EventStore) => Promise<T>, extra: EventStoreOptions = {}): Promise<T> {
  const store = await EventStore.connect({ connectionString: connectionStringOf(options), schema: options.schema, migrate: false, telemetry: false, ...extra });
  try {
    return await run(store);
  } finally {
    await store.close({ timeoutMs: 10_000 });
  }
}

/** Parses a JSON flag; bad JSON is a usage error naming the flag. */
export function parseJsonFlag(flag: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw usage(`${flag} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Parses a position flag (a non-negative integer). */
export function parsePosition(flag: string, text: string): bigint {
  if (!/^\d+$/.test(text)) throw usage(`${flag} must be a non-negative integer position, got ${JSON.stringify(text)}`);
  return BigInt(text);
}

/** Parses a positive integer flag. */
export function parsePositiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) throw usage(`${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

/** Writes to stdout, waiting when the pipe is full (constant memory for any amount of output). */
export function writeOut(text: string): Promise<void> | undefined {
  if (process.stdout.write(text)) return undefined;
  return new Promise((resolve) => process.stdout.once('drain', resolve));
}

/** A message for the operator (stderr), never mixed into the data on stdout. */
export function say(text: string): void {
  process.stderr.write(`${text}\n`);
}
