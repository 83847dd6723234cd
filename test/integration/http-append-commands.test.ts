// POST /v1/append-commands (createServer on port 0) against a real PostgreSQL: all or nothing,
// the failing command named, bad input refused with a path and nothing written, tokens, and the
// route in the OpenAPI document.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type EventStore } from '../../src/index.ts';
import { createServer, type HttpServer } from '../../src/http/index.ts';
import { createTestStore } from '../helpers.ts';
import { call } from './fixtures/http-client.ts';

let store: EventStore;
let dispose: () => Promise<void>;
const servers: HttpServer[] = [];
let url: string;

before(async () => {
  ({ store, dispose } = await createTestStore());
  const server = createServer({ store, maxEventsPerAppend: 5 });
  servers.push(server);
  url = await server.listen({ port: 0 });
});
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await dispose();
});

const register = (meter: string) => ({
  events: [{ type: 'MeterRegistered', tags: [`meter:${meter}`], data: { meter } }],
  condition: { failIfEventsMatch: { items: [{ types: ['MeterRegistered'], tags: [`meter:${meter}`] }] } },
});

describe('POST /v1/append-commands', () => {
  test('all commands written: positions of each command\'s last event as decimal strings', async () => {
    const prefix = randomUUID().slice(0, 8);
    const head = BigInt(await store.head());
    const answer = await call(url, 'POST', '/v1/append-commands', { body: { commands: [register(`${prefix}-1`), { events: [{ type: 'A', data: 1 }, { type: 'B', data: 2 }] }, register(`${prefix}-2`)] } });
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(answer.body, { positions: [head + 1n, head + 3n, head + 4n].map(String), position: String(head + 4n) });
  });

  test('a failed condition is 409 with commandIndex and conflictingPosition; one with an earlier command of the request with conflictingCommandIndex; nothing written', async () => {
    const prefix = randomUUID().slice(0, 8);
    const { position } = await store.append(register(`${prefix}-taken`).events);
    const head = await store.head();
    const stored = await call(url, 'POST', '/v1/append-commands', { body: { commands: [register(`${prefix}-free`), register(`${prefix}-taken`)] } });
    assert.equal(stored.status, 409, stored.text);
    assert.equal(stored.body.error.code, 'APPEND_CONDITION_FAILED');
    assert.equal(stored.body.error.commandIndex, 1);
    assert.equal(stored.body.error.conflictingPosition, position.toString());
    const within = await call(url, 'POST', '/v1/append-commands', { body: { commands: [register(`${prefix}-x`), register(`${prefix}-x`)] } });
    assert.equal(within.status, 409, within.text);
    assert.equal(within.body.error.commandIndex, 1);
    assert.equal(within.body.error.conflictingCommandIndex, 0);
    assert.equal(within.body.error.conflictingPosition, null);
    assert.equal(await store.head(), head, 'nothing was written');
  });

  test('a repeat with the same ids returns the original positions; a clash names its command', async () => {
    const commands = [0, 1].map((n) => ({ events: [{ id: randomUUID(), type: 'Once', data: n }] }));
    const first = await call(url, 'POST', '/v1/append-commands', { body: { commands } });
    assert.equal(first.status, 200, first.text);
    const again = await call(url, 'POST', '/v1/append-commands', { body: { commands } });
    assert.deepEqual(again.body, first.body);
    const clash = await call(url, 'POST', '/v1/append-commands', { body: { commands: [{ events: [{ type: 'New', data: 0 }] }, { events: [{ ...commands[1]!.events[0], data: 'other' }] }] } });
    assert.equal(clash.status, 409, clash.text);
    assert.equal(clash.body.error.code, 'DUPLICATE_EVENT_ID');
    assert.equal(clash.body.error.commandIndex, 1);
  });

  test('bad input: 400 with the path, nothing written', async () => {
    const head = await store.head();
    const id = randomUUID();
    const cases: Array<[unknown, string]> = [
      [{}, 'commands'],
      [{ commands: [] }, 'commands'],
      [{ commands: {} }, 'commands'],
      [{ commands: [register('a'), { events: [] }] }, 'commands[1].events'],
      [{ commands: [register('a'), { events: [{ type: '', data: 1 }] }] }, 'commands[1].events[0].type'],
      [{ commands: [{ events: [{ type: 'A', data: 1 }], colour: 'red' }] }, 'commands[0].colour'],
      [{ commands: [{ events: [{ type: 'A', data: 1 }], condition: { failIfEventsMatch: { items: [] }, after: '-1' } }] }, 'commands[0].condition.after'],
      [{ commands: [{ events: [{ id, type: 'A', data: 1 }] }, { events: [{ id, type: 'B', data: 1 }] }] }, 'commands[1].events[0].id'],
      // More events in all than the server's limit (5 here), though each command is within it.
      [{ commands: [{ events: [1, 2, 3].map((n) => ({ type: 'A', data: n })) }, { events: [1, 2, 3].map((n) => ({ type: 'A', data: n })) }] }, 'commands'],
    ];
    for (const [body, path] of cases) {
      const answer = await call(url, 'POST', '/v1/append-commands', { body });
      assert.equal(answer.status, 400, `${JSON.stringify(body)}: ${answer.text}`);
      assert.equal(answer.body.error.code, 'INVALID_INPUT');
      assert.equal(answer.body.error.path, path, `${JSON.stringify(body)}: ${answer.text}`);
    }
    assert.equal(await store.head(), head);
  });

  test('with tokens: the write token appends, the read token is 403, none is 401', async () => {
    const server = createServer({ store, token: 'write-secret', readToken: 'read-secret' });
    servers.push(server);
    const guarded = await server.listen({ port: 0 });
    const body = { commands: [{ events: [{ type: 'Guarded', data: 1 }] }] };
    assert.equal((await call(guarded, 'POST', '/v1/append-commands', { body })).status, 401);
    assert.equal((await call(guarded, 'POST', '/v1/append-commands', { body, headers: { authorization: 'Bearer read-secret' } })).status, 403);
    assert.equal((await call(guarded, 'POST', '/v1/append-commands', { body, headers: { authorization: 'Bearer write-secret' } })).status, 200);
  });

  test('the OpenAPI document describes the route, its body and its 409', async () => {
    const document = (await call(url, 'GET', '/openapi.json')).body;
    const operation = document.paths['/v1/append-commands'].post;
    assert.equal(operation.operationId, 'appendCommands');
    assert.deepEqual(operation.requestBody.content['application/json'].schema.required, ['commands']);
    assert.ok(operation.responses['409']);
    assert.ok(operation.responses['504']);
    assert.deepEqual(operation.responses['200'].content['application/json'].schema.required, ['positions', 'position']);
  });
});
