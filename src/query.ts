import { InvalidInputError } from './errors.ts';
import { assertJson, describe, validateStorableDate, validateTag, validateType } from './validation.ts';

/** The DCB JSON shape of a query item. */
export interface QueryItemJSON {
  types?: string[];
  tags?: string[];
  /** The payload must contain at least one of these (PostgreSQL `@>`). */
  anyPredicateOf?: unknown[];
  /** The payload must contain every one of these. */
  allPredicatesOf?: unknown[];
}

/** The DCB JSON shape of a query. `items: []` is the query for all events. */
export interface QueryJSON {
  items: QueryItemJSON[];
  /** ISO 8601; inclusive. */
  occurredFrom?: string;
  /** ISO 8601; inclusive. */
  occurredUntil?: string;
}

/**
 * One alternative of a query. An event matches the item when its type is one of `types` (if
 * given) AND it carries every tag of `tags` (if given) AND its payload contains any (or all) of
 * the predicates (if given). Items are immutable; every method returns a new item.
 *
 * @example
 * QueryItem.types('BookCopyLentToReader', 'BookCopyReturnedByReader').tags('book:b1')
 * QueryItem.types('ReaderRegistered').anyPredicateOf({ ReaderID: 'r1' })
 */
export class QueryItem {
  readonly #types: readonly string[] | undefined;
  readonly #tags: readonly string[] | undefined;
  readonly #anyPredicateOf: readonly unknown[] | undefined;
  readonly #allPredicatesOf: readonly unknown[] | undefined;

  private constructor(parts: {
    types?: readonly string[] | undefined;
    tags?: readonly string[] | undefined;
    anyPredicateOf?: readonly unknown[] | undefined;
    allPredicatesOf?: readonly unknown[] | undefined;
  }) {
    this.#types = parts.types;
    this.#tags = parts.tags;
    this.#anyPredicateOf = parts.anyPredicateOf;
    this.#allPredicatesOf = parts.allPredicatesOf;
  }

  /** An item matching events of any of these types. */
  static types(...types: string[]): QueryItem {
    return new QueryItem({}).types(...types);
  }
  /** An item matching events that carry all of these tags. */
  static tags(...tags: string[]): QueryItem {
    return new QueryItem({}).tags(...tags);
  }
  /** An item matching events whose payload contains at least one of these JSON values. */
  static anyPredicateOf(...predicates: unknown[]): QueryItem {
    return new QueryItem({}).anyPredicateOf(...predicates);
  }
  /** An item matching events whose payload contains every one of these JSON values. */
  static allPredicatesOf(...predicates: unknown[]): QueryItem {
    return new QueryItem({}).allPredicatesOf(...predicates);
  }

  /** Restrict this item to events of any of these types. */
  types(...types: string[]): QueryItem {
    if (this.#types !== undefined) throw new InvalidInputError('QueryItem.types', 'types are already set on this item');
    if (types.length === 0) throw new InvalidInputError('QueryItem.types', 'needs at least one type');
    const unique = [...new Set(types.map((type, index) => validateType(type, `QueryItem.types[${index}]`)))];
    return this.#with({ types: unique });
  }
  /** Restrict this item to events carrying all of these tags. */
  tags(...tags: string[]): QueryItem {
    if (this.#tags !== undefined) throw new InvalidInputError('QueryItem.tags', 'tags are already set on this item');
    if (tags.length === 0) throw new InvalidInputError('QueryItem.tags', 'needs at least one tag');
    const unique = [...new Set(tags.map((tag, index) => validateTag(tag, `QueryItem.tags[${index}]`)))].sort();
    return this.#with({ tags: unique });
  }
  /** Restrict this item to events whose payload contains at least one of these values. */
  anyPredicateOf(...predicates: unknown[]): QueryItem {
    this.#assertNoPredicates('QueryItem.anyPredicateOf');
    return this.#with({ anyPredicateOf: validatePredicates(predicates, 'QueryItem.anyPredicateOf') });
  }
  /** Restrict this item to events whose payload contains every one of these values. */
  allPredicatesOf(...predicates: unknown[]): QueryItem {
    this.#assertNoPredicates('QueryItem.allPredicatesOf');
    return this.#with({ allPredicatesOf: validatePredicates(predicates, 'QueryItem.allPredicatesOf') });
  }

  toJSON(): QueryItemJSON {
    const json: QueryItemJSON = {};
    if (this.#types) json.types = [...this.#types];
    if (this.#tags) json.tags = [...this.#tags];
    if (this.#anyPredicateOf) json.anyPredicateOf = structuredClone([...this.#anyPredicateOf]);
    if (this.#allPredicatesOf) json.allPredicatesOf = structuredClone([...this.#allPredicatesOf]);
    return json;
  }

  static fromJSON(json: unknown, path = 'QueryItem'): QueryItem {
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new InvalidInputError(path, `must be an object, got ${describe(json)}`);
    const record = json as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!['types', 'tags', 'anyPredicateOf', 'allPredicatesOf'].includes(key)) throw new InvalidInputError(`${path}.${key}`, 'is not a query item field');
    }
    let item = new QueryItem({});
    const list = (key: string): unknown[] | undefined => {
      const value = record[key];
      if (value === undefined) return undefined;
      if (!Array.isArray(value)) throw new InvalidInputError(`${path}.${key}`, `must be an array, got ${describe(value)}`);
      return value;
    };
    const types = list('types');
    const tags = list('tags');
    const any = list('anyPredicateOf');
    const all = list('allPredicatesOf');
    if (types) item = item.types(...(types as string[]));
    if (tags) item = item.tags(...(tags as string[]));
    if (any) item = item.anyPredicateOf(...any);
    if (all) item = item.allPredicatesOf(...all);
    item.assertComplete(path);
    return item;
  }

  /** @internal */
  assertComplete(path: string): void {
    if (!this.#types && !this.#tags && !this.#anyPredicateOf && !this.#allPredicatesOf) {
      throw new InvalidInputError(path, 'a query item needs types, tags or predicates (use Query.all() to match every event)');
    }
  }

  /** @internal The shape the SQL side reads. */
  toInternal(): InternalQueryItem {
    return {
      types: this.#types ? [...this.#types] : null,
      tags: this.#tags ? [...this.#tags] : null,
      any_of: this.#anyPredicateOf ? [...this.#anyPredicateOf] : null,
      all_of: this.#allPredicatesOf ? [...this.#allPredicatesOf] : null,
    };
  }

  #assertNoPredicates(path: string): void {
    if (this.#anyPredicateOf !== undefined || this.#allPredicatesOf !== undefined) {
      throw new InvalidInputError(path, 'predicates are already set on this item; use either anyPredicateOf or allPredicatesOf once (or two items)');
    }
  }

  #with(parts: { types?: readonly string[]; tags?: readonly string[]; anyPredicateOf?: readonly unknown[]; allPredicatesOf?: readonly unknown[] }): QueryItem {
    return new QueryItem({
      types: this.#types,
      tags: this.#tags,
      anyPredicateOf: this.#anyPredicateOf,
      allPredicatesOf: this.#allPredicatesOf,
      ...parts,
    });
  }
}

function validatePredicates(predicates: unknown[], path: string): unknown[] {
  if (predicates.length === 0) throw new InvalidInputError(path, 'needs at least one predicate');
  return predicates.map((predicate, index) => {
    if (predicate === undefined) throw new InvalidInputError(`${path}[${index}]`, 'undefined is not a JSON predicate');
    assertJson(predicate, `${path}[${index}]`);
    // Keep our own copy so that later mutation by the caller cannot change the query.
    return JSON.parse(JSON.stringify(predicate)) as unknown;
  });
}

/** @internal */
export interface InternalQueryItem {
  types: string[] | null;
  tags: string[] | null;
  any_of: unknown[] | null;
  all_of: unknown[] | null;
}

/** @internal The shape the append function and the read SQL builder consume. */
export interface InternalQuery {
  all: boolean;
  items: InternalQueryItem[];
  from: string | null;
  until: string | null;
}

/**
 * Which events a decision depends on: all events, or the OR of one or more items, optionally
 * bounded by `occurredAt`. The same query is used to read and, as an append condition, to guard.
 *
 * @example
 * const query = Query.of(
 *   QueryItem.types('BookCopyLentToReader', 'BookCopyReturnedByReader').tags('book:b1'),
 *   QueryItem.types('ReaderRegistered').tags('reader:r1'),
 * );
 * const { events, head } = await store.read(query);
 */
export class Query {
  readonly #items: readonly QueryItem[];
  readonly #all: boolean;
  readonly #from: Date | undefined;
  readonly #until: Date | undefined;

  private constructor(all: boolean, items: readonly QueryItem[], from: Date | undefined, until: Date | undefined) {
    this.#all = all;
    this.#items = items;
    this.#from = from;
    this.#until = until;
  }

  /** Matches every event. */
  static all(): Query {
    return new Query(true, [], undefined, undefined);
  }

  /** Matches events that match any of the items. */
  static of(...items: QueryItem[]): Query {
    if (items.length === 0) throw new InvalidInputError('Query.of', 'needs at least one QueryItem (use Query.all() to match every event)');
    items.forEach((item, index) => {
      if (!(item instanceof QueryItem)) throw new InvalidInputError(`Query.of[${index}]`, `must be a QueryItem, got ${describe(item)}`);
      item.assertComplete(`Query.of[${index}]`);
    });
    return new Query(false, Object.freeze([...items]), undefined, undefined);
  }

  /** Only events that occurred at or after `date`. */
  occurredFrom(date: Date): Query {
    if (this.#from !== undefined) throw new InvalidInputError('Query.occurredFrom', 'is already set');
    const from = validateStorableDate(date, 'Query.occurredFrom');
    if (this.#until !== undefined && from > this.#until) throw new InvalidInputError('Query.occurredFrom', 'is after occurredUntil');
    return new Query(this.#all, this.#items, from, this.#until);
  }

  /** Only events that occurred at or before `date`. */
  occurredUntil(date: Date): Query {
    if (this.#until !== undefined) throw new InvalidInputError('Query.occurredUntil', 'is already set');
    const until = validateStorableDate(date, 'Query.occurredUntil');
    if (this.#from !== undefined && this.#from > until) throw new InvalidInputError('Query.occurredUntil', 'is before occurredFrom');
    return new Query(this.#all, this.#items, this.#from, until);
  }

  /** True for `Query.all()` (with or without time bounds). */
  get isAll(): boolean {
    return this.#all;
  }

  get items(): readonly QueryItem[] {
    return Object.freeze([...this.#items]);
  }

  toJSON(): QueryJSON {
    const json: QueryJSON = { items: this.#items.map((item) => item.toJSON()) };
    if (this.#from) json.occurredFrom = this.#from.toISOString();
    if (this.#until) json.occurredUntil = this.#until.toISOString();
    return json;
  }

  /** Parses the DCB JSON shape; `{ items: [] }` is `Query.all()`. */
  static fromJSON(json: unknown): Query {
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new InvalidInputError('Query', `must be an object, got ${describe(json)}`);
    const record = json as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!['items', 'occurredFrom', 'occurredUntil'].includes(key)) throw new InvalidInputError(`Query.${key}`, 'is not a query field');
    }
    if (!Array.isArray(record.items)) throw new InvalidInputError('Query.items', `must be an array, got ${describe(record.items)}`);
    let query = record.items.length === 0 ? Query.all() : Query.of(...record.items.map((item, index) => QueryItem.fromJSON(item, `Query.items[${index}]`)));
    const date = (key: string): Date | undefined => {
      const value = record[key];
      if (value === undefined) return undefined;
      if (typeof value !== 'string') throw new InvalidInputError(`Query.${key}`, `must be an ISO 8601 string, got ${describe(value)}`);
      const parsed = new Date(value);
      if (Number.isNaN(parsed.getTime())) throw new InvalidInputError(`Query.${key}`, `is not a valid date: ${describe(value)}`);
      return parsed;
    };
    const from = date('occurredFrom');
    const until = date('occurredUntil');
    if (from) query = query.occurredFrom(from);
    if (until) query = query.occurredUntil(until);
    return query;
  }

  /** @internal */
  toInternal(): InternalQuery {
    return {
      all: this.#all,
      items: this.#items.map((item) => item.toInternal()),
      from: this.#from ? this.#from.toISOString() : null,
      until: this.#until ? this.#until.toISOString() : null,
    };
  }
}
