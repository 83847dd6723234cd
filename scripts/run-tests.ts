// Runs the test suite with node's test runner against a real PostgreSQL: the server in
// DATABASE_URL, or else an embedded PostgreSQL 17 started here (own port, own data directory
// under os.tmpdir()) and stopped afterwards. Pass file paths to run only those.
// The last line printed is `N passed, N failed`; the exit code is non-zero on any failure.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../src/index.ts';

function testFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.test.ts') && !entry.parentPath.includes('node_modules'))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

const requested = process.argv.slice(2);
const files = requested.length > 0 ? requested : [...testFiles('test'), ...testFiles('examples')];
const needsDatabase = files.some((file) => !file.startsWith('test/unit/'));

let server: EmbeddedPostgresServer | undefined;
const env = { ...process.env };
if (needsDatabase && !env.DATABASE_URL) {
  server = await startEmbeddedPostgres({ dataDir: join(tmpdir(), `dses-test-${process.pid}-${Date.now()}`), port: 0, ephemeral: true });
  env.DATABASE_URL = server.connectionString;
}

const reportDirectory = mkdtempSync(join(tmpdir(), 'dses-report-'));
const tapFile = join(reportDirectory, 'report.tap');
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tapFile}`, ...files],
  { stdio: 'inherit', env },
);
const code: number = await new Promise((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
await server?.stop();

const tap = readFileSync(tapFile, 'utf8');
rmSync(reportDirectory, { recursive: true, force: true });
const count = (name: string): number => Number(tap.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
const passed = count('pass');
const failed = count('fail') + count('cancelled');
console.log(`${passed} passed, ${failed} failed`);
process.exit(code !== 0 ? code : failed > 0 ? 1 : 0);
