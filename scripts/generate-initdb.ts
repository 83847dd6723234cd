// Writes initdb/01-eventstore-schema.sql: the store's schema "eventstore" as plain SQL, for
// PostgreSQL's /docker-entrypoint-initdb.d (see docker-compose.yml) or any migration tool.
// Generated from the library's migrations; test/integration/initdb-drift.test.ts fails when the
// committed file no longer matches. With --check, only compares and exits 1 on a difference.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { schemaSql } from '../src/index.ts';

export const INITDB_FILE = fileURLToPath(new URL('../initdb/01-eventstore-schema.sql', import.meta.url));
const shown = relative(process.cwd(), INITDB_FILE);

const expected = schemaSql('eventstore');
const current = existsSync(INITDB_FILE) ? readFileSync(INITDB_FILE, 'utf8') : undefined;

if (process.argv.includes('--check')) {
  if (current !== expected) {
    console.error(`${shown} is out of date: run npm run generate:initdb`);
    process.exit(1);
  }
  console.log(`${shown} is up to date`);
} else if (current === expected) {
  console.log(`${shown} is up to date`);
} else {
  mkdirSync(dirname(INITDB_FILE), { recursive: true });
  writeFileSync(INITDB_FILE, expected);
  console.log(`wrote ${shown}`);
}
