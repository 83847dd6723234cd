// Waits every layer uses: the stores, subscriptions, consumers and the notifier.

/** The longest delay setTimeout honours (longer ones fire after 1 ms). */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Waits until the wake function given to `register` is called, `timeoutMs` passes or `signal`
 * aborts. `register` stores the wake function where wakers find it and returns its removal.
 */
export function wakeableWait(timeoutMs: number, signal: AbortSignal, register: (wake: () => void) => () => void): Promise<void> {
  return new Promise((resolve) => {
    const wake = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', wake);
      unregister();
      resolve();
    };
    const timer = setTimeout(wake, timeoutMs);
    signal.addEventListener('abort', wake, { once: true });
    const unregister = register(wake);
  });
}

/** Resolves after `ms`, or early (never rejecting) when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS));
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** True when `promise` settles within `ms` (it is left to run either way). */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
  try {
    return await Promise.race([promise.then(() => true, () => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
