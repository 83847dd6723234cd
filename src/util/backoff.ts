// Retry delays, written once. Exponential with a cap, randomised so that clients that failed
// together (a server restart, a lost race) do not retry together.

export interface BackoffOptions {
  /** The bound of the first delay, in ms. */
  baseMs: number;
  /** The largest bound, in ms. */
  capMs: number;
  /**
   * `full`: a random delay from 0 to the bound (spreads retries the most; for lost races and
   * resends). `equal`: from half the bound to the bound (never retries at once; for polling a
   * server that is down).
   */
  jitter: 'full' | 'equal';
}

/** The delay before the retry that follows `failures` failures (1 for the first retry). */
export function backoffDelay(failures: number, options: BackoffOptions): number {
  const bound = Math.min(options.capMs, options.baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return options.jitter === 'full' ? Math.random() * bound : bound * (0.5 + Math.random() / 2);
}
