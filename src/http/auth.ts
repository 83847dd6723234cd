// Bearer tokens: a write token (everything) and an optional read token (reads and subscriptions).
// Tokens are compared as SHA-256 digests with timingSafeEqual: equal lengths whatever was sent,
// and no early exit that would tell an attacker how many leading characters were right. Both
// tokens are always compared, so the time does not tell which one matched either.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { HttpError } from './errors.ts';

/** Who a route is for: anyone, a holder of either token, or a holder of the write token. */
export type Access = 'public' | 'read' | 'write';

export interface Tokens {
  token?: string | undefined;
  readToken?: string | undefined;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Checks a request's Authorization header against the configured tokens; throws 401 or 403. */
export function authorizer(tokens: Tokens): ((access: Access, header: string | undefined) => void) | undefined {
  if (tokens.token === undefined) return undefined;
  const write = digest(tokens.token);
  const read = tokens.readToken === undefined ? undefined : digest(tokens.readToken);
  return (access, header) => {
    if (access === 'public') return;
    const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) throw new HttpError(401, 'UNAUTHORIZED', 'this server needs a token: send `Authorization: Bearer <token>`', {}, { 'www-authenticate': 'Bearer' });
    const given = digest(match[1]!);
    const isWrite = timingSafeEqual(given, write);
    const isRead = read !== undefined && timingSafeEqual(given, read);
    if (!isWrite && !isRead) throw new HttpError(401, 'UNAUTHORIZED', 'the token is not valid', {}, { 'www-authenticate': 'Bearer error="invalid_token"' });
    if (access === 'write' && !isWrite) throw new HttpError(403, 'FORBIDDEN', 'the read token cannot append or reset consumers: use the write token');
  };
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (bare === '::1' || bare === '0:0:0:0:0:0:0:1') return true;
  // An IPv4-mapped loopback (::ffff:127.0.0.1).
  return /^::ffff:127\./.test(bare);
}
