// initdb/01-eventstore-schema.sql is what docker-compose.yml mounts into
// /docker-entrypoint-initdb.d. It is generated from the migrations; these tests fail when it
// drifts from them, and prove that a schema created from the file alone is one the store uses
// as is and that migrate() considers complete.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EventStore, Query, QueryItem, schemaSql } from '../../src/index.ts';
import { databaseUrl, dropSchema, uniqueSchemaName, withClient } from '../helpers.ts';

const INITDB_FILE = fileURLToPath(new URL('../../initdb/01-eventstore-schema.sql', import.meta.url));
const fileText = readFileSync(INITDB_FILE, 'utf8');

const schema = uniqueSchemaName('initdb');
after(() => dropSchema(schema));

interface MigrationRow {
  version: number;
  name: string;
  applied_at: Date;
}

const migrationRows = (): Promise<MigrationRow[]> =>
  withClient(async (client) => (await client.query<MigrationRow>(`SELECT version, name, applied_at FROM "${schema}".migrations ORDER BY version`)).rows);

test('the committed initdb file equals schemaSql("eventstore") byte for byte', () => {
  // Compare as strings first for a readable diff, then as bytes (line endings, encoding).
  assert.equal(fileText, schemaSql('eventstore'), 'initdb/01-eventstore-schema.sql is out of date: run npm run generate:initdb');
  assert.ok(readFileSync(INITDB_FILE).equals(Buffer.from(schemaSql('eventstore'), 'utf8')), 'initdb/01-eventstore-schema.sql is out of date: run npm run generate:initdb');
});

test('the file, applied with plain SQL, gives a schema the store uses without migrating, and migrate() finds nothing to do', async () => {
  // The file targets "eventstore"; other test files may share the database, so put it elsewhere.
  assert.ok(fileText.includes('"eventstore"'));
  const sql = fileText.replaceAll('"eventstore"', `"${schema}"`);
  await withClient((client) => client.query(sql));

  const versions = [...fileText.matchAll(/^-- migration (\d+): /gm)].map((match) => Number(match[1]));
  assert.ok(versions.length > 0, 'the file names its migrations');
  const before = await migrationRows();
  assert.deepEqual(
    before.map((row) => row.version),
    versions,
  );

  const store = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: false });
  try {
    const query = Query.of(QueryItem.types('BookCopyAddedToCirculation').tags('book:initdb'));
    const first = await store.read(query);
    assert.equal(first.head, 0n);
    const { position } = await store.append(
      { type: 'BookCopyAddedToCirculation', tags: ['book:initdb'], data: { BookID: 'initdb' } },
      { failIfEventsMatch: query, after: first.head },
    );
    assert.equal(position, 1n);
    const { events, head } = await store.read(query);
    assert.equal(head, 1n);
    assert.deepEqual(
      events.map((event) => [event.position, event.type, event.tags, event.data]),
      [[1n, 'BookCopyAddedToCirculation', ['book:initdb'], { BookID: 'initdb' }]],
    );
  } finally {
    await store.close();
  }

  const migrating = await EventStore.connect({ connectionString: databaseUrl(), schema, migrate: true });
  try {
    assert.equal((await migrating.read(Query.all())).head, 1n, 'the event written before is still there');
  } finally {
    await migrating.close();
  }
  assert.deepEqual(await migrationRows(), before, 'migrate() applied nothing again');
});
