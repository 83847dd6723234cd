// `npm run test:faults`: every fault scenario, longer runs (the full profile), then the table.
// Exits non-zero when any scenario lost, duplicated or falsely failed an append, or broke any
// other check. Options: --profile short|full (default full), --only a,b (scenario names),
// --seed N, --repeat N (each scenario N times with seeds N, N+1, ...), --postgres-flag='-c x=y'
// (repeatable; e.g. '-c synchronous_commit=off' shows the suite catching acknowledged appends a
// crash loses).
import { parseArgs } from 'node:util';
import { FULL_PROFILE, FaultHarness, SHORT_PROFILE, type ScenarioResult } from './harness.ts';
import { describeResult, formatTable } from './report.ts';
import { SCENARIOS } from './scenarios.ts';

const { values } = parseArgs({
  options: {
    profile: { type: 'string', default: 'full' },
    only: { type: 'string' },
    seed: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '1' },
    'postgres-flag': { type: 'string', multiple: true, default: [] },
  },
});
const profile = values.profile === 'short' ? SHORT_PROFILE : FULL_PROFILE;
const only = values.only?.split(',').map((name) => name.trim()).filter(Boolean);
const unknownNames = only?.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name)) ?? [];
if (unknownNames.length > 0) {
  console.error(`unknown scenario(s): ${unknownNames.join(', ')}; known: ${SCENARIOS.map((scenario) => scenario.name).join(', ')}`);
  process.exit(2);
}
const scenarios = only ? SCENARIOS.filter((scenario) => only.includes(scenario.name)) : SCENARIOS;
const seed = Number(values.seed);
const repeat = Math.max(1, Number(values.repeat));

const postgresFlags = (values['postgres-flag'] ?? []).flatMap((flag) => flag.split(/\s+/).filter(Boolean));
const harness = await FaultHarness.start(profile, postgresFlags);
const stopOnSignal = (): void => void harness.stop().finally(() => process.exit(130));
process.once('SIGINT', stopOnSignal);
process.once('SIGTERM', stopOnSignal);

const results: ScenarioResult[] = [];
const started = Date.now();
try {
  for (let round = 0; round < repeat; round++) {
    for (const [index, scenario] of scenarios.entries()) {
      const result = await harness.runScenario(scenario, seed + round * 1000 + index);
      results.push(result);
      console.log(describeResult(result));
    }
  }
} finally {
  await harness.stop();
}

console.log(`\nprofile ${profile.name}, seed ${seed}, ${((Date.now() - started) / 1000).toFixed(0)} s; deadlines: append ${profile.deadlines.appendTimeoutMs} ms, read ${profile.deadlines.readTimeoutMs} ms, connect ${profile.deadlines.connectTimeoutMs} ms (slack ${profile.slackMs} ms)\n`);
console.log(formatTable(results));
const failing = results.filter((result) => result.violations.length > 0);
if (failing.length > 0) {
  console.log(`\n${failing.length} scenario(s) failed: ${failing.map((result) => result.scenario).join(', ')}`);
  process.exit(1);
}
