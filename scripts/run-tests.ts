// Runs the test suite with node's test runner against a real PostgreSQL: the server in
// DATABASE_URL, or else an embedded PostgreSQL 17 started here (own port, own data directory
// under os.tmpdir()) and stopped afterwards. Pass file paths to run only those.
// The last line printed is `N passed, N failed`; the exit code is non-zero on any failure.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
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

// The CLI tests spawn dses a hundred times or more. Compiled once here (as `npm run build` does,
// without declarations), each process starts in about 0.3 s instead of 0.8 to 1.5 s through tsx;
// the compiled CLI is also what an installed package runs. Inside node_modules, so that its
// imports resolve; removed at the end. test/cli.ts falls back to bin/dses.js (the sources)
// when DSES_CLI_MAIN is not set.
let cliBuild: string | undefined;
if (files.some((file) => /(^|\/)(cli|http-serve)[^/]*\.test\.ts$/.test(file))) {
  cliBuild = join('node_modules', '.cache', `dses-cli-${process.pid}`);
  mkdirSync(cliBuild, { recursive: true });
  try {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--outDir', join(cliBuild, 'dist'), '--declaration', 'false', '--declarationMap', 'false', '--sourceMap', 'false'], { stdio: 'inherit' });
  } catch {
    rmSync(cliBuild, { recursive: true, force: true });
    await server?.stop();
    console.log('0 passed, 1 failed (the package does not compile)');
    process.exit(1);
  }
  cpSync('src/postgres/migrations', join(cliBuild, 'dist/src/postgres/migrations'), { recursive: true });
  cpSync('src/http/ui', join(cliBuild, 'dist/src/http/ui'), { recursive: true });
  copyFileSync('package.json', join(cliBuild, 'package.json'));
  env.DSES_CLI_MAIN = join(process.cwd(), cliBuild, 'dist/src/cli/main.js');
}

const reportDirectory = mkdtempSync(join(tmpdir(), 'dses-report-'));
const tapFile = join(reportDirectory, 'report.tap');
// Two test files at a time: node's default on this 2-core machine is one (cores - 1), but most
// of a file's time is spent waiting on PostgreSQL, child processes and timers, so two in parallel
// took the suite from 9.5 to 6 minutes. Files share the server but not schemas (each test makes
// its own, or its own database), and anything a test looks up in pg_stat_activity is filtered by
// its schema or application_name, so a file never sees, or kills, another file's backends.
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tapFile}`, ...files],
  { stdio: 'inherit', env },
);
const code: number = await new Promise((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
await server?.stop();
if (cliBuild) rmSync(cliBuild, { recursive: true, force: true });

const tap = readFileSync(tapFile, 'utf8');
rmSync(reportDirectory, { recursive: true, force: true });
const count = (name: string): number => Number(tap.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
const passed = count('pass');
const failed = count('fail') + count('cancelled');
console.log(`${passed} passed, ${failed} failed`);
process.exit(code !== 0 ? code : failed > 0 ? 1 : 0);
