// dses serve: the HTTP API (dynamic-streams-eventstore/http) on the store of --url/--schema.
// Fastify is an optional peer dependency, loaded only here: every other command works without it.
import type { Command } from 'commander';
import { EventStore } from '../../postgres/event-store.ts';
import { CliError, EXIT, connectionStringOf, say, usage, writeOut, type GlobalOptions } from '../context.ts';

interface ServeFlags {
  port: string;
  host: string;
  token?: string;
  readToken?: string;
  insecure?: boolean;
  bodyLimit?: string;
  maxSubscriptions?: string;
  ui: boolean;
}

type HttpModule = typeof import('../../http/index.ts');

async function loadHttp(): Promise<HttpModule> {
  try {
    return await import('../../http/index.ts');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /fastify/.test(String((error as Error).message))) {
      throw new CliError('dses serve needs fastify, an optional peer dependency: npm install fastify@5', EXIT.failure, 'MISSING_DEPENDENCY');
    }
    throw error;
  }
}

function integerFlag(flag: string, text: string, minimum: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < minimum) throw usage(`${flag} must be an integer of at least ${minimum}, got ${JSON.stringify(text)}`);
  return value;
}

export function registerServe(program: Command, globals: () => GlobalOptions, version: string): void {
  program
    .command('serve')
    .description('serve the HTTP API (see /openapi.json); prints `listening on http://HOST:PORT` once ready; Ctrl-C stops it')
    .option('--port <port>', 'the port (0 picks a free one)', '3000')
    .option('--host <host>', 'the address to bind; without a token only loopback, unless --insecure', '127.0.0.1')
    .option('--token <token>', 'the write token: every route but /health then needs `Authorization: Bearer` (default: DSES_TOKEN)')
    .option('--read-token <token>', 'a token that can read and subscribe, not append or reset (default: DSES_READ_TOKEN)')
    .option('--insecure', 'allow a non-loopback --host without a token')
    .option('--body-limit <bytes>', 'largest request body (default 16 MiB)')
    .option('--max-subscriptions <n>', 'most open /v1/subscribe streams (default 100)')
    .option('--no-ui', 'do not serve the web event browser at /')
    .action(async (flags: ServeFlags) => {
      const port = integerFlag('--port', flags.port, 0);
      if (port > 65_535) throw usage(`--port must be at most 65535, got ${port}`);
      const token = flags.token ?? nonEmpty(process.env.DSES_TOKEN);
      const readToken = flags.readToken ?? nonEmpty(process.env.DSES_READ_TOKEN);
      if (readToken !== undefined && token === undefined) throw usage('--read-token (DSES_READ_TOKEN) needs --token (DSES_TOKEN) as well: otherwise nobody could write');
      const http = await loadHttp();
      const connectionString = connectionStringOf(globals());
      const store = await EventStore.connect({ connectionString, schema: globals().schema, migrate: false, telemetry: false, logger: stderrLogger() });
      let server: ReturnType<HttpModule['createServer']> | undefined;
      try {
        server = http.createServer({
          store,
          inspector: http.postgresInspector(store, { connectionString }),
          host: flags.host,
          version,
          logger: stderrLogger(),
          ...(flags.ui && { extend: http.registerUi }),
          ...(token !== undefined && { token }),
          ...(readToken !== undefined && { readToken }),
          ...(flags.insecure && { insecure: true }),
          ...(flags.bodyLimit !== undefined && { bodyLimit: integerFlag('--body-limit', flags.bodyLimit, 1) }),
          ...(flags.maxSubscriptions !== undefined && { maxSubscriptions: integerFlag('--max-subscriptions', flags.maxSubscriptions, 1) }),
        });
        const stopped = new Promise<NodeJS.Signals>((resolve) => {
          process.once('SIGINT', () => resolve('SIGINT'));
          process.once('SIGTERM', () => resolve('SIGTERM'));
        });
        const url = await server.listen({ port, host: flags.host }).catch((error: unknown) => {
          const code = (error as { code?: unknown }).code;
          if (code === 'EADDRINUSE') throw new CliError(`port ${port} on ${flags.host} is in use (--port 0 picks a free one)`, EXIT.failure, 'ADDRESS_IN_USE');
          if ((error as { code?: unknown }).code === 'INVALID_INPUT') throw usage(`--host: ${(error as Error).message.replace(/^host: /, '').replace('insecure: true', '--insecure')}`);
          throw error;
        });
        await writeOut(`listening on ${url}\n`);
        const signal = await stopped;
        say(`${signal}: closing`);
      } finally {
        await server?.close();
        await store.close({ timeoutMs: 10_000 });
      }
    });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Warnings and errors of the server and the store, one line each on stderr. */
function stderrLogger() {
  const line = (level: string) => (fields: unknown, message?: string): void => {
    const error = (fields as { err?: unknown } | null)?.err;
    const detail = error instanceof Error ? `: ${error.message}` : '';
    say(`${level}: ${message ?? ''}${detail}`);
  };
  return { debug: () => undefined, info: () => undefined, warn: line('warn'), error: line('error') };
}
