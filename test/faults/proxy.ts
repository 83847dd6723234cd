// A TCP proxy between the store and PostgreSQL that breaks connections on purpose: reset (RST),
// close (FIN), blackhole (accept bytes, deliver none, send nothing back), delay and throttle, per
// connection and per direction; refuse or fault new connections; and fire a fault at the moment a
// given statement (or its reply) passes, so that a test can break the connection that carries an
// append, a read or a commit.
//
// It reads the PostgreSQL wire protocol just enough to know which SQL each chunk carries: the
// startup parameters (application_name tells whose connection it is), Parse (statement name and
// text), Bind (which statement runs), Query, and ReadyForQuery from the server (the statement
// has been answered). Bytes are forwarded unchanged.
//
// Written on node:net: the npm TCP proxies (toxiproxy-node is a client of a Go daemon we cannot
// install here; the pure-JS ones forward bytes but have no per-direction blackhole or
// statement-aware triggers) would need as much code around them.
import { createServer, connect, type Server, type Socket } from 'node:net';

export type Direction = 'to-server' | 'to-client';
/** Which socket a cut or close hits: the client's, the server's, or both. */
export type Side = 'client' | 'server' | 'both';

export type FaultAction =
  /** RST (`resetAndDestroy`) to `side`; the other side is blackholed until heal(), then reset too. */
  | { kind: 'cut'; side?: Side }
  /** FIN to `side`; the other side is blackholed until heal(), then closed too. */
  | { kind: 'close'; side?: Side }
  /** Accept bytes, deliver none (held, as TCP would retransmit them), send no FIN or RST. */
  | { kind: 'stall'; direction?: Direction | 'both' }
  /** Deliver each chunk `ms` after it arrived. */
  | { kind: 'delay'; ms: number; direction?: Direction | 'both' }
  /** Deliver at most `bytesPerSecond`. */
  | { kind: 'throttle'; bytesPerSecond: number; direction?: Direction | 'both' };

/** What a trigger sees of one chunk as it arrives at the proxy. */
export interface ChunkInfo {
  connection: ProxyConnection;
  direction: Direction;
  bytes: Buffer;
  /** to-server: SQL of the statements this chunk asks to run (Bind of a prepared statement, Query). */
  statements: readonly string[];
  /** to-client: SQL of the statement this chunk answers (the one in flight when it arrived). */
  replyTo: string | undefined;
}

export interface Trigger {
  direction: Direction;
  match: (chunk: ChunkInfo) => boolean;
  action: FaultAction;
  /**
   * true: deliver the matching chunk, then fault (the server got the statement, the client never
   * hears the answer: replies are held from that moment). false: fault before it is delivered.
   */
  deliver: boolean;
  /** How many times it fires before it disarms itself. Default 1. */
  times?: number;
  onFire?: (connection: ProxyConnection, chunk: ChunkInfo) => void;
}

export interface ArmedTrigger {
  /** Resolves with the connection the first time the trigger fires. */
  readonly fired: Promise<ProxyConnection>;
  readonly count: number;
  disarm(): void;
}

export interface ProxyStats {
  accepted: number;
  refused: number;
  faulted: number;
  bytesToServer: number;
  bytesToClient: number;
}

type Item =
  | { kind: 'data'; chunk: Buffer; arrivedAt: number }
  | { kind: 'end' }
  | { kind: 'reset' }
  | { kind: 'call'; run: () => void };

const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

/** One direction of a connection: a queue between a source socket and a sink socket. */
class Pipe {
  readonly direction: Direction;
  #source: Socket | undefined;
  #sink: Socket | undefined;
  readonly #queue: Item[] = [];
  #queuedBytes = 0;
  #stalled = false;
  #delayMs = 0;
  #bytesPerSecond = 0;
  #tokens = 0;
  #lastRefill = 0;
  #timer: NodeJS.Timeout | undefined;
  #unflushed = 0;
  #dead = false;
  delivered = 0;

  constructor(direction: Direction) {
    this.direction = direction;
  }

  /** Bytes accepted from the source but not delivered yet. */
  get held(): number {
    return this.#queuedBytes;
  }

  get dead(): boolean {
    return this.#dead;
  }

  setSource(source: Socket): void {
    this.#source = source;
  }

  setSink(sink: Socket): void {
    this.#sink = sink;
    this.#pump();
  }

  push(item: Item): void {
    if (this.#dead) return;
    this.#queue.push(item);
    if (item.kind === 'data') {
      this.#queuedBytes += item.chunk.length;
      if (this.#queuedBytes > HIGH_WATER) this.#source?.pause();
    }
    this.#pump();
  }

  stall(): void {
    this.#stalled = true;
  }

  delay(ms: number): void {
    this.#delayMs = ms;
    this.#pump();
  }

  throttle(bytesPerSecond: number): void {
    this.#bytesPerSecond = bytesPerSecond;
    this.#tokens = 0;
    this.#lastRefill = Date.now();
    this.#pump();
  }

  heal(): void {
    this.#stalled = false;
    this.#delayMs = 0;
    this.#bytesPerSecond = 0;
    this.#pump();
  }

  /** Drops everything, now and later: the sink is gone. */
  kill(): void {
    this.#dead = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#source?.isPaused()) this.#source.resume();
  }

  #schedule(ms: number): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, Math.max(1, ms));
  }

  #pump(): void {
    if (this.#dead || this.#timer) return;
    const sink = this.#sink;
    while (this.#queue.length > 0) {
      if (this.#stalled || !sink) return;
      const item = this.#queue[0]!;
      if (item.kind === 'call') {
        // Runs once everything before it has reached the kernel.
        if (this.#unflushed > 0) return;
        this.#queue.shift();
        item.run();
        continue;
      }
      if (item.kind === 'end') {
        if (this.#unflushed > 0) return;
        this.#queue.shift();
        sink.end();
        this.kill();
        return;
      }
      if (item.kind === 'reset') {
        this.#queue.shift();
        if (!sink.destroyed) sink.resetAndDestroy();
        this.kill();
        return;
      }
      const now = Date.now();
      const readyAt = item.arrivedAt + this.#delayMs;
      if (readyAt > now) return this.#schedule(readyAt - now);
      let chunk = item.chunk;
      if (this.#bytesPerSecond > 0) {
        // Token bucket, at most a tenth of a second's worth in one burst.
        this.#tokens = Math.min(this.#tokens + ((now - this.#lastRefill) * this.#bytesPerSecond) / 1000, Math.max(this.#bytesPerSecond / 10, 1));
        this.#lastRefill = now;
        const allowed = Math.floor(this.#tokens);
        if (allowed < 1) return this.#schedule(Math.ceil(((1 - this.#tokens) * 1000) / this.#bytesPerSecond));
        if (allowed < chunk.length) {
          item.chunk = chunk.subarray(allowed);
          chunk = chunk.subarray(0, allowed);
        } else this.#queue.shift();
        this.#tokens -= chunk.length;
      } else this.#queue.shift();
      this.#queuedBytes -= chunk.length;
      this.delivered += chunk.length;
      this.#unflushed++;
      sink.write(chunk, () => {
        this.#unflushed--;
        this.#pump();
      });
    }
    if (this.#queuedBytes < LOW_WATER && this.#source?.isPaused()) this.#source.resume();
  }
}

/** Just enough of the PostgreSQL frontend/backend protocol to follow which SQL is in flight. */
class ProtocolTracker {
  #clientBuffer: Buffer = Buffer.alloc(0);
  #serverBuffer: Buffer = Buffer.alloc(0);
  #startupDone = false;
  #serverNegotiationBytes = 0;
  readonly #statements = new Map<string, string>();
  /** SQL of the statements sent and not yet answered with ReadyForQuery (oldest first). */
  readonly pending: string[] = [];
  kind: 'session' | 'cancel' | 'unknown' = 'unknown';
  readonly startup: Record<string, string> = {};

  /** Feeds client bytes; returns the SQL of each statement this chunk asks to run. */
  fromClient(chunk: Buffer): string[] {
    const run: string[] = [];
    if (this.kind === 'cancel') return run;
    this.#clientBuffer = this.#clientBuffer.length === 0 ? chunk : Buffer.concat([this.#clientBuffer, chunk]);
    let buffer = this.#clientBuffer;
    for (;;) {
      if (!this.#startupDone) {
        if (buffer.length < 8) break;
        const length = buffer.readInt32BE(0);
        if (buffer.length < length) break;
        const code = buffer.readInt32BE(4);
        if (code === 80877102) this.kind = 'cancel';
        else if (code === 80877103 || code === 80877104) this.#serverNegotiationBytes++;
        else {
          this.kind = 'session';
          this.#startupDone = true;
          const fields = buffer.subarray(8, length).toString('utf8').split('\0');
          for (let index = 0; index + 1 < fields.length; index += 2) if (fields[index]) this.startup[fields[index]!] = fields[index + 1]!;
        }
        buffer = buffer.subarray(length);
        if (this.kind === 'cancel') break;
        continue;
      }
      if (buffer.length < 5) break;
      const length = buffer.readInt32BE(1);
      if (buffer.length < 1 + length) break;
      const type = String.fromCharCode(buffer[0]!);
      const body = buffer.subarray(5, 1 + length);
      if (type === 'P') {
        const [name = '', text = ''] = cStrings(body, 2);
        this.#statements.set(name, text);
      } else if (type === 'B') {
        const [, statement = ''] = cStrings(body, 2);
        const text = this.#statements.get(statement) ?? '';
        this.pending.push(text);
        run.push(text);
      } else if (type === 'Q') {
        const [text = ''] = cStrings(body, 1);
        this.pending.push(text);
        run.push(text);
      }
      buffer = buffer.subarray(1 + length);
    }
    this.#clientBuffer = buffer.length === 0 ? Buffer.alloc(0) : Buffer.from(buffer);
    return run;
  }

  /** Feeds server bytes; returns the SQL this chunk answers (in flight when it arrived). */
  fromServer(chunk: Buffer): string | undefined {
    const answering = this.pending[0];
    if (this.kind === 'cancel') return answering;
    let buffer = this.#serverBuffer.length === 0 ? chunk : Buffer.concat([this.#serverBuffer, chunk]);
    while (this.#serverNegotiationBytes > 0 && buffer.length > 0) {
      this.#serverNegotiationBytes--;
      buffer = buffer.subarray(1);
    }
    while (buffer.length >= 5) {
      const length = buffer.readInt32BE(1);
      if (buffer.length < 1 + length) break;
      if (buffer[0] === 0x5a /* Z: ReadyForQuery */) this.pending.shift();
      buffer = buffer.subarray(1 + length);
    }
    this.#serverBuffer = buffer.length === 0 ? Buffer.alloc(0) : Buffer.from(buffer);
    return answering;
  }
}

function cStrings(body: Buffer, count: number): string[] {
  const strings: string[] = [];
  let start = 0;
  for (let index = 0; index < count; index++) {
    const end = body.indexOf(0, start);
    if (end < 0) break;
    strings.push(body.toString('utf8', start, end));
    start = end + 1;
  }
  return strings;
}

let nextConnectionId = 1;

interface ConnectionHooks {
  onData: (connection: ProxyConnection, direction: Direction, chunk: Buffer) => void;
  onGone: (connection: ProxyConnection) => void;
}

/** One proxied connection: the client's socket, the server's socket, a pipe each way. */
export class ProxyConnection {
  readonly id = nextConnectionId++;
  readonly openedAt = Date.now();
  readonly #client: Socket;
  #server: Socket | undefined;
  readonly #pipes: Record<Direction, Pipe> = { 'to-server': new Pipe('to-server'), 'to-client': new Pipe('to-client') };
  readonly #protocol = new ProtocolTracker();
  readonly #hooks: ConnectionHooks;
  #clientOpen = true;
  #serverOpen = true;
  /** The server side was cut or closed before it connected: how to end it once it connects. */
  #serverFate: 'cut' | 'close' | undefined;
  /** The silent half of a one-sided cut or close, ended at heal(). */
  #pendingAtHeal: { kind: 'cut' | 'close'; side: 'client' | 'server' } | undefined;
  lastClientByteAt = 0;
  lastServerByteAt = 0;
  /** A fault was applied to this connection. */
  faulted = false;

  /** @internal The proxy creates connections. */
  constructor(client: Socket, hooks: ConnectionHooks) {
    this.#client = client;
    this.#hooks = hooks;
    client.on('error', () => undefined);
    this.#pipes['to-server'].setSource(client);
    this.#pipes['to-client'].setSink(client);
    client.on('data', (chunk: Buffer) => {
      this.lastClientByteAt = Date.now();
      hooks.onData(this, 'to-server', chunk);
    });
    client.on('end', () => this.#pipes['to-server'].push({ kind: 'end' }));
    client.once('close', (hadError) => {
      if (hadError) this.#pipes['to-server'].push({ kind: 'reset' });
      if (!this.#server) this.#serverFate ??= 'close';
      this.#markClosed('client');
    });
  }

  /** @internal Connects the server side (unless a fault ended it already). */
  connectServer(host: string, port: number): void {
    if (this.#serverFate) return this.#markClosed('server');
    const server = connect({ host, port, allowHalfOpen: true, noDelay: true });
    server.on('error', () => undefined);
    let connected = false;
    server.once('connect', () => {
      connected = true;
      if (this.#serverFate) {
        if (this.#serverFate === 'cut') server.resetAndDestroy();
        else server.end();
        return;
      }
      this.#server = server;
      this.#pipes['to-client'].setSource(server);
      this.#pipes['to-server'].setSink(server);
    });
    server.on('data', (chunk: Buffer) => {
      this.lastServerByteAt = Date.now();
      this.#hooks.onData(this, 'to-client', chunk);
    });
    server.on('end', () => this.#pipes['to-client'].push({ kind: 'end' }));
    server.once('close', (hadError) => {
      // Refused or reset by the server: the client gets an RST too (held while that direction
      // is stalled, like any other packet).
      if (!connected) {
        if (!this.#client.destroyed) this.#client.resetAndDestroy();
      } else if (hadError) this.#pipes['to-client'].push({ kind: 'reset' });
      this.#markClosed('server');
    });
  }

  /** Startup parameters the client sent (user, database, application_name, options). */
  get startup(): Readonly<Record<string, string>> {
    return this.#protocol.startup;
  }

  get applicationName(): string | undefined {
    return this.#protocol.startup.application_name;
  }

  /** 'cancel' for a protocol CancelRequest connection. */
  get kind(): 'session' | 'cancel' | 'unknown' {
    return this.#protocol.kind;
  }

  /** SQL sent and not answered yet (oldest first). */
  get pendingStatements(): readonly string[] {
    return this.#protocol.pending;
  }

  /** The client sent a statement the server has not answered yet. */
  get awaitingReply(): boolean {
    return this.#protocol.pending.length > 0;
  }

  get open(): boolean {
    return this.#clientOpen || this.#serverOpen;
  }

  get bytesToServer(): number {
    return this.#pipes['to-server'].delivered;
  }

  get bytesToClient(): number {
    return this.#pipes['to-client'].delivered;
  }

  /** Bytes accepted but not delivered, per direction (what a stall holds). */
  get held(): Record<Direction, number> {
    return { 'to-server': this.#pipes['to-server'].held, 'to-client': this.#pipes['to-client'].held };
  }

  /** @internal */
  pipe(direction: Direction): Pipe {
    return this.#pipes[direction];
  }

  /** @internal */
  get protocol(): ProtocolTracker {
    return this.#protocol;
  }

  apply(action: FaultAction): void {
    this.faulted = true;
    switch (action.kind) {
      case 'cut':
      case 'close': {
        const side = action.side ?? 'both';
        if (side === 'both' || side === 'client') this.#end('client', action.kind);
        if (side === 'both' || side === 'server') this.#end('server', action.kind);
        if (side !== 'both') {
          // The other side hears nothing until the network "comes back".
          const other = side === 'client' ? 'server' : 'client';
          this.#pipes[other === 'client' ? 'to-client' : 'to-server'].stall();
          this.#pendingAtHeal = { kind: action.kind, side: other };
        }
        return;
      }
      case 'stall':
        for (const direction of directions(action.direction)) this.#pipes[direction].stall();
        return;
      case 'delay':
        for (const direction of directions(action.direction)) this.#pipes[direction].delay(action.ms);
        return;
      case 'throttle':
        for (const direction of directions(action.direction)) this.#pipes[direction].throttle(action.bytesPerSecond);
        return;
    }
  }

  cut(side: Side = 'both'): void {
    this.apply({ kind: 'cut', side });
  }

  close(side: Side = 'both'): void {
    this.apply({ kind: 'close', side });
  }

  stall(direction: Direction | 'both' = 'both'): void {
    this.apply({ kind: 'stall', direction });
  }

  /** Ends every fault: held bytes flow again; the silent half of a one-sided cut is cut now. */
  heal(): void {
    const pending = this.#pendingAtHeal;
    this.#pendingAtHeal = undefined;
    if (pending) this.#end(pending.side, pending.kind);
    this.#pipes['to-server'].heal();
    this.#pipes['to-client'].heal();
  }

  /** Destroys both sockets at once (the proxy is shutting down). */
  destroy(): void {
    this.#serverFate = 'cut';
    this.#client.destroy();
    this.#server?.destroy();
  }

  #markClosed(side: 'client' | 'server'): void {
    if (side === 'client') this.#clientOpen = false;
    else this.#serverOpen = false;
    if (!this.open) this.#hooks.onGone(this);
  }

  #end(side: 'client' | 'server', how: 'cut' | 'close'): void {
    // Nothing more goes to that side.
    this.#pipes[side === 'client' ? 'to-client' : 'to-server'].kill();
    const socket = side === 'client' ? this.#client : this.#server;
    if (!socket) {
      // Not connected to the server yet: end it the same way as soon as it is.
      this.#serverFate = how;
      return;
    }
    if (socket.destroyed) return;
    if (how === 'cut') socket.resetAndDestroy();
    else {
      socket.end();
      // A peer that never closes its half must not keep the socket forever.
      setTimeout(() => socket.destroy(), 2000).unref();
    }
  }
}

function directions(direction: Direction | 'both' | undefined): Direction[] {
  return direction === undefined || direction === 'both' ? ['to-server', 'to-client'] : [direction];
}

export interface FaultProxyOptions {
  targetHost?: string;
  targetPort: number;
  /** Listening port on 127.0.0.1; 0 picks a free one. Default 0. */
  port?: number;
}

interface ArmedEntry {
  trigger: Trigger;
  remaining: number;
  count: number;
  resolve: (connection: ProxyConnection) => void;
}

/**
 * The proxy. `connectionString(url)` points a PostgreSQL URL at it; faults apply to connections
 * through it. Every method is synchronous and takes effect at once.
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #targetHost: string;
  #targetPort: number;
  readonly #connections = new Set<ProxyConnection>();
  #armed: ArmedEntry[] = [];
  #refusing = false;
  #forNew: { remaining: number; action: FaultAction; onApply?: (connection: ProxyConnection) => void }[] = [];
  readonly #listeners = new Set<(connection: ProxyConnection) => void>();
  readonly stats: ProxyStats = { accepted: 0, refused: 0, faulted: 0, bytesToServer: 0, bytesToClient: 0 };
  readonly port: number;

  private constructor(server: Server, port: number, targetHost: string, targetPort: number) {
    this.#server = server;
    this.port = port;
    this.#targetHost = targetHost;
    this.#targetPort = targetPort;
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    let proxy: FaultProxy | undefined;
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => proxy!.#accept(socket));
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      });
    });
    proxy = new FaultProxy(server, port, options.targetHost ?? '127.0.0.1', options.targetPort);
    return proxy;
  }

  /** The same URL, through the proxy. */
  connectionString(url: string, params: Record<string, string> = {}): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.port);
    for (const [key, value] of Object.entries(params)) parsed.searchParams.set(key, value);
    return parsed.toString();
  }

  /** Where new connections go (the server moved, e.g. restarted on another port). */
  retarget(port: number): void {
    this.#targetPort = port;
  }

  /** Open connections, oldest first. */
  connections(filter: (connection: ProxyConnection) => boolean = () => true): ProxyConnection[] {
    return [...this.#connections].filter((connection) => connection.open && filter(connection));
  }

  /** Calls `listener` for each new connection (after any fault for new connections applied). */
  onConnection(listener: (connection: ProxyConnection) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Applies `action` to every open connection (optionally only those `filter` picks). Returns how many. */
  faultAll(action: FaultAction, filter?: (connection: ProxyConnection) => boolean): number {
    const targets = this.connections(filter);
    for (const connection of targets) this.#fault(connection, action);
    return targets.length;
  }

  /** Applies `action` to each of the next `count` new connections (Infinity: until heal()). */
  faultNew(count: number, action: FaultAction, onApply?: (connection: ProxyConnection) => void): void {
    this.#forNew.push({ remaining: count, action, ...(onApply && { onApply }) });
  }

  /** New connections are reset at once (the client sees ECONNRESET) until refuse(false) or heal(). */
  refuse(on = true): void {
    this.#refusing = on;
  }

  /** Fires `trigger.action` on the connection whose chunk matches, as it passes. */
  arm(trigger: Trigger): ArmedTrigger {
    let resolve!: (connection: ProxyConnection) => void;
    const fired = new Promise<ProxyConnection>((done) => (resolve = done));
    const entry: ArmedEntry = { trigger, remaining: trigger.times ?? 1, count: 0, resolve };
    this.#armed.push(entry);
    return {
      fired,
      get count() {
        return entry.count;
      },
      disarm: () => {
        this.#armed = this.#armed.filter((other) => other !== entry);
      },
    };
  }

  /** A random open connection (by `random`, a [0,1) generator) among those `filter` picks. */
  pick(random: () => number, filter: (connection: ProxyConnection) => boolean = () => true): ProxyConnection | undefined {
    const candidates = this.connections((connection) => connection.kind !== 'cancel' && filter(connection));
    return candidates[Math.floor(random() * candidates.length)];
  }

  /** Ends every fault: disarms triggers, stops refusing and faulting new connections, heals open ones. */
  heal(): void {
    this.#armed = [];
    this.#forNew = [];
    this.#refusing = false;
    for (const connection of this.#connections) connection.heal();
  }

  /** Cuts every connection and stops listening. */
  async close(): Promise<void> {
    this.heal();
    for (const connection of this.#connections) connection.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #fault(connection: ProxyConnection, action: FaultAction): void {
    if (!connection.faulted) this.stats.faulted++;
    connection.apply(action);
  }

  #accept(client: Socket): void {
    client.setNoDelay(true);
    if (this.#refusing) {
      this.stats.refused++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    this.stats.accepted++;
    const connection = new ProxyConnection(client, {
      onData: (from, direction, chunk) => this.#onData(from, direction, chunk),
      onGone: (gone) => this.#connections.delete(gone),
    });
    this.#connections.add(connection);
    for (const rule of this.#forNew) {
      if (rule.remaining <= 0) continue;
      rule.remaining--;
      this.#fault(connection, rule.action);
      rule.onApply?.(connection);
    }
    this.#forNew = this.#forNew.filter((rule) => rule.remaining > 0);
    connection.connectServer(this.#targetHost, this.#targetPort);
    for (const listener of this.#listeners) listener(connection);
  }

  #onData(connection: ProxyConnection, direction: Direction, chunk: Buffer): void {
    const now = Date.now();
    let statements: string[] = [];
    let replyTo: string | undefined;
    if (direction === 'to-server') {
      this.stats.bytesToServer += chunk.length;
      statements = connection.protocol.fromClient(chunk);
    } else {
      this.stats.bytesToClient += chunk.length;
      replyTo = connection.protocol.fromServer(chunk);
    }
    const pipe = connection.pipe(direction);
    if (this.#armed.length > 0) {
      const info: ChunkInfo = { connection, direction, bytes: chunk, statements, replyTo };
      for (const entry of [...this.#armed]) {
        const { trigger } = entry;
        if (trigger.direction !== direction || entry.remaining <= 0 || !trigger.match(info)) continue;
        entry.remaining--;
        entry.count++;
        if (entry.remaining <= 0) this.#armed = this.#armed.filter((other) => other !== entry);
        this.#fire(connection, pipe, chunk, now, trigger, info);
        entry.resolve(connection);
        return;
      }
    }
    pipe.push({ kind: 'data', chunk, arrivedAt: now });
  }

  #fire(connection: ProxyConnection, pipe: Pipe, chunk: Buffer, now: number, trigger: Trigger, info: ChunkInfo): void {
    trigger.onFire?.(connection, info);
    if (!connection.faulted) this.stats.faulted++;
    const { action } = trigger;
    if (!trigger.deliver) {
      if (action.kind === 'cut' || action.kind === 'close') {
        connection.apply(action);
        return;
      }
      connection.apply(action);
      pipe.push({ kind: 'data', chunk, arrivedAt: now });
      return;
    }
    // Deliver, then fault: from this moment nothing comes back the other way, so the peer that
    // sent this chunk never learns what became of it.
    const other = connection.pipe(pipe.direction === 'to-server' ? 'to-client' : 'to-server');
    if (action.kind !== 'delay' && action.kind !== 'throttle') other.stall();
    connection.faulted = true;
    pipe.push({ kind: 'data', chunk, arrivedAt: now });
    pipe.push({
      kind: 'call',
      run: () => {
        // A moment for the bytes to cross loopback and be read before the reset discards them.
        setTimeout(() => connection.apply(action), 10);
      },
    });
  }
}
