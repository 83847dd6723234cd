// The HTTP API (createServer, in process, on port 0) against a real PostgreSQL: every route's
// success and error statuses, the auth rules, the limits, and the dcb.events shape.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EventStore, Query } from '../../src/index.ts';
import { InMemoryEventStore } from '../../src/testing/index.ts';
import { createServer, postgresInspector, type HttpServer, type HttpServerOptions } from '../../src/http/index.ts';
import { createTestStore, databaseUrl, holdAppendLock } from '../helpers.ts';
import { call } from './fixtures/http-client.ts';

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;
const servers: HttpServer[] = [];

before(async () => {
  ({ store, schema, dispose } = await createTestStore());
});
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await dispose();
});

async function serve(options: Partial<HttpServerOptions> = {}, on: EventStore | InMemoryEventStore = store): Promise<string> {
  const inspector = on instanceof EventStore ? { inspector: postgresInspector(on, { connectionString: databaseUrl() }) } : {};
  const server = createServer({ store: on, ...inspector, ...options });
  servers.push(server);
  return server.listen({ port: 0 });
}

const appendBody = (type: string, tags: string[] = [], data: unknown = { n: 1 }) => ({ events: [{ type, tags, data }] });

describe('the /v1 API', () => {
  let url: string;
  before(async () => {
    url = await serve();
  });

  test('append, then read, events and head return it with positions as decimal strings', async () => {
    const id = randomUUID();
    const appended = await call(url, 'POST', '/v1/append', {
      body: { events: [{ type: 'CourseDefined', tags: ['course:c1'], data: { capacity: 10 }, metadata: { user: 'u1' }, id, occurredAt: '2026-01-02T03:04:05.678Z' }] },
    });
    assert.equal(appended.status, 200, appended.text);
    assert.match(appended.body.position, /^[1-9][0-9]*$/);
    const position = appended.body.position as string;

    const read = await call(url, 'POST', '/v1/read', { body: { query: { items: [{ types: ['CourseDefined'], tags: ['course:c1'] }] } } });
    assert.equal(read.status, 200, read.text);
    assert.equal(typeof read.body.head, 'string');
    const event = read.body.events.find((candidate: { id: string }) => candidate.id === id);
    assert.deepEqual({ ...event, recordedAt: undefined }, {
      position,
      id,
      type: 'CourseDefined',
      tags: ['course:c1'],
      data: { capacity: 10 },
      metadata: { user: 'u1' },
      occurredAt: '2026-01-02T03:04:05.678Z',
      recordedAt: undefined,
    });
    assert.ok(!Number.isNaN(Date.parse(event.recordedAt)));

    const events = await call(url, 'GET', '/v1/events?types=CourseDefined&tags=course:c1&limit=1&backwards=true');
    assert.equal(events.status, 200, events.text);
    assert.equal(events.body.events[0].id, id);
    const head = await call(url, 'GET', '/v1/head');
    assert.deepEqual(head.body, { head: (await store.head()).toString() });
  });

  test('before (exclusive, a decimal string) bounds POST /v1/read and GET /v1/events; backwards pages of before = oldest shown walk the whole history', async () => {
    const tag = `page:${randomUUID()}`;
    const appended: string[] = [];
    for (let n = 0; n < 12; n++) {
      const answer = await call(url, 'POST', '/v1/append', { body: { events: [{ type: n % 2 === 0 ? 'Paged' : 'Other', tags: [tag], data: { n } }] } });
      appended.push(answer.body.position);
    }
    const paged = appended.filter((_, n) => n % 2 === 0);
    const query = { items: [{ types: ['Paged'], tags: [tag] }] };
    const head = (await store.head()).toString();
    const walked: string[] = [];
    let before = (BigInt(head) + 1n).toString();
    for (let pages = 0; pages < 10; pages++) {
      const page = await call(url, 'POST', '/v1/read', { body: { query, before, backwards: true, limit: 4 } });
      assert.equal(page.status, 200, page.text);
      assert.equal(page.body.head, head);
      if (page.body.events.length === 0) break;
      walked.push(...page.body.events.map((event: { position: string }) => event.position));
      before = page.body.events.at(-1).position;
    }
    assert.deepEqual(walked, [...paged].reverse());
    const below = await call(url, 'POST', '/v1/read', { body: { query, before: paged[3], after: paged[0] } });
    assert.deepEqual(below.body.events.map((event: { position: string }) => event.position), [paged[1], paged[2]]);
    const events = await call(url, 'GET', `/v1/events?types=Paged&tags=${encodeURIComponent(tag)}&before=${paged[2]}&backwards=true&limit=5`);
    assert.equal(events.status, 200, events.text);
    assert.deepEqual(events.body.events.map((event: { position: string }) => event.position), [paged[1], paged[0]]);
    const none = await call(url, 'GET', `/v1/events?tags=${encodeURIComponent(tag)}&before=0`);
    assert.deepEqual(none.body, { events: [], head });
    for (const [body, path] of [[{ query, before: 5 }, 'before'], [{ query, before: '-1' }, 'before'], [{ query, before: '9223372036854775808' }, 'before']] as const) {
      const answer = await call(url, 'POST', '/v1/read', { body });
      assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
      assert.equal(answer.body.error.path, path);
    }
    assert.equal((await call(url, 'GET', '/v1/events?before=1.5')).status, 400);
    const document = (await call(url, 'GET', '/openapi.json')).body;
    assert.ok(document.paths['/v1/read'].post.requestBody.content['application/json'].schema.properties.before, 'the OpenAPI document has before for /v1/read');
    assert.ok(document.paths['/v1/events'].get.parameters.some((parameter: { name: string }) => parameter.name === 'before'), 'and for /v1/events');
  });

  test('a condition that holds appends; one that failed is 409 with conflictingPosition, and nothing is written', async () => {
    const tag = `c:${randomUUID()}`;
    const query = { items: [{ types: ['Subscribed'], tags: [tag] }] };
    const first = await call(url, 'POST', '/v1/read', { body: { query } });
    const ok = await call(url, 'POST', '/v1/append', { body: { ...appendBody('Subscribed', [tag]), condition: { failIfEventsMatch: query, after: first.body.head } } });
    assert.equal(ok.status, 200, ok.text);
    const head = await store.head();
    const conflict = await call(url, 'POST', '/v1/append', { body: { ...appendBody('Subscribed', [tag]), condition: { failIfEventsMatch: query, after: first.body.head } } });
    assert.equal(conflict.status, 409, conflict.text);
    assert.equal(conflict.body.error.code, 'APPEND_CONDITION_FAILED');
    assert.equal(conflict.body.error.conflictingPosition, ok.body.position);
    const unique = await call(url, 'POST', '/v1/append', { body: { ...appendBody('Subscribed', [tag]), condition: { failIfEventsMatch: query } } });
    assert.equal(unique.status, 409);
    assert.equal(await store.head(), head);
  });

  test('bad input is 400 with the path of the problem, and changes nothing', async () => {
    const head = await store.head();
    const cases: [unknown, string][] = [
      [{ events: [] }, 'events'],
      [{ events: [{ type: 'A' }] }, 'events[0].data'],
      [{ events: [{ type: 1, data: 1 }] }, 'events[0].type'],
      [{ events: [{ type: 'A', data: 1, colour: 'red' }] }, 'events[0].colour'],
      [{ events: [{ type: 'A', data: 1, tags: [''] }] }, 'events[0].tags[0]'],
      [{ events: [{ type: 'A', data: 1, id: 'not-a-uuid' }] }, 'events[0].id'],
      [{ events: [{ type: 'A', data: 1, occurredAt: 'yesterday' }] }, 'events[0].occurredAt'],
      [{ events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [{}] } } }, 'condition.failIfEventsMatch.items[0]'],
      [{ events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [] }, after: 5 } }, 'condition.after'],
      [{ events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [] }, after: '-1' } }, 'condition.after'],
      [{ events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [] }, after: '99999999999999999999' } }, 'condition.after'],
      [{ events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [] }, after: '9223372036854775808' } }, 'condition.after'],
    ];
    for (const [body, path] of cases) {
      const answer = await call(url, 'POST', '/v1/append', { body });
      assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
      assert.equal(answer.body.error.code, 'INVALID_INPUT');
      assert.equal(answer.body.error.path, path, `${JSON.stringify(body)}: ${answer.text}`);
    }
    const badJson = await call(url, 'POST', '/v1/append', { raw: '{"events": [' });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error.path, 'body');
    const notJson = await call(url, 'POST', '/v1/append', { raw: 'type=A', headers: { 'content-type': 'text/plain' } });
    assert.equal(notJson.status, 415, notJson.text);
    for (const path of ['/v1/events?limit=0', '/v1/events?limit=x', '/v1/events?after=1.5', '/v1/events?backwards=yes', '/v1/events?colour=red', '/v1/events?types=,']) {
      const answer = await call(url, 'GET', path);
      assert.equal(answer.status, 400, `${path}: ${answer.text}`);
    }
    const badRead = await call(url, 'POST', '/v1/read', { body: { query: { items: [{ types: ['A'] }] }, limit: '10' } });
    assert.equal(badRead.status, 400);
    assert.equal(badRead.body.error.path, 'limit');
    const badDate = await call(url, 'POST', '/v1/read', { body: { query: { items: [], occurredFrom: 'soon' } } });
    assert.equal(badDate.status, 400, badDate.text);
    assert.equal(badDate.body.error.path, 'query.occurredFrom');
    assert.equal(await store.head(), head);
  });

  test('a read without limit that matches more than maxReadLimit events is refused (422), never cut short', async () => {
    const small = await serve({ maxReadLimit: 2 });
    const type = `Many${randomUUID().slice(0, 8)}`;
    await store.append([1, 2, 3].map((n) => ({ type, data: n })));
    const refused = await call(small, 'POST', '/v1/read', { body: { query: { items: [{ types: [type] }] } } });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(refused.body.error.code, 'RESULT_TOO_LARGE');
    const paged = await call(small, 'POST', '/v1/read', { body: { query: { items: [{ types: [type] }] }, limit: 2 } });
    assert.equal(paged.status, 200);
    assert.deepEqual(paged.body.events.map((event: { data: number }) => event.data), [1, 2]);
    const next = await call(small, 'GET', `/v1/events?types=${type}&after=${paged.body.events[1].position}`);
    assert.deepEqual(next.body.events.map((event: { data: number }) => event.data), [3]);
    const tooMany = await call(small, 'POST', '/v1/read', { body: { query: { items: [] }, limit: 3 } });
    assert.equal(tooMany.status, 400);
  });

  test('unknown routes are 404 in the error shape; /health and /ready answer', async () => {
    const missing = await call(url, 'GET', '/v1/nothing');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'NOT_FOUND');
    assert.deepEqual((await call(url, 'GET', '/health')).body, { status: 'ok' });
    const ready = await call(url, 'GET', '/ready');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, 'ready');
  });

  test('consumers: list, reset (404 for an unknown name, 409 while running), stats', async () => {
    const name = `projector_${randomUUID().slice(0, 8)}`;
    const handled: bigint[] = [];
    const consumer = store.consumer(name, { query: Query.all(), handle: async (event) => void handled.push(event.position) });
    const controller = new AbortController();
    const running = consumer.run({ signal: controller.signal });
    const head = await store.head();
    while (handled.length === 0 || handled[handled.length - 1]! < head) await new Promise((resolve) => setTimeout(resolve, 20));
    const listed = await call(url, 'GET', '/v1/consumers');
    assert.equal(listed.status, 200);
    const status = listed.body.consumers.find((entry: { name: string }) => entry.name === name);
    assert.equal(status.state, 'running');
    assert.equal(typeof status.lag, 'string');
    const busy = await call(url, 'POST', `/v1/consumers/${name}/reset`);
    assert.equal(busy.status, 409, busy.text);
    assert.equal(busy.body.error.code, 'CONSUMER_RUNNING');
    controller.abort();
    await running;
    const reset = await call(url, 'POST', `/v1/consumers/${name}/reset`, { body: { position: '1' } });
    assert.equal(reset.status, 200, reset.text);
    assert.deepEqual(reset.body, { name, position: '1' });
    const after = (await call(url, 'GET', '/v1/consumers')).body.consumers.find((entry: { name: string }) => entry.name === name);
    assert.equal(after.position, '1');
    const beyond = await call(url, 'POST', `/v1/consumers/${name}/reset`, { body: { position: '999999999' } });
    assert.equal(beyond.status, 400, beyond.text);
    const unknown = await call(url, 'POST', '/v1/consumers/no_such_consumer/reset');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'UNKNOWN_CONSUMER');
    const stats = await call(url, 'GET', '/v1/stats');
    assert.equal(stats.status, 200);
    assert.equal(stats.body.schema, schema);
    assert.equal(stats.body.head, (await store.head()).toString());
    assert.ok(Array.isArray(stats.body.types));
  });

  test('/openapi.json is an OpenAPI 3 document of every route, with the status table', async () => {
    const answer = await call(url, 'GET', '/openapi.json');
    assert.equal(answer.status, 200);
    const document = answer.body;
    assert.match(document.openapi, /^3\./);
    for (const [path, method] of [
      ['/v1/append', 'post'], ['/v1/read', 'post'], ['/v1/events', 'get'], ['/v1/head', 'get'], ['/v1/subscribe', 'get'], ['/v1/consumers', 'get'],
      ['/v1/consumers/{name}/reset', 'post'], ['/v1/stats', 'get'], ['/health', 'get'], ['/ready', 'get'], ['/read', 'get'], ['/append', 'post'],
    ] as const) {
      assert.ok(document.paths[path]?.[method], `${method} ${path}`);
    }
    assert.ok(document.paths['/v1/append'].post.responses['409']);
    assert.ok(document.paths['/v1/append'].post.responses['504']);
    assert.deepEqual(document.paths['/v1/append'].post.requestBody.content['application/json'].schema.required, ['events']);
    assert.match(document.info.description, /APPEND_OUTCOME_UNKNOWN/);
  });
});

describe('auth', () => {
  test('without a token the server refuses a non-loopback host unless insecure', async () => {
    const server = createServer({ store });
    await assert.rejects(server.listen({ port: 0, host: '0.0.0.0' }), (error: Error & { path?: string }) => error.path === 'host');
    assert.throws(() => createServer({ store, readToken: 'r' }), /readToken/);
    const insecure = createServer({ store, insecure: true });
    servers.push(insecure);
    await insecure.listen({ port: 0, host: '0.0.0.0' });
  });

  test('with tokens: every route but /health needs one; the read token reads and subscribes, but cannot append or reset', async () => {
    const url = await serve({ token: 'write-secret', readToken: 'read-secret' });
    const head = await store.head();
    assert.equal((await call(url, 'GET', '/health')).status, 200);
    for (const [method, path] of [['GET', '/v1/head'], ['GET', '/openapi.json'], ['GET', '/ready'], ['GET', '/v1/nothing'], ['GET', '/read?query=%7B%22items%22%3A%5B%5D%7D']]) {
      const none = await call(url, method!, path!);
      assert.equal(none.status, 401, `${path} without a token`);
      assert.equal(none.body.error.code, 'UNAUTHORIZED');
      assert.equal(none.headers.get('www-authenticate')?.startsWith('Bearer'), true);
      assert.equal((await call(url, method!, path!, { token: 'wrong' })).status, 401, `${path} with a wrong token`);
      assert.equal((await call(url, method!, path!, { token: 'write-secret-and-more' })).status, 401);
    }
    assert.equal((await call(url, 'GET', '/v1/head', { token: 'read-secret' })).status, 200);
    assert.equal((await call(url, 'GET', '/v1/head', { headers: { authorization: 'Basic d3JpdGUtc2VjcmV0' } })).status, 401);
    const forbidden = await call(url, 'POST', '/v1/append', { token: 'read-secret', body: appendBody('A') });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.error.code, 'FORBIDDEN');
    assert.equal((await call(url, 'POST', '/append', { token: 'read-secret', body: appendBody('A') })).status, 403);
    assert.equal((await call(url, 'POST', '/v1/consumers/x/reset', { token: 'read-secret' })).status, 403);
    assert.equal((await call(url, 'POST', '/v1/append', { body: appendBody('A') })).status, 401);
    assert.equal(await store.head(), head, 'nothing written by refused requests');
    assert.equal((await call(url, 'POST', '/v1/append', { token: 'write-secret', body: appendBody('A') })).status, 200);
    const document = (await call(url, 'GET', '/openapi.json', { token: 'read-secret' })).body;
    assert.ok(document.components.securitySchemes.bearer);
  });
  test('extend adds routes (the hook for the web browser at /): read access unless declared public', async () => {
    const server = createServer({
      store,
      token: 'w',
      extend: (app) => {
        app.get('/', { config: { access: 'public' } }, async (_request, reply) => reply.type('text/html').send('<h1>events</h1>'));
        app.get('/ui/private', async () => ({ ok: true }));
      },
    });
    servers.push(server);
    const url = await server.listen({ port: 0 });
    assert.equal(server.address?.host, '127.0.0.1');
    const page = await call(url, 'GET', '/');
    assert.equal(page.status, 200);
    assert.equal(page.text, '<h1>events</h1>');
    assert.equal((await call(url, 'GET', '/ui/private')).status, 401);
    assert.equal((await call(url, 'GET', '/ui/private', { token: 'w' })).status, 200);
  });
});

describe('limits', () => {
  test('an oversized body is 413 and nothing is written', async () => {
    const url = await serve({ bodyLimit: 2_000 });
    const head = await store.head();
    const answer = await call(url, 'POST', '/v1/append', { body: appendBody('Big', [], 'x'.repeat(5_000)) });
    assert.equal(answer.status, 413, answer.text);
    assert.equal(answer.body.error.code, 'BODY_TOO_LARGE');
    const dcb = await call(url, 'POST', '/append', { body: appendBody('Big', [], 'x'.repeat(5_000)) });
    assert.equal(dcb.status, 413);
    assert.equal(await store.head(), head);
    assert.equal((await call(url, 'POST', '/v1/append', { body: appendBody('Small') })).status, 200);
  });

  test('too many events, query items, types or tags: 400 naming the list', async () => {
    const url = await serve({ maxEventsPerAppend: 2, maxQueryItems: 2, maxTypesPerItem: 2, maxTagsPerItem: 2 });
    const head = await store.head();
    const events = await call(url, 'POST', '/v1/append', { body: { events: [1, 2, 3].map((n) => ({ type: 'A', data: n })) } });
    assert.equal(events.status, 400);
    assert.equal(events.body.error.path, 'events');
    const item = { types: ['A'] };
    const items = await call(url, 'POST', '/v1/read', { body: { query: { items: [item, item, item] } } });
    assert.equal(items.body.error.path, 'query.items');
    const types = await call(url, 'POST', '/v1/read', { body: { query: { items: [{ types: ['A', 'B', 'C'] }] } } });
    assert.equal(types.body.error.path, 'query.items[0].types');
    const tags = await call(url, 'POST', '/v1/append', { body: { events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [{ tags: ['a', 'b', 'c'] }] } } } });
    assert.equal(tags.body.error.path, 'condition.failIfEventsMatch.items[0].tags');
    assert.equal((await call(url, 'GET', '/v1/events?tags=a,b,c')).status, 400);
    const subscribe = await call(url, 'GET', `/v1/subscribe?query=${encodeURIComponent(JSON.stringify({ items: [item, item, item] }))}`);
    assert.equal(subscribe.status, 400);
    const dcb = await call(url, 'GET', `/read?query=${encodeURIComponent(JSON.stringify({ items: [item, item, item] }))}`);
    assert.equal(dcb.status, 400);
    assert.equal(await store.head(), head);
  });

  test('a client that sends its headers too slowly is cut off', async () => {
    const url = new URL(await serve({ headersTimeoutMs: 500 }));
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n');
    // One header line every 100 ms, for up to 20 s: far past the 500 ms the server allows.
    let sent = 0;
    let cut = false;
    void closed.then(() => (cut = true));
    while (!cut && sent < 200) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (!cut && !socket.destroyed) socket.write(`X-Slow-${sent}: ${sent}\r\n`);
      sent += 1;
    }
    assert.ok(cut, 'the server kept a slow-header connection open');
    assert.ok(sent < 200);
    assert.doesNotMatch(received, /200 OK/);
  });

  test('overload is 503 with Retry-After; an unknown append outcome is 504 with the ids to retry with', async () => {
    const tight = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false, appendTimeoutMs: 600, maxQueuedAppends: 1 });
    try {
      const url = await serve({}, tight);
      const release = await holdAppendLock(schema);
      let answers;
      const ids = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
      try {
        answers = await Promise.all(ids.map((id) => call(url, 'POST', '/v1/append', { body: { events: [{ type: 'Held', data: 1, id }] } })));
      } finally {
        await release();
      }
      const byCode = new Map(answers.map((answer) => [answer.body.error?.code as string, answer]));
      const unknown = byCode.get('APPEND_OUTCOME_UNKNOWN');
      assert.ok(unknown, answers.map((answer) => answer.text).join('\n'));
      assert.equal(unknown.status, 504);
      assert.equal(unknown.body.error.ids.length, 1);
      assert.ok(ids.includes(unknown.body.error.ids[0]));
      const overloaded = byCode.get('OVERLOADED');
      assert.ok(overloaded);
      assert.equal(overloaded.status, 503);
      assert.equal(overloaded.headers.get('retry-after'), '1');
      const timedOut = byCode.get('TIMEOUT');
      if (timedOut) assert.equal(timedOut.status, 503);
      // Repeating the unknown append with its id settles it: written once, whatever happened.
      const retried = await call(url, 'POST', '/v1/append', { body: { events: [{ type: 'Held', data: 1, id: unknown.body.error.ids[0] }] } });
      assert.equal(retried.status, 200, retried.text);
    } finally {
      await tight.close();
    }
  });

  test('an unexpected failure is 500 without its message or stack', async () => {
    const broken = new InMemoryEventStore();
    broken.head = async () => {
      throw new Error('secret detail at /srv/app/index.js:12');
    };
    const logged: string[] = [];
    const record = (fields: Record<string, unknown>, message: string) => void logged.push(`${message}: ${(fields.err as Error | undefined)?.message}`);
    const url = await serve({ logger: { debug: record, info: record, warn: record, error: record } }, broken);
    const answer = await call(url, 'GET', '/v1/head');
    assert.equal(answer.status, 500);
    assert.deepEqual(Object.keys(answer.body.error).sort(), ['code', 'message']);
    assert.equal(answer.body.error.code, 'INTERNAL_ERROR');
    assert.doesNotMatch(answer.text, /secret|index\.js|\bat\b/);
    assert.deepEqual(logged, ['HTTP request failed: secret detail at /srv/app/index.js:12'], 'the details go to the log instead');
    const ready = await call(url, 'GET', '/ready');
    assert.equal(ready.status, 503);
    assert.equal((await call(url, 'GET', '/v1/stats')).status, 501);
  });
});

describe('the dcb.events shape', () => {
  let url: string;
  before(async () => {
    url = await serve();
  });
  const read = (query: unknown, options?: unknown) =>
    call(url, 'GET', `/read?query=${encodeURIComponent(JSON.stringify(query))}${options === undefined ? '' : `&options=${encodeURIComponent(JSON.stringify(options))}`}`);

  test('POST /append answers 200 with durationInMicroseconds and appendConditionFailed; GET /read returns { type, tags, data, position } with data as given', async () => {
    const tag = `d${randomUUID().slice(0, 8)}`;
    const query = { items: [{ types: ['DcbEvent'], tags: [tag] }] };
    const data = '{"batchIndex":0,"weird": "spacing" }';
    const first = await call(url, 'POST', '/append', { body: { events: [{ type: 'DcbEvent', tags: [tag], data }], condition: { failIfEventsMatch: query, after: 0 } } });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.appendConditionFailed, false);
    assert.equal(typeof first.body.durationInMicroseconds, 'number');
    const second = await call(url, 'POST', '/append', { body: { events: [{ type: 'DcbEvent', tags: [tag], data: '{}' }], condition: { failIfEventsMatch: query, after: 0 } } });
    assert.equal(second.status, 200);
    assert.equal(second.body.appendConditionFailed, true);
    const noCondition = await call(url, 'POST', '/append', { body: { events: [{ type: 'DcbEvent', tags: [tag], data: '{"n":2}' }] } });
    assert.equal(noCondition.body.appendConditionFailed, false);

    const events = await read(query);
    assert.equal(events.status, 200);
    assert.equal(events.body.length, 2);
    const [event, later] = events.body;
    assert.deepEqual(Object.keys(event).sort(), ['data', 'position', 'tags', 'type']);
    assert.equal(event.data, data);
    assert.equal(typeof event.position, 'number');
    assert.ok(later.position > event.position);
    const last = await read(query, { backwards: true, limit: 1 });
    assert.deepEqual(last.body, [later]);
    const from = await read(query, { from: later.position });
    assert.deepEqual(from.body, [later]);
    const atOrBefore = await read(query, { from: later.position - 1, backwards: true });
    assert.deepEqual(atOrBefore.body, [event]);
    const atFrom = await read(query, { from: later.position, backwards: true, limit: 1 });
    assert.deepEqual(atFrom.body, [later], 'backwards from is inclusive, and limit counts from it downwards');
    const beyond = await read(query, { from: Number.MAX_SAFE_INTEGER, backwards: true, limit: 2 });
    assert.deepEqual(beyond.body, [later, event]);
    assert.deepEqual((await read(query, { from: 0, backwards: true })).body, []);
    // Empty lists constrain nothing: an item of neither types nor tags matches every event.
    const everything = await read({ items: [{ types: [], tags: [] }] }, { backwards: true, limit: 1 });
    assert.equal(everything.body[0].position, Number(await store.head()));
    const byTagOnly = await read({ items: [{ types: [], tags: [tag] }] });
    assert.equal(byTagOnly.body.length, 2);
    const unique = await call(url, 'POST', '/append', { body: { events: [{ type: 'DcbEvent', tags: [tag], data: '{}' }], condition: { failIfEventsMatch: query } } });
    assert.equal(unique.body.appendConditionFailed, true);
  });

  test('bad dcb input is 400', async () => {
    assert.equal((await call(url, 'GET', '/read')).status, 400);
    assert.equal((await call(url, 'GET', '/read?query=%7B')).status, 400);
    assert.equal((await read({ items: [] }, { from: -1 })).status, 400);
    assert.equal((await call(url, 'POST', '/append', { body: { events: [{ tags: [] }] } })).status, 400);
  });
});
