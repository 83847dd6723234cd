// The layer rules of .dependency-cruiser.cjs hold for src/, and they can fail: a type-only cycle
// in a fixture is caught. (`npm run check:layers` runs the same check with a readable report.)
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { cruise, type IViolation } from 'dependency-cruiser';

const config = createRequire(import.meta.url)('../../.dependency-cruiser.cjs');

async function violations(paths: string[]): Promise<IViolation[]> {
  const result = await cruise(paths, { ruleSet: config, ...config.options, validate: true });
  const output = result.output;
  if (typeof output === 'string') throw new Error('expected the JSON result');
  return output.summary.violations;
}

test('src/ keeps its layers: no cycle, nothing imports upwards, pg only in src/postgres', async () => {
  const found = await violations(['src']);
  assert.deepEqual(found.map((violation) => `${violation.rule.name}: ${violation.from} -> ${violation.to}`), []);
});

test('the check fails on an import cycle, also one made of type-only imports', async () => {
  const found = await violations(['test/unit/fixtures/import-cycle']);
  assert.ok(found.some((violation) => violation.rule.name === 'no-circular'), JSON.stringify(found));
});
