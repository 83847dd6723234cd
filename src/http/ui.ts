// The web event browser's files (src/http/ui/: one page, one script, one stylesheet), served at
// `/` by the HTTP server: `createServer({ store, extend: registerUi })`. Three fixed files read
// once into memory and served from a whitelist, so no path from a request ever reaches the file
// system (no static-file plugin needed for that). They load without a token; the API calls the
// page makes carry the token the user gives it.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** Only the page's own files and API; no inline script or style; not framed. */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export function registerUi(app: FastifyInstance): void {
  const directory = new URL('./ui/', import.meta.url);
  for (const [url, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, directory));
    app.route({
      method: 'GET',
      url,
      config: { access: 'public' },
      handler: async (_request, reply) => reply.headers({ ...SECURITY_HEADERS, 'content-type': type }).send(body),
    });
  }
}
