// appendCommands' contract, kept by both stores (run by contract-postgres.test.ts and
// contract-in-memory.test.ts): several commands in one atomic append, each with its own
// condition, checked in order and seeing the events of the commands before it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  AppendConditionFailedError,
  DuplicateEventIdError,
  InvalidInputError,
  OperationAbortedError,
  Query,
  QueryItem,
  type AppendCommand,
  type EventInput,
} from '../../src/index.ts';
import { LIBRARY, QUERY_CASES, type ContractStore, type ContractStoreFactory } from './event-store-contract.ts';

function loose<T>(value: unknown): T {
  return value as T;
}

const registered = (id: string): EventInput => ({ type: 'MeterRegistered', tags: [`meter:${id}`], data: { id } });
/** "Register the meter unless it exists": no `after`, so any registration conflicts. */
const unlessRegistered = (id: string) => ({ failIfEventsMatch: Query.of(QueryItem.types('MeterRegistered').tags(`meter:${id}`)) });
const register = (id: string, extra: EventInput[] = []): AppendCommand => ({ events: [registered(id), ...extra], condition: unlessRegistered(id) });

async function log(store: ContractStore): Promise<Array<{ position: bigint; type: string; tags: string[]; id: string }>> {
  const { events } = await store.read(Query.all());
  return events.map(({ position, type, tags, id }) => ({ position, type, tags, id }));
}

function conditionFailed(expected: { commandIndex: number; conflictingPosition?: bigint; conflictingCommandIndex?: number }) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof AppendConditionFailedError, `expected AppendConditionFailedError, got ${String(error)}`);
    assert.equal(error.code, 'APPEND_CONDITION_FAILED');
    assert.equal(error.commandIndex, expected.commandIndex, 'commandIndex');
    assert.equal(error.conflictingPosition, expected.conflictingPosition, 'conflictingPosition');
    assert.equal(error.conflictingCommandIndex, expected.conflictingCommandIndex, 'conflictingCommandIndex');
    return true;
  };
}

function invalid(path: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    assert.equal(error.path, path);
    return true;
  };
}

export function defineAppendCommandsContract(name: string, factory: ContractStoreFactory): void {
  const withStore = (run: (store: ContractStore) => Promise<void>) => async (): Promise<void> => {
    const { store, dispose } = await factory();
    try {
      await run(store);
    } finally {
      await dispose();
    }
  };

  describe(`appendCommands contract: ${name}`, { timeout: 30_000 }, () => {
    test('every command written, in order, with consecutive positions; the result has each command\'s last position', withStore(async (store) => {
      await store.append({ type: 'Before', data: {} });
      const result = await store.appendCommands([
        register('m1', [{ type: 'MeterInstalled', tags: ['meter:m1'], data: {} }]),
        { events: { type: 'Unconditional', data: {} } },
        register('m2'),
      ]);
      assert.deepEqual(result.positions, [3n, 4n, 5n]);
      assert.equal(result.position, 5n);
      assert.deepEqual((await log(store)).map(({ position, type }) => [position, type]), [
        [1n, 'Before'], [2n, 'MeterRegistered'], [3n, 'MeterInstalled'], [4n, 'Unconditional'], [5n, 'MeterRegistered'],
      ]);
    }));

    test('a condition that fails on a stored event: commandIndex and conflictingPosition, nothing of any command written, the ids stay free', withStore(async (store) => {
      await store.append(registered('m2'));
      const commands = [register('m1'), register('m2'), register('m3')].map((command) => ({ ...command, events: (command.events as EventInput[]).map((event) => ({ ...event, id: randomUUID() })) }));
      await assert.rejects(store.appendCommands(commands), conditionFailed({ commandIndex: 1, conflictingPosition: 1n }));
      assert.equal((await log(store)).length, 1);
      assert.equal(await store.head(), 1n);
      // Nothing was written: the same ids append fine on their own.
      const { position } = await store.appendCommands([commands[0]!, commands[2]!]);
      assert.equal(position, 3n);
    }));

    test('two commands creating the same entity in one call conflict, as two appends would: conflictingCommandIndex, no position', withStore(async (store) => {
      await assert.rejects(store.appendCommands([register('m1'), register('m2'), register('m1')]), conditionFailed({ commandIndex: 2, conflictingCommandIndex: 0 }));
      assert.deepEqual(await log(store), []);
      assert.equal(await store.head(), 0n);
    }));

    test('each command has its own `after`: a later command sees an earlier command\'s events as after its position', withStore(async (store) => {
      await store.append([registered('a'), registered('b')]);
      const readA = 1n;
      // Command 0 appends to a; command 1 read a at position 1 and fails on command 0's event.
      const touchA = { type: 'Touched', tags: ['meter:a'], data: {} };
      await assert.rejects(
        store.appendCommands([
          { events: touchA, condition: { failIfEventsMatch: Query.of(QueryItem.tags('meter:a')), after: readA } },
          { events: touchA, condition: { failIfEventsMatch: Query.of(QueryItem.tags('meter:a')), after: readA } },
        ]),
        conditionFailed({ commandIndex: 1, conflictingCommandIndex: 0 }),
      );
      // Different boundaries read at different positions: both pass.
      const { positions } = await store.appendCommands([
        { events: touchA, condition: { failIfEventsMatch: Query.of(QueryItem.tags('meter:a')), after: 1n } },
        { events: { type: 'Touched', tags: ['meter:b'], data: {} }, condition: { failIfEventsMatch: Query.of(QueryItem.tags('meter:b')), after: 2n } },
      ]);
      assert.deepEqual(positions, [3n, 4n]);
      // An `after` at or beyond the position an earlier command's event would get does not see it.
      const { positions: more } = await store.appendCommands([
        { events: touchA },
        { events: touchA, condition: { failIfEventsMatch: Query.of(QueryItem.tags('meter:a')), after: 5n } },
      ]);
      assert.deepEqual(more, [5n, 6n]);
    }));

    test('a stored conflict is reported before one with an earlier command of the call', withStore(async (store) => {
      await store.append(registered('m1'));
      await assert.rejects(store.appendCommands([register('m2', [registered('m1')]), register('m1')]), conditionFailed({ commandIndex: 1, conflictingPosition: 1n }));
      await assert.rejects(store.appendCommands([{ events: registered('m1') }, register('m1')]), conditionFailed({ commandIndex: 1, conflictingPosition: 1n }));
    }));

    // Every query shape of the contract's query table, matched against the events of an earlier
    // command of the same call rather than stored ones: the same semantics (the PostgreSQL store
    // checks these with a separate statement).
    for (const [description, query, expected] of QUERY_CASES) {
      test(`a condition sees the earlier command's events like stored ones: ${description}`, withStore(async (store) => {
        const call = (after?: bigint) => store.appendCommands([{ events: LIBRARY }, { events: { type: 'Decided', data: {} }, condition: { failIfEventsMatch: query, ...(after !== undefined && { after }) } }]);
        if (expected.length === 0) {
          assert.deepEqual((await call()).positions, [13n, 14n]);
          return;
        }
        await assert.rejects(call(), conditionFailed({ commandIndex: 1, conflictingCommandIndex: 0 }));
        // With `after` just below the last match, only it conflicts; at it, nothing does.
        const last = expected.at(-1)!;
        await assert.rejects(call(last - 1n), conditionFailed({ commandIndex: 1, conflictingCommandIndex: 0 }));
        assert.deepEqual((await call(last)).positions, [13n, 14n]);
      }));
    }

    test('a conflict with the second of several earlier commands names that one', withStore(async (store) => {
      await assert.rejects(
        store.appendCommands([{ events: [{ type: 'X', data: {} }, { type: 'Y', data: {} }] }, { events: [{ type: 'Z', data: {} }, { type: 'Y', tags: ['t'], data: {} }] }, { events: { type: 'W', data: {} }, condition: { failIfEventsMatch: Query.of(QueryItem.types('Y').tags('t')) } }]),
        conditionFailed({ commandIndex: 2, conflictingCommandIndex: 1 }),
      );
    }));

    test('a single command behaves as append, with commandIndex 0 on a failure', withStore(async (store) => {
      assert.deepEqual(await store.appendCommands([register('m1')]), { positions: [1n], position: 1n });
      await assert.rejects(store.appendCommands([register('m1')]), conditionFailed({ commandIndex: 0, conflictingPosition: 1n }));
      // append itself names no command.
      await assert.rejects(store.append(registered('m1'), unlessRegistered('m1')), (error: unknown) => error instanceof AppendConditionFailedError && error.commandIndex === undefined);
    }));

    describe('idempotent retries by client-supplied ids', () => {
      const commandsWithIds = (): AppendCommand[] => [
        { events: [{ ...registered('m1'), id: randomUUID() }, { type: 'Installed', tags: ['meter:m1'], data: {}, id: randomUUID() }], condition: unlessRegistered('m1') },
        { events: { ...registered('m2'), id: randomUUID() }, condition: unlessRegistered('m2') },
      ];

      test('the same call again returns the original positions and writes nothing, also after other appends', withStore(async (store) => {
        const commands = commandsWithIds();
        const first = await store.appendCommands(commands);
        await store.append({ type: 'Other', data: {} });
        const again = await store.appendCommands(commands);
        assert.deepEqual(again, first);
        assert.equal((await log(store)).length, 4);
      }));

      test('only some commands stored before: DuplicateEventIdError naming the first stored command, nothing written', withStore(async (store) => {
        const commands = commandsWithIds();
        await store.append(commands[1]!.events);
        await assert.rejects(store.appendCommands(commands), (error: unknown) => {
          assert.ok(error instanceof DuplicateEventIdError, String(error));
          assert.equal(error.commandIndex, 1);
          assert.equal(error.existingPosition, 1n);
          assert.deepEqual(error.ids, [(commands[1]!.events as EventInput).id]);
          return true;
        });
        assert.equal((await log(store)).length, 1);
      }));

      test('the same ids with other content: DuplicateEventIdError with commandIndex, nothing written', withStore(async (store) => {
        const commands = commandsWithIds();
        await store.appendCommands(commands);
        const changed = [commands[0]!, { ...commands[1]!, events: { ...(commands[1]!.events as EventInput), data: { id: 'other' } } }];
        await assert.rejects(store.appendCommands(changed), (error: unknown) => error instanceof DuplicateEventIdError && error.commandIndex === 1);
        assert.equal((await log(store)).length, 3);
      }));
    });

    describe('bad input is rejected with an InvalidInputError naming the command, and nothing is written', () => {
      const cases: Array<[string, unknown, string]> = [
        ['no commands', [], 'commands'],
        ['not an array', { events: [] }, 'commands'],
        ['a command that is not an object', [register('m1'), null], 'commands[1]'],
        ['a command that is an array', [[registered('m1')]], 'commands[0]'],
        ['a command without events', [register('m1'), { events: [] }], 'commands[1].events'],
        ['a bad event', [register('m1'), { events: [{ type: '', data: {} }] }], 'commands[1].events[0].type'],
        ['a condition that is not a Query', [{ events: registered('m1'), condition: { failIfEventsMatch: { items: [] } } }], 'commands[0].condition.failIfEventsMatch'],
        ['a negative after', [register('m1'), { events: registered('m2'), condition: { failIfEventsMatch: Query.all(), after: -1n } }], 'commands[1].condition.after'],
      ];
      for (const [description, input, path] of cases) {
        test(description, withStore(async (store) => {
          await assert.rejects(store.appendCommands(loose(input)), invalid(path));
          assert.equal(await store.head(), 0n);
        }));
      }

      test('the same event id in two commands of one call', withStore(async (store) => {
        const id = randomUUID();
        await assert.rejects(store.appendCommands([{ events: { ...registered('m1'), id } }, { events: [registered('m2'), { ...registered('m3'), id }] }]), invalid('commands[1].events[1].id'));
        assert.equal(await store.head(), 0n);
      }));
    });

    test('an aborted signal: OperationAbortedError, nothing written', withStore(async (store) => {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(store.appendCommands([register('m1')], { signal: controller.signal }), (error: unknown) => error instanceof OperationAbortedError);
      assert.equal(await store.head(), 0n);
    }));

    test('concurrent calls contesting an entity: exactly one wins it, the losers write nothing at all', withStore(async (store) => {
      // Call i registers meters i and i+1: neighbours contest one meter each.
      const calls = Array.from({ length: 8 }, (_, i) => store.appendCommands([register(`m${i}`), register(`m${i + 1}`)]).then(() => i, (error: unknown) => {
        assert.ok(error instanceof AppendConditionFailedError, String(error));
        return -1;
      }));
      const winners = (await Promise.all(calls)).filter((i) => i >= 0);
      const meters = (await log(store)).map((event) => event.tags[0]);
      assert.equal(new Set(meters).size, meters.length, 'a meter registered twice');
      assert.equal(meters.length, winners.length * 2, 'a loser wrote part of its call');
      for (let i = 0; i < winners.length - 1; i++) assert.ok(winners[i + 1]! - winners[i]! >= 2, 'neighbours both won');
    }));
  });
}
