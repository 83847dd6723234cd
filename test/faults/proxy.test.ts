// The fault proxy does what the fault suite relies on: real sockets through it, each fault
// observable from both ends; statement triggers against a real PostgreSQL (DATABASE_URL).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { FaultProxy } from './proxy.ts';

/** Every socket a test opened, destroyed at the end (half-open sockets keep the process alive). */
const sockets = new Set<Socket>();

/** A TCP server that records what each connection received and how it ended. */
interface Peer {
  socket: Socket;
  received: Buffer[];
  ended: 'fin' | 'rst' | undefined;
}

async function startServer(): Promise<{ server: Server; port: number; peers: Peer[]; nextPeer: () => Promise<Peer> }> {
  const peers: Peer[] = [];
  const waiting: ((peer: Peer) => void)[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    const peer: Peer = { socket, received: [], ended: undefined };
    socket.on('data', (chunk: Buffer) => peer.received.push(chunk));
    socket.on('end', () => (peer.ended ??= 'fin'));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET') peer.ended = 'rst';
    });
    peers.push(peer);
    waiting.shift()?.(peer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const nextPeer = (): Promise<Peer> => new Promise((resolve) => waiting.push(resolve));
  return { server, port, peers, nextPeer };
}

interface Client {
  socket: Socket;
  received: Buffer[];
  ended: 'fin' | 'rst' | undefined;
}

async function dial(port: number): Promise<Client> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  sockets.add(socket);
  const client: Client = { socket, received: [], ended: undefined };
  socket.on('data', (chunk: Buffer) => client.received.push(chunk));
  socket.on('end', () => (client.ended ??= 'fin'));
  socket.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'ECONNRESET') client.ended = 'rst';
  });
  await once(socket, 'connect');
  return client;
}

const text = (chunks: Buffer[]): string => Buffer.concat(chunks).toString();

async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('FaultProxy (raw sockets)', () => {
  let target: Awaited<ReturnType<typeof startServer>>;
  let proxy: FaultProxy;

  before(async () => {
    target = await startServer();
    proxy = await FaultProxy.start({ targetPort: target.port });
  });
  after(async () => {
    await proxy.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => target.server.close(resolve));
  });

  async function pair(): Promise<{ client: Client; peer: Peer }> {
    const peering = target.nextPeer();
    const client = await dial(proxy.port);
    return { client, peer: await peering };
  }

  test('forwards bytes both ways unchanged', async () => {
    const { client, peer } = await pair();
    client.socket.write('hello');
    await until(() => text(peer.received) === 'hello', 'bytes to the server');
    peer.socket.write('world');
    await until(() => text(client.received) === 'world', 'bytes to the client');
    client.socket.end();
    await until(() => peer.ended === 'fin', 'FIN at the server');
    peer.socket.end();
    await until(() => client.ended === 'fin', 'FIN at the client');
  });

  test('cut resets both sides', async () => {
    const { client, peer } = await pair();
    const [connection] = proxy.connections().slice(-1);
    connection!.cut();
    await until(() => client.ended === 'rst' && peer.ended === 'rst', 'RST on both sides');
  });

  test('close sends FIN to both sides, no reset', async () => {
    const { client, peer } = await pair();
    proxy.connections().at(-1)!.close();
    await until(() => client.ended === 'fin' && peer.ended === 'fin', 'FIN on both sides');
  });

  test('a one-sided cut resets that side; the other hears nothing until heal, then is reset', async () => {
    const { client, peer } = await pair();
    const connection = proxy.connections().at(-1)!;
    connection.cut('server');
    await until(() => peer.ended === 'rst', 'RST at the server');
    await sleep(100);
    assert.equal(client.ended, undefined, 'the client heard nothing');
    connection.heal();
    await until(() => client.ended === 'rst', 'RST at the client after heal');
  });

  test('stall holds bytes (no FIN, no RST) and delivers them on heal', async () => {
    const { client, peer } = await pair();
    const connection = proxy.connections().at(-1)!;
    connection.stall();
    client.socket.write('ping');
    peer.socket.write('pong');
    client.socket.end();
    await sleep(200);
    assert.deepEqual([text(peer.received), peer.ended, text(client.received), client.ended], ['', undefined, '', undefined]);
    assert.deepEqual(connection.held, { 'to-server': 4, 'to-client': 4 });
    connection.heal();
    await until(() => text(peer.received) === 'ping' && peer.ended === 'fin' && text(client.received) === 'pong', 'held bytes and the FIN');
  });

  test('stall in one direction only', async () => {
    const { client, peer } = await pair();
    const connection = proxy.connections().at(-1)!;
    connection.stall('to-client');
    client.socket.write('up');
    peer.socket.write('down');
    await until(() => text(peer.received) === 'up', 'bytes to the server');
    await sleep(100);
    assert.equal(text(client.received), '');
    connection.heal();
    await until(() => text(client.received) === 'down', 'bytes to the client');
  });

  test('delay and throttle', async () => {
    const { client, peer } = await pair();
    const connection = proxy.connections().at(-1)!;
    connection.apply({ kind: 'delay', ms: 150, direction: 'to-server' });
    const sent = Date.now();
    client.socket.write('late');
    await until(() => text(peer.received) === 'late', 'the delayed bytes');
    assert.ok(Date.now() - sent >= 140, `delivered after ${Date.now() - sent} ms`);

    connection.heal();
    connection.apply({ kind: 'throttle', bytesPerSecond: 20_000, direction: 'to-client' });
    const started = Date.now();
    peer.socket.write(Buffer.alloc(10_000, 1));
    await until(() => Buffer.concat(client.received).length === 10_000, 'the throttled bytes', 5000);
    // 10 kB at 20 kB/s: about half a second (a tenth of a second of burst allowed).
    assert.ok(Date.now() - started >= 350, `10 kB took ${Date.now() - started} ms`);
  });

  test('refuse resets new connections and leaves open ones alone', async () => {
    const { client, peer } = await pair();
    proxy.refuse();
    // The reset may come before or after the client saw its connect complete.
    const refused = await dial(proxy.port).catch((error: NodeJS.ErrnoException) => String(error.code));
    if (typeof refused === 'string') assert.equal(refused, 'ECONNRESET');
    else await until(() => refused.ended === 'rst', 'the refused connection reset');
    client.socket.write('still');
    await until(() => text(peer.received) === 'still', 'the open connection still works');
    proxy.refuse(false);
    const { client: later, peer: laterPeer } = await pair();
    later.socket.write('again');
    await until(() => text(laterPeer.received) === 'again', 'a new connection after refusing ended');
  });

  test('faultNew applies to the next N connections only; faultAll to the open ones', async () => {
    proxy.faultNew(1, { kind: 'stall' });
    const { client: stalled, peer: stalledPeer } = await pair();
    const { client: normal, peer: normalPeer } = await pair();
    stalled.socket.write('a');
    normal.socket.write('b');
    await until(() => text(normalPeer.received) === 'b', 'the unfaulted connection');
    await sleep(100);
    assert.equal(text(stalledPeer.received), '');
    const count = proxy.faultAll({ kind: 'cut' });
    assert.ok(count >= 2);
    await until(() => stalled.ended === 'rst' && normal.ended === 'rst', 'every open connection reset');
    proxy.heal();
  });

  test('a trigger fires on the chunk that matches, before or after delivering it', async () => {
    const { client, peer } = await pair();
    const armed = proxy.arm({ direction: 'to-server', match: (chunk) => chunk.bytes.includes('boom'), action: { kind: 'cut' }, deliver: false });
    client.socket.write('fine');
    await until(() => text(peer.received) === 'fine', 'bytes before the trigger');
    client.socket.write('boom');
    const connection = await armed.fired;
    assert.equal(armed.count, 1);
    await until(() => client.ended === 'rst' && peer.ended === 'rst', 'the cut');
    assert.equal(text(peer.received), 'fine', 'the matching chunk was not delivered');
    assert.ok(connection.faulted);

    const second = await pair();
    proxy.arm({ direction: 'to-server', match: (chunk) => chunk.bytes.includes('boom'), action: { kind: 'cut' }, deliver: true });
    second.client.socket.write('boom');
    await until(() => text(second.peer.received) === 'boom', 'the matching chunk at the server');
    second.peer.socket.write('reply');
    await until(() => second.client.ended === 'rst' && second.peer.ended === 'rst', 'the cut after delivery');
    assert.equal(text(second.peer.received), 'boom', 'the matching chunk was delivered first');
    assert.equal(text(second.client.received), '', 'no reply got through');
  });
});

describe('FaultProxy (PostgreSQL)', () => {
  const url = process.env.DATABASE_URL;
  let proxy: FaultProxy;
  let direct: pg.Client;
  const table = `proxy_test_${process.pid}`;

  before(async () => {
    assert.ok(url, 'DATABASE_URL is set by scripts/run-tests.ts');
    const parsed = new URL(url);
    proxy = await FaultProxy.start({ targetPort: Number(parsed.port || 5432) });
    direct = new pg.Client({ connectionString: url });
    await direct.connect();
    await direct.query(`CREATE TABLE ${table} (n int PRIMARY KEY)`);
  });
  after(async () => {
    await direct.query(`DROP TABLE IF EXISTS ${table}`);
    await direct.end();
    await proxy.close();
  });

  async function client(name: string): Promise<pg.Client> {
    const connection = new pg.Client({ connectionString: proxy.connectionString(url!, { application_name: name }) });
    connection.on('error', () => undefined);
    await connection.connect();
    return connection;
  }

  const stored = async (n: number): Promise<boolean> => (await direct.query(`SELECT 1 FROM ${table} WHERE n = $1`, [n])).rowCount === 1;

  test('knows whose connection it is and which statement is in flight', async () => {
    const session = await client('proxy-test-a');
    const connection = proxy.connections((candidate) => candidate.applicationName === 'proxy-test-a')[0];
    assert.ok(connection);
    assert.equal(connection.kind, 'session');
    const running = session.query({ name: 'sleepy', text: 'SELECT pg_sleep(0.2)' });
    await until(() => connection.pendingStatements.length === 1, 'the statement in flight');
    assert.equal(connection.pendingStatements[0], 'SELECT pg_sleep(0.2)');
    await running;
    assert.equal(connection.awaitingReply, false);
    // A second run of the prepared statement sends only Bind; the proxy still knows its text.
    const seen: string[] = [];
    proxy.arm({ direction: 'to-server', match: (chunk) => (seen.push(...chunk.statements), false), action: { kind: 'cut' }, deliver: false }).disarm();
    const armed = proxy.arm({ direction: 'to-server', match: (chunk) => chunk.statements.some((sql) => sql.includes('pg_sleep')), action: { kind: 'delay', ms: 1 }, deliver: true });
    await session.query({ name: 'sleepy', text: 'SELECT pg_sleep(0.2)' });
    assert.equal((await armed.fired).id, connection.id);
    await session.end();
  });

  test('cut before delivery: the statement never ran', async () => {
    const session = await client('proxy-test-b');
    proxy.arm({ direction: 'to-server', match: (chunk) => chunk.statements.some((sql) => sql.includes('INSERT')), action: { kind: 'cut' }, deliver: false });
    await assert.rejects(session.query(`INSERT INTO ${table} VALUES (1)`));
    assert.equal(await stored(1), false);
  });

  test('cut after delivery, and cut of the reply: the statement committed, the client got an error', async () => {
    const first = await client('proxy-test-c');
    proxy.arm({ direction: 'to-server', match: (chunk) => chunk.statements.some((sql) => sql.includes('INSERT')), action: { kind: 'cut' }, deliver: true });
    await assert.rejects(first.query(`INSERT INTO ${table} VALUES (2)`));
    await until(() => false, 'nothing', 200).catch(() => undefined);
    assert.equal(await stored(2), true);

    const second = await client('proxy-test-d');
    proxy.arm({ direction: 'to-client', match: (chunk) => chunk.replyTo?.includes('INSERT') === true, action: { kind: 'cut' }, deliver: false });
    await assert.rejects(second.query(`INSERT INTO ${table} VALUES (3)`));
    assert.equal(await stored(3), true);
  });

  test('stall: the query hangs without an error until heal', async () => {
    const session = await client('proxy-test-e');
    const connection = proxy.connections((candidate) => candidate.applicationName === 'proxy-test-e')[0]!;
    connection.stall();
    let settled = false;
    const running = session.query('SELECT 42 AS answer').finally(() => (settled = true));
    await sleep(300);
    assert.equal(settled, false);
    connection.heal();
    assert.equal((await running).rows[0].answer, 42);
    await session.end();
  });
});
