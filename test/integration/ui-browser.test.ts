// The web event browser in a real Chromium (Debian's chromium, driven by playwright-core), on
// the HTTP server in process against a real PostgreSQL. Screenshots go to test-artifacts/ui/
// (git-ignored): look at them. Without a Chromium the file is skipped, except under CI=true,
// where that is a failure (.ci/run installs it).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { EventStore, Query, QueryItem } from '../../src/index.ts';
import { createServer, postgresInspector, registerUi, type HttpServer } from '../../src/http/index.ts';
import { ROOT, dses } from '../cli.ts';
import { createTestStore, databaseUrl } from '../helpers.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path));
const skip = CHROMIUM === undefined && process.env.CI !== 'true' ? 'no Chromium here (apt-get install chromium, or set CHROMIUM_PATH)' : false;
const ARTIFACTS = join(ROOT, 'test-artifacts', 'ui');

let store: EventStore;
let schema: string;
let dispose: () => Promise<void>;
let browser: Browser;
const servers: HttpServer[] = [];

async function serve(options: { token?: string; readToken?: string } = {}): Promise<string> {
  const server = createServer({ store, inspector: postgresInspector(store, { connectionString: databaseUrl() }), extend: registerUi, ...options });
  servers.push(server);
  return server.listen({ port: 0 });
}

async function open(url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on('pageerror', (error) => assert.fail(`the page threw: ${error.message}`));
  await page.goto(url);
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The positions in the log's table, top to bottom. */
function shownPositions(page: Page): Promise<string[]> {
  return page.locator('main tbody tr[data-position]').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-position')!));
}

async function positionsOf(query: Query): Promise<string[]> {
  return (await store.read(query, { backwards: true })).events.map((event) => event.position.toString());
}

describe('the web event browser', { skip, timeout: 120_000 }, () => {
  let url: string;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    ({ store, schema, dispose } = await createTestStore());
    // Older events first (the log shows 50 a page), then a small library: books lent and returned.
    await store.append(Array.from({ length: 45 }, (_, n) => ({ type: 'CatalogImported', tags: [`shelf:s${n % 5}`], data: { n } })));
    for (let n = 1; n <= 30; n += 1) {
      const book = `book:b${n % 4}`;
      const reader = `reader:r${n % 3}`;
      await store.append({ type: n % 3 === 0 ? 'BookReturned' : 'BookLent', tags: [book, reader], data: { n, title: `Title ${n % 4}` }, metadata: { by: 'seed' } });
    }
    await store.append({ type: 'ReaderRegistered', tags: ['reader:r9'], data: { name: 'Ada <script>alert(1)</script>' } });
    // A consumer 5 events behind.
    const consumer = store.consumer('loans-projection', { query: Query.all(), handle: async () => undefined });
    const stop = new AbortController();
    const running = consumer.run({ signal: stop.signal });
    while ((await store.consumerStatus('loans-projection'))?.position !== (await store.head())) await new Promise((resolve) => setTimeout(resolve, 50));
    stop.abort();
    await running;
    for (let n = 0; n < 5; n += 1) await store.append({ type: 'BookLent', tags: ['book:b1', 'reader:r1'], data: { n: 100 + n } });
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox'] });
    url = await serve();
  });

  after(async () => {
    await browser?.close();
    await Promise.all(servers.map((server) => server.close()));
    await dispose?.();
  });

  test('the log lists the store\'s events, newest first, with their fields; markup in data stays text', async () => {
    const page = await open(url);
    await page.locator('main tbody tr[data-position]').first().waitFor();
    const head = (await store.head()).toString();
    assert.equal(await page.locator('#head').textContent(), head);
    const all = await positionsOf(Query.all());
    assert.deepEqual(await shownPositions(page), all.slice(0, 50));
    await page.getByRole('button', { name: 'Older events' }).click();
    await page.locator(`main tbody tr[data-position="1"]`).waitFor();
    assert.deepEqual(await shownPositions(page), all);
    assert.equal(await page.getByRole('button', { name: 'Older events' }).isDisabled(), true);
    const registered = page.locator('tr[data-position="76"]');
    assert.equal(await registered.locator('td.type').textContent(), 'ReaderRegistered');
    assert.match((await registered.locator('td.data').textContent())!, /Ada <script>alert\(1\)<\/script>/);
    assert.equal(await page.locator('main script').count(), 0);
    await screenshot(page, 'log');
    await page.close();
  });

  test('"Older events" pages back to the first event without skipping or repeating one: the log, and a filter matching 134 of 400', async () => {
    // A store of its own, so that the other tests' positions stay as they are.
    const own = await createTestStore();
    try {
      await own.store.append(Array.from({ length: 400 }, (_, n) => (n % 3 === 0 ? { type: 'Paged', tags: ['pager:hit', `n:${n}`], data: { n } } : { type: 'Skipped', tags: ['pager:miss'], data: { n } })));
      const server = createServer({ store: own.store, extend: registerUi });
      servers.push(server);
      const ownUrl = await server.listen({ port: 0 });
      for (const [hash, query] of [['#/', Query.all()], ['#/?tags=pager%3Ahit', Query.of(QueryItem.tags('pager:hit'))], ['#/?types=Paged', Query.of(QueryItem.types('Paged'))]] as const) {
        const expected = (await own.store.read(query, { backwards: true })).events.map((event) => event.position.toString());
        const page = await open(`${ownUrl}/${hash}`);
        await page.locator('main tbody tr[data-position]').first().waitFor();
        const older = page.getByRole('button', { name: 'Older events' });
        const rows = page.locator('main tbody tr[data-position]');
        for (let clicks = 0; !(await older.isDisabled()); clicks++) {
          assert.ok(clicks < 20, `${hash}: the button never disables`);
          const shown = await rows.count();
          if (shown < expected.length) {
            await older.click();
            // The handler appends the page and sets the button in the same task: once the rows
            // are there, the button's state is final. A page that skipped events never gets there.
            const target = Math.min(shown + 50, expected.length);
            await rows.nth(target - 1).waitFor();
          } else {
            // Everything is shown, but the last page was full: one more read finds nothing.
            await Promise.all([page.waitForResponse((response) => response.url().endsWith('/v1/read')), older.click()]);
            await page.locator('#older:disabled').waitFor();
            assert.equal(await rows.count(), shown, `${hash}: the read below the first event adds nothing`);
          }
        }
        assert.deepEqual(await shownPositions(page), expected, `${hash}: every matching event once, newest first`);
        assert.equal(expected.at(-1), '1', 'the walk reached the first event');
        assert.equal(await older.isDisabled(), true);
        await page.close();
      }
    } finally {
      await own.dispose();
    }
  });

  test('filtering by type, and by tag, narrows the list to exactly the matching events', async () => {
    const page = await open(url);
    await page.getByLabel('Types (any of, comma separated)').fill('BookReturned');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/types=BookReturned/);
    await page.getByRole('heading', { name: 'Events matching the filter' }).waitFor();
    await page.locator('main tbody tr[data-position]').first().waitFor();
    assert.deepEqual(await shownPositions(page), await positionsOf(Query.of(QueryItem.types('BookReturned'))));

    await page.getByLabel('Types (any of, comma separated)').fill('');
    await page.getByLabel('Tags (all of, comma separated)').fill('book:b1, reader:r1');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/tags=book/);
    await page.locator('main tbody tr[data-position]').first().waitFor();
    const expected = await positionsOf(Query.of(QueryItem.tags('book:b1', 'reader:r1')));
    assert.ok(expected.length > 0);
    assert.deepEqual(await shownPositions(page), expected);
    await screenshot(page, 'log-filtered');

    // A tag is a link to every event that carries it.
    await page.locator('main tbody a.tag', { hasText: 'book:b1' }).first().click();
    await page.waitForURL(/tags=book%3Ab1$/);
    await page.getByLabel('Tags (all of, comma separated)').and(page.locator('[value="book:b1"]')).waitFor();
    assert.deepEqual(await shownPositions(page), await positionsOf(Query.of(QueryItem.tags('book:b1'))));
    await page.close();
  });

  test('with live tail on, an event appended by another process appears within 2 s', async () => {
    const page = await open(url);
    await page.locator('main tbody tr[data-position]').first().waitFor();
    await page.getByLabel('Live tail').check();
    await page.locator('#live[data-connected="true"]').waitFor();
    const appended = await dses(['--schema', schema, 'append', '--type', 'BookLent', '--tags', 'book:b7,reader:r7', '--data', '{"live":true}']);
    assert.equal(appended.code, 0, appended.stderr);
    const position = appended.stdout.trim();
    const started = Date.now();
    await page.locator(`main tbody tr[data-position="${position}"]`).waitFor({ timeout: 2_000 });
    assert.ok(Date.now() - started <= 2_000);
    assert.deepEqual((await shownPositions(page))[0], position);
    assert.equal(await page.locator('#head').textContent(), position);
    await screenshot(page, 'log-live');
    await page.close();
  });

  test('an event\'s page shows its data and metadata as formatted JSON, and its tags as links', async () => {
    const page = await open(`${url}/#/event/50`);
    const event = (await store.read(Query.all(), { after: 49n, limit: 1 })).events[0]!;
    await page.locator('#event-data').waitFor();
    assert.equal(await page.locator('#event-data').textContent(), JSON.stringify(event.data, null, 2));
    assert.equal(await page.locator('#event-metadata').textContent(), JSON.stringify(event.metadata, null, 2));
    assert.equal(await page.getByRole('heading', { level: 2 }).textContent(), `Event 50: ${event.type}`);
    assert.deepEqual(await page.locator('dl.fields a.tag').allTextContents(), event.tags);
    await screenshot(page, 'event');
    await page.close();
  });

  test('the decision view shows the matching events, the head, and the append condition', async () => {
    const page = await open(`${url}/#/query`);
    await page.getByLabel('Types (any of)').fill('BookLent, BookReturned');
    await page.getByLabel('Tags (all of)').fill('book:b2');
    await page.getByRole('button', { name: 'Add an item (OR)' }).click();
    await page.locator('#item-2-types').fill('ReaderRegistered');
    const query = { items: [{ types: ['BookLent', 'BookReturned'], tags: ['book:b2'] }, { types: ['ReaderRegistered'] }] };
    assert.deepEqual(JSON.parse((await page.locator('#query-json').textContent())!), query);
    await page.getByRole('button', { name: 'Show the decision' }).click();
    await page.locator('#condition-json').waitFor();
    const head = (await store.head()).toString();
    assert.equal(await page.locator('#decision-head').textContent(), head);
    assert.deepEqual(JSON.parse((await page.locator('#condition-json').textContent())!), { failIfEventsMatch: query, after: head });
    const expected = (await store.read(Query.fromJSON(query))).events.map((event) => event.position.toString());
    assert.deepEqual(await shownPositions(page), expected);
    await screenshot(page, 'decision');
    // The query is in the address: a reload shows the same decision.
    await page.reload();
    await page.locator('#condition-json').waitFor();
    assert.deepEqual(JSON.parse((await page.locator('#condition-json').textContent())!), { failIfEventsMatch: query, after: head });
    await page.close();
  });

  test('the consumers page shows a consumer\'s position, lag and state', async () => {
    const page = await open(`${url}/#/consumers`);
    const row = page.locator('tr[data-consumer="loans-projection"]');
    await row.waitFor();
    const status = (await store.consumerStatus('loans-projection'))!;
    const head = await store.head();
    assert.equal(await row.locator('td.lag').textContent(), (head - status.position).toString());
    assert.ok(head - status.position >= 5n);
    assert.match((await row.textContent())!, /idle/);
    await screenshot(page, 'consumers');
    await page.close();
  });

  test('the stats page charts events by type and the append rate', async () => {
    const page = await open(`${url}/#/stats`);
    await page.locator('#types-chart svg').waitFor();
    assert.equal(await page.locator('#stat-events').textContent(), (await store.head()).toString());
    assert.equal(await page.locator('#types-chart rect.bar').count(), 4);
    assert.equal(await page.locator('#rate-chart rect.bar').count(), 61);
    await screenshot(page, 'stats');
    await page.close();
  });

  test('a server with tokens: the page asks for one, and the read token can look but not reset', async () => {
    const guarded = await serve({ token: 'write-secret', readToken: 'read-secret' });
    const page = await open(`${guarded}/#/consumers`);
    const dialog = page.getByRole('dialog', { name: 'Access token' });
    await dialog.waitFor();
    await screenshot(page, 'token');
    await dialog.getByLabel('Token').fill('read-secret');
    await dialog.getByRole('button', { name: 'Use this token' }).click();
    await page.locator('tr[data-consumer="loans-projection"]').waitFor();
    page.once('dialog', (confirm) => void confirm.accept());
    await page.locator('tr[data-consumer="loans-projection"]').getByRole('button', { name: 'Reset' }).click();
    await page.locator('#status').waitFor();
    assert.match((await page.locator('#status').textContent())!, /write token/);
    const before = (await store.consumerStatus('loans-projection'))!.position;
    assert.ok(before > 0n, 'the read token changed nothing');
    await page.close();
  });
});
