// The HTTP API (createServer): Fastify with every request validated against the schemas of
// schemas.ts, auth and limits in hooks, and the OpenAPI document generated from the same route
// table. It is written against the store contract (store.ts) only, so any DcbEventStore can be
// served; consumers and statistics come from an optional StoreInspector.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { AppendConditionFailedError, type AppendCondition } from '../append-condition.ts';
import { InvalidInputError } from '../errors.ts';
import type { Logger } from '../telemetry/log.ts';
import type { DcbEventStore } from '../store.ts';
import { Query, QueryItem } from '../query.ts';
import type { SequencedEvent } from '../events.ts';
import { authorizer, isLoopback, type Access } from './auth.ts';
import { dcbQueryOf, eventInputOf, eventJson, position, queryOf, type EventInputJson } from './encode.ts';
import { HttpError, errorAnswer } from './errors.ts';
import type { StoreInspector } from './inspector.ts';
import { openApiDocument, type ResponseSpec, type RouteDoc } from './openapi.ts';
import { positionSchema, schemas } from './schemas.ts';
import { streamSubscription, type SubscriptionSession } from './subscribe.ts';

/** An append condition as the API takes it (validated by the route's schema). */
interface ConditionJson {
  failIfEventsMatch: unknown;
  after?: string;
}

/** The largest position PostgreSQL's bigint holds. */
const MAX_POSITION = 9_223_372_036_854_775_807n;

export interface HttpServerOptions {
  /** The store to serve. The server does not close it. */
  store: DcbEventStore;
  /** Consumers and statistics (/v1/consumers, /v1/stats); without it those routes answer 501. `postgresInspector(store, ...)` for an EventStore. */
  inspector?: StoreInspector;
  /** The write token: with it, every route but /health needs `Authorization: Bearer <token>`. */
  token?: string;
  /** A token that can read and subscribe, but not append or reset consumers. Needs `token`. */
  readToken?: string;
  /** Where listen() binds by default. Default 127.0.0.1. */
  host?: string;
  /** Allow a non-loopback host without a token (anyone who can reach it may append). Default false. */
  insecure?: boolean;
  /** Largest request body in bytes; larger ones get 413 and change nothing. Default 16 MiB. */
  bodyLimit?: number;
  /** Most events in one append. Default 10 000. */
  maxEventsPerAppend?: number;
  /** Most items in one query. Default 100. */
  maxQueryItems?: number;
  /** Most types in one query item. Default 100. */
  maxTypesPerItem?: number;
  /** Most tags in one query item. Default 100. */
  maxTagsPerItem?: number;
  /** Most payload predicates in one query item. Default 100. */
  maxPredicatesPerItem?: number;
  /** Most events one /v1 read returns; a read without `limit` that matches more gets 422 (page with `limit` and `after`). Default 10 000. */
  maxReadLimit?: number;
  /** Most open /v1/subscribe streams; more get 503. Default 100. */
  maxSubscriptions?: number;
  /** Heartbeat comment interval of idle subscriptions, in ms. Default 15 000. */
  heartbeatMs?: number;
  /** Passed to store.subscribe (the poll that covers lost notifications). Default: the store's. */
  subscriptionPollIntervalMs?: number;
  /** The longest a client may take to send a whole request, in ms. Default 30 000. */
  requestTimeoutMs?: number;
  /** The longest a client may take to send the request headers, in ms (a slow-header client is cut). Default 10 000. */
  headersTimeoutMs?: number;
  /** A connection with no traffic either way for this long is closed, in ms (subscriptions send heartbeats). Default 60 000. */
  idleTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open between requests, in ms. Default 5 000. */
  keepAliveTimeoutMs?: number;
  /** Receives unexpected errors (pino's shape; `console` works). Default: none. */
  logger?: Logger;
  /** The version in the OpenAPI document. */
  version?: string;
  /**
   * Registers more routes on the Fastify instance before the server starts (the web browser's
   * static files at `/`, for instance). Their access defaults to `read`; set
   * `config: { access: 'public' }` on a route that must load without a token.
   */
  extend?: (app: FastifyInstance) => void | Promise<void>;
}

export interface ListenOptions {
  /** Default 3000; 0 picks a free port. */
  port?: number;
  /** Default the `host` given to createServer, else 127.0.0.1. */
  host?: string;
}

export interface HttpServer {
  /** The Fastify instance (for `inject` in tests, or more hooks). */
  readonly app: FastifyInstance;
  /** Binds and starts serving; resolves to the URL (`http://HOST:PORT`). */
  listen(options?: ListenOptions): Promise<string>;
  /** The bound address once listening. */
  readonly address: { host: string; port: number } | undefined;
  /** Ends the subscriptions, stops accepting connections and waits for requests in flight. The store stays open. */
  close(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

const DEFAULTS = {
  bodyLimit: 16 * 1024 * 1024,
  maxEventsPerAppend: 10_000,
  maxQueryItems: 100,
  maxTypesPerItem: 100,
  maxTagsPerItem: 100,
  maxPredicatesPerItem: 100,
  maxReadLimit: 10_000,
  maxSubscriptions: 100,
  heartbeatMs: 15_000,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
};

/**
 * The HTTP API of a store.
 *
 * @example
 * const store = await EventStore.connect({ connectionString });
 * const server = createServer({ store, token: process.env.DSES_TOKEN });
 * console.log(`listening on ${await server.listen({ port: 3000 })}`);
 * // later
 * await server.close();
 * await store.close();
 */
export function createServer(options: HttpServerOptions): HttpServer {
  const settings = settingsOf(options);
  const { store, inspector } = options;
  if (options.readToken !== undefined && options.token === undefined) throw new InvalidInputError('readToken', 'needs a (write) token as well');
  for (const key of ['token', 'readToken'] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== 'string' || value.length < 1 || /\s/.test(value))) throw new InvalidInputError(key, 'must be a non-empty string without spaces');
  }
  const authorize = authorizer({ token: options.token, readToken: options.readToken });
  const defaultHost = options.host ?? '127.0.0.1';
  const logger = options.logger;

  const app = Fastify({
    logger: false,
    bodyLimit: settings.bodyLimit,
    // No coercion ("1" is not 1, 1 is not "1"), no silent removal of unknown fields: a request is
    // exactly what the schema says or it is refused.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    return503OnClosing: true,
    // close() ends idle keep-alive connections at once and lets requests in flight finish
    // (subscriptions are ended by the preClose hook below).
    forceCloseConnections: 'idle',
    serverFactory: (handler) => {
      const server: Server = createHttpServer(
        {
          requestTimeout: settings.requestTimeoutMs,
          headersTimeout: settings.headersTimeoutMs,
          keepAliveTimeout: settings.keepAliveTimeoutMs,
          // How often Node checks the two deadlines above; its default (30 s) would let a slow
          // client keep a connection far past headersTimeout.
          connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(settings.headersTimeoutMs / 4))),
        },
        handler as (request: IncomingMessage, response: ServerResponse) => void,
      );
      server.setTimeout(settings.idleTimeoutMs, (socket) => socket.destroy());
      return server;
    },
  });

  // Bodies are JSON only: a text/plain body would otherwise reach validation as a string.
  app.removeContentTypeParser('text/plain');
  // Without tokens there is nothing to check: no hook at all on the hot path.
  if (authorize) {
    app.addHook('onRequest', (request, _reply, done) => {
      authorize(request.routeOptions.config.access ?? 'read', request.headers.authorization);
      done();
    });
  }
  // JSON carried in a query string parameter (?query=<json>) is parsed before validation, so the
  // schema checks the parsed value like a body. Only on the routes that have such parameters.
  const parseJsonQuery = (names: readonly string[]) => (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void => {
    const query = request.query as Record<string, unknown>;
    for (const name of names) {
      const text = query[name];
      if (text === undefined) continue;
      if (typeof text !== 'string') return done(new InvalidInputError(name, 'must be given once'));
      try {
        query[name] = JSON.parse(text);
      } catch {
        return done(new InvalidInputError(name, 'is not valid JSON'));
      }
    }
    done();
  };
  app.setErrorHandler((error, request, reply) => {
    const answer = errorAnswer(error);
    // The details a 500 does not send go to the log; an unknown outcome is worth a warning (the
    // store logs its own reason); 501 and 503 are expected answers, not failures.
    if (answer.statusCode === 500) logger?.error({ err: error, method: request.method, url: request.url }, 'HTTP request failed');
    else if (answer.statusCode === 504) logger?.warn({ err: error, method: request.method, url: request.url }, 'HTTP append outcome unknown');
    return reply.code(answer.statusCode).headers(answer.headers).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => {
    // Unknown routes need a token too: without one, a scan learns nothing about the routes.
    try {
      authorize?.('read', request.headers.authorization);
    } catch (error) {
      const answer = errorAnswer(error);
      return reply.code(answer.statusCode).headers(answer.headers).send(answer.body);
    }
    return reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` } });
  });

  const s = schemas(settings);
  const routes: RouteDoc[] = [];
  const route = (doc: RouteDoc, handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>): void => {
    routes.push(doc);
    app.route({
      method: doc.method,
      url: doc.url,
      schema: {
        ...(doc.body && { body: doc.body }),
        ...(doc.querystring && { querystring: doc.querystring }),
        ...(doc.params && { params: doc.params }),
        ...(doc.headers && { headers: doc.headers }),
      },
      config: { access: doc.access },
      ...(doc.jsonQuery && { preValidation: parseJsonQuery(doc.jsonQuery) }),
      // HEAD would open a stream that sends nothing yet holds a subscription place.
      exposeHeadRoute: doc.responses[200]?.contentType !== 'text/event-stream',
      handler,
    });
  };
  const json = (description: string, schema: object): ResponseSpec => ({ description, schema: schema as Record<string, unknown> });

  // --- the /v1 API ---------------------------------------------------------------------------

  route(
    {
      method: 'POST',
      url: '/v1/append',
      operationId: 'append',
      tag: 'events',
      summary: 'Append events atomically, optionally guarded by a condition',
      description: 'All events or none. With `condition`, fails (409) if an event matching `failIfEventsMatch` exists after `after` (or at all, without `after`).',
      access: 'write',
      body: s.appendBody,
      responses: { 200: json('written', s.appendResult) },
      errors: [400, 409, 413, 415, 503, 504],
    },
    async (request) => {
      const body = request.body as { events: EventInputJson[]; condition?: ConditionJson };
      const events = body.events.map((event, index) => eventInputOf(event, `events[${index}]`));
      const condition = body.condition && conditionOf(body.condition, 'condition');
      const { position: written } = await store.append(events, condition);
      return { position: written.toString() };
    },
  );

  route(
    {
      method: 'POST',
      url: '/v1/append-commands',
      operationId: 'appendCommands',
      tag: 'events',
      summary: 'Append several commands atomically, each with its own condition',
      description: 'All commands or none. Each condition is checked in order and sees the stored events and those of the commands before it (two commands creating the same entity conflict). A failed condition is 409 with `commandIndex`, and `conflictingPosition` or, for a conflict with an earlier command of the same request, `conflictingCommandIndex`.',
      access: 'write',
      body: s.appendCommandsBody,
      responses: { 200: json('every command written', s.appendCommandsResult) },
      errors: [400, 409, 413, 415, 503, 504],
    },
    async (request) => {
      const body = request.body as { commands: Array<{ events: EventInputJson[]; condition?: ConditionJson }> };
      const total = body.commands.reduce((sum, command) => sum + command.events.length, 0);
      if (total > settings.maxEventsPerAppend) throw new HttpError(400, 'INVALID_INPUT', `commands: ${total} events in all, more than the ${settings.maxEventsPerAppend} one request may append`, { path: 'commands' });
      const commands = body.commands.map((command, index) => ({
        events: command.events.map((event, eventIndex) => eventInputOf(event, `commands[${index}].events[${eventIndex}]`)),
        ...(command.condition && { condition: conditionOf(command.condition, `commands[${index}].condition`) }),
      }));
      const written = await store.appendCommands(commands);
      return { positions: written.positions.map(String), position: written.position.toString() };
    },
  );

  /** An append condition from its JSON; `path` names it in errors (`commands[2].condition`). */
  const conditionOf = (json: ConditionJson, path: string): AppendCondition => ({
    failIfEventsMatch: queryOf(json.failIfEventsMatch, `${path}.failIfEventsMatch`),
    ...(json.after !== undefined && { after: position(json.after, `${path}.after`) }),
  });

  /** A read of at most maxReadLimit events; without a limit, more than that is refused rather than cut. */
  const boundedRead = async (query: Query, bounds: { after: bigint | undefined; before: bigint | undefined }, limit: number | undefined, backwards: boolean): Promise<{ events: SequencedEvent[]; head: bigint }> => {
    const { after, before } = bounds;
    const result = await store.read(query, { ...(after !== undefined && { after }), ...(before !== undefined && { before }), limit: limit ?? settings.maxReadLimit + 1, backwards });
    if (limit === undefined && result.events.length > settings.maxReadLimit) {
      throw new HttpError(422, 'RESULT_TOO_LARGE', `more than ${settings.maxReadLimit} events match: read them in pages with limit and after (or backwards with before)`, { path: 'limit', maxReadLimit: settings.maxReadLimit });
    }
    return result;
  };
  const readAnswer = (result: { events: SequencedEvent[]; head: bigint }): object => ({ events: result.events.map(eventJson), head: result.head.toString() });

  route(
    {
      method: 'POST',
      url: '/v1/read',
      operationId: 'read',
      tag: 'events',
      summary: 'Read the events matching a query, with the head of the same snapshot',
      access: 'read',
      body: s.readBody,
      responses: { 200: json('the matching events in position order (newest first with `backwards`) and the head', s.readResult) },
      errors: [400, 413, 415, 422, 503],
    },
    async (request) => {
      const body = request.body as { query: unknown; after?: string; before?: string; limit?: number; backwards?: boolean };
      const query = queryOf(body.query, 'query');
      const after = body.after === undefined ? undefined : position(body.after, 'after');
      const before = body.before === undefined ? undefined : position(body.before, 'before');
      return readAnswer(await boundedRead(query, { after, before }, body.limit, body.backwards === true));
    },
  );

  route(
    {
      method: 'GET',
      url: '/v1/events',
      operationId: 'events',
      tag: 'events',
      summary: 'Read the events of one query item (types and tags) from the query string',
      access: 'read',
      querystring: s.eventsQueryString,
      responses: { 200: json('the matching events and the head', s.readResult) },
      errors: [400, 422, 503],
    },
    async (request) => {
      const q = request.query as { types?: string; tags?: string; after?: string; before?: string; limit?: string; backwards?: string };
      const list = (text: string | undefined, name: string): string[] | undefined => {
        if (text === undefined) return undefined;
        const values = text.split(',').map((value) => value.trim()).filter((value) => value !== '');
        if (values.length === 0) throw new InvalidInputError(name, 'is an empty list');
        const limit = name === 'types' ? settings.maxTypesPerItem : settings.maxTagsPerItem;
        if (values.length > limit) throw new InvalidInputError(name, `must not have more than ${limit} entries`);
        return values;
      };
      const types = list(q.types, 'types');
      const tags = list(q.tags, 'tags');
      let query = Query.all();
      try {
        if (types || tags) {
          let item = types ? QueryItem.types(...types) : QueryItem.tags(...tags!);
          if (types && tags) item = item.tags(...tags);
          query = Query.of(item);
        }
      } catch (error) {
        if (error instanceof InvalidInputError) throw new InvalidInputError(error.path.includes('tags') ? 'tags' : 'types', error.message);
        throw error;
      }
      const limit = q.limit === undefined ? undefined : Number(q.limit);
      if (limit !== undefined && limit > settings.maxReadLimit) throw new InvalidInputError('limit', `must not be more than ${settings.maxReadLimit}`);
      const after = q.after === undefined ? undefined : position(q.after, 'after');
      const before = q.before === undefined ? undefined : position(q.before, 'before');
      return readAnswer(await boundedRead(query, { after, before }, limit, q.backwards === 'true'));
    },
  );

  route(
    {
      method: 'GET',
      url: '/v1/head',
      operationId: 'head',
      tag: 'events',
      summary: 'The highest position written (0 for an empty store)',
      access: 'read',
      responses: { 200: json('the head', s.headResult) },
      errors: [503],
    },
    async () => ({ head: (await store.head()).toString() }),
  );

  const sessions = new Set<SubscriptionSession>();
  route(
    {
      method: 'GET',
      url: '/v1/subscribe',
      operationId: 'subscribe',
      tag: 'events',
      summary: 'Server-Sent Events: the matching events after `after`, then each new one as it is appended',
      description:
        'One SSE event per store event: `id: <position>` and `data: <the event as JSON>`, in position order, never skipped, never repeated. ' +
        'Reconnect with `Last-Event-ID` (EventSource does) to resume after the last event received. Idle streams get a `: heartbeat` comment ' +
        'every few seconds. A stream that fails sends `event: error` with the error body, then ends.',
      access: 'read',
      querystring: s.subscribeQueryString,
      jsonQuery: ['query'],
      headers: s.subscribeHeaders,
      responses: { 200: { description: 'the event stream', contentType: 'text/event-stream' } },
      errors: [400, 503],
    },
    async (request, reply) => {
      const q = request.query as { query?: unknown; after?: string };
      const query = q.query === undefined ? Query.all() : queryOf(q.query, 'query');
      const lastEventId = request.headers['last-event-id'];
      const after = typeof lastEventId === 'string' ? position(lastEventId, 'Last-Event-ID') : q.after === undefined ? 0n : position(q.after, 'after');
      if (sessions.size >= settings.maxSubscriptions) {
        throw new HttpError(503, 'TOO_MANY_SUBSCRIPTIONS', `this server serves at most ${settings.maxSubscriptions} subscriptions at once`, { limit: settings.maxSubscriptions }, { 'retry-after': '1' });
      }
      reply.hijack();
      const session = streamSubscription(store, reply.raw, query, after, {
        heartbeatMs: settings.heartbeatMs,
        pollIntervalMs: options.subscriptionPollIntervalMs,
        onError: (error) => logger?.warn({ err: error }, 'HTTP subscription ended with an error'),
      });
      sessions.add(session);
      void session.done.finally(() => sessions.delete(session));
    },
  );

  // --- consumers, stats, health --------------------------------------------------------------

  const inspectorOrFail = (): StoreInspector => {
    if (!inspector) throw new HttpError(501, 'NOT_AVAILABLE', 'this server\'s store has no consumers or statistics (it is not a PostgreSQL store, or no inspector was given)');
    return inspector;
  };
  const bigintsAsStrings = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item)));

  route(
    {
      method: 'GET',
      url: '/v1/consumers',
      operationId: 'consumers',
      tag: 'consumers',
      summary: 'The durable consumers: position, lag, state, owner, last error',
      access: 'read',
      responses: { 200: json('the consumers by name', { type: 'object', required: ['consumers'], properties: { consumers: { type: 'array', items: { type: 'object' } } } }) },
      errors: [501, 503],
    },
    async () => ({ consumers: bigintsAsStrings(await inspectorOrFail().consumers()) }),
  );

  route(
    {
      method: 'POST',
      url: '/v1/consumers/:name/reset',
      operationId: 'resetConsumer',
      tag: 'consumers',
      summary: 'Move a consumer\'s checkpoint (default to 0: rebuild) and clear its failure; refused while it runs',
      access: 'write',
      params: s.consumerParams,
      body: s.resetBody,
      bodyOptional: true,
      responses: { 200: json('reset', { type: 'object', required: ['name', 'position'], properties: { name: { type: 'string' }, position: positionSchema } }) },
      errors: [400, 404, 409, 501, 503],
    },
    async (request) => {
      const { name } = request.params as { name: string };
      const body = (request.body ?? {}) as { position?: string };
      const to = body.position === undefined ? 0n : position(body.position, 'position');
      const found = await inspectorOrFail().resetConsumer(name, to);
      if (!found) throw new HttpError(404, 'UNKNOWN_CONSUMER', `no consumer named ${JSON.stringify(name)}; nothing was changed`, { consumer: name });
      return { name, position: to.toString() };
    },
  );

  route(
    {
      method: 'GET',
      url: '/v1/stats',
      operationId: 'stats',
      tag: 'store',
      summary: 'Events, head, size on disk, events by type, the most frequent tags, append rates',
      access: 'read',
      responses: { 200: json('the statistics (counts as decimal strings)', { type: 'object' }) },
      errors: [501, 503],
    },
    async () => bigintsAsStrings(await inspectorOrFail().stats()),
  );

  route(
    {
      method: 'GET',
      url: '/health',
      operationId: 'health',
      tag: 'store',
      summary: 'The server process answers (no token needed)',
      access: 'public',
      responses: { 200: json('alive', { type: 'object', properties: { status: { const: 'ok' } } }) },
      errors: [],
    },
    async () => ({ status: 'ok' }),
  );

  route(
    {
      method: 'GET',
      url: '/ready',
      operationId: 'ready',
      tag: 'store',
      summary: 'The store answers: the head could be read',
      access: 'read',
      responses: { 200: json('ready', { type: 'object', properties: { status: { const: 'ready' }, head: positionSchema } }) },
      errors: [503],
    },
    async () => {
      try {
        return { status: 'ready', head: (await store.head()).toString() };
      } catch (error) {
        logger?.warn({ err: error }, 'HTTP readiness check failed');
        throw new HttpError(503, 'NOT_READY', `the store does not answer: ${errorAnswer(error).body.error.code}`, {}, { 'retry-after': '1' });
      }
    },
  );

  // --- the dcb.events test-suite shape, unchanged -------------------------------------------

  route(
    {
      method: 'GET',
      url: '/read',
      operationId: 'dcbRead',
      tag: 'dcb.events',
      summary: 'dcb.events shape: the matching events as an array, positions as numbers',
      description: '`options.from` is inclusive (for `backwards`: the events at or before it). Events\' `data` is returned exactly as appended.',
      access: 'read',
      querystring: s.dcbReadQueryString,
      jsonQuery: ['query', 'options'],
      responses: { 200: json('the events', s.dcbReadResult) },
      errors: [400, 503],
    },
    async (request) => {
      const q = request.query as { query: { items: { types?: string[]; tags?: string[] }[] }; options?: { from?: number; limit?: number; backwards?: boolean } };
      const query = dcbQueryOf(q.query, 'query');
      const { from, limit, backwards } = q.options ?? {};
      // `from` is inclusive: forwards the events after from - 1, backwards the ones before from + 1
      // (a `from` beyond the largest position bounds nothing).
      const after = !backwards && from !== undefined && from > 0 ? BigInt(from) - 1n : undefined;
      const before = backwards && from !== undefined && BigInt(from) < MAX_POSITION ? BigInt(from) + 1n : undefined;
      const events = (
        await store.read(query, { ...(after !== undefined && { after }), ...(before !== undefined && { before }), ...(limit !== undefined && { limit }), backwards: backwards === true })
      ).events;
      return events.map((event) => ({ type: event.type, tags: event.tags, data: event.data, position: Number(event.position) }));
    },
  );

  route(
    {
      method: 'POST',
      url: '/append',
      operationId: 'dcbAppend',
      tag: 'dcb.events',
      summary: 'dcb.events shape: append; always 200 with `appendConditionFailed` for a failed condition',
      access: 'write',
      body: s.dcbAppendBody,
      responses: { 200: json('written, or refused by the condition', s.dcbAppendResult) },
      errors: [400, 409, 413, 415, 503, 504],
    },
    async (request) => {
      const body = request.body as { events: { type: string; tags?: string[]; data?: unknown }[]; condition?: { failIfEventsMatch: { items: { types?: string[]; tags?: string[] }[] }; after?: number | null } | null };
      const events = body.events.map((event) => ({ type: event.type, tags: event.tags ?? [], data: event.data === undefined ? null : event.data }));
      const condition = body.condition
        ? { failIfEventsMatch: dcbQueryOf(body.condition.failIfEventsMatch, 'condition.failIfEventsMatch'), ...(typeof body.condition.after === 'number' && { after: BigInt(body.condition.after) }) }
        : undefined;
      const started = process.hrtime.bigint();
      let appendConditionFailed = false;
      try {
        await store.append(events, condition);
      } catch (error) {
        if (!(error instanceof AppendConditionFailedError)) throw error;
        appendConditionFailed = true;
      }
      return { durationInMicroseconds: Number((process.hrtime.bigint() - started) / 1000n), appendConditionFailed };
    },
  );

  let document: object | undefined;
  route(
    {
      method: 'GET',
      url: '/openapi.json',
      operationId: 'openapi',
      tag: 'store',
      summary: 'This document',
      access: 'read',
      responses: { 200: json('the OpenAPI 3.1 document', { type: 'object' }) },
      errors: [],
    },
    async () => (document ??= openApiDocument(routes, { version: options.version ?? '0.0.0', secured: authorize !== undefined, errorSchema: s.error })),
  );

  let extended: Promise<void> | undefined;
  const ready = async (): Promise<void> => {
    extended ??= (async () => {
      if (options.extend) await options.extend(app);
      await app.ready();
    })();
    await extended;
  };

  // Subscriptions never end by themselves: stop them first, or close() would wait for them.
  app.addHook('preClose', async () => {
    const open = [...sessions];
    for (const session of open) session.stop();
    await Promise.allSettled(open.map((session) => session.done));
  });

  let address: { host: string; port: number } | undefined;
  return {
    app,
    get address() {
      return address;
    },
    async listen(listenOptions: ListenOptions = {}): Promise<string> {
      const host = listenOptions.host ?? defaultHost;
      if (authorize === undefined && !isLoopback(host) && options.insecure !== true) {
        throw new InvalidInputError('host', `without a token the server only binds to loopback (127.0.0.1, ::1, localhost), got ${JSON.stringify(host)}: give a token, or insecure: true to let anyone who reaches ${host} append`);
      }
      const port = listenOptions.port ?? 3000;
      if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidInputError('port', `must be an integer from 0 to 65535, got ${port}`);
      await ready();
      await app.listen({ port, host });
      const bound = app.server.address() as AddressInfo;
      address = { host: bound.address, port: bound.port };
      return `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
    },
    async close(): Promise<void> {
      await app.close();
    },
  };
}

function settingsOf(options: HttpServerOptions): typeof DEFAULTS {
  const settings = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new InvalidInputError(key, `must be a positive integer, got ${String(value)}`);
    settings[key] = value;
  }
  return settings;
}
