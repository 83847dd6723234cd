// tsc does not copy non-TypeScript files: put the migrations next to the compiled migrate.js,
// and the web browser's files next to the compiled ui.js.
import { cpSync } from 'node:fs';
cpSync('src/postgres/migrations', 'dist/src/postgres/migrations', { recursive: true });
cpSync('src/http/ui', 'dist/src/http/ui', { recursive: true });
