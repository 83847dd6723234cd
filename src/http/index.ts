// dynamic-streams-eventstore/http: the HTTP API of a store, to embed in an app (`dses serve`
// runs the same). Needs the optional peer dependency fastify (npm install fastify@5).
export { createServer } from './server.ts';
export { registerUi } from './ui.ts';
export type { HttpServer, HttpServerOptions, ListenOptions } from './server.ts';
export type { Access } from './auth.ts';
export type { InspectedConsumer, StoreInspector } from './inspector.ts';
export { STATUS_TABLE } from './errors.ts';
export { postgresInspector } from '../postgres/inspector.ts';
export type { PostgresInspector, PostgresInspectorOptions } from '../postgres/inspector.ts';
