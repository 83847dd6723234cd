// `dses serve` as an operator runs it (a child process), and a Node port of the dcb.events k6
// checks against it: consistency (20 clients appending with random conditions, then every
// recorded condition verified against the log) and parallel writes (20 clients, unrelated
// appends: none may fail).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { createTestStore, databaseUrl, seededRandom } from '../helpers.ts';
import { ROOT, dses, dsesCommand } from '../cli.ts';
import { call, openSse } from './fixtures/http-client.ts';

/** Seconds each load check runs (the k6 scripts run 10 s). */
const SECONDS = Number(process.env.DSES_HTTP_CHECK_SECONDS ?? 10);
const CLIENTS = 20;

let schema: string;
let dispose: () => Promise<void>;

before(async () => {
  const created = await createTestStore();
  schema = created.schema;
  // The CLI opens its own store; this one only created (migrated) the schema.
  await created.store.close();
  dispose = created.dispose;
});
after(async () => {
  await dispose();
});

interface Served {
  url: string;
  child: ChildProcess;
  stderr: () => string;
  /** SIGTERM, then the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const [node, script] = dsesCommand() as [string, string];
  const child = spawn(node, [script, '--url', databaseUrl(), '--schema', schema, 'serve', '--port', '0', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const match = /^listening on (http:\/\/\S+)$/m.exec(stdout);
      if (match) {
        resolve({
          url: match[1]!,
          child,
          stderr: () => stderr,
          stop: async (signal = 'SIGTERM') => {
            child.kill(signal);
            return exited;
          },
        });
      }
    });
    void exited.then((exit) => reject(new Error(`dses serve exited (${exit.code ?? exit.signal}) before listening: ${stderr}`)));
  });
}

test('dses serve prints its URL, takes its tokens from the environment, and closes cleanly on SIGTERM', async () => {
  const served = await serve([], { DSES_TOKEN: 'env-write', DSES_READ_TOKEN: 'env-read' });
  try {
    assert.match(served.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await call(served.url, 'GET', '/health')).status, 200);
    assert.equal((await call(served.url, 'GET', '/v1/head')).status, 401);
    assert.equal((await call(served.url, 'GET', '/v1/head', { token: 'env-read' })).status, 200);
    assert.equal((await call(served.url, 'POST', '/v1/append', { token: 'env-read', body: { events: [{ type: 'A', data: 1 }] } })).status, 403);
    assert.equal((await call(served.url, 'POST', '/v1/append', { token: 'env-write', body: { events: [{ type: 'A', data: 1 }] } })).status, 200);
    const stats = await call(served.url, 'GET', '/v1/stats', { token: 'env-read' });
    assert.equal(stats.body.schema, schema);
  } finally {
    // An open subscription does not hold the shutdown up: SIGTERM ends it, and dses exits 0.
    const stream = await openSse(served.url, '/v1/subscribe', { token: 'env-read' });
    assert.equal(stream.status, 200);
    const exit = await served.stop('SIGTERM');
    assert.equal(exit.code, 0, served.stderr());
    for (;;) if ((await stream.messages.next()).done) break;
  }
  const refused = await dses(['--schema', schema, 'serve', '--port', '0', '--host', '0.0.0.0'], { env: { DSES_TOKEN: undefined, DSES_READ_TOKEN: undefined } });
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /only binds to loopback.*--insecure/);
  const readOnly = await dses(['--schema', schema, 'serve', '--port', '0', '--read-token', 'r'], { env: { DSES_TOKEN: undefined } });
  assert.equal(readOnly.code, 2);
});

// --- the dcb.events checks --------------------------------------------------------------------

interface DcbItem {
  types: string[];
  tags: string[];
}
interface DcbQuery {
  items: DcbItem[];
}
interface DcbEvent {
  type: string;
  tags: string[];
  data: string;
  position: number;
}

const TYPES = Array.from({ length: 10 }, (_, index) => `EventType${index}`);
const TAGS = Array.from({ length: 10 }, (_, index) => `tag${index}`);

function pick<T>(random: () => number, values: readonly T[], min: number, max: number): T[] {
  const count = min + Math.floor(random() * (max - min + 1));
  const shuffled = [...values].sort(() => random() - 0.5);
  return shuffled.slice(0, count);
}

/** As the k6 fixture: 0 to 3 items of 0 to 4 types and 0 to 3 tags (empty lists constrain nothing). */
function randomQuery(random: () => number): DcbQuery {
  return { items: Array.from({ length: Math.floor(random() * 4) }, () => ({ types: pick(random, TYPES, 0, 4), tags: pick(random, TAGS, 0, 3) })) };
}

/** dcb.events semantics, written independently of the store's: the OR of items; an item's types any-of, tags all-of. */
function matches(query: DcbQuery, event: { type: string; tags: string[] }): boolean {
  if (query.items.length === 0) return true;
  return query.items.some((item) => (item.types.length === 0 || item.types.includes(event.type)) && item.tags.every((tag) => event.tags.includes(tag)));
}

const readUrl = (base: string, query: DcbQuery, options?: object): string =>
  `${base}/read?query=${encodeURIComponent(JSON.stringify(query))}${options ? `&options=${encodeURIComponent(JSON.stringify(options))}` : ''}`;

async function dcbRead(base: string, token: string, query: DcbQuery, options?: object): Promise<DcbEvent[]> {
  const response = await fetch(readUrl(base, query, options), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  return (await response.json()) as DcbEvent[];
}

async function dcbAppend(base: string, token: string, events: unknown[], condition?: object): Promise<{ durationInMicroseconds: number; appendConditionFailed: boolean }> {
  const response = await fetch(`${base}/append`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ events, condition }) });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  const body = JSON.parse(text) as { durationInMicroseconds: number; appendConditionFailed: boolean };
  assert.equal(typeof body.durationInMicroseconds, 'number');
  assert.equal(typeof body.appendConditionFailed, 'boolean');
  return body;
}

/**
 * For each append (its first event) after `startHead`: the last event matching its query before
 * it must be the one it saw when it read (recorded in its data). Any lost update, skipped
 * conflict or reordering shows as a violation.
 */
function checkConditions(log: readonly DcbEvent[], startHead: number): { verified: number; violations: string[] } {
  const violations: string[] = [];
  let verified = 0;
  const history: DcbEvent[] = [];
  for (const event of log) {
    if (event.position > startHead) {
      const data = JSON.parse(event.data) as { query: DcbQuery; lastMatchingEventPosition: number; batchIndex: number };
      if (data.batchIndex === 0) {
        let lastBefore = 0;
        for (let index = history.length - 1; index >= 0; index -= 1) {
          if (matches(data.query, history[index]!)) {
            lastBefore = history[index]!.position;
            break;
          }
        }
        if (data.lastMatchingEventPosition !== lastBefore) {
          violations.push(`event ${event.position}: appended after ${data.lastMatchingEventPosition}, but a matching event at ${lastBefore} came first`);
        }
        verified += 1;
      }
    }
    history.push(event);
  }
  return { verified, violations };
}

test('the consistency checker finds a condition that did not hold (so that its silence means something)', () => {
  const query: DcbQuery = { items: [{ types: ['EventType1'], tags: ['tag1'] }] };
  const data = (lastMatchingEventPosition: number) => JSON.stringify({ query, lastMatchingEventPosition, batchIndex: 0 });
  const first: DcbEvent = { type: 'EventType1', tags: ['tag1', 'tag2'], data: data(0), position: 1 };
  const unrelated: DcbEvent = { type: 'EventType2', tags: ['tag1'], data: data(1), position: 2 };
  assert.deepEqual(checkConditions([first, unrelated, { type: 'EventType3', tags: [], data: data(1), position: 3 }], 0).violations, []);
  const lost = checkConditions([first, unrelated, { type: 'EventType3', tags: [], data: data(0), position: 3 }], 0);
  assert.equal(lost.violations.length, 1, 'an append that saw nothing although event 1 matched');
});

test(`dcb.events consistency: ${CLIENTS} clients append with random conditions for ${SECONDS} s through dses serve; every recorded condition held`, async (t) => {
  const served = await serve(['--token', 'k6']);
  try {
    const startHead = (await dcbRead(served.url, 'k6', { items: [] }, { backwards: true, limit: 1 }))[0]?.position ?? 0;
    const deadline = Date.now() + SECONDS * 1000;
    let appends = 0;
    let failed = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        const random = seededRandom(1000 + client);
        while (Date.now() < deadline) {
          const query = randomQuery(random);
          const last = (await dcbRead(served.url, 'k6', query, { backwards: true, limit: 1 }))[0]?.position ?? 0;
          const count = 1 + Math.floor(random() * 2);
          const events = Array.from({ length: count }, (_, batchIndex) => ({
            type: TYPES[Math.floor(random() * TYPES.length)]!,
            tags: pick(random, TAGS, 0, 3),
            data: JSON.stringify({ query, lastMatchingEventPosition: last, batchIndex, client }),
          }));
          const answer = await dcbAppend(served.url, 'k6', events, { failIfEventsMatch: query, after: last });
          appends += 1;
          if (answer.appendConditionFailed) failed += 1;
        }
      }),
    );
    assert.ok(appends > CLIENTS, `only ${appends} appends`);
    assert.ok(failed < appends, 'every append failed its condition');

    const all = await dcbRead(served.url, 'k6', { items: [] });
    const fresh = all.filter((event) => event.position > startHead).map((event) => event.position);
    assert.deepEqual(fresh, Array.from({ length: fresh.length }, (_, index) => startHead + index + 1), 'positions are gap-free and in order');
    const { verified, violations } = checkConditions(all, startHead);
    assert.deepEqual(violations, []);
    assert.equal(verified, appends - failed, 'one verified first event per successful append');
    t.diagnostic(`${appends} appends, ${failed} refused by their condition, ${verified} conditions verified`);
  } finally {
    const exit = await served.stop();
    assert.equal(exit.code, 0, served.stderr());
  }
});

test(`dcb.events parallel writes: ${CLIENTS} clients, unrelated conditional appends for ${SECONDS} s: 0 % failed`, async (t) => {
  const served = await serve(['--token', 'k6']);
  try {
    const deadline = Date.now() + SECONDS * 1000;
    let appends = 0;
    let failed = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        for (let iteration = 0; Date.now() < deadline; iteration += 1) {
          const tag = `vu${client}-iter${iteration}-${schema}`;
          const answer = await dcbAppend(served.url, 'k6', [{ type: 'SomeEvent', tags: [tag], data: '{}' }], { failIfEventsMatch: { items: [{ tags: [tag], types: ['SomeEvent'] }] } });
          appends += 1;
          if (answer.appendConditionFailed) failed += 1;
        }
      }),
    );
    assert.ok(appends > CLIENTS);
    assert.equal(failed, 0, `${failed} of ${appends} unrelated appends failed their condition`);
    t.diagnostic(`${appends} unrelated appends, none failed`);
  } finally {
    const exit = await served.stop();
    assert.equal(exit.code, 0, served.stderr());
  }
});
