import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validate, version } from 'uuid';
import { uuidv7 } from '../../src/uuid7.ts';

const timestampOf = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

describe('uuidv7', () => {
  it('makes valid, distinct, strictly increasing version-7 UUIDs with the RFC variant', () => {
    let previous = '';
    const seen = new Set<string>();
    for (let i = 0; i < 50_000; i++) {
      const id = uuidv7();
      assert.ok(validate(id), id);
      assert.equal(version(id), 7);
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.ok(id > previous, `${id} > ${previous}`);
      previous = id;
      seen.add(id);
    }
    assert.equal(seen.size, 50_000);
  });

  it('carries the current time in milliseconds in its first 48 bits', () => {
    const before = Date.now();
    const id = uuidv7();
    const after = Date.now();
    // Within a busy millisecond the counter may carry the timestamp a little ahead of the clock.
    assert.ok(timestampOf(id) >= before && timestampOf(id) <= after + 50, `${timestampOf(id)} in [${before}, ${after}]`);
  });
});
