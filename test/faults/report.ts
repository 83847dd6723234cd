// The fault suite's results table, and what makes a run fail. "restarts" counts how often the
// subscription / the consumer ended with an error and the observer started it again.
import type { ScenarioResult } from './harness.ts';

const COLUMNS: [string, (result: ScenarioResult) => string][] = [
  ['scenario', (result) => result.scenario],
  ['faults', (result) => String(result.faultsInjected)],
  ['operations', (result) => String(result.operations)],
  ['acknowledged', (result) => String(result.acknowledged)],
  ['failed', (result) => String(result.failed)],
  ['unknown', (result) => (result.unknown === 0 ? '0' : `${result.unknown} (${result.settled} settled)`)],
  ['lost', (result) => String(result.lost)],
  ['duplicated', (result) => String(result.duplicated)],
  ['false failures', (result) => String(result.falseFailures)],
  ['other violations', (result) => String(otherViolations(result))],
  ['restarts', (result) => `${result.subscriptionErrors}/${result.consumerErrors}`],
  ['longest wait', (result) => `${(result.longestWaitMs / 1000).toFixed(1)} s`],
  ['recovery', (result) => (result.recoveryMs === undefined ? 'none' : `${(result.recoveryMs / 1000).toFixed(2)} s`)],
];

export function otherViolations(result: ScenarioResult): number {
  return result.violations.length - result.lost - result.duplicated - result.falseFailures;
}

/** A Markdown table, one row per scenario. */
export function formatTable(results: readonly ScenarioResult[]): string {
  const rows = results.map((result) => COLUMNS.map(([, cell]) => cell(result)));
  const widths = COLUMNS.map(([title], index) => Math.max(title.length, ...rows.map((row) => row[index]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, index) => (index === 0 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!))).join(' | ')} |`;
  return [line(COLUMNS.map(([title]) => title)), `|${widths.map((width, index) => (index === 0 ? `:${'-'.repeat(width + 1)}` : `${'-'.repeat(width + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** Violations and notes of one scenario, for a failure message or the run's log. */
export function describeResult(result: ScenarioResult, maxViolations = 15): string {
  const lines = [`${result.scenario}: ${result.violations.length} violation(s) in ${(result.durationMs / 1000).toFixed(1)} s`];
  for (const violation of result.violations.slice(0, maxViolations)) lines.push(`  [${violation.kind}] ${violation.message}`);
  if (result.violations.length > maxViolations) lines.push(`  ... and ${result.violations.length - maxViolations} more`);
  for (const note of result.notes.slice(0, 10)) lines.push(`  note: ${note}`);
  if (result.recordDir) lines.push(`  records: ${result.recordDir}`);
  return lines.join('\n');
}
