// dses verify, dses stats, dses consumers: the CLI run as a process, as an operator runs it.
//
// verify: each test inflicts one damage (as a superuser, with the immutability triggers out of
// the way) and checks that verify reports exactly that damage, so that each test fails if the
// check behind it is removed. The clean tests make sure nothing is reported on an intact store.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Query, type EventStore, type SequencedEvent } from '../../src/index.ts';
import { loadMigrations } from '../../src/postgres/schema.ts';
import { createTestStore, uniqueSchemaName, withClient } from '../helpers.ts';
import { waitFor } from './fixtures/backends.ts';
import { dses, type Run } from '../cli.ts';

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

/** A migrated store in a fresh schema with `count` events (types A/B, tags as the store writes them). */
async function storeWithEvents(count = 5): Promise<{ store: EventStore; schema: string; quoted: string }> {
  const created = await createTestStore();
  cleanups.push(created.dispose);
  for (let n = 1; n <= count; n += 1) await created.store.append({ type: n % 2 === 0 ? 'B' : 'A', tags: [`item:${n}`, 'all'], data: { n } });
  return { store: created.store, schema: created.schema, quoted: `"${created.schema}"` };
}

/** Runs `sql` as the superuser with triggers (the immutability ones) not firing. */
async function damage(sql: string): Promise<void> {
  await withClient(async (client) => {
    await client.query('SET session_replication_role = replica');
    await client.query(sql);
  });
}

/** verify must fail (exit 1) with these lines among its report, and a summary on stderr. */
async function assertVerifyFinds(schema: string, expected: string[], extraArgs: string[] = []): Promise<Run> {
  const run = await dses(['--schema', schema, 'verify', ...extraArgs]);
  assert.equal(run.code, 1, `exit code; stdout: ${run.stdout} stderr: ${run.stderr}`);
  const lines = run.stdout.trim().split('\n');
  for (const line of expected) assert.ok(lines.includes(line), `expected the line\n  ${line}\nin\n${run.stdout}`);
  assert.match(run.stderr, /error \[VERIFY_FAILED\]: schema \S+ failed verification: \d+ problem\(s\)/);
  return run;
}

async function runConsumerUntilCaughtUp(store: EventStore, name: string): Promise<void> {
  const controller = new AbortController();
  const seen: SequencedEvent[] = [];
  const head = await store.head();
  const running = store.consumer(name, { query: Query.all(), pollIntervalMs: 100, handle: (event) => void seen.push(event) }).run({ signal: controller.signal });
  await waitFor(`consumer ${name} to reach ${head}`, async () => (await store.consumerStatus(name)).position >= head);
  controller.abort();
  await running;
}

describe('dses verify', () => {
  test('a clean store with events and a consumer: exit 0, an ok summary on stdout, progress on stderr; --json says ok', async () => {
    const { store, schema } = await storeWithEvents(7);
    await runConsumerUntilCaughtUp(store, 'projector');
    const run = await dses(['--schema', schema, 'verify', '--range', '3']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^ok: schema ${schema}: 7 events, head 7, 10 checks passed`));
    assert.match(run.stderr, /scanned positions up to 7 of 7 \(100%\)/);
    const json = await dses(['--schema', schema, 'verify', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as { ok: boolean; events: string; head: string; problems: unknown[]; checks: { check: string; ok: boolean }[] };
    assert.equal(report.ok, true);
    assert.equal(report.events, '7');
    assert.equal(report.head, '7');
    assert.deepEqual(report.problems, []);
    assert.ok(report.checks.every((check) => check.ok));
  });

  test('an empty store is clean', async () => {
    const { schema } = await storeWithEvents(0);
    const run = await dses(['--schema', schema, 'verify']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^ok: schema \S+: 0 events, head 0/);
  });

  test('deleted events: the gap is reported exactly, also across a scan range boundary; --json lists it', async () => {
    const { schema, quoted } = await storeWithEvents(8);
    await damage(`DELETE FROM ${quoted}.events WHERE position IN (3, 4, 7)`);
    // Ranges of 3: 1..3, 4..6, 7..8: the gap 3..4 spans two ranges, 7 starts one.
    await assertVerifyFinds(schema, ['positions: positions 3 to 4 are missing (2)', 'positions: position 7 is missing'], ['--range', '3']);
    await assertVerifyFinds(schema, ['positions: positions 3 to 4 are missing (2)', 'positions: position 7 is missing']);
    const json = await dses(['--schema', schema, 'verify', '--json']);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as { ok: boolean; problems: { check: string; message: string }[]; checks: { check: string; ok: boolean }[] };
    assert.equal(report.ok, false);
    assert.deepEqual(report.problems, [
      { check: 'positions', message: 'positions 3 to 4 are missing (2)' },
      { check: 'positions', message: 'position 7 is missing' },
    ]);
    assert.equal(report.checks.find((check) => check.check === 'positions')?.ok, false);
    assert.equal(report.checks.find((check) => check.check === 'tags')?.ok, true);
  });

  test('deleted first events: the gap from position 1 is reported', async () => {
    const { schema, quoted } = await storeWithEvents(4);
    await damage(`DELETE FROM ${quoted}.events WHERE position <= 2`);
    await assertVerifyFinds(schema, ['positions: positions 1 to 2 are missing (2)']);
  });

  test('a duplicate position, possible once the primary key is gone: the duplicate and the missing index are reported', async () => {
    const { schema, quoted } = await storeWithEvents(5);
    await damage(`ALTER TABLE ${quoted}.events DROP CONSTRAINT events_pkey;
      INSERT INTO ${quoted}.events (position, id, type, tags, data, metadata, occurred_at, recorded_at) VALUES (3, gen_random_uuid(), 'A', '{}', 'null', '{}', now(), now())`);
    const run = await assertVerifyFinds(schema, ['positions: position 3 is stored more than once', `indexes: index ${quoted}.events_pkey on events is missing`], ['--range', '2']);
    assert.equal(run.stdout.trim().split('\n').length, 2, run.stdout);
  });

  test('a head row that disagrees with the highest position', async () => {
    const { schema, quoted } = await storeWithEvents(5);
    await damage(`UPDATE ${quoted}.head SET position = 9`);
    const run = await assertVerifyFinds(schema, ['head: the head row says 9, but the highest stored position is 5']);
    assert.equal(run.stdout.trim().split('\n').length, 1, run.stdout);
  });

  test('a deleted last event: the head is ahead of the stored events', async () => {
    const { schema, quoted } = await storeWithEvents(5);
    await damage(`DELETE FROM ${quoted}.events WHERE position = 5`);
    await assertVerifyFinds(schema, ['head: the head row says 5, but the highest stored position is 4']);
  });

  test('a duplicate id, possible once the unique index is gone: both the missing index and the duplicate are reported', async () => {
    const { schema, quoted } = await storeWithEvents(5);
    const id = await withClient(async (client) => (await client.query<{ id: string }>(`SELECT id::text AS id FROM ${quoted}.events WHERE position = 2`)).rows[0]!.id);
    await damage(`ALTER TABLE ${quoted}.events DROP CONSTRAINT events_id_key;
      INSERT INTO ${quoted}.events (position, id, type, tags, data, metadata, occurred_at, recorded_at) SELECT 6, id, type, tags, data, metadata, occurred_at, recorded_at FROM ${quoted}.events WHERE position = 2;
      UPDATE ${quoted}.head SET position = 6`);
    await assertVerifyFinds(schema, [`indexes: index ${quoted}.events_id_key on events is missing`, `ids: id ${id} is stored more than once, at positions 2, 6`]);
  });

  test('an invalid id (version 0)', async () => {
    const { schema, quoted } = await storeWithEvents(3);
    await damage(`INSERT INTO ${quoted}.events (position, id, type, tags, data, metadata, occurred_at, recorded_at)
      VALUES (4, '12345678-1234-0234-8234-123456789012', 'A', '{}', 'null', '{}', now(), now());
      UPDATE ${quoted}.head SET position = 4`);
    const run = await assertVerifyFinds(schema, ['ids: event 4 has the id 12345678-1234-0234-8234-123456789012, not a valid UUID (version 1 to 8, RFC 4122 variant)']);
    assert.equal(run.stdout.trim().split('\n').length, 1, run.stdout);
  });

  test('tags that are not a sorted set: unsorted, repeated; tags the store sorts by UTF-16 (astral characters) are not reported', async () => {
    const { store, schema, quoted } = await storeWithEvents(4);
    // JavaScript sorts U+1F600 (a surrogate pair, 0xD83D...) before U+FF01; byte order is the reverse.
    await store.append({ type: 'A', tags: ['\uFF01', '\u{1F600}'], data: null });
    // Event 4 gets them in code point order, which is increasing in "C" collation but not what the store writes.
    await damage(`UPDATE ${quoted}.events SET tags = '{zeta,alpha}' WHERE position = 2; UPDATE ${quoted}.events SET tags = '{same,same}' WHERE position = 3;
      UPDATE ${quoted}.events SET tags = ARRAY[U&'\\FF01', U&'\\+01F600'] WHERE position = 4;
      UPDATE ${quoted}.events SET tags = '{{a,b},{c,d}}' WHERE position = 1`);
    const run = await assertVerifyFinds(schema, [
      'tags: event 1: tags [["a","b"],["c","d"]] are not a one-dimensional array',
      'tags: event 2: tags ["zeta","alpha"] are not sorted ("zeta" before "alpha")',
      'tags: event 3: tags ["same","same"] repeat "same"',
      'tags: event 4: tags ["\uFF01","\u{1F600}"] are not sorted ("\uFF01" before "\u{1F600}")',
    ]);
    assert.equal(run.stdout.trim().split('\n').length, 4, run.stdout);
  });

  test('a dropped immutability trigger', async () => {
    const { schema, quoted } = await storeWithEvents(2);
    await damage(`DROP TRIGGER events_are_immutable ON ${quoted}.events`);
    const run = await assertVerifyFinds(schema, [`triggers: trigger events_are_immutable on ${quoted}.events is missing`]);
    assert.equal(run.stdout.trim().split('\n').length, 1, run.stdout);
  });

  test('a disabled truncate trigger and a dropped NOTIFY trigger', async () => {
    const { schema, quoted } = await storeWithEvents(2);
    await damage(`ALTER TABLE ${quoted}.events DISABLE TRIGGER events_are_not_truncated; DROP TRIGGER head_moved ON ${quoted}.head`);
    await assertVerifyFinds(schema, [`triggers: trigger events_are_not_truncated on ${quoted}.events is disabled`, `triggers: trigger head_moved on ${quoted}.head is missing`]);
  });

  test('a dropped append function', async () => {
    const { schema, quoted } = await storeWithEvents(2);
    await damage(`DROP FUNCTION ${quoted}.append_batch(jsonb, boolean, bigint, uuid[], boolean)`);
    await assertVerifyFinds(schema, [`functions: function ${quoted}.append_batch(jsonb, boolean, bigint, uuid[], boolean) is missing`]);
  });

  test('an invalid index (indisvalid = false)', async () => {
    const { schema, quoted } = await storeWithEvents(2);
    await damage(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = '${quoted}.events_tags_idx'::regclass`);
    const run = await assertVerifyFinds(schema, [`indexes: index ${quoted}.events_tags_idx on events is not valid: REINDEX INDEX ${quoted}.events_tags_idx`]);
    assert.equal(run.stdout.trim().split('\n').length, 1, run.stdout);
  });

  test('a dropped index', async () => {
    const { schema, quoted } = await storeWithEvents(2);
    await damage(`DROP INDEX ${quoted}.events_type_position_idx`);
    await assertVerifyFinds(schema, [`indexes: index ${quoted}.events_type_position_idx on events is missing`]);
  });

  test('a consumer checkpoint beyond the stored events, and a snapshot whose event was replaced', async () => {
    const { store, schema, quoted } = await storeWithEvents(4);
    await runConsumerUntilCaughtUp(store, 'projector');
    await damage(`UPDATE ${quoted}.consumers SET position = 9 WHERE name = 'projector';
      INSERT INTO ${quoted}.snapshots (name, version, query_hash, position, event_id, state) VALUES ('counter', 1, 'h', 2, '00000000-0000-4000-8000-000000000000', '{}')`);
    const id = await withClient(async (client) => (await client.query<{ id: string }>(`SELECT id::text AS id FROM ${quoted}.events WHERE position = 2`)).rows[0]!.id);
    const run = await assertVerifyFinds(schema, [
      'checkpoints: consumer "projector" has processed up to position 9, but no event is stored there',
      `checkpoints: snapshot "counter" version 1 is at position 2, but another event is stored there (${id}; the snapshot names 00000000-0000-4000-8000-000000000000): it is not used`,
    ]);
    assert.equal(run.stdout.trim().split('\n').length, 2, run.stdout);
  });

  test('a missing migration row, and one newer than the library', async () => {
    const { schema, quoted } = await storeWithEvents(2);
    await damage(`DELETE FROM ${quoted}.migrations WHERE version = 3; INSERT INTO ${quoted}.migrations (version, name) VALUES (99, 'from-the-future')`);
    const run = await assertVerifyFinds(schema, [
      'migrations: migration 3 (subscriptions-consumers-snapshots) is not recorded as applied',
      `migrations: migration 99 (from-the-future) is newer than this library knows (${loadMigrations().length}): upgrade dses`,
    ]);
    assert.equal(run.stdout.trim().split('\n').length, 2, run.stdout);
  });
});

describe('dses stats', () => {
  test('exact counts of events, types and tags on a small store; --json parses; the text names the same numbers', async () => {
    const { store, schema } = await storeWithEvents(0);
    await store.append([
      { type: 'Registered', tags: ['user:1', 'tenant:a'], data: null },
      { type: 'Registered', tags: ['user:2', 'tenant:a'], data: null },
      { type: 'Registered', tags: ['user:3', 'tenant:b'], data: null },
      { type: 'Renamed', tags: ['user:1', 'tenant:a'], data: null },
      { type: 'Renamed', tags: ['user:1'], data: null },
      { type: 'Deleted', data: null },
    ]);
    const run = await dses(['--schema', schema, 'stats', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const stats = JSON.parse(run.stdout) as {
      events: string; head: string; size: { tableBytes: number; indexBytes: number; totalBytes: number };
      types: { type: string; events: string }[]; tags: { tag: string; events: string }[]; tagSample: { sampled: boolean };
      rates: { minutes: number; events: string; perMinute: number }[];
    };
    assert.equal(stats.events, '6');
    assert.equal(stats.head, '6');
    assert.deepEqual(stats.types, [{ type: 'Registered', events: '3' }, { type: 'Renamed', events: '2' }, { type: 'Deleted', events: '1' }]);
    assert.deepEqual(stats.tags, [
      { tag: 'tenant:a', events: '3' }, { tag: 'user:1', events: '3' }, { tag: 'tenant:b', events: '1' }, { tag: 'user:2', events: '1' }, { tag: 'user:3', events: '1' },
    ]);
    assert.equal(stats.tagSample.sampled, false);
    assert.ok(stats.size.totalBytes >= stats.size.tableBytes + stats.size.indexBytes && stats.size.indexBytes > 0, JSON.stringify(stats.size));
    assert.deepEqual(stats.rates.map((rate) => [rate.minutes, rate.events]), [[5, '6'], [15, '6'], [60, '6']]);
    assert.equal(stats.rates[0]!.perMinute, 6 / 5);

    const text = await dses(['--schema', schema, 'stats']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^events +6$/m);
    assert.match(text.stdout, /^ +3 +Registered$/m);
    assert.match(text.stdout, /^ +3 +tenant:a$/m);
  });

  test('above --tag-sample events the tags are counted on a TABLESAMPLE, and the output says so', async () => {
    const { schema } = await storeWithEvents(40);
    const run = await dses(['--schema', schema, 'stats', '--json', '--tag-sample', '10']);
    assert.equal(run.code, 0, run.stderr);
    const stats = JSON.parse(run.stdout) as { events: string; types: { events: string }[]; tagSample: { sampled: boolean; percent: number } };
    assert.deepEqual(stats.tagSample, { sampled: true, percent: 25 });
    // Types stay exact.
    assert.deepEqual(stats.types.map((row) => row.events), ['20', '20']);
    const text = await dses(['--schema', schema, 'stats', '--tag-sample', '10']);
    assert.match(text.stdout, /^most frequent tags \(estimated from a 25\.00% TABLESAMPLE SYSTEM sample\)$/m);
  });

  test('append rates count only recent events (recorded_at in the past is outside the windows)', async () => {
    const { schema, quoted } = await storeWithEvents(6);
    // Events 1..4 recorded 2 hours and 10 minutes ago: only 5 and 6 are in the 5-minute window.
    await damage(`UPDATE ${quoted}.events SET recorded_at = now() - interval '2 hours' WHERE position <= 2; UPDATE ${quoted}.events SET recorded_at = now() - interval '10 minutes' WHERE position IN (3, 4)`);
    const run = await dses(['--schema', schema, 'stats', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const stats = JSON.parse(run.stdout) as { rates: { minutes: number; events: string }[]; timeline: { minute: string; events: string }[] };
    assert.deepEqual(stats.rates.map((rate) => [rate.minutes, rate.events]), [[5, '2'], [15, '4'], [60, '4']]);
    // Per minute: 61 minutes, oldest first, in UTC; the two events of 10 minutes ago in one minute,
    // the two recent ones in the last minute or two, the ones of 2 hours ago nowhere.
    assert.equal(stats.timeline.length, 61);
    const minutes = stats.timeline.map((entry) => Date.parse(entry.minute));
    assert.ok(stats.timeline.every((entry) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/.test(entry.minute)), stats.timeline[0]!.minute);
    assert.ok(minutes.every((minute, index) => index === 0 || minute - minutes[index - 1]! === 60_000));
    const counted = stats.timeline.filter((entry) => entry.events !== '0');
    assert.equal(counted.reduce((sum, entry) => sum + Number(entry.events), 0), 4, JSON.stringify(counted));
    const tenMinutesAgo = counted.find((entry) => Date.now() - Date.parse(entry.minute) >= 9 * 60_000);
    assert.equal(tenMinutesAgo?.events, '2', JSON.stringify(counted));
  });
});

describe('dses consumers', () => {
  test('lists consumers as a table and as JSON; reset moves the checkpoint; reset while running exits 1; an unknown name exits 1 and creates nothing', async () => {
    const { store, schema, quoted } = await storeWithEvents(6);
    await runConsumerUntilCaughtUp(store, 'projector');
    await store.append({ type: 'A', data: null });

    const table = await dses(['--schema', schema, 'consumers']);
    assert.equal(table.code, 0, table.stderr);
    const [header, row] = table.stdout.trim().split('\n');
    assert.match(header!, /^NAME +POSITION +LAG +STATE +OWNER +LAST ERROR$/);
    assert.match(row!, /^projector +6 +1 +idle +\S+ +-$/);

    const json = await dses(['--schema', schema, 'consumers', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const [status] = JSON.parse(json.stdout) as { name: string; position: string; head: string; lag: string; state: string }[];
    assert.deepEqual({ name: status!.name, position: status!.position, head: status!.head, lag: status!.lag, state: status!.state }, { name: 'projector', position: '6', head: '7', lag: '1', state: 'idle' });

    const reset = await dses(['--schema', schema, 'consumers', 'reset', 'projector', '--to', '2']);
    assert.equal(reset.code, 0, reset.stderr);
    assert.equal((await store.consumerStatus('projector')).position, 2n);
    const toZero = await dses(['--schema', schema, 'consumers', 'reset', 'projector']);
    assert.equal(toZero.code, 0, toZero.stderr);
    assert.equal((await store.consumerStatus('projector')).position, 0n);

    const beyond = await dses(['--schema', schema, 'consumers', 'reset', 'projector', '--to', '100']);
    assert.equal(beyond.code, 2, beyond.stderr);
    assert.match(beyond.stderr, /INVALID_INPUT/);

    const unknown = await dses(['--schema', schema, 'consumers', 'reset', 'no-such-consumer']);
    assert.equal(unknown.code, 1, unknown.stderr);
    assert.match(unknown.stderr, /error \[UNKNOWN_CONSUMER\]: no consumer named "no-such-consumer"/);
    const names = await withClient(async (client) => (await client.query<{ name: string }>(`SELECT name FROM ${quoted}.consumers ORDER BY name`)).rows.map((r) => r.name));
    assert.deepEqual(names, ['projector'], 'the unknown name was not created');

    // Running: the lease is held, the reset is refused and changes nothing.
    const controller = new AbortController();
    const running = store.consumer('projector', { query: Query.all(), pollIntervalMs: 100, handle: () => undefined }).run({ signal: controller.signal });
    try {
      await waitFor('the consumer to run and catch up', async () => {
        const now = await store.consumerStatus('projector');
        return now.state === 'running' && now.position === 7n;
      });
      const refused = await dses(['--schema', schema, 'consumers', 'reset', 'projector']);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /error \[CONSUMER_RUNNING\]: consumer "projector" is running/);
      assert.equal((await store.consumerStatus('projector')).position, 7n);
      const listed = await dses(['--schema', schema, 'consumers']);
      assert.match(listed.stdout, /^projector +7 +0 +running /m);
    } finally {
      controller.abort();
      await running;
    }
  });

  test('a failed consumer shows its state and last error', async () => {
    const { store, schema } = await storeWithEvents(3);
    const failing = store.consumer('breaks', {
      query: Query.all(),
      maxAttempts: 1,
      handle: (event) => {
        if (event.position === 2n) throw new Error('cannot handle\nevent 2');
      },
    });
    await assert.rejects(failing.run(), /cannot handle/);
    const table = await dses(['--schema', schema, 'consumers']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^breaks +1 +2 +failed +\S+ +Error: cannot handle event 2$/m);
    const json = await dses(['--schema', schema, 'consumers', '--json']);
    const [status] = JSON.parse(json.stdout) as { state: string; failedPosition: string; lastError: string }[];
    assert.deepEqual([status!.state, status!.failedPosition, status!.lastError], ['failed', '2', 'Error: cannot handle\nevent 2']);
  });

  test('no consumers: nothing on stdout, a note on stderr; --json gives []', async () => {
    const { schema } = await storeWithEvents(1);
    const run = await dses(['--schema', schema, 'consumers']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /no consumers in schema/);
    const json = await dses(['--schema', schema, 'consumers', '--json']);
    assert.deepEqual(JSON.parse(json.stdout), []);
  });
});

describe('bad input', () => {
  test('an unknown flag is a usage error (exit 2), for each command', async () => {
    for (const args of [['verify', '--bogus'], ['stats', '--bogus'], ['consumers', '--bogus'], ['consumers', 'reset', 'x', '--bogus'], ['verify', '--range', '0'], ['stats', '--tag-sample', 'x']]) {
      const run = await dses(['--schema', 'whatever', ...args]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stdout, '');
    }
  });

  test('a schema that does not exist: a clear error, exit 1, for each command', async () => {
    const schema = uniqueSchemaName('missing');
    for (const args of [['verify'], ['verify', '--json'], ['stats'], ['consumers'], ['consumers', 'reset', 'x']]) {
      const run = await dses(['--schema', schema, ...args]);
      assert.equal(run.code, 1, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^error \\[DATABASE_ERROR\\]: schema "${schema}" does not exist in this database`, 'm'));
      assert.equal(run.stdout, '');
    }
  });

  test('a schema without a store in it: a clear error, exit 1', async () => {
    const schema = uniqueSchemaName('empty');
    await withClient((client) => client.query(`CREATE SCHEMA "${schema}"`));
    cleanups.push(() => withClient((client) => client.query(`DROP SCHEMA "${schema}" CASCADE`)).then(() => undefined));
    const run = await dses(['--schema', schema, 'verify']);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /has no events table: it holds no event store/);
  });
});
