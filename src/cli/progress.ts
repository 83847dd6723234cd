// Progress of a long command, on stderr only (stdout carries data): a bar on a terminal when the
// total is known, plain lines every few seconds otherwise (a log file or a pipe reads those).
import cliProgress from 'cli-progress';
import { say } from './context.ts';

const PLAIN_INTERVAL_MS = 5_000;

export class Progress {
  readonly #label: string;
  readonly #startedAt = Date.now();
  readonly #bar: cliProgress.SingleBar | undefined;
  #lastLine = Date.now();
  #events = 0;

  /** `total`: the value update() reaches at the end (events, positions or bytes), when known. */
  constructor(label: string, total: number | undefined) {
    this.#label = label;
    if (process.stderr.isTTY && total !== undefined && total > 0) {
      this.#bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: `${label} [{bar}] {percentage}% | {events} events | {rate} events/s | ETA {eta_formatted}`, hideCursor: true, etaBuffer: 50 },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(total, 0, { events: 0, rate: 0 });
    }
  }

  /** `value` counts towards the total; `events` is what the operator is told. */
  update(value: number, events: number): void {
    this.#events = events;
    if (this.#bar) {
      this.#bar.update(value, { events, rate: this.#rate() });
      return;
    }
    const now = Date.now();
    if (now - this.#lastLine >= PLAIN_INTERVAL_MS) {
      this.#lastLine = now;
      say(`${this.#label}: ${events} events (${this.#rate()} events/s)`);
    }
  }

  /**
   * Ends the bar. `summary` is given when the work is complete: the bar is drawn full (the last
   * update may have been a chunk short of the end), and the summary is the last line; `events`
   * is the final count.
   */
  stop(summary?: string, events = this.#events): void {
    this.#events = events;
    if (this.#bar && summary !== undefined) this.#bar.update(this.#bar.getTotal(), { events, rate: this.#rate() });
    this.#bar?.stop();
    if (summary !== undefined) say(`${summary} in ${((Date.now() - this.#startedAt) / 1000).toFixed(1)} s (${this.#rate()} events/s)`);
  }

  #rate(): number {
    const seconds = (Date.now() - this.#startedAt) / 1000;
    return seconds > 0 ? Math.round(this.#events / seconds) : 0;
  }
}
