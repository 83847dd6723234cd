// @opentelemetry/api is an optional peer dependency: without it the store must work, with no
// telemetry and nothing in the events' metadata. It is installed here, so a child process hides it
// with a module resolve hook (as if it were absent from node_modules).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { databaseUrl, dropSchema, uniqueSchemaName } from '../helpers.ts';

const run = promisify(execFile);
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'dses-otel-absent-'));
const schema = uniqueSchemaName('nootel');
after(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await dropSchema(schema);
});

writeFileSync(
  join(scratch, 'hide-opentelemetry.mjs'),
  `export async function resolve(specifier, context, nextResolve) {
  if (/^@opentelemetry\\//.test(specifier)) {
    const error = new Error(\`Cannot find package '\${specifier}' imported from \${context.parentURL}\`);
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return nextResolve(specifier, context);
}
`,
);
writeFileSync(join(scratch, 'register.mjs'), `import { register } from 'node:module';\nregister('./hide-opentelemetry.mjs', import.meta.url);\n`);

const child = `
const outcome = {};
try { await import('@opentelemetry/api'); outcome.hidden = false; } catch (error) { outcome.hidden = error.code; }
const { EventStore, Query, QueryItem, defineCommandHandler, defineProjection } = await import(${JSON.stringify(pathToFileURL(join(projectRoot, 'src/index.ts')).href)});
const store = await EventStore.connect({ connectionString: process.env.DATABASE_URL, schema: ${JSON.stringify(schema)} });
try {
  const { position } = await store.append({ type: 'Plain', data: {}, metadata: { user: 'u1' } });
  const handler = defineCommandHandler({ projections: () => ({ plain: defineProjection({ initialState: 0, handlers: { Plain: (state) => state + 1 } }) }), decide: () => ({ type: 'Decided', data: {} }) });
  const executed = await store.execute(handler, {});
  let streamed = 0;
  for await (const _event of store.stream(Query.all())) streamed++;
  const { events } = await store.read(Query.all());
  outcome.position = String(position);
  outcome.executed = String(executed.position);
  outcome.streamed = streamed;
  outcome.metadata = events.map((event) => event.metadata);
} finally {
  await store.close();
}
console.log(JSON.stringify(outcome));
`;

describe('@opentelemetry/api as an optional peer dependency', { timeout: 120_000 }, () => {
  test('without the package the store connects, appends, executes, reads and streams, and writes no trace context', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(join(scratch, 'register.mjs')).href, '--input-type=module', '-e', child], {
      cwd: projectRoot,
      timeout: 60_000,
      env: { ...process.env, DATABASE_URL: databaseUrl() },
    });
    const outcome = JSON.parse(stdout.trim().split('\n').at(-1)!);
    assert.equal(outcome.hidden, 'ERR_MODULE_NOT_FOUND', 'the hook hides the package');
    assert.equal(outcome.position, '1');
    assert.equal(outcome.executed, '2');
    assert.equal(outcome.streamed, 2);
    assert.deepEqual(outcome.metadata, [{ user: 'u1' }, {}]);
  });

  test('no static import of @opentelemetry in src/, and the published declarations do not mention it', async () => {
    const sources = readdirSync(join(projectRoot, 'src'), { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
    for (const file of sources) {
      const text = readFileSync(join(projectRoot, 'src', file), 'utf8');
      // A value import would load the package; `import type` is erased.
      assert.doesNotMatch(text, /^\s*(import|export)\s(?!type\s)[^;]*?['"]@opentelemetry\/[^'"]*['"]/m, `static import in src/${file}`);
    }
    const outDir = join(scratch, 'types');
    await run(process.execPath, [join(projectRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--emitDeclarationOnly', '--declarationMap', 'false', '--sourceMap', 'false', '--outDir', outDir], { cwd: projectRoot, timeout: 110_000 });
    const declarations = readdirSync(outDir, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.d.ts'));
    const reachable = new Set<string>();
    const visit = (file: string): void => {
      if (reachable.has(file)) return;
      reachable.add(file);
      const text = readFileSync(join(outDir, file), 'utf8');
      for (const [, specifier] of text.matchAll(/from ['"](\.[^'"]+)['"]/g)) visit(join(file, '..', specifier!.replace(/\.(ts|js)$/, '.d.ts')));
    };
    visit('src/index.d.ts');
    visit('src/testing/index.d.ts');
    assert.ok(declarations.includes('src/telemetry/otel.d.ts'), 'declarations were emitted');
    for (const file of reachable) assert.doesNotMatch(readFileSync(join(outDir, file), 'utf8'), /['"]@opentelemetry\//, `${file}, reachable from the entry points, references the package`);
    rmSync(outDir, { recursive: true, force: true });
  });
});
