#!/usr/bin/env node
// The `dses` command. An installed package runs the compiled CLI (dist/); a clone of the
// repository, where nothing is compiled, runs the TypeScript sources through tsx (a
// devDependency, there after `npm install`).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (existsSync(compiled)) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
