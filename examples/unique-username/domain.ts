// Unique usernames, after the dcb.events example: without DCB this needs a lookup table updated
// in the same transaction as the account, or a "username" aggregate per name. Here every event
// that claims or releases a name is tagged `username:<name>`, and a decision about a name is
// guarded by exactly those events: two accounts claiming one name conflict, claims of different
// names never do.
import { defineCommandHandler, defineProjection, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload per event type. */
export type AccountEvents = {
  AccountRegistered: { accountId: string; username: string };
  UsernameChanged: { accountId: string; oldUsername: string; newUsername: string };
  /** Carries the username so that the closure is part of the name's history and releases it. */
  AccountClosed: { accountId: string; username: string };
};

export const accountTag = (accountId: string): string => `account:${accountId}`;
export const usernameTag = (username: string): string => `username:${username}`;

export function accountRegistered(accountId: string, username: string, at: Date): EventInput<AccountEvents['AccountRegistered']> {
  return { type: 'AccountRegistered', tags: [accountTag(accountId), usernameTag(username)], data: { accountId, username }, occurredAt: at };
}

/** Releases the old name and claims the new one, so it is tagged with both. */
export function usernameChanged(accountId: string, oldUsername: string, newUsername: string, at: Date): EventInput<AccountEvents['UsernameChanged']> {
  return {
    type: 'UsernameChanged',
    tags: [accountTag(accountId), usernameTag(oldUsername), usernameTag(newUsername)],
    data: { accountId, oldUsername, newUsername },
    occurredAt: at,
  };
}

export function accountClosed(accountId: string, username: string, at: Date): EventInput<AccountEvents['AccountClosed']> {
  return { type: 'AccountClosed', tags: [accountTag(accountId), usernameTag(username)], data: { accountId, username }, occurredAt: at };
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A released username stays reserved this long, so that nobody can impersonate its last owner. */
export const USERNAME_RETENTION_DAYS = 3;
const RETENTION_MS = USERNAME_RETENTION_DAYS * 24 * 60 * 60 * 1000;

export type AccountErrorCode = 'ACCOUNT_ALREADY_REGISTERED' | 'ACCOUNT_NOT_FOUND' | 'ACCOUNT_CLOSED' | 'USERNAME_TAKEN' | 'USERNAME_IN_RETENTION';

/** A rule rejected the command; nothing was appended. */
export class AccountError extends Error {
  readonly code: AccountErrorCode;

  constructor(code: AccountErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Account ids are never reused, not even after the account was closed. */
export class AccountAlreadyRegisteredError extends AccountError {
  constructor(readonly accountId: string) {
    super('ACCOUNT_ALREADY_REGISTERED', `account ${accountId} was registered before`);
  }
}

export class AccountNotFoundError extends AccountError {
  constructor(readonly accountId: string) {
    super('ACCOUNT_NOT_FOUND', `account ${accountId} does not exist`);
  }
}

export class AccountClosedError extends AccountError {
  constructor(readonly accountId: string) {
    super('ACCOUNT_CLOSED', `account ${accountId} is closed`);
  }
}

export class UsernameTakenError extends AccountError {
  constructor(readonly username: string) {
    super('USERNAME_TAKEN', `username "${username}" is taken`);
  }
}

/** The name was released recently; it can be claimed from `availableAt` on. */
export class UsernameInRetentionError extends AccountError {
  constructor(
    readonly username: string,
    readonly availableAt: Date,
  ) {
    super('USERNAME_IN_RETENTION', `username "${username}" was released recently; it can be claimed from ${availableAt.toISOString()}`);
  }
}

export function isAccountError(error: unknown, code?: AccountErrorCode): error is AccountError {
  return error instanceof AccountError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// Projections

/** Who holds a username now, or else who released it last, and when. */
export interface UsernameClaim {
  heldBy: string | null;
  releasedBy: string | null;
  releasedAt: Date | null;
}

const held = (accountId: string): UsernameClaim => ({ heldBy: accountId, releasedBy: null, releasedAt: null });
const released = (accountId: string, at: Date): UsernameClaim => ({ heldBy: null, releasedBy: accountId, releasedAt: at });

export const usernameClaim = (username: string) =>
  defineProjection<UsernameClaim, AccountEvents>({
    initialState: { heldBy: null, releasedBy: null, releasedAt: null },
    handlers: {
      AccountRegistered: (_, event) => held(event.data.accountId),
      // Tagged with both names: whether this one is claimed or released depends on which it is.
      UsernameChanged: (_, event) => (event.data.newUsername === username ? held(event.data.accountId) : released(event.data.accountId, event.occurredAt)),
      AccountClosed: (_, event) => released(event.data.accountId, event.occurredAt),
    },
    tags: [usernameTag(username)],
  });

export type AccountState = { status: 'unregistered' } | { status: 'open' | 'closed'; username: string };

/** Every account event carries the account's username after it, so no handler needs the state. */
export const account = (accountId: string) =>
  defineProjection<AccountState, AccountEvents>({
    initialState: { status: 'unregistered' },
    handlers: {
      AccountRegistered: (_, event) => ({ status: 'open', username: event.data.username }),
      UsernameChanged: (_, event) => ({ status: 'open', username: event.data.newUsername }),
      AccountClosed: (_, event) => ({ status: 'closed', username: event.data.username }),
    },
    tags: [accountTag(accountId)],
  });

/**
 * Throws unless `accountId` may claim the name at `at`: nobody holds it, and it was released at
 * least {@link USERNAME_RETENTION_DAYS} days ago or by this very account (taking back one's own
 * old name is no impersonation).
 */
function assertClaimable(claim: UsernameClaim, username: string, accountId: string, at: Date): void {
  if (claim.heldBy !== null) throw new UsernameTakenError(username);
  if (claim.releasedAt === null || claim.releasedBy === accountId) return;
  const availableAt = new Date(claim.releasedAt.getTime() + RETENTION_MS);
  if (at < availableAt) throw new UsernameInRetentionError(username, availableAt);
}

// ---------------------------------------------------------------------------------------------
// Commands

export interface RegisterAccount {
  accountId: string;
  username: string;
  at: Date;
}

export interface ChangeUsername {
  accountId: string;
  newUsername: string;
  at: Date;
}

export interface CloseAccount {
  accountId: string;
  at: Date;
}

/**
 * Registers an account under a username.
 *
 * Rules: the account id is new ({@link AccountAlreadyRegisteredError}); nobody holds the username
 * ({@link UsernameTakenError}); it was not released in the last {@link USERNAME_RETENTION_DAYS}
 * days ({@link UsernameInRetentionError}).
 */
export const registerAccount = defineCommandHandler({
  projections: (command: RegisterAccount) => ({
    account: account(command.accountId),
    claim: usernameClaim(command.username),
  }),
  decide: (state, command) => {
    if (state.account.status !== 'unregistered') throw new AccountAlreadyRegisteredError(command.accountId);
    assertClaimable(state.claim, command.username, command.accountId, command.at);
    return accountRegistered(command.accountId, command.username, command.at);
  },
});

/**
 * Gives an open account a new username and releases its old one. Changing to the current name
 * does nothing, so a retried command is harmless.
 *
 * Rules: the account exists ({@link AccountNotFoundError}) and is open
 * ({@link AccountClosedError}); nobody holds the new name ({@link UsernameTakenError}); another
 * account did not release it in the last {@link USERNAME_RETENTION_DAYS} days
 * ({@link UsernameInRetentionError}); the account may take back a name it released itself.
 */
export const changeUsername = defineCommandHandler({
  projections: (command: ChangeUsername) => ({
    account: account(command.accountId),
    claim: usernameClaim(command.newUsername),
  }),
  decide: (state, command) => {
    if (state.account.status === 'unregistered') throw new AccountNotFoundError(command.accountId);
    if (state.account.status === 'closed') throw new AccountClosedError(command.accountId);
    if (state.account.username === command.newUsername) return [];
    assertClaimable(state.claim, command.newUsername, command.accountId, command.at);
    return usernameChanged(command.accountId, state.account.username, command.newUsername, command.at);
  },
});

/**
 * Closes an account and releases its username (claimable by others after the retention period).
 * Closing a closed account does nothing.
 *
 * Rule: the account exists ({@link AccountNotFoundError}).
 */
export const closeAccount = defineCommandHandler({
  projections: (command: CloseAccount) => ({ account: account(command.accountId) }),
  decide: (state, command) => {
    if (state.account.status === 'unregistered') throw new AccountNotFoundError(command.accountId);
    if (state.account.status === 'closed') return [];
    return accountClosed(command.accountId, state.account.username, command.at);
  },
});
