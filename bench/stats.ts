/** Percentiles over every sample, and the median repeat. */
import type { Percentiles } from './results-schema.ts';
import type { Measurement } from './workloads.ts';

/** Nearest-rank percentiles over all samples (sorted, as an HDR histogram at full precision). */
export function percentiles(samples: readonly number[]): Percentiles | undefined {
  if (samples.length === 0) return undefined;
  const sorted = Float64Array.from(samples).sort();
  const rank = (q: number): number => round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);
  let sum = 0;
  for (const value of sorted) sum += value;
  return { p50: rank(0.5), p95: rank(0.95), p99: rank(0.99), mean: round(sum / sorted.length) };
}

export function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** Several processes' measurements of the same repeat, as one: rates add up, samples pool. */
export function combine(parts: readonly Measurement[]): Measurement & { rate: number; eventRate: number } {
  const samples: Record<string, number[]> = {};
  const counters: Record<string, number> = {};
  let rate = 0;
  let eventRate = 0;
  for (const part of parts) {
    rate += part.ops / (part.elapsedMs / 1000);
    eventRate += part.events / (part.elapsedMs / 1000);
    for (const [name, values] of Object.entries(part.samples)) (samples[name] ??= []).push(...values);
    for (const [name, value] of Object.entries(part.counters)) counters[name] = (counters[name] ?? 0) + value;
  }
  const combined: Measurement & { rate: number; eventRate: number } = {
    elapsedMs: Math.max(...parts.map((part) => part.elapsedMs)),
    ops: parts.reduce((sum, part) => sum + part.ops, 0),
    events: parts.reduce((sum, part) => sum + part.events, 0),
    samples,
    counters,
    rate,
    eventRate,
  };
  const peaks = parts.flatMap((part) => (part.peakRssMB === undefined ? [] : [part.peakRssMB]));
  if (peaks.length > 0) combined.peakRssMB = Math.max(...peaks);
  return combined;
}

/** The repeat with the median figure (the lower middle one for an even count), and its index. */
export function medianIndex(values: readonly number[]): number {
  const order = values.map((value, index) => ({ value, index })).sort((a, b) => a.value - b.value);
  return order[Math.floor((order.length - 1) / 2)]!.index;
}
