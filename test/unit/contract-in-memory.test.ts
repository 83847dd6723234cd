// The event store contract (test/contract/event-store-contract.ts) against the in-memory store:
// the same expectations as for PostgreSQL, without a database.
import { InMemoryEventStore } from '../../src/testing/index.ts';
import { defineAppendCommandsContract } from '../contract/append-commands-contract.ts';
import { defineEventStoreContract } from '../contract/event-store-contract.ts';

defineEventStoreContract('InMemoryEventStore', async () => {
  const store = new InMemoryEventStore();
  return { store, dispose: () => store.close() };
});

defineAppendCommandsContract('InMemoryEventStore', async () => {
  const store = new InMemoryEventStore();
  return { store, dispose: () => store.close() };
});
