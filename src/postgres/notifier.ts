import pg from 'pg';

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
  #lastHead = 0n;
  #closed = false;

  /** `quotedChannel` is the schema name, validated and quoted (the trigger notifies on it). */
  constructor(config: pg.ClientConfig, quotedChannel: string) {
    this.#config = config;
    this.#channel = quotedChannel;
  }

  /** See FollowSource.waitForAppend. */
  waitForAppend(position: bigint, timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.#closed || signal.aborted) return Promise.resolve();
    this.#ensureListening();
    if (this.#lastHead > position) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#waiters.delete(waiter);
        resolve();
      };
      const waiter: Waiter = { position, wake: done };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener('abort', done, { once: true });
      this.#waiters.add(waiter);
    });
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
    const lost = (): void => {
      if (this.#client !== client) return;
      this.#client = undefined;
      client.end().catch(() => undefined);
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      if (message.channel !== this.#channel.slice(1, -1) || message.payload === undefined) return;
      let head: bigint;
      try {
        head = BigInt(message.payload);
      } catch {
        return; // someone else's notification on a channel of the same name
      }
      if (head > this.#lastHead) this.#lastHead = head;
      for (const waiter of [...this.#waiters]) if (head > waiter.position) waiter.wake();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${this.#channel}`);
    } catch {
      client.end().catch(() => undefined);
      this.#scheduleReconnect();
      return;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#failures = 0;
    // Appends made while no listener was connected sent notifications nobody received.
    for (const waiter of [...this.#waiters]) waiter.wake();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#failures += 1;
    const delay = Math.min(5000, 50 * 2 ** Math.min(this.#failures, 7));
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#waiters.size > 0) this.#ensureListening();
    }, delay);
    this.#retryTimer.unref();
  }
}
