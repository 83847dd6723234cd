// Validation every layer shares: what PostgreSQL can store, positions, and how a bad value is
// described in an InvalidInputError.
import { InvalidInputError } from './errors.ts';

export const MAX_TYPE_LENGTH = 255;
export const MAX_TAG_LENGTH = 255;

export function validateType(type: unknown, path: string): string {
  return validateShortString(type, path, MAX_TYPE_LENGTH);
}

export function validateTag(tag: unknown, path: string): string {
  return validateShortString(tag, path, MAX_TAG_LENGTH);
}

/** Types and tags: non-empty strings PostgreSQL can store, short enough for a btree/GIN entry. */
function validateShortString(value: unknown, path: string, maxLength: number): string {
  if (typeof value !== 'string') throw new InvalidInputError(path, `must be a string, got ${describe(value)}`);
  if (value.length === 0) throw new InvalidInputError(path, 'must not be empty');
  if (value.length > maxLength) throw new InvalidInputError(path, `must be at most ${maxLength} characters, got ${value.length}`);
  assertStorableString(value, path);
  return value;
}

/**
 * Rejects what JSON.stringify would silently change or PostgreSQL's jsonb cannot hold: undefined
 * (except as an object property, which JSON omits), functions, symbols, BigInt, non-finite numbers,
 * cycles, `\u0000` and unpaired surrogates in strings or keys.
 */
export function assertJson(value: unknown, path: string): void {
  const ancestors = new Set<object>();
  const visit = (current: unknown, at: string): void => {
    switch (typeof current) {
      case 'string':
        assertStorableString(current, at);
        return;
      case 'number':
        if (!Number.isFinite(current)) throw new InvalidInputError(at, `${current} is not representable in JSON`);
        return;
      case 'boolean':
        return;
      case 'undefined':
        throw new InvalidInputError(at, 'undefined is not JSON (use null)');
      case 'bigint':
        throw new InvalidInputError(at, 'BigInt is not JSON (convert it to a string or number first)');
      case 'function':
      case 'symbol':
        throw new InvalidInputError(at, `a ${typeof current} is not JSON`);
      case 'object': {
        if (current === null) return;
        const toJSON = (current as { toJSON?: unknown }).toJSON;
        if (typeof toJSON === 'function') {
          visit((toJSON as () => unknown).call(current), at);
          return;
        }
        if (ancestors.has(current)) throw new InvalidInputError(at, 'contains a cycle');
        ancestors.add(current);
        if (Array.isArray(current)) {
          for (let index = 0; index < current.length; index++) visit(current[index], `${at}[${index}]`);
        } else {
          if (current instanceof Map || current instanceof Set) {
            throw new InvalidInputError(at, `a ${current.constructor.name} is not JSON (convert it to an object or array)`);
          }
          for (const key of Object.keys(current)) {
            assertStorableString(key, `${at} (key ${JSON.stringify(key)})`);
            const property = (current as Record<string, unknown>)[key];
            if (property === undefined) continue;
            visit(property, `${at}.${key}`);
          }
        }
        ancestors.delete(current);
        return;
      }
    }
  };
  visit(value, path);
}

// PostgreSQL text and jsonb cannot hold NUL, and jsonb rejects unpaired UTF-16 surrogates.
// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Rejects strings PostgreSQL's text and jsonb cannot hold (see UNSTORABLE). */
export function assertStorableString(value: string, path: string): void {
  const match = UNSTORABLE.exec(value);
  if (match === null) return;
  const what = match[0] === '\u0000' ? 'the NUL character \\u0000' : 'an unpaired UTF-16 surrogate';
  throw new InvalidInputError(path, `contains ${what} at index ${match.index}, which PostgreSQL cannot store`);
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'an invalid Date' : 'a Date';
  if (typeof value === 'string') return value.length > 40 ? `a string "${value.slice(0, 40)}..."` : `"${value}"`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function' || typeof value === 'symbol') return `a ${typeof value}`;
  return String(value);
}

/** The earliest occurredAt (and query time bound) both stores accept, in ms since the epoch: 0001-01-01T00:00:00.000Z. */
export const MIN_STORABLE_TIME = Date.parse('0001-01-01T00:00:00.000Z');
/** The latest occurredAt (and query time bound) both stores accept, in ms since the epoch: 9999-12-31T23:59:59.999Z. */
export const MAX_STORABLE_TIME = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * A Date the PostgreSQL store can store and read back unchanged. Dates travel as
 * `toISOString()`, which writes years outside 0000..9999 as `+010000-...` or `-000001-...`, forms
 * PostgreSQL's timestamptz input rejects; it also rejects year 0000 (there is no year 0; 1 BC
 * would be `0001-... BC`). So only 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z (UTC) are
 * accepted, by both stores, for occurredAt and for query time bounds. Returns a copy.
 */
export function validateStorableDate(value: unknown, path: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new InvalidInputError(path, `must be a valid Date, got ${describe(value)}`);
  const time = value.getTime();
  if (time < MIN_STORABLE_TIME || time > MAX_STORABLE_TIME) {
    throw new InvalidInputError(path, `must be from 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z (UTC), what PostgreSQL's timestamptz accepts as the store sends it; got ${value.toISOString()}`);
  }
  return new Date(time);
}

/** A position given by a caller: a non-negative integer (bigint, or a safe integer number). */
export function validatePosition(value: unknown, path: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n) throw new InvalidInputError(path, `must not be negative, got ${value}`);
    if (value > 9223372036854775807n) throw new InvalidInputError(path, 'exceeds the largest position (2^63 - 1)');
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new InvalidInputError(path, `must be an integer, got ${value}`);
    if (value < 0) throw new InvalidInputError(path, `must not be negative, got ${value}`);
    return BigInt(value);
  }
  throw new InvalidInputError(path, `must be a bigint position, got ${describe(value)}`);
}
