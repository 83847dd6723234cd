// The fault-injection suite, short run (part of `npm test`): every scenario of scenarios.ts once,
// against the suite's own PostgreSQL, through the fault proxy, with writer processes, a
// subscriber and a durable consumer. A scenario fails on any lost, duplicated or falsely failed
// append, any other history violation, a subscriber or read model that disagrees with the log,
// a call that waited past its deadline, or a store that did not recover.
// `npm run test:faults` runs the longer version and prints the table.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FaultHarness, SHORT_PROFILE, type ScenarioResult } from './harness.ts';
import { describeResult, formatTable } from './report.ts';
import { SCENARIOS } from './scenarios.ts';

describe('fault injection (short run)', { timeout: 600_000 }, () => {
  let harness: FaultHarness;
  const results: ScenarioResult[] = [];

  before(async () => {
    harness = await FaultHarness.start(SHORT_PROFILE);
  });
  after(async () => {
    await harness?.stop();
    if (results.length > 0) console.log(`\n${formatTable(results)}\n`);
  });

  for (const [index, scenario] of SCENARIOS.entries()) {
    test(`${scenario.name}: ${scenario.summary}`, async (t) => {
      const result = await harness.runScenario(scenario, 1 + index);
      results.push(result);
      t.diagnostic(`${result.operations} appends: ${result.acknowledged} acknowledged, ${result.failed} failed, ${result.unknown} unknown (${result.settled} settled); ${result.faultsInjected} faults; longest wait ${result.longestWaitMs} ms; recovery ${result.recoveryMs ?? 'none'} ms`);
      for (const note of result.notes) t.diagnostic(note);
      assert.ok(result.operations > 0 && result.acknowledged > 0, 'the workload ran');
      assert.equal(result.violations.length, 0, describeResult(result));
    });
  }
});
