// GET /v1/subscribe (Server-Sent Events) against a real PostgreSQL: a client that disconnects
// and resumes with Last-Event-ID while writers append sees every event once, in order;
// heartbeats while idle; the subscription cap; a client that goes away frees its subscription.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { EventStore } from '../../src/index.ts';
import { createServer, type HttpServer, type HttpServerOptions } from '../../src/http/index.ts';
import { createTestStore } from '../helpers.ts';
import { call, openSse, type SseMessage } from './fixtures/http-client.ts';

let store: EventStore;
let dispose: () => Promise<void>;
const servers: HttpServer[] = [];

before(async () => {
  ({ store, dispose } = await createTestStore());
});
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await dispose();
});

async function serve(options: Partial<HttpServerOptions> = {}): Promise<string> {
  const server = createServer({ store, subscriptionPollIntervalMs: 200, ...options });
  servers.push(server);
  return server.listen({ port: 0 });
}

async function next(messages: AsyncGenerator<SseMessage, void, undefined>): Promise<SseMessage> {
  const result = await messages.next();
  assert.ok(!result.done, 'the stream ended');
  return result.value;
}

test('a client that disconnects and resumes with Last-Event-ID while writers append sees every event once, in order', async () => {
  const url = await serve();
  const start = await store.head();
  const writers = 4;
  const perWriter = 60;
  const writing = Promise.all(
    Array.from({ length: writers }, async (_, writer) => {
      for (let n = 0; n < perWriter; n += 1) {
        const answer = await call(url, 'POST', '/v1/append', { body: { events: [{ type: 'Tick', tags: [`writer:${writer}`], data: { writer, n } }] } });
        assert.equal(answer.status, 200, answer.text);
      }
    }),
  );
  const seen: bigint[] = [];
  let lastEventId: string | undefined = start.toString();
  let reconnects = 0;
  const total = writers * perWriter;
  while (seen.length < total) {
    const stream = await openSse(url, '/v1/subscribe', lastEventId === undefined ? {} : { lastEventId });
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
    // Take a few events, then drop the connection mid-stream, as a flaky network would.
    const take = 7 + (reconnects % 5) * 9;
    for (let taken = 0; taken < take && seen.length < total; taken += 1) {
      const message = await next(stream.messages);
      const event = JSON.parse(message.data) as { position: string; type: string };
      assert.equal(message.id, event.position);
      assert.equal(event.type, 'Tick');
      seen.push(BigInt(event.position));
      lastEventId = message.id;
    }
    stream.close();
    reconnects += 1;
  }
  await writing;
  assert.ok(reconnects >= 5, `only ${reconnects} reconnects`);
  const expected = Array.from({ length: total }, (_, index) => start + BigInt(index + 1));
  assert.deepEqual(seen, expected, 'every event once, in order');
});

test('?after and a query select the events; heartbeats flow while idle; Last-Event-ID must be a position', async () => {
  const url = await serve({ heartbeatMs: 50 });
  await store.append([{ type: 'Red', data: 1 }, { type: 'Blue', data: 2 }, { type: 'Red', data: 3 }]);
  const head = await store.head();
  const query = encodeURIComponent(JSON.stringify({ items: [{ types: ['Red'] }] }));
  const stream = await openSse(url, `/v1/subscribe?query=${query}&after=${head - 3n}`);
  const first = JSON.parse((await next(stream.messages)).data);
  const second = JSON.parse((await next(stream.messages)).data);
  assert.deepEqual([first.data, second.data], [1, 3]);
  const live = store.append({ type: 'Red', data: 4 });
  assert.equal(JSON.parse((await next(stream.messages)).data).data, 4);
  await live;
  while (!stream.comments.includes('heartbeat')) await new Promise((resolve) => setTimeout(resolve, 20));
  stream.close();
  const bad = await call(url, 'GET', '/v1/subscribe', { headers: { 'last-event-id': 'abc' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.path, 'last-event-id');
  const badQuery = await call(url, 'GET', `/v1/subscribe?query=${encodeURIComponent('{"items":[{"types":[]}]}')}`);
  assert.equal(badQuery.status, 400);
});

test('the subscription cap: one more is 503; a client that goes away frees its place', async () => {
  const url = await serve({ maxSubscriptions: 2 });
  const one = await openSse(url, '/v1/subscribe');
  const two = await openSse(url, '/v1/subscribe');
  assert.equal(two.status, 200);
  const refused = await call(url, 'GET', '/v1/subscribe');
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'TOO_MANY_SUBSCRIPTIONS');
  assert.equal(refused.headers.get('retry-after'), '1');
  // HEAD would hold a place without streaming anything: there is no HEAD route for the stream.
  assert.equal((await call(url, 'HEAD', '/v1/subscribe')).status, 404);
  one.close();
  two.close();
  // The server notices the disconnects and ends both subscriptions: both places come back.
  for (let attempt = 0; ; attempt += 1) {
    const three = await openSse(url, '/v1/subscribe');
    const four = three.status === 200 ? await openSse(url, '/v1/subscribe') : undefined;
    const ok = three.status === 200 && four?.status === 200;
    three.close();
    four?.close();
    if (ok) break;
    assert.ok(attempt < 100, 'the subscriptions of clients that went away were never freed');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

test('a subscription outlives the request and idle timeouts: heartbeats keep it open, and it still delivers', async () => {
  const url = await serve({ requestTimeoutMs: 300, headersTimeoutMs: 200, idleTimeoutMs: 400, heartbeatMs: 100 });
  const stream = await openSse(url, '/v1/subscribe', { lastEventId: (await store.head()).toString() });
  assert.equal(stream.status, 200);
  // Five times the request timeout and three times the idle timeout.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const appended = await store.append({ type: 'Late', data: 'still here' });
  const message = await next(stream.messages);
  assert.equal(message.id, appended.position.toString());
  assert.ok(stream.comments.filter((comment) => comment === 'heartbeat').length >= 3);
  stream.close();
});

test('with tokens the stream needs one (the read token is enough); close() ends open streams', async () => {
  const server = createServer({ store, token: 'w', readToken: 'r' });
  const url = await server.listen({ port: 0 });
  assert.equal((await call(url, 'GET', '/v1/subscribe')).status, 401);
  const stream = await openSse(url, '/v1/subscribe', { token: 'r', lastEventId: (await store.head()).toString() });
  assert.equal(stream.status, 200);
  await server.close();
  // The stream ends (rather than hanging) once the server closes.
  for (;;) if ((await stream.messages.next()).done) break;
});
