import type { InternalQuery, InternalQueryItem } from '../query.ts';

/** What the independence check needs of a command: its events' types and tags and its condition. */
export interface CommandShape {
  events: ReadonlyArray<{ type: string; tags: readonly string[] }>;
  condition: { query: InternalQuery } | null;
}

/**
 * True when no command's condition can match an event of an earlier command of the same batch.
 * Then every condition may be checked against the store as it was before the batch, and the
 * whole batch written with one INSERT, with the same outcome as checking command by command.
 *
 * Errs towards false: an event counts as matching an item when its type and tags match, whatever
 * the item's payload predicates and the query's time bounds say. A wrong `true` would let a
 * conflicting command through, so every shortcut here must only ever produce `false`.
 */
export function commandsAreIndependent(commands: readonly CommandShape[]): boolean {
  if (commands.length < 2) return true;
  // Earlier commands' events, indexed by each of their tags and by type.
  const byTag = new Map<string, Array<{ type: string; tags: readonly string[] }>>();
  const types = new Set<string>();
  let earlierEvents = 0;
  for (const command of commands) {
    const query = command.condition?.query;
    if (query && earlierEvents > 0) {
      if (query.all) return false;
      for (const item of query.items) {
        if (mayMatchEarlier(item, byTag, types, earlierEvents)) return false;
      }
    }
    for (const event of command.events) {
      earlierEvents++;
      types.add(event.type);
      for (const tag of event.tags) {
        let list = byTag.get(tag);
        if (!list) byTag.set(tag, (list = []));
        list.push(event);
      }
    }
  }
  return true;
}

function mayMatchEarlier(
  item: InternalQueryItem,
  byTag: Map<string, Array<{ type: string; tags: readonly string[] }>>,
  types: Set<string>,
  earlierEvents: number,
): boolean {
  if (item.tags && item.tags.length > 0) {
    // Only events carrying the item's rarest tag can carry all of them.
    let candidates: Array<{ type: string; tags: readonly string[] }> | undefined;
    for (const tag of item.tags) {
      const list = byTag.get(tag);
      if (!list) return false;
      if (!candidates || list.length < candidates.length) candidates = list;
    }
    return candidates!.some(
      (event) => (item.types === null || item.types.includes(event.type)) && item.tags!.every((tag) => event.tags.includes(tag)),
    );
  }
  if (item.types) return item.types.some((type) => types.has(type));
  // Payload predicates only: any earlier event might match.
  return earlierEvents > 0;
}
