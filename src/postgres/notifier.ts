import pg from 'pg';
import { destroySocket } from './socket.ts';
import { wakeableWait } from '../util/wait.ts';
import { backoffDelay } from '../util/backoff.ts';
import { errorFields, type StoreLog } from '../telemetry/log.ts';

const RECENT_NOTIFICATIONS = 256;

interface Waiter {
  position: bigint;
  wake: () => void;
}

/**
 * One LISTEN connection per store, shared by its subscriptions and consumers. A notification
 * (payload: the new head) wakes every waiter whose position it passes. Notifications are only a
 * hint: they are lost while the connection is down, so waiters also poll, and every (re)connect
 * wakes all waiters to read again.
 */
export class HeadNotifier {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #waiters = new Set<Waiter>();
  #client: pg.Client | undefined;
  #connecting: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  /** Counts notifications; `#recent` keeps the last few with the head each announced. */
  #sequence = 0;
  readonly #recent: { sequence: number; head: bigint }[] = [];
  #closed = false;
  #latestHead = 0n;

  /** `quotedChannel` is the schema name, validated and quoted (the trigger notifies on it). */
  readonly #log: StoreLog | undefined;

  constructor(config: pg.ClientConfig, quotedChannel: string, log?: StoreLog) {
    this.#log = log;
    // Keepalives let the client notice a connection that died without a word (no FIN), and
    // reconnect; until then waiters fall back to polling.
    this.#config = { connectionTimeoutMillis: 10_000, ...config, keepAlive: true, keepAliveInitialDelayMillis: 30_000 };
    this.#channel = quotedChannel;
  }

  /** The highest head a notification announced (0n before the first). */
  get latestHead(): bigint {
    return this.#latestHead;
  }

  /** See FollowSource.mark. */
  mark(): number {
    return this.#sequence;
  }

  /** See FollowSource.waitForAppend. */
  waitForAppend(position: bigint, since: number, timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.#closed || signal.aborted) return Promise.resolve();
    this.#ensureListening();
    // A notification that arrived while the caller was reading may announce what its read did
    // not see yet: then read again at once. Only notifications since the caller's mark count (a
    // head that went down, after a restore, must not keep waking everyone), and when the mark is
    // older than what is kept, read again to be safe.
    const oldest = this.#recent[0];
    if (oldest !== undefined && since < oldest.sequence - 1) return Promise.resolve();
    if (this.#recent.some((notification) => notification.sequence > since && notification.head > position)) return Promise.resolve();
    return wakeableWait(timeoutMs, signal, (wake) => {
      const waiter: Waiter = { position, wake };
      this.#waiters.add(waiter);
      return () => this.#waiters.delete(waiter);
    });
  }

  /** Every client this notifier opened and that has not ended yet. */
  readonly #all = new Set<pg.Client>();

  /** After close()'s timeout: closes every socket at once (a vanished peer never answers the goodbye). */
  destroy(): void {
    for (const client of this.#all) destroySocket(client);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    for (const waiter of [...this.#waiters]) waiter.wake();
    const client = this.#client;
    this.#client = undefined;
    await this.#connecting?.catch(() => undefined);
    await client?.end().catch(() => undefined);
  }

  #ensureListening(): void {
    if (this.#client || this.#connecting || this.#retryTimer || this.#closed) return;
    this.#connecting = this.#connect().finally(() => (this.#connecting = undefined));
  }

  async #connect(): Promise<void> {
    const client = new pg.Client(this.#config);
    this.#all.add(client);
    client.once('end', () => this.#all.delete(client));
    const lost = (error?: unknown): void => {
      if (this.#client !== client) return;
      this.#client = undefined;
      if (!this.#closed) this.#log?.warn(error instanceof Error ? errorFields(error) : {}, 'the LISTEN connection that wakes subscriptions was lost; they poll until it is back');
      client.end().catch(() => undefined);
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (message) => {
      if (message.channel !== this.#channel.slice(1, -1) || message.payload === undefined) return;
      let head: bigint;
      try {
        head = BigInt(message.payload);
      } catch {
        return; // someone else's notification on a channel of the same name
      }
      this.#sequence += 1;
      this.#recent.push({ sequence: this.#sequence, head });
      if (head > this.#latestHead) this.#latestHead = head;
      if (this.#recent.length > RECENT_NOTIFICATIONS) this.#recent.shift();
      for (const waiter of [...this.#waiters]) if (head > waiter.position) waiter.wake();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${this.#channel}`);
    } catch (error) {
      client.end().catch(() => undefined);
      if (this.#failures === 0) this.#log?.warn(errorFields(error), 'the LISTEN connection that wakes subscriptions failed; they poll until it is back');
      this.#scheduleReconnect();
      return;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    if (this.#failures > 0) this.#log?.info({ failures: this.#failures }, 'the LISTEN connection is back');
    this.#failures = 0;
    // Appends made while no listener was connected sent notifications nobody received.
    for (const waiter of [...this.#waiters]) waiter.wake();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#failures += 1;
    const delay = backoffDelay(this.#failures, { baseMs: 100, capMs: 5000, jitter: 'equal' });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#waiters.size > 0) this.#ensureListening();
    }, delay);
    this.#retryTimer.unref();
  }
}
