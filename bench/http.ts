/**
 * The HTTP API against the store it serves, measured in the same run: appends and reads at 1 and
 * 16 concurrent callers in process (store.append / store.read), then the same operations over
 * HTTP at 1 and 16 connections (autocannon against `dses serve`, a child process, on the same
 * database), and the ratios. Target: appends at 16 connections >= 0.5x the in-process rate.
 *
 *   npm run bench:http -- [--seconds 10] [--tcp]
 *
 * Appends are one event each (no condition); reads are POST /v1/read of a type + tag query
 * matching 100 events (store.read of the same query in process).
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { EventStore, Query, QueryItem } from '../src/index.ts';
import { startBenchServer } from './server.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, tcp: { type: 'boolean', default: false } } });
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 1) throw new Error(`--seconds must be at least 1, got ${values.seconds}`);

const repo = new URL('..', import.meta.url).pathname;
const server = await startBenchServer(values.tcp);
const schema = `bench_http_${process.pid}`;
const store = await EventStore.connect({ connectionString: server.adminUrl, schema, telemetry: false });
const CONNECTIONS = [1, 16];

const appendEvent = { type: 'BenchAppended', tags: ['bench:append'], data: { amount: 42, note: 'a small payload' } };
const readQuery = Query.of(QueryItem.types('BenchSeeded').tags('account:7'));
const readBody = JSON.stringify({ query: readQuery.toJSON() });

// 100 accounts x 100 events: the read query matches 100 of 10 000.
for (let batch = 0; batch < 10; batch += 1) {
  await store.append(Array.from({ length: 1000 }, (_, index) => ({ type: 'BenchSeeded', tags: [`account:${(batch * 1000 + index) % 100}`], data: { n: batch * 1000 + index } })));
}

/** Operations per second of `concurrency` loops calling `operation` for `seconds`. */
async function inProcess(concurrency: number, operation: () => Promise<unknown>): Promise<number> {
  const warmUntil = Date.now() + 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < warmUntil) await operation();
  }));
  let count = 0;
  const started = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < deadline) {
      await operation();
      count += 1;
    }
  }));
  return count / (Number(process.hrtime.bigint() - started) / 1e9);
}

interface Measured {
  operation: string;
  connections: number;
  inProcess: number;
  http: number;
  p50Ms: number;
  p99Ms: number;
}
const results: Measured[] = [];
const local = new Map<string, number>();
for (const connections of CONNECTIONS) {
  local.set(`append ${connections}`, await inProcess(connections, () => store.append(appendEvent)));
  local.set(`read ${connections}`, await inProcess(connections, () => store.read(readQuery)));
  console.error(`in process, ${connections} caller(s): append ${local.get(`append ${connections}`)!.toFixed(0)}/s, read ${local.get(`read ${connections}`)!.toFixed(0)}/s`);
}

// `dses serve` as an operator runs it, on the same schema (a process of its own, like any client's server).
const child = spawn(process.execPath, ['bin/dses.js', '--url', server.adminUrl, '--schema', schema, 'serve', '--port', '0'], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise<string>((resolve, reject) => {
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    const match = /listening on (\S+)/.exec(output);
    if (match) resolve(match[1]!);
  });
  child.once('exit', (code) => reject(new Error(`dses serve exited with ${code}`)));
});
try {
  const requests = {
    append: { url: `${url}/v1/append`, method: 'POST' as const, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ events: [appendEvent] }) },
    read: { url: `${url}/v1/read`, method: 'POST' as const, headers: { 'content-type': 'application/json' }, body: readBody },
  };
  for (const connections of CONNECTIONS) {
    for (const operation of ['append', 'read'] as const) {
      await autocannon({ ...requests[operation], connections, duration: 1 });
      const result = await autocannon({ ...requests[operation], connections, duration: seconds });
      if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0) throw new Error(`${operation} over HTTP: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`);
      const http = result.requests.total / result.duration;
      results.push({ operation, connections, inProcess: local.get(`${operation} ${connections}`)!, http, p50Ms: result.latency.p50, p99Ms: result.latency.p99 });
      console.error(`HTTP, ${connections} connection(s): ${operation} ${http.toFixed(0)}/s`);
    }
  }
} finally {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  await store.close();
  await server.stop();
}

console.log(`\nHTTP API vs in process, ${seconds} s per measurement, PostgreSQL over ${server.transport}\n`);
console.log('| operation | connections | in process (ops/s) | HTTP (req/s) | HTTP / in process | HTTP p50 (ms) | HTTP p99 (ms) |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const row of results) {
  console.log(`| ${row.operation} | ${row.connections} | ${row.inProcess.toFixed(0)} | ${row.http.toFixed(0)} | ${(row.http / row.inProcess).toFixed(2)}x | ${row.p50Ms} | ${row.p99Ms} |`);
}
const target = results.find((row) => row.operation === 'append' && row.connections === 16)!;
console.log(`\nappends at 16 connections: ${(target.http / target.inProcess).toFixed(2)}x in process (target >= 0.5x)`);
