// Structured log records. The store writes only to the logger it is given (pino's shape: a fields
// object first, then the message), never to the console on its own.

/**
 * A logger: pino, bunyan-style adapters, or `console` (its methods take any arguments: it prints
 * the fields object, then the message).
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export type LogLevel = keyof Logger;

/** The trace and span ids of the active span, when telemetry is on and a span is active. */
export type TraceFields = () => { trace_id: string; span_id: string } | undefined;

/**
 * The store's log: adds the store's fields (schema) and the active span's ids to every record,
 * and never lets a throwing logger break the operation that logs.
 */
export class StoreLog {
  readonly #logger: Logger | undefined;
  readonly #base: Record<string, unknown>;
  #traceFields: TraceFields | undefined;

  constructor(logger: Logger | undefined, base: Record<string, unknown>) {
    this.#logger = logger;
    this.#base = base;
  }

  /** Set once telemetry is loaded. */
  set traceFields(source: TraceFields | undefined) {
    this.#traceFields = source;
  }

  get enabled(): boolean {
    return this.#logger !== undefined;
  }

  write(level: LogLevel, fields: Record<string, unknown>, message: string): void {
    const logger = this.#logger;
    if (logger === undefined) return;
    try {
      logger[level]({ ...this.#base, ...this.#traceFields?.(), ...fields }, message);
    } catch {
      // a logger's failure is not the operation's
    }
  }

  debug(fields: Record<string, unknown>, message: string): void {
    this.write('debug', fields, message);
  }

  info(fields: Record<string, unknown>, message: string): void {
    this.write('info', fields, message);
  }

  warn(fields: Record<string, unknown>, message: string): void {
    this.write('warn', fields, message);
  }

  error(fields: Record<string, unknown>, message: string): void {
    this.write('error', fields, message);
  }
}

/** An error as log fields: message, code and name, never the whole object (it may hold connection details). */
export function errorFields(error: unknown): Record<string, unknown> {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { error: error.message, error_name: error.name, ...(typeof code === 'string' && { error_code: code }) };
  }
  return { error: String(error) };
}

/** Validates the `logger` option. */
export function isLogger(value: unknown): value is Logger {
  if (value === null || typeof value !== 'object' && typeof value !== 'function') return false;
  const candidate = value as Record<string, unknown>;
  return ['debug', 'info', 'warn', 'error'].every((level) => typeof candidate[level] === 'function');
}
