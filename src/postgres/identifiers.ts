import { InvalidInputError } from '../errors.ts';
import { describe } from '../validation.ts';

// Lower-case only: an unquoted reference in a user's own SQL then names the same schema.
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Validates a schema name and returns it double-quoted, ready to be placed in SQL text. */
export function quoteSchemaName(schema: unknown): string {
  if (typeof schema !== 'string' || !IDENTIFIER.test(schema)) {
    throw new InvalidInputError(
      'schema',
      `must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit, got ${describe(schema)}`,
    );
  }
  if (schema.startsWith('pg_')) throw new InvalidInputError('schema', `names starting with pg_ are reserved by PostgreSQL, got "${schema}"`);
  return `"${schema}"`;
}
