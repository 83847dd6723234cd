// dses verify, dses stats, dses consumers (and consumers reset).
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { VERIFY_CHECKS, verifyStore, type VerifyReport } from '../../postgres/verify.ts';
import { consumerNames, storeStats, type StoreStats } from '../../postgres/stats.ts';
import type { ConsumerStatus } from '../../postgres/consumer-types.ts';
import { CliError, EXIT, connectionStringOf, parsePosition, parsePositiveInteger, say, withStore, writeOut, type GlobalOptions } from '../context.ts';

export function registerInspect(program: Command, globals: () => GlobalOptions): void {
  program
    .command('verify')
    .description('check the store\'s integrity: migrations, triggers, functions, indexes, positions 1..head, ids, tags; exit 1 with one line per problem')
    .option('--json', 'a machine-readable report on stdout')
    .option('--range <n>', 'positions per scan step (progress is reported after each)', '100000')
    .action(async (flags: { json?: boolean; range: string }) => {
      const { schema } = globals();
      const rangeSize = parsePositiveInteger('--range', flags.range);
      const progress = progressReporter();
      let report: VerifyReport;
      try {
        report = await verifyStore(connectionStringOf(globals()), schema, { rangeSize, onProgress: progress.update });
      } finally {
        progress.stop();
      }
      const { problems } = report;
      if (flags.json) {
        await writeOut(`${JSON.stringify({
          ok: problems.length === 0,
          schema,
          events: report.events.toString(),
          head: report.head?.toString() ?? null,
          checks: VERIFY_CHECKS.map((check) => ({ check, ok: !problems.some((found) => found.check === check) })),
          problems,
        })}\n`);
      } else if (problems.length === 0) {
        await writeOut(`ok: schema ${schema}: ${report.events} events, head ${report.head}, ${VERIFY_CHECKS.length} checks passed (${VERIFY_CHECKS.join(', ')})\n`);
      } else {
        for (const found of problems) await writeOut(`${found.check}: ${found.message}\n`);
      }
      if (problems.length > 0) {
        const checks = [...new Set(problems.map((found) => found.check))];
        throw new CliError(`schema ${schema} failed verification: ${problems.length} problem(s) (${checks.join(', ')})`, EXIT.failure, 'VERIFY_FAILED');
      }
    });

  program
    .command('stats')
    .description('events, head, size on disk, events by type, the most frequent tags, append rates')
    .option('--json', 'machine-readable output')
    .option('--tag-sample <n>', 'above this many events, count the tags on a TABLESAMPLE of about this many (estimates)', '100000')
    .action(async (flags: { json?: boolean; tagSample: string }) => {
      const tagSampleSize = parsePositiveInteger('--tag-sample', flags.tagSample);
      const stats = await storeStats(connectionStringOf(globals()), globals().schema, { tagSampleSize });
      await writeOut(flags.json ? `${JSON.stringify(stats, bigintsAsStrings)}\n` : statsText(stats));
    });

  const consumers = program
    .command('consumers')
    .description('list the durable consumers (position, lag, state, owner, last error); `consumers reset` moves one\'s checkpoint')
    .option('--json', 'machine-readable output')
    .action(async (flags: { json?: boolean }) => {
      const names = await consumerNames(connectionStringOf(globals()), globals().schema);
      const statuses = names.length === 0 ? [] : await withStore(globals(), (store) => Promise.all(names.map((name) => store.consumerStatus(name))));
      if (flags.json) {
        await writeOut(`${JSON.stringify(statuses, bigintsAsStrings)}\n`);
        return;
      }
      if (statuses.length === 0) {
        say(`no consumers in schema ${globals().schema}`);
        return;
      }
      await writeOut(consumerTable(statuses));
    });

  consumers
    .command('reset <name>')
    .description('move a consumer\'s checkpoint (default: to 0, to rebuild its read model) and clear its failure; refused while it runs')
    .option('--to <position>', 'the new checkpoint: processing restarts after it', '0')
    .action(async (name: string, flags: { to: string }) => {
      const position = parsePosition('--to', flags.to);
      const { schema } = globals();
      // resetConsumer creates a consumer it does not know; an operator's typo must not. An
      // unknown name is exit 1 like a missing schema (the database's state, not the command
      // line, is what is wrong; nothing was changed).
      const names = await consumerNames(connectionStringOf(globals()), schema);
      if (!names.includes(name)) {
        throw new CliError(`no consumer named ${JSON.stringify(name)} in schema ${schema} (\`dses consumers\` lists them); nothing was changed`, EXIT.failure, 'UNKNOWN_CONSUMER');
      }
      await withStore(globals(), (store) => store.resetConsumer(name, { position }));
      say(`consumer ${JSON.stringify(name)} reset to position ${position}: it processes the events after it when it runs next`);
    });
}

/** A bar on a terminal, a plain line per tenth otherwise (a log file gets a few lines, not one per range). */
function progressReporter(): { update: (scanned: bigint, last: bigint) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    return {
      update: (scanned, last) => {
        if (bar === undefined) {
          bar = new cliProgress.SingleBar({ stream: process.stderr, format: 'scanning events {bar} {percentage}% | {value}/{total} positions | eta {eta}s', hideCursor: true }, cliProgress.Presets.shades_classic);
          bar.start(Number(last), 0);
        }
        bar.update(Number(scanned));
      },
      stop: () => bar?.stop(),
    };
  }
  let reported = -1;
  return {
    update: (scanned, last) => {
      const tenth = last === 0n ? 10 : Number((scanned * 10n) / last);
      if (tenth === reported) return;
      reported = tenth;
      say(`scanned positions up to ${scanned} of ${last} (${tenth * 10}%)`);
    },
    stop: () => undefined,
  };
}

function bigintsAsStrings(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function statsText(stats: StoreStats): string {
  const lines = [
    `schema      ${stats.schema}`,
    `events      ${stats.events}`,
    `head        ${stats.head}`,
    `size        ${bytes(stats.size.totalBytes)} (table ${bytes(stats.size.tableBytes)}, indexes ${bytes(stats.size.indexBytes)})`,
    `append rate ${stats.rates.map((rate) => `${rate.perMinute.toFixed(1)}/min over ${rate.minutes} min`).join(', ')}`,
    '',
    'events by type',
    ...stats.types.map((row) => `  ${row.events.toString().padStart(12)}  ${row.type}`),
    '',
    `most frequent tags${stats.tagSample.sampled ? ` (estimated from a ${stats.tagSample.percent.toFixed(2)}% TABLESAMPLE SYSTEM sample)` : ''}`,
    ...stats.tags.map((row) => `  ${row.events.toString().padStart(12)}  ${row.tag}`),
  ];
  return `${lines.join('\n')}\n`;
}

function bytes(count: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function consumerTable(statuses: ConsumerStatus[]): string {
  const rows = [
    ['NAME', 'POSITION', 'LAG', 'STATE', 'OWNER', 'LAST ERROR'],
    ...statuses.map((status) => [status.name, status.position.toString(), status.lag.toString(), status.state, status.owner ?? '-', status.lastError === null ? '-' : status.lastError.replace(/\s*\n\s*/g, ' ')]),
  ];
  const widths = rows[0]!.slice(0, -1).map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column < widths.length ? cell.padEnd(widths[column]!) : cell)).join('  ')).join('\n') + '\n';
}
