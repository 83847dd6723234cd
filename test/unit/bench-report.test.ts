// bench/report.ts: the markdown lists every row with its baseline ratio, the SVG charts are
// well-formed and name every library, and a run without some workloads (or without any) renders.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import { formatMs, formatNumber, renderLatencySvg, renderMarkdown, renderThroughputSvg, toJson, writeReport } from '../../bench/report.ts';
import type { BenchResults, Percentiles, ResultRow } from '../../bench/results-schema.ts';

const OURS = 'dynamic-streams-eventstore';
const DCB_ES = '@dcb-es/event-store-postgres';
const RICO = '@ricofritzsche/eventstore';
const LIBRARIES = [OURS, DCB_ES, RICO];

function percentiles(p50: number): Percentiles {
  return { p50, p95: p50 * 3, p99: p50 * 7, mean: p50 * 1.4 };
}

function fixtureRows(): ResultRow[] {
  const rows: ResultRow[] = [];
  for (const clients of [1, 4, 16, 64]) {
    const insert = 900 * clients ** 0.8;
    rows.push({ workload: 'baseline', library: 'pgbench', variant: `INSERT C=${clients}`, clients, throughput: insert, unit: 'tps', latencyMs: percentiles(1.1) });
    LIBRARIES.forEach((library, index) => {
      const throughput = (insert * [0.71, 0.4, 0.55][index]!) / (clients === 64 && index === 1 ? 3 : 1);
      rows.push({
        workload: 'W1',
        library,
        variant: `C=${clients}`,
        clients,
        conditional: true,
        throughput,
        unit: 'loops/s',
        readLatencyMs: percentiles(0.42 + index),
        appendLatencyMs: percentiles(1.9 + index),
        falseConflicts: index === 1 ? 12 : 0,
        baseline: { label: `pgbench INSERT C=${clients}`, value: insert, ratio: throughput / insert },
        repeats: [throughput * 0.97, throughput, throughput * 1.02],
      });
    });
  }
  for (const library of LIBRARIES) {
    rows.push({ workload: 'W2', library, variant: '4 processes x 4 clients', processes: 4, clients: 16, throughput: 321.5, unit: 'successes/s', conflicts: 1234, violations: library === RICO ? 17 : 0 });
    rows.push({ workload: 'W3', library, variant: 'batch=1000', batchSize: 1000, throughput: 123456.7, unit: 'events/s', latencyMs: percentiles(8.1) });
    for (const [index, storeSize] of [100_000, 1_000_000, 10_000_000].entries()) {
      rows.push({ workload: 'W4', library, variant: `size=${storeSize} C=1`, storeSize, clients: 1, throughput: 2000 / (index + 1), unit: 'reads/s', readLatencyMs: percentiles(0.35 * 4 ** index * (library === RICO ? 5 : 1)) });
    }
    rows.push({ workload: 'W5', library, variant: 'size=1M', storeSize: 1_000_000, throughput: 250_000, unit: 'events/s', peakRssMB: library === RICO ? 1843.25 : 95.5, notes: library === RICO ? 'reads everything into memory | no paging' : '' });
    rows.push({ workload: 'W6', library, variant: 'append 1 event', throughput: 1.2345, unit: 'ms/op', latencyMs: percentiles(1.2345) });
  }
  return rows;
}

function fixture(rows: ResultRow[] = fixtureRows()): BenchResults {
  return {
    startedAt: '2025-06-01T10:00:00.000Z',
    finishedAt: '2025-06-01T11:30:00.000Z',
    quick: false,
    command: 'npm run bench -- --workloads all',
    machine: {
      cpus: 2,
      cpuModel: 'Intel(R) Xeon(R) CPU @ 2.20GHz',
      memGiB: 7.8,
      node: 'v20.19.0',
      os: 'Linux 6.1 x64',
      postgres: 'PostgreSQL 17.5',
      pgbench: 'pgbench 17.5',
      settings: { shared_buffers: '128MB', fsync: 'on' },
    },
    rows,
    notes: ['Each library ran in its own process on a fresh database.', 'rico lets two racers win (see W2 violations).'],
  };
}

/** Checks that every opened tag is closed in order and that the document is one <svg> element. */
function assertWellFormedSvg(svg: string): void {
  assert.ok(svg.startsWith('<svg '), 'starts with <svg');
  assert.ok(svg.trimEnd().endsWith('</svg>'), 'ends with </svg>');
  assert.match(svg, /xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.doesNotMatch(svg, /NaN|undefined|Infinity/);
  const stack: string[] = [];
  let roots = 0;
  for (const match of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"]*")*)\s*(\/?)>/g)) {
    const [, closing, name, , selfClosing] = match;
    if (closing) assert.equal(stack.pop(), name, `closing </${name}> matches its opening tag`);
    else if (!selfClosing) {
      if (stack.length === 0) roots += 1;
      stack.push(name!);
    } else if (stack.length === 0) roots += 1;
  }
  assert.deepEqual(stack, [], 'every tag is closed');
  assert.equal(roots, 1, 'one root element');
  // No stray markup characters in text: everything between tags is escaped.
  const text = svg.replace(/<[^>]*>/g, '');
  assert.doesNotMatch(text, /[<>]/);
}

describe('number formatting', () => {
  test('thousands separators and 3 significant digits below 100', () => {
    assert.equal(formatNumber(1234567.8), '1,234,568');
    assert.equal(formatNumber(12.3456), '12.3');
    assert.equal(formatNumber(0), '0');
    assert.equal(formatMs(0.041234), '0.0412');
    assert.equal(formatMs(1.23456), '1.23');
    assert.equal(formatMs(12.3456), '12.3');
    assert.equal(formatMs(1234.5), '1,235');
  });
});

describe('renderMarkdown', () => {
  const results = fixture();
  const markdown = renderMarkdown(results);

  test('has the machine line, the command and the notes', () => {
    assert.match(markdown, /\*\*Machine:\*\* 2 x Intel\(R\) Xeon\(R\) CPU @ 2\.20GHz, 7\.8 GiB RAM/);
    assert.ok(markdown.includes('npm run bench -- --workloads all'));
    assert.ok(markdown.includes('`shared_buffers=128MB`'));
    for (const note of results.notes) assert.ok(markdown.includes(`- ${note}`));
  });

  test('every row appears in its workload table, with its ratio', () => {
    const tableLines = markdown.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| library') && !line.startsWith('| :--'));
    assert.equal(tableLines.length, results.rows.length);
    for (const row of results.rows) {
      const library = row.library.replaceAll('|', '\\|');
      const line = tableLines.find((candidate) => candidate.startsWith(`| ${library} | ${row.variant} |`) && candidate.includes(` ${row.unit}`));
      assert.ok(line, `row ${row.workload} ${row.library} ${row.variant}`);
      if (row.baseline) assert.ok(line.includes(`${row.baseline.ratio.toFixed(2)}x ${row.baseline.label}`), `ratio in ${line}`);
    }
    assert.ok(markdown.includes('| 0.71x pgbench INSERT C=16 |'));
  });

  test('formats throughput, latencies, conflicts, violations and peak RSS', () => {
    assert.ok(markdown.includes('123,457 events/s'));
    assert.ok(markdown.includes('1.23 ms/op'));
    assert.match(markdown, /\| 1,843 MB \|/);
    assert.match(markdown, /\| \*\*17\*\* \|/, 'violations are bold');
    assert.ok(markdown.includes('| read p50 ms | read p95 ms | read p99 ms | append p50 ms |'));
    assert.ok(markdown.includes('reads everything into memory \\| no paging'), 'a | inside a cell is escaped');
    for (const title of ['W1:', 'W2:', 'W3:', 'W4:', 'W5:', 'W6:', 'Baseline']) assert.match(markdown, new RegExp(`^### ${title}`, 'm'));
    assert.ok(markdown.indexOf('### Baseline') < markdown.indexOf('### W1:'));
  });

  test('only workloads with rows get a section, and an empty run renders', () => {
    const onlyW3 = renderMarkdown(fixture(fixtureRows().filter((row) => row.workload === 'W3')));
    assert.ok(onlyW3.includes('### W3:'));
    assert.ok(!onlyW3.includes('### W1:'));
    assert.ok(!onlyW3.includes('throughput.svg'));
    const empty = renderMarkdown({ ...fixture([]), notes: [], quick: true });
    assert.ok(empty.includes('_No results._'));
    assert.ok(empty.includes('Quick run'));
  });
});

describe('SVG charts', () => {
  test('the throughput chart is well-formed and names every library and pgbench', () => {
    const svg = renderThroughputSvg(fixture());
    assertWellFormedSvg(svg);
    for (const library of LIBRARIES) assert.ok(svg.includes(`>${library}</text>`), library);
    assert.ok(svg.includes('pgbench INSERT'));
    assert.ok(svg.includes('stroke-dasharray'));
    for (const clients of ['1', '4', '16', '64']) assert.ok(svg.includes(`>${clients}</text>`), `x tick ${clients}`);
    assert.equal((svg.match(/<polyline /g) ?? []).length, 4, 'three libraries and the baseline');
  });

  test('the latency chart is well-formed, names every library and percentile, and uses store sizes', () => {
    const svg = renderLatencySvg(fixture());
    assertWellFormedSvg(svg);
    for (const library of LIBRARIES) for (const percentile of ['p50', 'p95', 'p99']) assert.ok(svg.includes(`>${library} ${percentile}</text>`));
    for (const size of ['100k', '1M', '10M']) assert.ok(svg.includes(`>${size}</text>`), `x tick ${size}`);
  });

  test('charts without data render a well-formed placeholder', () => {
    for (const rows of [[], fixtureRows().filter((row) => row.workload === 'W3')]) {
      for (const svg of [renderThroughputSvg(fixture(rows)), renderLatencySvg(fixture(rows))]) {
        assertWellFormedSvg(svg);
        assert.ok(svg.includes('no data'));
      }
    }
  });

  test('one client count or one store size still draws points', () => {
    const rows = fixtureRows().filter((row) => (row.workload === 'W1' && row.clients === 4) || (row.workload === 'W4' && row.storeSize === 100_000));
    for (const svg of [renderThroughputSvg(fixture(rows)), renderLatencySvg(fixture(rows))]) {
      assertWellFormedSvg(svg);
      assert.ok(svg.includes('<circle '));
    }
  });
});

describe('writeReport', () => {
  test('writes the dated json and markdown, latest.md and both charts', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'bench-report-'));
    try {
      const results = fixture();
      const withBigint = { ...results, notes: [...results.notes], extra: 12345678901234567890n } as BenchResults;
      const paths = await writeReport(withBigint, join(directory, 'out'));
      assert.deepEqual(paths.map((path) => basename(path)), ['2025-06-01.json', '2025-06-01.md', 'latest.md', 'throughput.svg', 'latency.svg']);
      const json = JSON.parse(await readFile(paths[0]!, 'utf8')) as BenchResults & { extra: string };
      assert.equal(json.extra, '12345678901234567890');
      assert.equal(json.rows.length, results.rows.length);
      assert.equal(await readFile(paths[1]!, 'utf8'), await readFile(paths[2]!, 'utf8'));
      assertWellFormedSvg(await readFile(paths[3]!, 'utf8'));
      assertWellFormedSvg(await readFile(paths[4]!, 'utf8'));
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  test('toJson writes bigints as strings', () => {
    assert.equal(toJson({ position: 5n }), '{\n  "position": "5"\n}\n');
  });
});
