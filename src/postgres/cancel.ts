import { connect, type Socket } from 'node:net';
import type pg from 'pg';

/** How long a cancel request may take before we give up on it. */
export const CANCEL_TIMEOUT_MS = 2_000;

interface ClientInternals {
  processID?: number | null;
  secretKey?: number | null;
  host?: string;
  port?: number;
}

/**
 * Asks the server to cancel whatever `client`'s backend runs now, with the protocol's
 * CancelRequest message: a 16-byte packet on a fresh socket, no authentication, no backend
 * started (so no `max_connections` slot, no password round trip), and it passes through
 * PgBouncer, which maps it to the right server connection.
 *
 * Resolves once the server closed the socket (PostgreSQL signals the backend, then closes), so
 * that a caller who waits for this before reusing the connection does not let the cancel hit its
 * next statement; a cancel that reaches an idle backend is ignored by the server. Rejects after
 * `timeoutMs` (an unreachable server): then it is unknown whether the cancel arrived.
 *
 * pg's own `Client#cancel` sends the same packet but reports neither completion nor failure,
 * and has no timeout, which is why this is written out here.
 */
export function sendCancelRequest(client: pg.ClientBase, timeoutMs = CANCEL_TIMEOUT_MS): Promise<void> {
  const internals = client as unknown as ClientInternals;
  const pid = internals.processID;
  const secret = internals.secretKey;
  const host = internals.host ?? 'localhost';
  const port = internals.port ?? 5432;
  if (typeof pid !== 'number' || typeof secret !== 'number') return Promise.reject(new Error('the connection has no backend key to cancel with'));
  return new Promise<void>((resolve, reject) => {
    let socket: Socket;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`cancel request to ${host}:${port} got no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (error?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket = host.startsWith('/') ? connect(`${host}/.s.PGSQL.${port}`) : connect(port, host);
    socket.setNoDelay(true);
    socket.once('connect', () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(80877102, 4); // the CancelRequest code
      packet.writeInt32BE(pid, 8);
      packet.writeInt32BE(secret, 12);
      socket.write(packet);
    });
    socket.on('data', () => undefined);
    socket.once('end', () => done());
    socket.once('close', () => done());
    socket.once('error', (error) => done(error));
  });
}
