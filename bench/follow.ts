// Following the log: how fast subscriptions catch up, how soon they see live appends, and how
// fast a durable consumer applies events, each against a baseline measured in the same run on
// the same server (these machines are shared and noisy; only the ratios are comparable):
//
//   catch-up   subscribe() over N stored events        vs  stream() over the same events
//   live       append call -> delivery to a subscriber vs  append call -> acknowledgement
//   consumer   a consumer inserting one row per event   vs  the same inserts from a plain client,
//              (through its transaction, batchSize 100)     in transactions of 100
//
// npm run bench:follow [-- --events 200000 --writers 8 --seconds 5]
import { parseArgs } from 'node:util';
import pg from 'pg';
import { EventStore, Query, QueryItem, type EventInput } from '../src/index.ts';
import { createFreshDatabase, dropDatabase, startBenchServer, vacuumAnalyze } from './server.ts';
import { percentiles } from './stats.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    writers: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '5' },
    tcp: { type: 'boolean', default: false },
  },
});
const EVENTS = Number(values.events);
const WRITERS = Number(values.writers);
const SECONDS = Number(values.seconds);

const server = await startBenchServer(values.tcp);
const database = `dses_follow_${process.pid}`;
const url = await createFreshDatabase(server.adminUrl, database);
const store = await EventStore.connect({ connectionString: url, schema: 'follow' });
const rows: string[][] = [];
const ratio = (ours: number, baseline: number): string => `${(ours / baseline).toFixed(2)}x`;

try {
  // --- load -----------------------------------------------------------------------------------
  const started = Date.now();
  for (let offset = 0; offset < EVENTS; offset += 1000) {
    const batch: EventInput[] = [];
    for (let index = offset; index < Math.min(EVENTS, offset + 1000); index++) {
      batch.push({ type: index % 4 === 0 ? 'OrderPlaced' : 'ItemViewed', tags: [`customer:${index % 5000}`], data: { index, note: 'x'.repeat(100) } });
    }
    await store.append(batch);
  }
  await vacuumAnalyze(url);
  console.log(`loaded ${EVENTS} events in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const head = await store.head();

  // --- catch-up -------------------------------------------------------------------------------
  const rate = async (iterate: () => AsyncIterable<unknown>, stopAt: number): Promise<number> => {
    const begin = performance.now();
    let count = 0;
    for await (const _ of iterate()) if (++count === stopAt) break;
    return count / ((performance.now() - begin) / 1000);
  };
  for (const [label, query, expected] of [
    ['all events', Query.all(), EVENTS],
    ['one type of four', Query.of(QueryItem.types('OrderPlaced')), Math.ceil(EVENTS / 4)],
  ] as const) {
    const streamed = await rate(() => store.stream(query, { batchSize: 1000 }), expected);
    const controller = new AbortController();
    const subscribed = await rate(() => store.subscribe(query, { batchSize: 1000, signal: controller.signal }), expected);
    controller.abort();
    rows.push([`catch-up, ${label} (${expected} events)`, `${Math.round(subscribed).toLocaleString('en')} events/s`, `stream(): ${Math.round(streamed).toLocaleString('en')} events/s`, ratio(subscribed, streamed)]);
  }

  // --- live -----------------------------------------------------------------------------------
  const acknowledged: number[] = [];
  const delivered: number[] = [];
  const controller = new AbortController();
  const subscriber = (async () => {
    for await (const event of store.subscribe<{ sentAt: number }>(Query.of(QueryItem.types('Live')), { after: head, signal: controller.signal })) {
      delivered.push(performance.timeOrigin + performance.now() - event.data.sentAt);
    }
  })();
  const writers = await Promise.all(
    Array.from({ length: WRITERS }, () => EventStore.connect({ connectionString: url, schema: 'follow', migrate: false, poolSize: 2 })),
  );
  const until = Date.now() + SECONDS * 1000;
  await Promise.all(
    writers.map(async (writer, index) => {
      while (Date.now() < until) {
        const sentAt = performance.timeOrigin + performance.now();
        await writer.append({ type: 'Live', tags: [`writer:${index}`], data: { sentAt } });
        acknowledged.push(performance.timeOrigin + performance.now() - sentAt);
      }
    }),
  );
  for (let waited = 0; delivered.length < acknowledged.length && waited < 5000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
  controller.abort();
  await subscriber;
  await Promise.all(writers.map((writer) => writer.close()));
  const ack = percentiles(acknowledged)!;
  const live = percentiles(delivered)!;
  rows.push([
    `live, ${WRITERS} writer instances, ${acknowledged.length} appends (delivered ${delivered.length})`,
    `append -> delivery p50 ${live.p50.toFixed(2)} ms, p99 ${live.p99.toFixed(2)} ms`,
    `append -> ack p50 ${ack.p50.toFixed(2)} ms, p99 ${ack.p99.toFixed(2)} ms`,
    `${ratio(live.p50, ack.p50)} / ${ratio(live.p99, ack.p99)}`,
  ]);

  // --- consumer -------------------------------------------------------------------------------
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query('CREATE TABLE consumed (position bigint PRIMARY KEY, customer text NOT NULL)');
  await admin.query('CREATE TABLE baseline (position bigint PRIMARY KEY, customer text NOT NULL)');
  const orders = Math.ceil(EVENTS / 4);
  let begin = performance.now();
  for (let position = 1; position <= orders; position += 100) {
    await admin.query('BEGIN');
    for (let index = position; index < Math.min(orders + 1, position + 100); index++) await admin.query('INSERT INTO baseline VALUES ($1, $2)', [index, `customer:${index % 5000}`]);
    await admin.query('COMMIT');
  }
  const baselineRate = orders / ((performance.now() - begin) / 1000);
  const stop = new AbortController();
  let applied = 0;
  begin = performance.now();
  let finished = 0;
  const consumer = store.consumer<{ index: number }>('bench', {
    query: Query.of(QueryItem.types('OrderPlaced')),
    batchSize: 100,
    handle: async (event, { transaction }) => {
      await transaction.query('INSERT INTO consumed VALUES ($1, $2)', [event.position.toString(), event.tags[0]]);
      if (++applied === orders) finished = performance.now();
    },
  });
  const running = consumer.run({ signal: stop.signal });
  while (applied < orders) await new Promise((resolve) => setTimeout(resolve, 20));
  stop.abort();
  await running;
  const consumerRate = orders / ((finished - begin) / 1000);
  const { rows: count } = await admin.query<{ count: string }>('SELECT count(*) FROM consumed');
  await admin.end();
  rows.push([`consumer, ${orders} events, one INSERT each, batchSize 100`, `${Math.round(consumerRate).toLocaleString('en')} events/s (${count[0]!.count} rows)`, `plain client: ${Math.round(baselineRate).toLocaleString('en')} rows/s`, ratio(consumerRate, baselineRate)]);
} finally {
  await store.close();
  await dropDatabase(server.adminUrl, database).catch(() => undefined);
  await server.stop();
}

console.log(`\n| workload | ours | baseline (same run) | ratio |\n|---|---|---|---|`);
for (const row of rows) console.log(`| ${row.join(' | ')} |`);
