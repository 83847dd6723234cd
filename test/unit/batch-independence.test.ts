import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandsAreIndependent, type CommandShape } from '../../src/postgres/batch-independence.ts';
import { Query, QueryItem } from '../../src/query.ts';

const command = (events: Array<[string, string[]]>, query?: Query): CommandShape => ({
  events: events.map(([type, tags]) => ({ type, tags })),
  condition: query ? { query: query.toInternal() } : null,
});

describe('commandsAreIndependent', () => {
  it('is true for disjoint entities (the common batch)', () => {
    const batch = Array.from({ length: 50 }, (_, i) => command([['A', [`e:${i}`]]], Query.of(QueryItem.types('A', 'B').tags(`e:${i}`))));
    assert.equal(commandsAreIndependent(batch), true);
  });

  it('is false when a later condition matches an earlier event by type and tag', () => {
    const batch = [command([['A', ['e:1', 'x:1']]]), command([['A', ['e:2']]], Query.of(QueryItem.types('A').tags('e:1')))];
    assert.equal(commandsAreIndependent(batch), false);
  });

  it('only looks backwards: an earlier condition matching a later event is fine', () => {
    const batch = [command([['A', ['e:2']]], Query.of(QueryItem.types('A').tags('e:1'))), command([['A', ['e:1']]])];
    assert.equal(commandsAreIndependent(batch), true);
  });

  it('needs every tag of the item and the type', () => {
    assert.equal(commandsAreIndependent([command([['A', ['e:1']]]), command([], Query.of(QueryItem.tags('e:1', 'x:1')))]), true);
    assert.equal(commandsAreIndependent([command([['A', ['e:1']]]), command([], Query.of(QueryItem.types('B').tags('e:1')))]), true);
    assert.equal(commandsAreIndependent([command([['A', ['e:1', 'x:1']]]), command([], Query.of(QueryItem.tags('x:1', 'e:1')))]), false);
  });

  it('treats any item of the query as a possible match', () => {
    const query = Query.of(QueryItem.types('Z').tags('nothing'), QueryItem.types('A').tags('e:1'));
    assert.equal(commandsAreIndependent([command([['A', ['e:1']]]), command([], query)]), false);
  });

  it('errs towards false for payload predicates, types-only items, time bounds and Query.all()', () => {
    const earlier = command([['A', ['e:1']]]);
    assert.equal(commandsAreIndependent([earlier, command([], Query.of(QueryItem.types('A').tags('e:1').anyPredicateOf({ never: true })))]), false);
    assert.equal(commandsAreIndependent([earlier, command([], Query.of(QueryItem.types('A')))]), false);
    assert.equal(commandsAreIndependent([earlier, command([], Query.of(QueryItem.anyPredicateOf({ x: 1 })))]), false);
    assert.equal(commandsAreIndependent([earlier, command([], Query.of(QueryItem.types('A').tags('e:1')).occurredFrom(new Date('9999-12-31T23:59:59.999Z')))]), false);
    assert.equal(commandsAreIndependent([earlier, command([], Query.all())]), false);
    assert.equal(commandsAreIndependent([earlier, command([], Query.of(QueryItem.types('B')))]), true);
  });

  it('ignores conditions of the first command and commands without conditions', () => {
    assert.equal(commandsAreIndependent([command([['A', ['e:1']]], Query.all()), command([['A', ['e:1']]])]), true);
  });
});
