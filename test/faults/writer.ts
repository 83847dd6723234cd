// A writer process of the fault suite: `node --import tsx test/faults/writer.ts`, driven over IPC.
// Each 'run' connects an EventStore (through the fault proxy) and runs `loops` concurrent
// read -> decide -> conditional append cycles on a few hot account tags, plus uniqueness claims,
// until 'stop'; then it settles each unknown outcome by repeating the append with the same ids
// (what a careful user does), closes the store, reports 'done' and waits for the next run.
//
// Every call is recorded (protocol.ts) before it is made and after it returns, synchronously, so
// the parent can check every outcome against the final log even when this process is SIGKILLed.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AppendConditionFailedError,
  AppendOutcomeUnknownError,
  EventStore,
  EventStoreError,
  Query,
  QueryItem,
  type AppendCondition,
  type EventInput,
  type EventStoreOptions,
} from '../../src/index.ts';
import type { AttemptStamp } from '../integration/history-checker.ts';
import { seededRandom } from '../seeded-random.ts';
import { errorCode, RecordFile, type ChildMessage, type ParentMessage, type WireCondition, type WireEvent, type WireOutcome, type WriterConfig, type WriterRecord } from './protocol.ts';

const send = (message: ChildMessage): void => void process.send?.(message);

let stopRequested = false;
let abortShare = 0;
let poisonShare = 0;
let running: Promise<void> | undefined;

process.on('message', (message: ParentMessage) => {
  if (message.type === 'run') {
    stopRequested = false;
    const config = message.config as WriterConfig;
    abortShare = config.abortShare;
    poisonShare = config.poisonShare;
    running = run(config).catch((error: unknown) => {
      send({ type: 'fatal', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    });
  } else if (message.type === 'set') {
    abortShare = message.abortShare;
    poisonShare = message.poisonShare;
  } else if (message.type === 'stop') {
    stopRequested = true;
  } else if (message.type === 'exit') {
    void (running ?? Promise.resolve()).finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });

interface Unsettled {
  attempt: string;
  events: EventInput[] | undefined;
  condition: AppendCondition | undefined;
  wireCondition: WireCondition | null;
}

async function run(config: WriterConfig): Promise<void> {
  const records = new RecordFile<WriterRecord>(config.recordFile);
  const note = (text: string): void => records.write({ k: 'note', t: Date.now(), text });
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
  while (!store) {
    try {
      store = await EventStore.connect(options);
    } catch (error) {
      note(`connect failed: ${errorCode(error)} ${(error as Error).message}`);
      if (stopRequested) break;
      await sleep(200);
    }
  }
  send({ type: 'running' });
  const unsettled: Unsettled[] = [];
  if (store) {
    const connected = store;
    await Promise.all(Array.from({ length: config.loops }, (_, loop) => workLoop(connected, config, loop, records, unsettled)));
    await settle(connected, config, records, unsettled);
    // close() waits for queued appends; a store that cannot finish them must not hold the writer forever.
    const closed = await Promise.race([connected.close().then(() => true), sleep(config.appendTimeoutMs + 5000).then(() => false)]);
    if (!closed) {
      note('store.close() did not finish');
      records.close();
      send({ type: 'done' });
      // The parent starts a fresh process for the next scenario.
      setTimeout(() => process.exit(3), 100);
      return;
    }
  }
  records.close();
  send({ type: 'done' });
}

async function workLoop(store: EventStore, config: WriterConfig, loop: number, records: RecordFile<WriterRecord>, unsettled: Unsettled[]): Promise<void> {
  const random = seededRandom(config.seed * 100 + loop);
  for (let n = 0; !stopRequested; n++) {
    await operation(store, config, random, `${config.writer}.${loop}.${n}`, records, unsettled);
    if (config.thinkMs > 0) await sleep(Math.floor(random() * config.thinkMs));
  }
}

const ACCOUNT_TYPES = ['Deposited', 'Withdrawn'];

async function operation(store: EventStore, config: WriterConfig, random: () => number, attempt: string, records: RecordFile<WriterRecord>, unsettled: Unsettled[]): Promise<void> {
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  const abortMs = (): number | null => (random() < abortShare ? config.abortAfterMs[0] + Math.floor(random() * (config.abortAfterMs[1] - config.abortAfterMs[0] + 1)) : null);
  const poison = random() < poisonShare;
  const roll = random();
  let query: Query;
  let condition: AppendCondition | undefined;
  let planned: { type: string; tags: string[]; data: Record<string, unknown> }[];

  if (poison) {
    // Every other one fails in the database (a trigger), and with it the batch it rides in; the
    // rest hold the append lock for 40 ms, so that other appends wait for it.
    const type = random() < 0.5 ? 'Poison' : 'Slow';
    query = Query.of(QueryItem.types(type));
    condition = undefined;
    planned = [{ type, tags: [type.toLowerCase()], data: { writer: config.writer } }];
  } else if (roll < config.claimShare) {
    // A uniqueness claim: no read, no `after`; at most one claim per name may ever succeed.
    const tag = `username:u${Math.floor(random() * config.usernames)}`;
    query = Query.of(QueryItem.types('UsernameClaimed').tags(tag));
    condition = { failIfEventsMatch: query };
    planned = [{ type: 'UsernameClaimed', tags: [tag], data: { writer: config.writer } }];
  } else {
    // Read the account(s), decide from the balance, append under the read's head.
    const transfer = roll < config.claimShare + 0.1 && config.accounts.length > 1;
    const from = pick(config.accounts);
    const to = transfer ? pick(config.accounts.filter((account) => account !== from)) : from;
    query = transfer ? Query.of(QueryItem.types(...ACCOUNT_TYPES).tags(from), QueryItem.types(...ACCOUNT_TYPES).tags(to)) : Query.of(QueryItem.types(...ACCOUNT_TYPES).tags(from));
    const readAbort = abortMs();
    const read = `${attempt}.r`;
    records.write({ k: 'read-start', read, t: Date.now(), abortMs: readAbort });
    let result: Awaited<ReturnType<EventStore['read']>>;
    try {
      result = await store.read(query, readAbort === null ? {} : { signal: AbortSignal.timeout(readAbort) });
      records.write({ k: 'read-end', read, t: Date.now(), code: null });
    } catch (error) {
      records.write({ k: 'read-end', read, t: Date.now(), code: errorCode(error) });
      return;
    }
    const balances = new Map<string, number>();
    for (const event of result.events) {
      const data = event.data as { amount: number };
      const account = event.tags.find((tag) => tag.startsWith('account:'))!;
      balances.set(account, (balances.get(account) ?? 0) + (event.type === 'Deposited' ? data.amount : -data.amount));
    }
    if (transfer) {
      const amount = 1 + Math.floor(random() * 10);
      planned =
        (balances.get(from) ?? 0) >= amount
          ? [
              { type: 'Withdrawn', tags: [from], data: { amount, writer: config.writer } },
              { type: 'Deposited', tags: [to], data: { amount, writer: config.writer } },
            ]
          : [{ type: 'Deposited', tags: [from], data: { amount, writer: config.writer } }];
    } else {
      let balance = balances.get(from) ?? 0;
      planned = Array.from({ length: 1 + Math.floor(random() * 3) }, () => {
        if (balance >= 10 && random() < 0.5) {
          balance -= 10;
          return { type: 'Withdrawn', tags: [from], data: { amount: 10, writer: config.writer } };
        }
        const amount = 1 + Math.floor(random() * 20);
        balance += amount;
        return { type: 'Deposited', tags: [from], data: { amount, writer: config.writer } };
      });
    }
    condition = { failIfEventsMatch: query, after: result.head };
  }

  const wireCondition: WireCondition | null = condition ? { query: query.toJSON(), after: condition.after === undefined ? null : condition.after.toString() } : null;
  const occurredAt = new Date();
  const events: EventInput[] = planned.map((event, index) => {
    const stamp: AttemptStamp = { attempt, index, count: planned.length, condition: wireCondition };
    return { type: event.type, tags: event.tags, data: { ...event.data, stamp }, occurredAt, ...(config.ids === 'client' && { id: randomUUID() }) };
  });
  const appendAbort = poison ? null : abortMs();
  const outcome = await recordedAppend(store, records, attempt, events, condition, wireCondition, config.ids, appendAbort, 0);
  if (outcome.status === 'unknown') {
    const ids = config.ids === 'client' ? events.map((event) => event.id!) : outcome.ids;
    unsettled.push({ attempt, events: ids && ids.length === events.length ? events.map((event, index) => ({ ...event, id: ids[index]! })) : undefined, condition, wireCondition });
  }
}

async function recordedAppend(
  store: EventStore,
  records: RecordFile<WriterRecord>,
  attempt: string,
  events: EventInput[],
  condition: AppendCondition | undefined,
  wireCondition: WireCondition | null,
  ids: 'client' | 'generated',
  abortMs: number | null,
  settle: number,
): Promise<WireOutcome> {
  records.write({ k: 'start', attempt, t: Date.now(), events: events.map(toWire), condition: wireCondition, ids, abortMs, settle });
  let outcome: WireOutcome;
  try {
    const { position } = await store.append(events, condition, abortMs === null ? {} : { signal: AbortSignal.timeout(abortMs) });
    outcome = { status: 'appended', position: position.toString() };
  } catch (error) {
    outcome = classify(error);
  }
  records.write({ k: 'end', attempt, t: Date.now(), outcome, settle });
  return outcome;
}

/** Per the store's contract: unknown, condition failed, or (any other rejection) nothing written. */
function classify(error: unknown): WireOutcome {
  if (error instanceof AppendOutcomeUnknownError) return { status: 'unknown', code: error.code, message: error.message, ids: [...error.ids] };
  if (error instanceof AppendConditionFailedError) return { status: 'condition-failed', conflictingPosition: error.conflictingPosition?.toString() ?? null };
  if (error instanceof EventStoreError) return { status: 'nothing-written', code: error.code, message: error.message };
  return { status: 'nothing-written', code: errorCode(error), message: error instanceof Error ? error.message : String(error) };
}

/** Repeats each unknown append with the same ids until a definitive answer (or gives up). */
async function settle(store: EventStore, config: WriterConfig, records: RecordFile<WriterRecord>, unsettled: Unsettled[]): Promise<void> {
  for (const pending of unsettled) {
    if (!pending.events) {
      records.write({ k: 'note', t: Date.now(), text: `attempt ${pending.attempt}: outcome unknown and no ids to settle it with` });
      continue;
    }
    for (let round = 1; round <= 4; round++) {
      const outcome = await recordedAppend(store, records, pending.attempt, pending.events, pending.condition, pending.wireCondition, 'client', null, round);
      // A repeat that wrote nothing for a passing reason (timeout, lost connection) says nothing
      // about the original: try again.
      if (outcome.status === 'appended' || outcome.status === 'condition-failed') break;
      if (outcome.status === 'nothing-written' && !['TIMEOUT', 'DATABASE_ERROR', 'OVERLOADED'].includes(outcome.code)) break;
      await sleep(Math.min(300 * round, config.appendTimeoutMs));
    }
  }
}

function toWire(event: EventInput): WireEvent {
  return { ...(event.id !== undefined && { id: event.id }), type: event.type, tags: [...(event.tags ?? [])], data: event.data, occurredAt: (event.occurredAt ?? new Date()).toISOString() };
}
