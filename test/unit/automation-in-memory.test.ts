// The automation contract (test/contract/automation-contract.ts) against the in-memory store.
import { InMemoryEventStore } from '../../src/testing/index.ts';
import { defineAutomationContract } from '../contract/automation-contract.ts';

defineAutomationContract('InMemoryEventStore', async () => {
  const store = new InMemoryEventStore();
  return { store, dispose: () => store.close() };
});
