// tsc does not copy non-TypeScript files: put the migrations next to the compiled migrate.js.
import { cpSync } from 'node:fs';
cpSync('src/postgres/migrations', 'dist/src/postgres/migrations', { recursive: true });
