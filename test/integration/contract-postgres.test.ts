// The event store contract (test/contract/event-store-contract.ts) against PostgreSQL: every
// test gets a store in its own schema, dropped afterwards.
import { defineAppendCommandsContract } from '../contract/append-commands-contract.ts';
import { defineEventStoreContract } from '../contract/event-store-contract.ts';
import { createTestStore, keepEventLoopAliveDuringTests } from '../helpers.ts';

keepEventLoopAliveDuringTests();

defineEventStoreContract('PostgreSQL EventStore', async () => {
  const { store, dispose } = await createTestStore();
  return { store, dispose };
});

defineAppendCommandsContract('PostgreSQL EventStore', async () => {
  const { store, dispose } = await createTestStore();
  return { store, dispose };
});
