// The append statement and its encoding: one call of <schema>.append_batch per batch, the whole
// batch as one jsonb parameter (see migrations/ for the function).
import type { CommandResult, PendingAppend } from './append-batcher.ts';

/** One append_batch call: the batch, whether ids must be checked, the condition scan limit, every event id, whether the commands' conditions are independent. */
export function appendStatementText(quotedSchema: string): string {
  return `SELECT r_status, r_position, r_conflict FROM ${quotedSchema}.append_batch($1::jsonb, $2::boolean, $3::bigint, $4::uuid[], $5::boolean)`;
}

export interface AppendRow {
  r_status: number;
  r_position: string | null;
  r_conflict: string | null;
}

export /**
 * The batch as the append function reads it. Each query item also carries its types and tags as
 * PostgreSQL array literals, which the function casts with a plain assignment instead of running
 * a query per item to unpack the JSON arrays. (Data inside a bound parameter, not SQL.)
 */
function appendPayload(commands: readonly PendingAppend[]): string {
  // Events are serialized already (when append() was called); only the conditions are left.
  // The parts of one call form a group (all or nothing): its first part says how many there are.
  const parts: string[] = [];
  for (const command of commands) {
    command.parts.forEach(({ events, condition }, index) => {
      const conditionJson = condition && {
        after: condition.after,
        query: {
          ...condition.query,
          items: condition.query.items.map((item) => ({
            ...item,
            ...(item.types && { types_pg: pgTextArray(item.types) }),
            ...(item.tags && { tags_pg: pgTextArray(item.tags) }),
          })),
        },
      };
      const group = index === 0 && command.parts.length > 1 ? `"group":${command.parts.length},` : '';
      parts.push(`{${group}"events":[${events.map((event) => event.json).join(',')}],"condition":${JSON.stringify(conditionJson)}}`);
    });
  }
  return `[${parts.join(',')}]`;
}

/** A text[] literal: every element double-quoted, with `"` and `\` escaped. */
function pgTextArray(values: readonly string[]): string {
  return `{${values.map((value) => `"${value.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}

export function toCommandResult(row: AppendRow): CommandResult {
  switch (row.r_status) {
    case 0:
      return { status: 'appended', position: BigInt(row.r_position!) };
    case 3:
      return { status: 'already-appended', position: BigInt(row.r_position!) };
    case 1:
      // In a group, no conflict but a position: the index of the group's part it conflicts with.
      if (row.r_conflict === null && row.r_position !== null) return { status: 'condition-failed', conflict: undefined, conflictingPart: Number(row.r_position) };
      return { status: 'condition-failed', conflict: row.r_conflict === null ? undefined : BigInt(row.r_conflict) };
    case 2:
      return { status: 'duplicate-id', conflict: row.r_conflict === null ? undefined : BigInt(row.r_conflict) };
    case 4:
      return { status: 'not-written' };
    default:
      return { status: 'unknown', code: row.r_status };
  }
}
