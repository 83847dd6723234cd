/**
 * Replaces one library's rows of some workloads in a results file with the rows of a later run,
 * and writes the report again: `tsx bench/merge-results.ts <base.json> <rerun.json> <library>
 * <workloads,...> <outDir>`. The merged file says so in its notes. The rerun's pgbench SELECT
 * baselines replace the base's, since the rerun's rows are compared against them.
 */
import { readFile } from 'node:fs/promises';
import { writeReport } from './report.ts';
import type { BenchResults } from './results-schema.ts';

const [basePath, rerunPath, library, workloadList, outDir] = process.argv.slice(2);
if (!basePath || !rerunPath || !library || !workloadList || !outDir) {
  console.error('usage: tsx bench/merge-results.ts <base.json> <rerun.json> <library> <W4,W6,...> <outDir>');
  process.exit(2);
}
const workloads = new Set(workloadList.split(','));
const base = JSON.parse(await readFile(basePath, 'utf8')) as BenchResults;
const rerun = JSON.parse(await readFile(rerunPath, 'utf8')) as BenchResults;
const replaced = (row: BenchResults['rows'][number]): boolean =>
  (workloads.has(row.workload) && row.library.includes(library)) || (row.workload === 'baseline' && row.variant.startsWith('SELECT'));
const rows = [...base.rows.filter((row) => !replaced(row)), ...rerun.rows.filter(replaced)];
const merged: BenchResults = {
  ...base,
  finishedAt: rerun.finishedAt,
  command: `${base.command}; then ${rerun.command} (its ${library} ${[...workloads].join('/')} rows and the SELECT baselines replace the first run's)`,
  rows,
  notes: [...base.notes, `The ${library} rows of ${[...workloads].join(', ')} and the pgbench SELECT baselines come from a second run (${rerun.startedAt}) after a fix to the read statement; the peers' W4 ratios still refer to the first run's SELECT baselines.`],
};
console.log((await writeReport(merged, outDir)).join('\n'));
