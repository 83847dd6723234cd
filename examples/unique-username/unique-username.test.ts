// Unique usernames: every rule as a Given/When/Then specification on the in-memory store, then
// on PostgreSQL, where accounts racing for one name from several store instances must leave it
// with exactly one owner.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Query, QueryItem, buildDecisionModel, type EventStore } from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification } from '../../src/testing/index.ts';
import { createTestStores, race } from '../../test/helpers.ts';
import {
  AccountAlreadyRegisteredError,
  AccountClosedError,
  AccountNotFoundError,
  USERNAME_RETENTION_DAYS,
  UsernameInRetentionError,
  UsernameTakenError,
  account,
  accountClosed,
  accountRegistered,
  changeUsername,
  closeAccount,
  isAccountError,
  registerAccount,
  usernameChanged,
  usernameClaim,
  usernameTag,
} from './domain.ts';

const DAY = 24 * 60 * 60 * 1000;
const t0 = new Date('2026-03-01T12:00:00Z');
const later = (ms: number): Date => new Date(t0.getTime() + ms);
const endOfRetention = later(USERNAME_RETENTION_DAYS * DAY);

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('registerAccount', () => {
  const spec = CommandHandlerSpecification.for(registerAccount);

  test('a free username: the account is registered, tagged with the account and the username', async () => {
    await spec.given([]).when({ accountId: 'a1', username: 'alice', at: t0 }).then([accountRegistered('a1', 'alice', t0)]);
  });

  test('a username held by another account: UsernameTakenError', async () => {
    await spec.given([accountRegistered('a1', 'alice', t0)]).when({ accountId: 'a2', username: 'alice', at: later(DAY) }).thenThrows(UsernameTakenError);
  });

  test('a username another account changed to: UsernameTakenError', async () => {
    await spec
      .given([accountRegistered('a1', 'al', t0), usernameChanged('a1', 'al', 'alice', t0)])
      .when({ accountId: 'a2', username: 'alice', at: later(DAY) })
      .thenThrows(UsernameTakenError);
  });

  test('other usernames do not matter', async () => {
    await spec.given([accountRegistered('a1', 'bob', t0)]).when({ accountId: 'a2', username: 'alice', at: t0 }).then([accountRegistered('a2', 'alice', t0)]);
  });

  test('an account id used before, even by a closed account: AccountAlreadyRegisteredError', async () => {
    await spec.given([accountRegistered('a1', 'alice', t0)]).when({ accountId: 'a1', username: 'bob', at: t0 }).thenThrows(AccountAlreadyRegisteredError);
    await spec
      .given([accountRegistered('a1', 'alice', t0), accountClosed('a1', 'alice', t0)])
      .when({ accountId: 'a1', username: 'bob', at: later(10 * DAY) })
      .thenThrows(AccountAlreadyRegisteredError);
  });

  test(`a username released by closing an account: UsernameInRetentionError until ${USERNAME_RETENTION_DAYS} days later`, async () => {
    const history = [accountRegistered('a1', 'alice', t0), accountClosed('a1', 'alice', t0)];
    await spec
      .given(history)
      .when({ accountId: 'a2', username: 'alice', at: new Date(endOfRetention.getTime() - 1) })
      .thenThrows((error) => error instanceof UsernameInRetentionError && error.availableAt.getTime() === endOfRetention.getTime());
    await spec.given(history).when({ accountId: 'a2', username: 'alice', at: endOfRetention }).then([accountRegistered('a2', 'alice', endOfRetention)]);
  });

  test('a username released by a change: the retention runs from the change', async () => {
    const changedAt = later(DAY);
    const history = [accountRegistered('a1', 'alice', t0), usernameChanged('a1', 'alice', 'alicia', changedAt)];
    await spec.given(history).when({ accountId: 'a2', username: 'alice', at: later(3 * DAY) }).thenThrows(UsernameInRetentionError);
    await spec.given(history).when({ accountId: 'a2', username: 'alice', at: later(4 * DAY) }).then([accountRegistered('a2', 'alice', later(4 * DAY))]);
  });
});

describe('changeUsername', () => {
  const spec = CommandHandlerSpecification.for(changeUsername);

  test('an open account gets a free username, releasing its old one: tagged with both names', async () => {
    await spec
      .given([accountRegistered('a1', 'alice', t0)])
      .when({ accountId: 'a1', newUsername: 'alicia', at: later(DAY) })
      .then([usernameChanged('a1', 'alice', 'alicia', later(DAY))]);
  });

  test('its current username: nothing happens', async () => {
    await spec.given([accountRegistered('a1', 'alice', t0)]).when({ accountId: 'a1', newUsername: 'alice', at: t0 }).thenNothing();
  });

  test('a username held by another account: UsernameTakenError', async () => {
    await spec
      .given([accountRegistered('a1', 'alice', t0), accountRegistered('a2', 'bob', t0)])
      .when({ accountId: 'a1', newUsername: 'bob', at: t0 })
      .thenThrows(UsernameTakenError);
  });

  test('a username another account released recently: UsernameInRetentionError; after the retention: changed', async () => {
    const history = [accountRegistered('a1', 'alice', t0), accountRegistered('a2', 'bob', t0), accountClosed('a2', 'bob', t0)];
    await spec.given(history).when({ accountId: 'a1', newUsername: 'bob', at: later(DAY) }).thenThrows(UsernameInRetentionError);
    await spec.given(history).when({ accountId: 'a1', newUsername: 'bob', at: endOfRetention }).then([usernameChanged('a1', 'alice', 'bob', endOfRetention)]);
  });

  test('its own old username, within the retention: taken back', async () => {
    await spec
      .given([accountRegistered('a1', 'alice', t0), usernameChanged('a1', 'alice', 'alicia', t0)])
      .when({ accountId: 'a1', newUsername: 'alice', at: later(DAY) })
      .then([usernameChanged('a1', 'alicia', 'alice', later(DAY))]);
  });

  test('an account never registered: AccountNotFoundError', async () => {
    await spec.given([accountRegistered('a2', 'bob', t0)]).when({ accountId: 'a1', newUsername: 'alice', at: t0 }).thenThrows(AccountNotFoundError);
  });

  test('a closed account: AccountClosedError', async () => {
    await spec
      .given([accountRegistered('a1', 'alice', t0), accountClosed('a1', 'alice', t0)])
      .when({ accountId: 'a1', newUsername: 'alicia', at: later(DAY) })
      .thenThrows(AccountClosedError);
  });
});

describe('closeAccount', () => {
  const spec = CommandHandlerSpecification.for(closeAccount);

  test('an open account is closed, releasing its current username', async () => {
    await spec
      .given([accountRegistered('a1', 'alice', t0), usernameChanged('a1', 'alice', 'alicia', t0)])
      .when({ accountId: 'a1', at: later(DAY) })
      .then([accountClosed('a1', 'alicia', later(DAY))]);
  });

  test('a closed account: nothing happens', async () => {
    await spec.given([accountRegistered('a1', 'alice', t0), accountClosed('a1', 'alice', t0)]).when({ accountId: 'a1', at: later(DAY) }).thenNothing();
  });

  test('an account never registered: AccountNotFoundError', async () => {
    await spec.given([]).when({ accountId: 'a1', at: t0 }).thenThrows(AccountNotFoundError);
  });

  test('domain errors carry a stable code', () => {
    assert.equal(new UsernameTakenError('alice').code, 'USERNAME_TAKEN');
    assert.ok(isAccountError(new UsernameInRetentionError('alice', t0), 'USERNAME_IN_RETENTION'));
    assert.ok(!isAccountError(new UsernameTakenError('alice'), 'ACCOUNT_CLOSED'));
  });
});

describe('projections', () => {
  test('usernameClaim: a change claims the new name and releases the old one, at the time it occurred', async () => {
    const history = [accountRegistered('a1', 'alice', t0), usernameChanged('a1', 'alice', 'alicia', later(DAY))];
    await ProjectionSpecification.for(usernameClaim('alice')).given(history).then({ heldBy: null, releasedBy: 'a1', releasedAt: later(DAY) });
    await ProjectionSpecification.for(usernameClaim('alicia')).given(history).then({ heldBy: 'a1', releasedBy: null, releasedAt: null });
    await ProjectionSpecification.for(usernameClaim('bob')).given(history).then({ heldBy: null, releasedBy: null, releasedAt: null });
  });

  test('account: status and current username', async () => {
    const history = [accountRegistered('a1', 'alice', t0), usernameChanged('a1', 'alice', 'alicia', t0), accountClosed('a1', 'alicia', t0)];
    await ProjectionSpecification.for(account('a1')).given(history).then({ status: 'closed', username: 'alicia' });
    await ProjectionSpecification.for(account('a2')).given(history).then({ status: 'unregistered' });
  });
});

// ---------------------------------------------------------------------------------------------
// On PostgreSQL

describe('on PostgreSQL', () => {
  const INSTANCES = 4;
  let stores: EventStore[] = [];
  let dispose: () => Promise<void>;

  before(async () => ({ stores, dispose } = await createTestStores(INSTANCES, { poolSize: 4 })));
  after(() => dispose?.());

  const newId = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

  /** The accounts that ever claimed `username`, in order: registered under it or changed to it. */
  async function claimsOf(username: string): Promise<string[]> {
    const { events } = await stores[0]!.read<{ accountId: string; username?: string; newUsername?: string }>(
      Query.of(QueryItem.types('AccountRegistered', 'UsernameChanged').tags(usernameTag(username))),
    );
    return events.filter((event) => (event.data.username ?? event.data.newUsername) === username).map((event) => event.data.accountId);
  }

  test('close, wait out the retention, claim: the times come from the events as stored', async () => {
    const [store] = stores as [EventStore];
    const username = newId('name');
    const first = newId('account');
    const second = newId('account');
    await store.execute(registerAccount, { accountId: first, username, at: t0 });
    await store.execute(closeAccount, { accountId: first, at: later(DAY) });
    await assert.rejects(store.execute(registerAccount, { accountId: second, username, at: later(2 * DAY) }), UsernameInRetentionError);
    await store.execute(registerAccount, { accountId: second, username, at: later(4 * DAY) });
    assert.deepEqual(await claimsOf(username), [first, second]);
  });

  test(`20 accounts race for one username from ${INSTANCES} store instances, half registering and half renaming: exactly one owner`, async () => {
    const [store] = stores as [EventStore];
    const username = newId('name');
    const renaming = Array.from({ length: 10 }, () => newId('account'));
    for (const accountId of renaming) await store.execute(registerAccount, { accountId, username: newId('old'), at: t0 });
    const registering = Array.from({ length: 10 }, () => newId('account'));
    const results = await race(stores, 20, (racer, index): Promise<unknown> =>
      index % 2 === 0
        ? racer.execute(registerAccount, { accountId: registering[index / 2]!, username, at: later(DAY) }, { maxAttempts: 50 })
        : racer.execute(changeUsername, { accountId: renaming[(index - 1) / 2]!, newUsername: username, at: later(DAY) }, { maxAttempts: 50 }),
    );
    const losers = results.flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));
    assert.equal(losers.length, 19);
    for (const error of losers) assert.ok(error instanceof UsernameTakenError, String(error));
    const owners = await claimsOf(username);
    assert.equal(owners.length, 1);
    const { state } = await buildDecisionModel(store, { claim: usernameClaim(username) });
    assert.equal(state.claim.heldBy, owners[0]);
  });

  test('claims of different usernames never conflict: each succeeds at the first attempt', async () => {
    const results = await race(stores, 20, (racer) => racer.execute(registerAccount, { accountId: newId('account'), username: newId('name'), at: t0 }, { maxAttempts: 1 }));
    assert.deepEqual(
      results.map((result) => (result.status === 'fulfilled' ? result.value.attempts : String(result.reason))),
      results.map(() => 1),
    );
  });
});
