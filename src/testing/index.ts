// dynamic-streams-eventstore/testing: an in-memory store and Given/When/Then specifications.
export { InMemoryEventStore } from './in-memory-event-store.ts';
export { CommandHandlerSpecification, CommandScenario, ProjectionSpecification } from './specifications.ts';
export type { ExpectedEvent, SpecificationOptions, SpecificationStore } from './specifications.ts';
