// What a PostgreSQL error means for the caller: a refusal (the statement rolled back, nothing
// written), a lost connection (the outcome of what was sent is unknown), a cancel.
import pg from 'pg';

export /** Errors after which we cannot know whether a statement sent before committed. */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
    // 53300: too many connections right now; the rest: the network or DNS, for a moment.
    if (code === '53300') return true;
    if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(code)) return true;
  }
  const message = (error as Error | null)?.message ?? '';
  return /Connection terminated|connection is closed|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(message);
}

export /** An ErrorResponse of severity ERROR from the server: the statement (and its transaction) rolled back. */
function isRefusal(error: unknown): boolean {
  return error instanceof pg.DatabaseError && error.severity === 'ERROR';
}

/** The statement was cancelled (a protocol cancel request, or statement_timeout). */
export function isCancelled(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '57014';
}

/** The client's connection is gone or going (its next query would fail). */
export function isConnectionLost(client: pg.Client): boolean {
  const state = client as unknown as { _ending?: boolean; _connectionError?: boolean; connection?: { stream?: { destroyed?: boolean } } };
  return state._ending === true || state._connectionError === true || state.connection?.stream?.destroyed === true;
}
