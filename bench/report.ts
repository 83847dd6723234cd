/**
 * Renders a benchmark run (bench/results-schema.ts) for people: a README-ready markdown section and
 * two SVG charts (W1 throughput vs clients, W4 read latency vs store size), and writes them with the
 * raw results to a results directory. Pure string output, no dependencies: the SVGs are plain SVG 1.1
 * that GitHub shows through an <img> tag.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchResults, Percentiles, ResultRow } from './results-schema.ts';

type Workload = ResultRow['workload'];

/** Section order and titles; a workload not listed here still renders, after these, under its code. */
const WORKLOAD_TITLES: ReadonlyArray<readonly [Workload, string]> = [
  ['baseline', 'Baseline: pgbench on the same server'],
  ['W1', 'W1: read, decide, conditional append on disjoint entities'],
  ['W1a', 'W1a: conditional append alone, each on a fresh boundary'],
  ['W2', 'W2: every client on one boundary (contention and correctness)'],
  ['W3', 'W3: batch appends, one client'],
  ['W4-load', 'W4 load: growing the store'],
  ['W4', 'W4: decision read latency vs store size'],
  ['W5', 'W5: reading the whole store in order (streamAll)'],
  ['W6', "W6: the Go original's figures, one client"],
];

export interface RenderMarkdownOptions {
  /** Prefix of the chart links, e.g. `bench/results/` for the repository README. Default: '' (next to the markdown file). */
  imageDir?: string;
  /** Heading level of the section title (its workloads get one more). Default 2. */
  headingLevel?: number;
}

// ---------------------------------------------------------------------------------------------
// Number formatting

const integerFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** Thousands separators; small values keep up to 3 significant digits (`0.512`, `12.3`, `1,234`). */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 100 || value === 0 || Number.isInteger(value)) return integerFormat.format(value);
  return new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 }).format(value);
}

/** Milliseconds with 3 significant digits (`0.0412`, `1.23`, `12.3`), whole numbers from 100 ms up. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (Math.abs(ms) >= 100) return integerFormat.format(ms);
  if (ms === 0) return '0';
  return new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 }).format(ms);
}

function formatThroughput(row: ResultRow): string {
  return row.unit === 'ms/op' ? `${formatMs(row.throughput)} ms/op` : `${formatNumber(row.throughput)} ${row.unit}`;
}

function formatRatio(baseline: NonNullable<ResultRow['baseline']>): string {
  return `${baseline.ratio.toFixed(2)}x ${baseline.label}`;
}

function formatStoreSize(size: number): string {
  if (size >= 1_000_000 && size % 1_000_000 === 0) return `${size / 1_000_000}M`;
  if (size >= 1_000 && size % 1_000 === 0) return `${size / 1_000}k`;
  return formatNumber(size);
}

// ---------------------------------------------------------------------------------------------
// Markdown

function escapeCell(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('|', '\\|').replaceAll('\n', ' ');
}

interface Column {
  header: string;
  /** Right-aligned (numbers) or left-aligned. */
  numeric: boolean;
  cell: (row: ResultRow) => string;
}

function percentileColumns(label: string, pick: (row: ResultRow) => Percentiles | undefined): Column[] {
  const prefix = label ? `${label} ` : '';
  return (['p50', 'p95', 'p99'] as const).map((key) => ({
    header: `${prefix}${key} ms`,
    numeric: true,
    cell: (row: ResultRow) => {
      const percentiles = pick(row);
      return percentiles ? formatMs(percentiles[key]) : '';
    },
  }));
}

/** The columns a workload's rows need: only those at least one row has a value for. */
function columnsFor(rows: readonly ResultRow[]): Column[] {
  const has = (present: (row: ResultRow) => boolean): boolean => rows.some(present);
  const columns: Column[] = [
    { header: 'library', numeric: false, cell: (row) => row.library },
    { header: 'variant', numeric: false, cell: (row) => row.variant },
    { header: 'throughput', numeric: true, cell: formatThroughput },
  ];
  if (has((row) => (row.repeats?.length ?? 0) > 1)) {
    columns.push({
      header: 'repeats (min-max)',
      numeric: true,
      cell: (row) =>
        row.repeats && row.repeats.length > 1
          ? `${row.repeats.length}: ${formatNumber(Math.min(...row.repeats))}-${formatNumber(Math.max(...row.repeats))}`
          : '',
    });
  }
  if (has((row) => row.latencyMs !== undefined)) columns.push(...percentileColumns('', (row) => row.latencyMs));
  if (has((row) => row.readLatencyMs !== undefined)) columns.push(...percentileColumns('read', (row) => row.readLatencyMs));
  if (has((row) => row.appendLatencyMs !== undefined)) columns.push(...percentileColumns('append', (row) => row.appendLatencyMs));
  if (has((row) => row.baseline !== undefined)) {
    columns.push({ header: 'vs baseline', numeric: false, cell: (row) => (row.baseline ? formatRatio(row.baseline) : '') });
  }
  if (has((row) => row.conflicts !== undefined)) {
    columns.push({ header: 'conflicts', numeric: true, cell: (row) => (row.conflicts === undefined ? '' : formatNumber(row.conflicts)) });
  }
  if (has((row) => row.falseConflicts !== undefined)) {
    columns.push({ header: 'false conflicts', numeric: true, cell: (row) => (row.falseConflicts === undefined ? '' : formatNumber(row.falseConflicts)) });
  }
  if (has((row) => row.violations !== undefined)) {
    columns.push({
      header: 'violations',
      numeric: true,
      cell: (row) => (row.violations === undefined ? '' : row.violations > 0 ? `**${formatNumber(row.violations)}**` : '0'),
    });
  }
  if (has((row) => row.peakRssMB !== undefined)) {
    columns.push({ header: 'peak RSS', numeric: true, cell: (row) => (row.peakRssMB === undefined ? '' : `${formatNumber(row.peakRssMB)} MB`) });
  }
  if (has((row) => row.notes !== undefined && row.notes !== '')) columns.push({ header: 'notes', numeric: false, cell: (row) => row.notes ?? '' });
  return columns;
}

function markdownTable(rows: readonly ResultRow[]): string {
  const columns = columnsFor(rows);
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [
    line(columns.map((column) => column.header)),
    line(columns.map((column) => (column.numeric ? '---:' : ':---'))),
    ...rows.map((row) => line(columns.map((column) => escapeCell(column.cell(row))))),
  ].join('\n');
}

function machineLine(machine: BenchResults['machine']): string {
  const parts = [
    `${machine.cpus} x ${machine.cpuModel}`,
    `${formatNumber(machine.memGiB)} GiB RAM`,
    machine.os,
    `Node ${machine.node}`,
    machine.postgres,
    machine.pgbench,
  ].filter((part) => part.trim() !== '');
  return parts.join(', ');
}

function workloadsInOrder(rows: readonly ResultRow[]): Array<{ workload: Workload; title: string; rows: ResultRow[] }> {
  const known = new Set<string>(WORKLOAD_TITLES.map(([workload]) => workload));
  const sections = WORKLOAD_TITLES.map(([workload, title]) => ({ workload, title, rows: rows.filter((row) => row.workload === workload) }));
  const unknown = [...new Set(rows.map((row) => row.workload).filter((workload) => !known.has(workload)))];
  for (const workload of unknown) sections.push({ workload, title: workload, rows: rows.filter((row) => row.workload === workload) });
  return sections.filter((section) => section.rows.length > 0);
}

/** A README-ready markdown section for one run: machine, command, one table per workload, notes. */
export function renderMarkdown(results: BenchResults, options: RenderMarkdownOptions = {}): string {
  const level = options.headingLevel ?? 2;
  const heading = (depth: number, text: string): string => `${'#'.repeat(Math.min(depth, 6))} ${text}`;
  const imageDir = options.imageDir ?? '';
  const out: string[] = [];
  out.push(heading(level, `Benchmark results (${results.startedAt.slice(0, 10)})`), '');
  if (results.quick) out.push('> **Quick run**: short phases and small stores; indicative only, not for comparison.', '');
  out.push(`**Machine:** ${machineLine(results.machine)}`, '');
  const settings = Object.entries(results.machine.settings);
  if (settings.length > 0) out.push(`**PostgreSQL settings:** ${settings.map(([key, value]) => `\`${key}=${value}\``).join(', ')}`, '');
  out.push('**Command:**', '', '```sh', results.command, '```', '');
  out.push(`Started ${results.startedAt}, finished ${results.finishedAt}.`, '');

  const rows = results.rows;
  if (rows.some((row) => row.workload === 'W1')) out.push(`![W1 throughput vs clients](${imageDir}throughput.svg)`, '');
  if (rows.some((row) => row.workload === 'W4')) out.push(`![W4 read latency vs store size](${imageDir}latency.svg)`, '');

  const sections = workloadsInOrder(rows);
  if (sections.length === 0) out.push('_No results._', '');
  for (const section of sections) {
    out.push(heading(level + 1, section.title), '', markdownTable(section.rows), '');
  }

  if (results.notes.length > 0) {
    out.push(heading(level + 1, 'Notes'), '');
    for (const note of results.notes) out.push(`- ${note.replaceAll('\n', ' ')}`);
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

// ---------------------------------------------------------------------------------------------
// SVG

const WIDTH = 840;
const HEIGHT = 440;
const MARGIN = { left: 78, right: 280, top: 58, bottom: 60 };
const PLOT_WIDTH = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const BASELINE_COLOR = '#555555';
const FONT = 'font-family="Helvetica, Arial, sans-serif"';

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&apos;');
}

function coordinate(value: number): string {
  return (Math.round(value * 10) / 10).toString();
}

interface Series {
  label: string;
  color: string;
  /** stroke-dasharray, absent for a solid line. */
  dash?: string;
  /** Points by category index; missing categories break nothing, the line joins the points present. */
  points: Array<{ category: number; value: number }>;
}

interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  categories: string[];
  series: Series[];
  logY: boolean;
  formatTick: (value: number) => string;
  formatValue: (value: number) => string;
}

/** Ticks at 1, 2, 5 x 10^k covering [0, max] in about 5 steps. */
function linearTicks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((factor) => factor * power).find((candidate) => candidate >= rough) ?? 10 * power;
  const ticks: number[] = [];
  for (let tick = 0; tick < max + step * 0.999; tick += step) ticks.push(Number(tick.toPrecision(12)));
  return ticks;
}

/** Decades covering [min, max], with 2 and 5 in between when the range spans less than three decades. */
function logTicks(min: number, max: number): number[] {
  const low = Math.floor(Math.log10(min));
  const high = Math.max(Math.ceil(Math.log10(max)), low + 1);
  const ticks: number[] = [];
  for (let exponent = low; exponent <= high; exponent++) {
    const decade = 10 ** exponent;
    ticks.push(Number(decade.toPrecision(12)));
    if (high - low < 3 && exponent < high) ticks.push(Number((2 * decade).toPrecision(12)), Number((5 * decade).toPrecision(12)));
  }
  return ticks;
}

function emptyChart(title: string, message: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ${FONT}>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="32" text-anchor="middle" font-size="17" font-weight="bold" fill="#222222">${escapeXml(title)}</text>`,
    `<text x="${WIDTH / 2}" y="${HEIGHT / 2}" text-anchor="middle" font-size="14" fill="#777777">${escapeXml(message)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

function lineChart(spec: ChartSpec): string {
  const values = spec.series.flatMap((series) => series.points.filter((point) => point.category >= 0).map((point) => point.value)).filter((value) => Number.isFinite(value));
  const positive = values.filter((value) => value > 0);
  if (spec.categories.length === 0 || values.length === 0 || (spec.logY && positive.length === 0)) return emptyChart(spec.title, 'no data');

  const ticks = spec.logY ? logTicks(Math.min(...positive), Math.max(...positive)) : linearTicks(Math.max(...values));
  const yMin = spec.logY ? (ticks[0] ?? 1) : 0;
  const yMax = ticks[ticks.length - 1] ?? 1;
  const y = (value: number): number => {
    const fraction = spec.logY
      ? (Math.log10(Math.max(value, yMin)) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))
      : (value - yMin) / (yMax - yMin);
    return MARGIN.top + PLOT_HEIGHT * (1 - fraction);
  };
  // Categories are evenly spaced: for 1/4/16/64 clients that is a log scale.
  const x = (category: number): number =>
    spec.categories.length === 1 ? MARGIN.left + PLOT_WIDTH / 2 : MARGIN.left + (PLOT_WIDTH * (category + 0.5)) / spec.categories.length;

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ${FONT}>`,
    `<title>${escapeXml(spec.title)}</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left + PLOT_WIDTH / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold" fill="#222222">${escapeXml(spec.title)}</text>`,
  );
  if (spec.subtitle) {
    parts.push(`<text x="${MARGIN.left + PLOT_WIDTH / 2}" y="44" text-anchor="middle" font-size="12" fill="#666666">${escapeXml(spec.subtitle)}</text>`);
  }

  // Grid and y ticks.
  parts.push('<g font-size="11" fill="#444444">');
  for (const tick of ticks) {
    const ty = coordinate(y(tick));
    parts.push(
      `<line x1="${MARGIN.left}" y1="${ty}" x2="${MARGIN.left + PLOT_WIDTH}" y2="${ty}" stroke="#e3e3e3" stroke-width="1"/>`,
      `<text x="${MARGIN.left - 8}" y="${ty}" text-anchor="end" dominant-baseline="middle">${escapeXml(spec.formatTick(tick))}</text>`,
    );
  }
  spec.categories.forEach((category, index) => {
    const tx = coordinate(x(index));
    parts.push(
      `<line x1="${tx}" y1="${MARGIN.top + PLOT_HEIGHT}" x2="${tx}" y2="${MARGIN.top + PLOT_HEIGHT + 5}" stroke="#444444" stroke-width="1"/>`,
      `<text x="${tx}" y="${MARGIN.top + PLOT_HEIGHT + 20}" text-anchor="middle">${escapeXml(category)}</text>`,
    );
  });
  parts.push('</g>');

  // Axes and their labels.
  parts.push(
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + PLOT_HEIGHT}" stroke="#444444" stroke-width="1"/>`,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top + PLOT_HEIGHT}" x2="${MARGIN.left + PLOT_WIDTH}" y2="${MARGIN.top + PLOT_HEIGHT}" stroke="#444444" stroke-width="1"/>`,
    `<text x="${MARGIN.left + PLOT_WIDTH / 2}" y="${HEIGHT - 16}" text-anchor="middle" font-size="13" fill="#222222">${escapeXml(spec.xLabel)}</text>`,
    `<text x="18" y="${MARGIN.top + PLOT_HEIGHT / 2}" text-anchor="middle" font-size="13" fill="#222222" transform="rotate(-90 18 ${MARGIN.top + PLOT_HEIGHT / 2})">${escapeXml(spec.yLabel)}</text>`,
  );

  // Series.
  for (const series of spec.series) {
    const points = series.points.filter((point) => point.category >= 0 && Number.isFinite(point.value) && (!spec.logY || point.value > 0)).sort((a, b) => a.category - b.category);
    if (points.length === 0) continue;
    const dash = series.dash ? ` stroke-dasharray="${series.dash}"` : '';
    parts.push(`<g>`);
    if (points.length > 1) {
      const path = points.map((point) => `${coordinate(x(point.category))},${coordinate(y(point.value))}`).join(' ');
      parts.push(`<polyline points="${path}" fill="none" stroke="${series.color}" stroke-width="2"${dash}/>`);
    }
    for (const point of points) {
      parts.push(
        `<circle cx="${coordinate(x(point.category))}" cy="${coordinate(y(point.value))}" r="3.5" fill="${series.color}">` +
          `<title>${escapeXml(`${series.label}, ${spec.categories[point.category] ?? ''}: ${spec.formatValue(point.value)}`)}</title></circle>`,
      );
    }
    parts.push('</g>');
  }

  // Legend, right of the plot.
  const legendX = MARGIN.left + PLOT_WIDTH + 18;
  parts.push(`<g font-size="12" fill="#222222">`);
  spec.series.forEach((series, index) => {
    const ly = MARGIN.top + 8 + index * 20;
    const dash = series.dash ? ` stroke-dasharray="${series.dash}"` : '';
    parts.push(
      `<line x1="${legendX}" y1="${ly}" x2="${legendX + 26}" y2="${ly}" stroke="${series.color}" stroke-width="2"${dash}/>`,
      `<text x="${legendX + 32}" y="${ly}" dominant-baseline="middle">${escapeXml(series.label)}</text>`,
    );
  });
  parts.push('</g>', '</svg>', '');
  return parts.join('\n');
}

/** Client count of a row: its `clients`, else `C=<n>` in its variant. */
function clientsOf(row: ResultRow): number | undefined {
  if (row.clients !== undefined) return row.clients;
  const match = /\bC\s*=\s*(\d+)/i.exec(row.variant);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

function librariesInOrder(rows: readonly ResultRow[]): string[] {
  return [...new Set(rows.map((row) => row.library))];
}

const THROUGHPUT_CLIENTS = [1, 4, 16, 64];

/** W1 loops/s vs clients (one process), one line per library, plus pgbench INSERT tps dashed. */
export function renderThroughputSvg(results: BenchResults): string {
  const w1 = results.rows.filter((row) => row.workload === 'W1' && (row.processes ?? 1) === 1 && clientsOf(row) !== undefined);
  const inserts = results.rows.filter((row) => row.workload === 'baseline' && /insert/i.test(`${row.variant} ${row.library}`) && clientsOf(row) !== undefined);
  const clientCounts = [...new Set([...THROUGHPUT_CLIENTS, ...w1.map((row) => clientsOf(row) ?? 0)])]
    .filter((clients) => w1.some((row) => clientsOf(row) === clients) || inserts.some((row) => clientsOf(row) === clients))
    .sort((a, b) => a - b);
  const categoryOf = (row: ResultRow): number => clientCounts.indexOf(clientsOf(row) ?? -1);
  const series: Series[] = librariesInOrder(w1).map((library, index) => ({
    label: library,
    color: PALETTE[index % PALETTE.length] ?? '#000000',
    points: w1.filter((row) => row.library === library).map((row) => ({ category: categoryOf(row), value: row.throughput })),
  }));
  if (inserts.length > 0) {
    series.push({
      label: 'pgbench INSERT (tps)',
      color: BASELINE_COLOR,
      dash: '6 4',
      points: inserts.map((row) => ({ category: categoryOf(row), value: row.throughput })),
    });
  }
  return lineChart({
    title: 'W1: read, decide, conditional append',
    subtitle: `loops/s by concurrent clients (one process)${results.quick ? ', quick run' : ''}`,
    xLabel: 'clients',
    yLabel: 'loops/s',
    categories: clientCounts.map(String),
    series,
    logY: false,
    formatTick: formatNumber,
    formatValue: (value) => `${formatNumber(value)}/s`,
  });
}

const PERCENTILE_DASHES: ReadonlyArray<readonly ['p50' | 'p95' | 'p99', string | undefined]> = [
  ['p50', undefined],
  ['p95', '7 4'],
  ['p99', '2 3'],
];

/**
 * W4 decision-read latency p50/p95/p99 (log ms) vs store size: one colour per library, one dash per
 * percentile. When a library has several W4 rows for one size (e.g. several client counts), the first
 * row with the fewest clients is drawn.
 */
export function renderLatencySvg(results: BenchResults): string {
  const w4 = results.rows.filter((row) => row.workload === 'W4' && row.storeSize !== undefined && (row.readLatencyMs ?? row.latencyMs) !== undefined);
  const sizes = [...new Set(w4.map((row) => row.storeSize ?? 0))].sort((a, b) => a - b);
  const series: Series[] = [];
  librariesInOrder(w4).forEach((library, index) => {
    const chosen = new Map<number, ResultRow>();
    for (const row of w4.filter((candidate) => candidate.library === library)) {
      const size = row.storeSize ?? 0;
      const current = chosen.get(size);
      if (!current || (clientsOf(row) ?? 1) < (clientsOf(current) ?? 1)) chosen.set(size, row);
    }
    for (const [percentile, dash] of PERCENTILE_DASHES) {
      series.push({
        label: `${library} ${percentile}`,
        color: PALETTE[index % PALETTE.length] ?? '#000000',
        ...(dash === undefined ? {} : { dash }),
        points: [...chosen].map(([size, row]) => ({ category: sizes.indexOf(size), value: (row.readLatencyMs ?? row.latencyMs)?.[percentile] ?? Number.NaN })),
      });
    }
  });
  return lineChart({
    title: 'W4: decision read latency',
    subtitle: `p50 solid, p95 dashed, p99 dotted; log scale${results.quick ? '; quick run' : ''}`,
    xLabel: 'events in the store',
    yLabel: 'ms (log scale)',
    categories: sizes.map(formatStoreSize),
    series,
    logY: true,
    formatTick: formatMs,
    formatValue: (value) => `${formatMs(value)} ms`,
  });
}

// ---------------------------------------------------------------------------------------------
// Files

/** JSON.stringify that writes bigints as decimal strings instead of throwing. */
export function toJson(value: unknown): string {
  return `${JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item), 2)}\n`;
}

function runDate(results: BenchResults): string {
  const started = new Date(results.startedAt);
  return (Number.isNaN(started.getTime()) ? new Date() : started).toISOString().slice(0, 10);
}

/**
 * Writes `<date>.json` (the raw results), `<date>.md`, `latest.md`, `throughput.svg` and `latency.svg`
 * to `outDir` (created if missing), `<date>` being the run's start day (UTC). Returns the paths written.
 */
export async function writeReport(results: BenchResults, outDir: string): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const date = runDate(results);
  const markdown = renderMarkdown(results);
  const files: Array<[string, string]> = [
    [`${date}.json`, toJson(results)],
    [`${date}.md`, markdown],
    ['latest.md', markdown],
    ['throughput.svg', renderThroughputSvg(results)],
    ['latency.svg', renderLatencySvg(results)],
  ];
  const paths: string[] = [];
  for (const [name, content] of files) {
    const path = join(outDir, name);
    await writeFile(path, content);
    paths.push(path);
  }
  return paths;
}
