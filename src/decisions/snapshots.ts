import { createHash } from 'node:crypto';
import { InvalidInputError } from '../errors.ts';
import { type JsonValue } from '../events.ts';
import { assertJson, assertStorableString, describe, validatePosition } from '../validation.ts';
import type { Query } from '../query.ts';
import type { Snapshot, SnapshotKey } from '../store.ts';

/** SHA-256 of the query's JSON shape. */
export function queryHash(query: Query): string {
  return createHash('sha256').update(JSON.stringify(query.toJSON())).digest('hex');
}

/**
 * The checks both snapshot stores make on a key, so that they refuse the same keys with the same
 * InvalidInputError (PostgreSQL cannot store NUL in text, and `version` is an integer column).
 */
export function validateSnapshotKey(key: unknown): SnapshotKey {
  if (key === null || typeof key !== 'object') throw new InvalidInputError('key', `must be an object, got ${describe(key)}`);
  const { name, version, queryHash } = key as Record<string, unknown>;
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) throw new InvalidInputError('key.name', `must be a string of 1 to 255 characters, got ${describe(name)}`);
  assertStorableString(name, 'key.name');
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0 || version > 2_147_483_647) {
    throw new InvalidInputError('key.version', `must be an integer from 0 to 2147483647, got ${describe(version)}`);
  }
  if (typeof queryHash !== 'string' || queryHash.length === 0) throw new InvalidInputError('key.queryHash', `must be a non-empty string, got ${describe(queryHash)}`);
  assertStorableString(queryHash, 'key.queryHash');
  return { name, version, queryHash };
}

/** The checks both snapshot stores make on a snapshot to save: a position, and state that is JSON PostgreSQL's jsonb can hold. */
export function validateSnapshot(snapshot: unknown): Snapshot {
  if (snapshot === null || typeof snapshot !== 'object') throw new InvalidInputError('snapshot', `must be an object, got ${describe(snapshot)}`);
  const { position, state } = snapshot as Record<string, unknown>;
  const valid = validatePosition(position, 'snapshot.position');
  if (state === undefined) throw new InvalidInputError('snapshot.state', 'undefined is not JSON (use null)');
  assertJson(state, 'snapshot.state');
  return { position: valid, state: state as JsonValue };
}
