import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Query, QueryItem, type EventStore } from '../../src/index.ts';
import { createTestStore } from '../helpers.ts';

let store: EventStore;
let dispose: () => Promise<void>;
before(async () => ({ store, dispose } = await createTestStore()));
after(() => dispose());

test('an empty store has head 0 and no events', async () => {
  const { events, head } = await store.read(Query.all());
  assert.deepEqual(events, []);
  assert.equal(head, 0n);
});

test('append then read returns the event with position, id and timestamps', async () => {
  const { position } = await store.append({ type: 'BookCopyAddedToCirculation', tags: ['book:b1'], data: { BookID: 'b1' } });
  assert.equal(position, 1n);
  const { events, head } = await store.read(Query.of(QueryItem.types('BookCopyAddedToCirculation').tags('book:b1')));
  assert.equal(head, 1n);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.position, 1n);
  assert.deepEqual(events[0]!.data, { BookID: 'b1' });
  assert.match(events[0]!.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  assert.ok(events[0]!.recordedAt instanceof Date);
});
