// The Grafana dashboard and the compose profile that serves it, checked against the names the
// store emits (src/telemetry/names.ts). A renamed metric or attribute, a typo in a PromQL
// expression, a panel that no longer matches anything, a metric no panel shows, a mounted file that
// is missing, or a data source uid that differs between provisioning and dashboard all fail here,
// long before anyone opens Grafana (there is no Docker engine in CI to try it for real).
//
// How the OpenTelemetry Collector's Prometheus exporter (otel/opentelemetry-collector-contrib, the
// version pinned in docker-compose.yml, default translation strategy UnderscoreEscapingWithSuffixes;
// the rules are those of github.com/prometheus/otlptranslator, MetricNamer.Build and
// LabelNamer.Build, which the exporter calls) names what it exposes:
//   - The metric name is split into words at every character outside [a-zA-Z0-9:]; empty words
//     vanish, so runs of separators collapse: "eventstore.append.duration" ->
//     eventstore, append, duration.
//   - The unit is split once at "/" into a main and a "per" part. A part that contains "{" or "}"
//     (an annotation such as "{event}") adds nothing. Otherwise the main part maps through the
//     UCUM table ("s" -> seconds, "ms" -> milliseconds, "By" -> bytes, "1" -> nothing, "%" ->
//     percent, others as written) and the per part through its own table ("s" -> second, "m" ->
//     minute, ...) with "per_" in front; each is cleaned to [a-zA-Z0-9_] and appended as a word
//     unless the name already has that word: ("http.server.request.duration", "s") ->
//     http_server_request_duration_seconds; ("x", "By/s") -> x_bytes_per_second.
//   - A monotonic sum (an OTel Counter) gets the word "total" last (any "total" word earlier in the
//     name is removed first): eventstore_append_events_total. A gauge whose unit is "1" gets
//     "ratio" the same way. Non-monotonic sums (UpDownCounter) and gauges get neither.
//   - A name that would start with a digit gets a leading "_".
//   - An explicit-bucket histogram is exposed as three series: <name>_bucket (with the label `le`),
//     <name>_sum and <name>_count.
//   - An attribute key becomes a label with every character outside [a-zA-Z0-9_] replaced by "_"
//     (no collapsing): eventstore.append.outcome -> eventstore_append_outcome; a key that then starts
//     with a digit gets "key_" in front, one that starts with a single "_" gets "key".
//   - The resource's service.name (with service.namespace) becomes `job`, service.instance.id
//     becomes `instance` (Prometheus keeps both because observability/prometheus.yml sets
//     honor_labels); `le` and `quantile` are Prometheus's own.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ATTRIBUTE, METRIC } from '../../src/telemetry/names.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD_PATH = 'observability/grafana/dashboards/eventstore.json';
const DATASOURCE_PATH = 'observability/grafana/provisioning/datasources/prometheus.yaml';
const DASHBOARD_PROVIDER_PATH = 'observability/grafana/provisioning/dashboards/eventstore.yaml';
const OBSERVABILITY_SERVICES = ['otel-collector', 'prometheus', 'grafana'];
const PROMETHEUS_LABELS = ['le', 'job', 'instance', 'quantile'];

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

// --- the translation rules above, in code -------------------------------------------------------

const UNIT_WORDS: Record<string, string> = {
  d: 'days', h: 'hours', min: 'minutes', s: 'seconds', ms: 'milliseconds', us: 'microseconds', ns: 'nanoseconds',
  By: 'bytes', KiBy: 'kibibytes', MiBy: 'mebibytes', GiBy: 'gibibytes', TiBy: 'tibibytes',
  KBy: 'kilobytes', MBy: 'megabytes', GBy: 'gigabytes', TBy: 'terabytes',
  m: 'meters', V: 'volts', A: 'amperes', J: 'joules', W: 'watts', g: 'grams',
  Cel: 'celsius', Hz: 'hertz', '1': '', '%': 'percent',
};
const PER_UNIT_WORDS: Record<string, string> = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week', mo: 'month', y: 'year' };

type InstrumentKind = 'counter' | 'updowncounter' | 'gauge' | 'histogram';

function cleanUnitWord(word: string): string {
  return word.replace(/[^a-zA-Z0-9:]/g, '_').replace(/__+/g, '_').replace(/^_/, '');
}

function unitWords(unit: string): [main: string, per: string] {
  const slash = unit.indexOf('/');
  const mainPart = (slash < 0 ? unit : unit.slice(0, slash)).trim();
  const perPart = slash < 0 ? '' : unit.slice(slash + 1).trim();
  const annotated = (part: string): boolean => /[{}]/.test(part);
  const main = mainPart !== '' && !annotated(mainPart) ? (UNIT_WORDS[mainPart] ?? mainPart) : '';
  const perWord = perPart !== '' && !annotated(perPart) ? (PER_UNIT_WORDS[perPart] ?? perPart) : '';
  return [cleanUnitWord(main), cleanUnitWord(perWord === '' ? '' : `per_${perWord}`)];
}

/** The name the exporter gives an instrument (for a histogram, the stem of _bucket/_sum/_count). */
function prometheusMetricName(name: string, unit: string, kind: InstrumentKind): string {
  let words = name.split(/[^a-zA-Z0-9:]+/).filter((word) => word !== '');
  let [main, per] = unitWords(unit);
  if (words.includes(main)) main = '';
  per = per === 'per_' ? '' : per.replace(/_$/, '');
  if (words.includes(per)) per = '';
  if (per !== '') main = main.replace(/_$/, '');
  if (main !== '') words.push(main);
  if (per !== '') words.push(per);
  if (kind === 'counter') words = [...words.filter((word) => word !== 'total'), 'total'];
  if (kind === 'gauge' && unit === '1') words = [...words.filter((word) => word !== 'ratio'), 'ratio'];
  const joined = words.join('_');
  return /^[0-9]/.test(joined) ? `_${joined}` : joined;
}

/** Every series name an instrument produces. */
function prometheusSeriesNames(name: string, unit: string, kind: string): string[] {
  if (!['counter', 'updowncounter', 'gauge', 'histogram'].includes(kind)) {
    throw new Error(`metric ${name}: kind "${kind}" has no translation here; add it to the rules in this test`);
  }
  const stem = prometheusMetricName(name, unit, kind as InstrumentKind);
  return kind === 'histogram' ? [`${stem}_bucket`, `${stem}_sum`, `${stem}_count`] : [stem];
}

function prometheusLabelName(key: string): string {
  const label = key.replace(/[^a-zA-Z0-9_]/g, '_');
  if (/^[0-9]/.test(label)) return `key_${label}`;
  if (label.startsWith('_') && !label.startsWith('__')) return `key${label}`;
  return label;
}

// --- PromQL: which metric names and label names an expression uses ------------------------------

const FUNCTIONS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'limitk', 'limit_ratio', 'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'predict_linear', 'resets',
  'changes', 'histogram_quantile', 'histogram_count', 'histogram_sum', 'histogram_fraction', 'histogram_avg',
  'clamp', 'clamp_min', 'clamp_max', 'abs', 'ceil', 'floor', 'round', 'sqrt', 'exp', 'ln', 'log2', 'log10', 'sgn',
  'vector', 'scalar', 'time', 'timestamp', 'absent', 'absent_over_time', 'present_over_time', 'sort', 'sort_desc',
  'avg_over_time', 'min_over_time', 'max_over_time', 'sum_over_time', 'count_over_time', 'quantile_over_time',
  'last_over_time', 'stddev_over_time', 'stdvar_over_time',
]);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'group_left', 'group_right', 'inf', 'nan']);

type Token = { kind: 'identifier' | 'string' | 'number' | 'punctuation'; text: string };

function tokenize(expression: string): Token[] {
  const pattern = /\s+|("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)|([0-9][a-zA-Z0-9_.]*)|([a-zA-Z_:][a-zA-Z0-9_:]*)|(=~|!~|!=|==|<=|>=|[(){}[\],=+\-*/%^<>@:])/y;
  const tokens: Token[] = [];
  let position = 0;
  while (position < expression.length) {
    pattern.lastIndex = position;
    const match = pattern.exec(expression);
    if (!match) throw new Error(`cannot read PromQL at "${expression.slice(position, position + 20)}" in: ${expression}`);
    position = pattern.lastIndex;
    if (match[1] !== undefined) tokens.push({ kind: 'string', text: match[1] });
    else if (match[2] !== undefined) tokens.push({ kind: 'number', text: match[2] });
    else if (match[3] !== undefined) tokens.push({ kind: 'identifier', text: match[3] });
    else if (match[4] !== undefined) tokens.push({ kind: 'punctuation', text: match[4] });
  }
  return tokens;
}

type Uses = { metrics: Set<string>; labels: Set<string> };

function promqlUses(expression: string, uses: Uses = { metrics: new Set(), labels: new Set() }): Uses {
  const tokens = tokenize(expression);
  for (let index = 0; index < tokens.length; index += 1) {
    const token = tokens[index]!;
    if (token.text === '{') {
      // Label matchers: name op "value" [, ...] }
      index += 1;
      while (tokens[index]?.text !== '}') {
        const label = tokens[index];
        assert.ok(label?.kind === 'identifier', `expected a label name in a selector of: ${expression}`);
        assert.ok(['=', '!=', '=~', '!~'].includes(tokens[index + 1]?.text ?? ''), `expected a matcher after ${label.text} in: ${expression}`);
        assert.equal(tokens[index + 2]?.kind, 'string', `expected a quoted value after ${label.text} in: ${expression}`);
        assert.notEqual(label.text, '__name__', `__name__ matchers are not checked by this test; name the metric instead: ${expression}`);
        uses.labels.add(label.text);
        index += 3;
        if (tokens[index]?.text === ',') index += 1;
      }
    } else if (token.text === '[') {
      // A range or subquery: durations only.
      while (tokens[index]?.text !== ']') index += 1;
    } else if (token.kind === 'identifier') {
      const next = tokens[index + 1]?.text;
      if (GROUPING.has(token.text) && next === '(') {
        index += 2;
        while (tokens[index]?.text !== ')') {
          const label = tokens[index];
          assert.ok(label?.kind === 'identifier', `expected a label name in ${token.text}(...) of: ${expression}`);
          uses.labels.add(label.text);
          index += 1;
          if (tokens[index]?.text === ',') index += 1;
        }
      } else if (FUNCTIONS.has(token.text)) {
        // A call, or an aggregation whose grouping comes first: sum by (label) (...).
        assert.ok(next === '(' || next === 'by' || next === 'without', `"${token.text}" must be called in: ${expression}`);
      } else if (next === '(') {
        assert.fail(`unknown PromQL function "${token.text}" in: ${expression}`);
      } else if (!KEYWORDS.has(token.text)) {
        uses.metrics.add(token.text);
      }
    }
  }
  return uses;
}

/** Grafana's variable query functions wrap PromQL; label_values(selector, label) names a label too. */
function grafanaQueryUses(query: string): Uses {
  const labelValues = /^\s*label_values\(([\s\S]*)\)\s*$/.exec(query);
  if (!labelValues) {
    const queryResult = /^\s*query_result\(([\s\S]*)\)\s*$/.exec(query);
    assert.ok(queryResult, `variable query is neither label_values(...) nor query_result(...): ${query}`);
    return promqlUses(queryResult[1]!);
  }
  const inner = labelValues[1]!;
  const comma = inner.lastIndexOf(',');
  const uses = comma < 0 ? { metrics: new Set<string>(), labels: new Set<string>() } : promqlUses(inner.slice(0, comma));
  uses.labels.add(inner.slice(comma + 1).trim());
  return uses;
}

/** Grafana's own variables out of the way: $__rate_interval is a duration, the rest sit inside label values. */
function withoutGrafanaVariables(expression: string): string {
  return expression.replace(/\$__(rate_)?interval|\$__range/g, '5m').replace(/\$\{?\w+(?::\w+)?\}?|\[\[\w+\]\]/g, 'x');
}

// --- the dashboard ---------------------------------------------------------------------------------

type Datasource = { type?: string; uid?: string };
type Target = { expr?: string; refId?: string; datasource?: Datasource };
type Panel = { id?: number; title?: string; type?: string; datasource?: Datasource; targets?: Target[]; panels?: Panel[] };
type Variable = { name: string; type: string; query?: string | { query?: string }; definition?: string; datasource?: Datasource };
type Dashboard = { uid?: string; schemaVersion?: number; panels: Panel[]; templating?: { list: Variable[] } };

const dashboard = JSON.parse(read(DASHBOARD_PATH)) as Dashboard;

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

type Expression = { where: string; uses: Uses; onPanel: boolean };

function dashboardExpressions(): Expression[] {
  const expressions: Expression[] = [];
  for (const panel of allPanels(dashboard.panels)) {
    for (const target of panel.targets ?? []) {
      assert.ok(target.expr, `panel "${panel.title}" target ${target.refId} has no expr`);
      expressions.push({ where: `panel "${panel.title}" (${target.refId})`, uses: promqlUses(withoutGrafanaVariables(target.expr)), onPanel: true });
    }
  }
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue;
    const queries = [typeof variable.query === 'string' ? variable.query : variable.query?.query, variable.definition];
    for (const query of queries) {
      if (query) expressions.push({ where: `variable $${variable.name}`, uses: grafanaQueryUses(withoutGrafanaVariables(query)), onPanel: false });
    }
  }
  return expressions;
}

// --- the compose file, read just far enough (no YAML parser among the dependencies) --------------

/** The lines of each service under the top-level `services:` key, by service name. */
function composeServices(text: string): Map<string, string[]> {
  const services = new Map<string, string[]>();
  let inServices = false;
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    if (/^\S/.test(line) && !line.startsWith('#')) {
      inServices = line.startsWith('services:');
      current = undefined;
      continue;
    }
    if (!inServices) continue;
    const service = /^ {2}([A-Za-z0-9_.-]+):\s*$/.exec(line);
    if (service) {
      current = [];
      services.set(service[1]!, current);
    } else if (current && /^ {3,}\S/.test(line)) {
      current.push(line);
    }
  }
  return services;
}

/** Bind mounts of a service whose source is a path in the repository: [source, target]. */
function repositoryMounts(lines: string[]): Array<[string, string]> {
  return lines.flatMap((line) => {
    const mount = /^\s+-\s+["']?(\.\/[^:"'\s]*):([^:"'\s]+)/.exec(line);
    return mount ? [[mount[1]!, mount[2]!] as [string, string]] : [];
  });
}

const yamlScalar = (text: string, key: string): string[] =>
  [...text.matchAll(new RegExp(`^\\s*-?\\s*${key}:\\s*["']?([^"'#\\s]+)`, 'gm'))].map((match) => match[1]!);

// --- the tests -------------------------------------------------------------------------------------

describe('the Prometheus names the collector produces', () => {
  test('the translation implemented here gives the documented examples', () => {
    // From otlptranslator's MetricNamer/UnitNamer documentation and the OTel-Prometheus compatibility spec.
    assert.equal(prometheusMetricName('http.server.request.duration', 's', 'histogram'), 'http_server_request_duration_seconds');
    assert.equal(prometheusMetricName('requests.count', '1', 'counter'), 'requests_count_total');
    assert.equal(prometheusMetricName('memory.usage', 'By', 'gauge'), 'memory_usage_bytes');
    assert.equal(prometheusMetricName('cpu.utilization', '1', 'gauge'), 'cpu_utilization_ratio');
    assert.equal(prometheusMetricName('system.network.io', 'By/s', 'counter'), 'system_network_io_bytes_per_second_total');
    assert.equal(prometheusMetricName('queue.items', '{item}', 'updowncounter'), 'queue_items');
    assert.equal(prometheusMetricName('total.requests', '{request}', 'counter'), 'requests_total');
    assert.equal(prometheusMetricName('db.wait.seconds', 's', 'histogram'), 'db_wait_seconds');
    // "_" is a separator too (only [a-zA-Z0-9:] make words), so runs of separators collapse.
    assert.equal(prometheusMetricName('http..server__latency', 'ms', 'histogram'), 'http_server_latency_milliseconds');
    assert.equal(prometheusLabelName('eventstore.append.outcome'), 'eventstore_append_outcome');
    assert.equal(prometheusLabelName('state'), 'state');
    assert.equal(prometheusLabelName('2xx.count'), 'key_2xx_count');
    assert.equal(prometheusLabelName('_private'), 'key_private');
  });

  test('each metric in names.ts gets its own Prometheus names', () => {
    const owners = new Map<string, string>();
    for (const metric of Object.values(METRIC)) {
      for (const series of prometheusSeriesNames(metric.name, metric.unit, metric.kind)) {
        assert.ok(!owners.has(series), `${metric.name} and ${owners.get(series)} both become ${series}`);
        owners.set(series, metric.name);
      }
    }
  });
});

// Everything below is computed inside the tests: an exception in a describe() body is not
// counted as a failure by the runner's summary, an exception in a test is.
function producedSeries(): Map<string, string> {
  const produced = new Map<string, string>();
  for (const metric of Object.values(METRIC)) {
    for (const series of prometheusSeriesNames(metric.name, metric.unit, metric.kind)) produced.set(series, metric.name);
  }
  return produced;
}

describe('the dashboard', () => {
  const expressions = (): Expression[] => dashboardExpressions();

  test('has panels with queries and pins its schema version', () => {
    assert.ok(expressions().filter((expression) => expression.onPanel).length >= 11, 'expected a query per panel');
    assert.equal(typeof dashboard.schemaVersion, 'number');
    assert.equal(typeof dashboard.uid, 'string');
  });

  test('every metric an expression uses is one that names.ts produces', () => {
    const produced = producedSeries();
    const unknown = expressions().flatMap(({ where, uses }) =>
      [...uses.metrics].filter((name) => !produced.has(name)).map((name) => `${where}: ${name}`));
    assert.deepEqual(unknown, [], `known: ${[...produced.keys()].join(', ')}`);
  });

  test('every metric in names.ts is shown on some panel', () => {
    const shown = new Set(expressions().filter((expression) => expression.onPanel).flatMap(({ uses }) => [...uses.metrics]));
    const missing = Object.values(METRIC)
      .filter((metric) => !prometheusSeriesNames(metric.name, metric.unit, metric.kind).some((series) => shown.has(series)))
      .map((metric) => metric.name);
    assert.deepEqual(missing, []);
  });

  test('every label an expression uses is a translated attribute or a Prometheus label', () => {
    const allowedLabels = new Set([...Object.values(ATTRIBUTE).map(prometheusLabelName), ...PROMETHEUS_LABELS]);
    const unknown = expressions().flatMap(({ where, uses }) =>
      [...uses.labels].filter((label) => !allowedLabels.has(label)).map((label) => `${where}: ${label}`));
    assert.deepEqual(unknown, [], `allowed: ${[...allowedLabels].join(', ')}`);
  });

  test('le is used only with histogram buckets', () => {
    for (const { where, uses } of expressions()) {
      if (uses.labels.has('le')) {
        assert.ok([...uses.metrics].some((name) => name.endsWith('_bucket')), `${where} uses le without a _bucket series`);
      }
    }
  });

  test('every panel, query and variable uses the provisioned data source', () => {
    const uids = yamlScalar(read(DATASOURCE_PATH), 'uid');
    assert.equal(uids.length, 1, `expected one data source uid in ${DATASOURCE_PATH}`);
    const [uid] = uids;
    const users: Array<[string, Datasource | undefined]> = [
      ...allPanels(dashboard.panels).filter((panel) => panel.type !== 'row').flatMap((panel) => [
        [`panel "${panel.title}"`, panel.datasource] as [string, Datasource | undefined],
        ...(panel.targets ?? []).map((target) => [`panel "${panel.title}" (${target.refId})`, target.datasource] as [string, Datasource | undefined]),
      ]),
      ...(dashboard.templating?.list ?? []).filter((variable) => variable.type === 'query')
        .map((variable) => [`variable $${variable.name}`, variable.datasource] as [string, Datasource | undefined]),
    ];
    for (const [where, datasource] of users) {
      assert.deepEqual(datasource, { type: 'prometheus', uid }, `${where} must use the provisioned data source`);
    }
  });
});

describe('the observability compose profile', () => {
  const services = (): Map<string, string[]> => composeServices(read('docker-compose.yml'));

  test('the collector, Prometheus and Grafana are there, only under the profile, on pinned images', () => {
    const byName = services();
    for (const name of OBSERVABILITY_SERVICES) {
      const lines = byName.get(name);
      assert.ok(lines, `service ${name} is missing`);
      assert.ok(lines.some((line) => /^\s+profiles:\s*\["observability"\]\s*$/.test(line)), `${name} must be in profile observability only`);
      const image = lines.map((line) => /^\s+image:\s*(\S+)/.exec(line)?.[1]).find((value) => value !== undefined);
      assert.ok(image && /:[0-9v][^:]*$/.test(image) && !image.endsWith(':latest'), `${name} needs a pinned image tag, has ${image}`);
    }
    assert.ok(byName.has('postgres_test'), 'the reader of the compose file lost the other services');
  });

  test('every repository file or directory a service mounts exists', () => {
    const mounts = [...services()].flatMap(([name, lines]) => repositoryMounts(lines).map(([source]) => [name, source] as const));
    assert.ok(mounts.some(([name]) => name === 'grafana'), 'no mounts found for grafana: the reader of the compose file is off');
    for (const [name, source] of mounts) {
      assert.ok(existsSync(join(ROOT, source)), `${name} mounts ${source}, which is not in the repository`);
    }
  });

  test('the pieces point at each other: provisioning at the mounted dashboards, Prometheus at the collector', () => {
    const grafanaMounts = new Map(repositoryMounts(services().get('grafana') ?? []));
    const dashboardsTarget = grafanaMounts.get('./observability/grafana/dashboards');
    assert.ok(dashboardsTarget, 'grafana must mount ./observability/grafana/dashboards');
    assert.deepEqual(yamlScalar(read(DASHBOARD_PROVIDER_PATH), 'path'), [dashboardsTarget]);
    assert.ok(grafanaMounts.has('./observability/grafana/provisioning/datasources'));
    assert.ok(grafanaMounts.has('./observability/grafana/provisioning/dashboards'));

    const collector = read('observability/otel-collector.yaml');
    const exporterPort = /prometheus:\s*\n\s+endpoint:\s*[^:\s]*:(\d+)/.exec(collector)?.[1];
    assert.ok(exporterPort, 'the collector config needs a prometheus exporter endpoint');
    assert.match(read('observability/prometheus.yml'), new RegExp(`targets:\\s*\\["otel-collector:${exporterPort}"\\]`));
    assert.match(read('observability/prometheus.yml'), /honor_labels:\s*true/);
    assert.match(read(DATASOURCE_PATH), /url:\s*http:\/\/prometheus:9090/);
  });
});
