// The observer process of the fault suite: a subscriber to every event and a durable consumer
// keeping a transactional read model, both through the fault proxy, recording what they see.
// A subscription or a consumer run that ends with an error is recorded and started again where
// it left off (what a supervised service does); the checks then demand that, in the end, every
// event was seen once, in order, and applied to the read model exactly once.
import { setTimeout as sleep } from 'node:timers/promises';
import { EventStore, Query, type EventStoreOptions } from '../../src/index.ts';
import type { AttemptStamp } from '../integration/history-checker.ts';
import { errorCode, RecordFile, type ChildMessage, type ObserverConfig, type ObserverRecord, type ParentMessage } from './protocol.ts';

const send = (message: ChildMessage): void => void process.send?.(message);

let controller = new AbortController();
let running: Promise<void> | undefined;

process.on('message', (message: ParentMessage) => {
  if (message.type === 'run') {
    controller = new AbortController();
    running = run(message.config as ObserverConfig, controller.signal).catch((error: unknown) => {
      send({ type: 'fatal', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    });
  } else if (message.type === 'stop') {
    controller.abort();
  } else if (message.type === 'exit') {
    void (running ?? Promise.resolve()).finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });

/** The read model's tables (created by the parent in the scenario's schema). */
export function readModelSql(schema: string): string {
  return (
    `CREATE TABLE ${schema}.fault_applied (position bigint PRIMARY KEY, times int NOT NULL);` +
    `CREATE TABLE ${schema}.fault_tag_counts (tag text PRIMARY KEY, events bigint NOT NULL, last_position bigint NOT NULL);`
  );
}

async function run(config: ObserverConfig, signal: AbortSignal): Promise<void> {
  const records = new RecordFile<ObserverRecord>(config.recordFile);
  const options: EventStoreOptions & Record<string, unknown> = {
    connectionString: config.connectionString,
    schema: config.schema,
    migrate: false,
    poolSize: 4,
    appendTimeoutMs: config.appendTimeoutMs,
    readTimeoutMs: config.readTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
  };
  let store: EventStore | undefined;
  while (!store && !signal.aborted) {
    try {
      store = await EventStore.connect(options);
    } catch {
      await sleep(200);
    }
  }
  send({ type: 'running' });
  if (!store) {
    records.close();
    send({ type: 'done' });
    return;
  }
  let seen = 0n;
  let subscriptionErrors = 0;
  let consumerErrors = 0;
  const progress = setInterval(() => send({ type: 'progress', seen: seen.toString(), subscriptionErrors, consumerErrors }), 100);

  const subscribing = (async () => {
    while (!signal.aborted) {
      try {
        for await (const event of store.subscribe(Query.all(), { after: seen, signal, pollIntervalMs: 250 })) {
          const stamp = (event.data as { stamp?: AttemptStamp } | null)?.stamp;
          records.write({ k: 'seen', p: event.position.toString(), a: stamp?.attempt ?? null });
          seen = event.position;
        }
      } catch (error) {
        subscriptionErrors++;
        records.write({ k: 'subscription-error', t: Date.now(), code: errorCode(error), message: (error as Error)?.message ?? String(error) });
        await sleep(200);
      }
    }
  })();

  const applied = `${config.schema}.fault_applied`;
  const counts = `${config.schema}.fault_tag_counts`;
  const consumer = store.consumer(config.consumerName, {
    query: Query.all(),
    batchSize: 20,
    pollIntervalMs: 250,
    takeoverIntervalMs: 300,
    retryDelayMs: 50,
    maxAttempts: 10,
    handlerTimeoutMs: config.readTimeoutMs,
    handle: async (event, { transaction }) => {
      // Several statements per event: more chances for a fault to land inside the transaction.
      await transaction.query(`INSERT INTO ${applied} (position, times) VALUES ($1, 1) ON CONFLICT (position) DO UPDATE SET times = ${applied}.times + 1`, [event.position.toString()]);
      for (const tag of [...event.tags, '*']) {
        await transaction.query(
          `INSERT INTO ${counts} (tag, events, last_position) VALUES ($1, 1, $2) ON CONFLICT (tag) DO UPDATE SET events = ${counts}.events + 1, last_position = EXCLUDED.last_position`,
          [tag, event.position.toString()],
        );
      }
    },
  });
  const note = (text: string): void => records.write({ k: 'note', t: Date.now(), text });
  const consuming = (async () => {
    while (!signal.aborted) {
      try {
        note('consumer run starts');
        await consumer.run({ signal });
      } catch (error) {
        consumerErrors++;
        records.write({ k: 'consumer-error', t: Date.now(), code: errorCode(error), message: (error as Error)?.message ?? String(error) });
        await sleep(300);
        // A consumer stopped on a failure stays failed until reset to where it is: clear the failure.
        try {
          const position = await consumerPosition(store, config.consumerName, signal);
          await store.resetConsumer(config.consumerName, { position });
          note(`consumer reset to ${position}, running it again`);
        } catch (resetError) {
          note(`resetting the consumer failed: ${errorCode(resetError)} ${(resetError as Error)?.message}`);
        }
      }
    }
  })();

  await Promise.all([subscribing.then(() => note('subscription loop ended')), consuming.then(() => note('consumer loop ended'))]);
  clearInterval(progress);
  send({ type: 'progress', seen: seen.toString(), subscriptionErrors, consumerErrors });
  const closed = await Promise.race([store.close().then(() => true), sleep(config.appendTimeoutMs + 5000).then(() => false)]);
  if (!closed) note('store.close() did not finish');
  records.close();
  send({ type: 'done' });
}

async function consumerPosition(store: EventStore, name: string, signal: AbortSignal): Promise<bigint> {
  return (await store.consumerStatus(name, { signal })).position;
}
