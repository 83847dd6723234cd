// Read replicas: which copy of the log a read may use. A streaming replica replays the primary's
// commits in commit order, and the store's positions commit in position order (the head lock),
// so a snapshot on a replica sees a prefix of the log: every event up to its head, none missing.
// A read there is stale, never wrong. The router only has to know how stale each replica is
// (its head against the primary's) and whether it answers at all.
import type pg from 'pg';
import { pause } from '../util/wait.ts';
import { openPool, serverOf } from './pool.ts';

export type FallbackReason = 'down' | 'lagging' | 'behind' | 'failed';

export interface ReplicaSettings {
  connectionStrings: readonly string[];
  poolSize: number;
  connectTimeoutMs: number;
  preparedStatements: boolean;
  /** A replica more than this many positions behind the primary is not used. */
  maxLag: number;
  /** How long a `{ atLeast }` read waits for a replica to reach its position. */
  waitMs: number;
  /** How often replica and primary heads are checked. */
  checkIntervalMs: number;
  clients: Set<pg.Client>;
}

export interface Replica {
  /** `host:port`, for telemetry and logs (never the credentials). */
  readonly name: string;
  readonly host: string | undefined;
  readonly port: number | undefined;
  readonly pool: pg.Pool;
  /** The highest head seen on it. */
  head: bigint | undefined;
  /** Not used until a check succeeds again. */
  down: boolean;
}

export interface ReplicaProbes {
  /** The replica's head (a statement on its pool, bounded and cancelled like every read). */
  replicaHead(replica: Replica, timeoutMs: number): Promise<bigint>;
  /** The primary's head. */
  primaryHead(timeoutMs: number): Promise<bigint>;
  /** A read went to the primary instead of a replica. */
  fellBack(replica: Replica | undefined, reason: FallbackReason, error?: unknown): void;
  /** A replica stopped or started answering. */
  changed(replica: Replica, down: boolean, error?: unknown): void;
}

/** How often a `{ atLeast }` read looks again while it waits for a replica. */
const WAIT_POLL_MS = 10;

export class ReplicaSet {
  readonly replicas: readonly Replica[];
  readonly #settings: ReplicaSettings;
  readonly #probes: ReplicaProbes;
  #primaryHead = 0n;
  #next = 0;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  readonly #headChecks = new Map<Replica, Promise<bigint | undefined>>();

  constructor(settings: ReplicaSettings, probes: ReplicaProbes) {
    this.#settings = settings;
    this.#probes = probes;
    this.replicas = settings.connectionStrings.map((connectionString) => {
      const { pool } = openPool({ connectionString, sessionConnectionString: connectionString, poolSize: settings.poolSize, connectTimeoutMs: settings.connectTimeoutMs, preparedStatements: settings.preparedStatements, clients: settings.clients });
      const { host, port } = serverOf(connectionString);
      return { name: host === undefined ? 'replica' : `${host}:${port}`, host, port, pool, head: undefined, down: false };
    });
  }

  /** First check (so that routing knows the heads from the start), then one every checkIntervalMs. */
  async start(): Promise<void> {
    await this.check();
    this.#timer = setInterval(() => void this.check(), this.#settings.checkIntervalMs);
    this.#timer.unref();
  }

  /** Heads of the primary and of every replica; a replica that does not answer is marked down. */
  check(): Promise<void> {
    this.#checking ??= (async () => {
      const timeoutMs = Math.max(this.#settings.checkIntervalMs, this.#settings.connectTimeoutMs);
      await Promise.all([
        this.#probes.primaryHead(timeoutMs).then((head) => this.observePrimaryHead(head), () => undefined),
        ...this.replicas.map((replica) => this.#checkHead(replica, timeoutMs)),
      ]);
    })().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  observePrimaryHead(head: bigint): void {
    if (head > this.#primaryHead) this.#primaryHead = head;
  }

  observeReplicaHead(replica: Replica, head: bigint): void {
    if (replica.head === undefined || head > replica.head) replica.head = head;
    if (head > this.#primaryHead) this.#primaryHead = head;
  }

  /** A read on the replica failed for a reason of the replica's (lost connection, recovery conflict). */
  failed(replica: Replica, error: unknown, connectionLost: boolean): void {
    if (connectionLost) this.#setDown(replica, true, error);
    this.#probes.fellBack(replica, 'failed', error);
  }

  /** Positions each replica is behind the primary, as last seen. */
  lags(): { replica: string; lag: number }[] {
    return this.replicas.filter((replica) => !replica.down && replica.head !== undefined).map((replica) => ({ replica: replica.name, lag: this.#lag(replica) }));
  }

  /**
   * The replica a read of this consistency goes to, or undefined for the primary (counted as a
   * fallback). `{ atLeast }` waits up to waitMs for a replica to reach the position.
   */
  async choose(consistency: 'eventual' | { atLeast: bigint }, signal: AbortSignal | undefined): Promise<Replica | undefined> {
    const wanted = consistency === 'eventual' ? 0n : consistency.atLeast;
    const found = this.#pick(wanted);
    if (found.replica) return found.replica;
    if (found.reason !== 'behind' || this.#settings.waitMs === 0) {
      this.#probes.fellBack(undefined, found.reason);
      return undefined;
    }
    const deadline = Date.now() + this.#settings.waitMs;
    while (Date.now() < deadline && !signal?.aborted) {
      await pause(Math.min(WAIT_POLL_MS, deadline - Date.now()), signal);
      // The checks run to their own bound and only the wait gives up on them: a check cut short
      // by the end of this wait says nothing about the replica (it must not mark it down).
      const timeoutMs = Math.max(this.#settings.checkIntervalMs, this.#settings.connectTimeoutMs);
      const checks = Promise.all(this.replicas.filter((replica) => !replica.down).map((replica) => this.#checkHead(replica, timeoutMs)));
      await Promise.race([checks, pause(Math.max(0, deadline - Date.now()), signal)]);
      const again = this.#pick(wanted);
      if (again.replica) return again.replica;
      if (again.reason !== 'behind') {
        this.#probes.fellBack(undefined, again.reason);
        return undefined;
      }
    }
    this.#probes.fellBack(undefined, 'behind');
    return undefined;
  }

  close(): Promise<void> {
    clearInterval(this.#timer);
    return Promise.all(this.replicas.map((replica) => replica.pool.end().catch(() => undefined))).then(() => undefined);
  }

  /** Round robin over the replicas that are up, within maxLag, and at `wanted`. */
  #pick(wanted: bigint): { replica: Replica; reason?: undefined } | { replica?: undefined; reason: FallbackReason } {
    const up = this.replicas.filter((replica) => !replica.down && replica.head !== undefined);
    if (up.length === 0) return { reason: 'down' };
    const fresh = up.filter((replica) => this.#lag(replica) <= this.#settings.maxLag);
    if (fresh.length === 0) return { reason: 'lagging' };
    const there = fresh.filter((replica) => replica.head! >= wanted);
    if (there.length === 0) return { reason: 'behind' };
    this.#next = (this.#next + 1) % there.length;
    return { replica: there[this.#next]! };
  }

  #lag(replica: Replica): number {
    const behind = this.#primaryHead - (replica.head ?? 0n);
    return behind <= 0n ? 0 : Number(behind);
  }

  /** One head check per replica at a time, shared by everyone waiting on it. */
  #checkHead(replica: Replica, timeoutMs: number): Promise<bigint | undefined> {
    let checking = this.#headChecks.get(replica);
    if (!checking) {
      checking = this.#probes
        .replicaHead(replica, timeoutMs)
        .then(
          (head) => {
            this.observeReplicaHead(replica, head);
            this.#setDown(replica, false);
            return head;
          },
          (error: unknown) => {
            this.#setDown(replica, true, error);
            return undefined;
          },
        )
        .finally(() => this.#headChecks.delete(replica));
      this.#headChecks.set(replica, checking);
    }
    return checking;
  }

  #setDown(replica: Replica, down: boolean, error?: unknown): void {
    if (replica.down === down) return;
    replica.down = down;
    this.#probes.changed(replica, down, error);
  }
}
