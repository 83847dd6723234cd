/**
 * The shape of a benchmark run's results: what bench/run.ts collects and bench/report.ts renders.
 * Field names are a contract with the report writer: add optional fields, never rename.
 */

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

export interface ResultRow {
  workload: 'W1' | 'W1a' | 'W2' | 'W3' | 'W4' | 'W4-load' | 'W5' | 'W6' | 'baseline';
  /** Adapter name, or 'pgbench'. */
  library: string;
  /** Human label: 'C=16', '4 processes x 4 clients', 'batch=1000 conditional', 'size=10M C=4', ... */
  variant: string;
  clients?: number;
  processes?: number;
  storeSize?: number;
  batchSize?: number;
  conditional?: boolean;
  throughput: number;
  unit: 'loops/s' | 'appends/s' | 'events/s' | 'reads/s' | 'tps' | 'rows/s' | 'ms/op' | 'successes/s';
  latencyMs?: Percentiles;
  readLatencyMs?: Percentiles;
  appendLatencyMs?: Percentiles;
  falseConflicts?: number;
  conflicts?: number;
  violations?: number;
  peakRssMB?: number;
  /** e.g. { label: 'pgbench INSERT C=16', value: 14500, ratio: 0.71 } */
  baseline?: { label: string; value: number; ratio: number };
  /** Throughput of each repeat; `throughput` is their median. */
  repeats?: number[];
  notes?: string;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  command: string;
  machine: {
    cpus: number;
    cpuModel: string;
    memGiB: number;
    node: string;
    os: string;
    postgres: string;
    pgbench: string;
    settings: Record<string, string>;
  };
  rows: ResultRow[];
  notes: string[];
}
