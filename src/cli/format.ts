// How events look on the command line: the NDJSON line of read/tail/export (one event per line,
// positions as strings so they stay exact), and the table for a terminal.
import { eventJson, textTimedEventJson, type SequencedEvent, type TextTimedEvent } from '../events.ts';

/** The export format, exactly: position, id, type, tags, data, metadata, occurredAt, recordedAt. */
export function eventLine(event: SequencedEvent): string {
  return JSON.stringify(eventJson(event));
}

/** eventLine of an event whose timestamps are text (an export's, exact to the microsecond). */
export function exportLine(event: TextTimedEvent): string {
  return JSON.stringify(textTimedEventJson(event, event.occurredAt, event.recordedAt));
}

export type OutputFormat = 'table' | 'ndjson' | 'json';

/** table on a terminal, ndjson when piped, unless --format says otherwise. */
export function outputFormat(flag: string | undefined): OutputFormat {
  if (flag === undefined) return process.stdout.isTTY ? 'table' : 'ndjson';
  if (flag === 'table' || flag === 'ndjson' || flag === 'json') return flag;
  throw new Error(`unreachable: ${flag}`);
}

/** Table rows: position, time, type, tags, data cut to the terminal's width. */
export class EventTable {
  readonly #width: number;
  #header = false;

  constructor(width = process.stdout.columns ?? 120) {
    this.#width = Math.max(60, width);
  }

  line(event: SequencedEvent): string {
    const head = this.#header ? '' : `${pad('POSITION', 10)} ${pad('RECORDED', 24)} ${pad('TYPE', 24)} ${pad('TAGS', 24)} DATA\n`;
    this.#header = true;
    const fixed = `${pad(event.position.toString(), 10)} ${pad(event.recordedAt.toISOString(), 24)} ${pad(cut(event.type, 24), 24)} ${pad(cut(event.tags.join(','), 24), 24)} `;
    return `${head}${fixed}${cut(JSON.stringify(event.data) ?? 'null', this.#width - fixed.length)}\n`;
  }
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function cut(text: string, width: number): string {
  if (width < 2) return '';
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}
