import type pg from 'pg';

/**
 * Closes a pg connection's socket at once: no goodbye to a peer that may be gone (pg's `end()`
 * waits for the peer's FIN, which a vanished peer never sends, and keeps the process alive
 * meanwhile). A query running on it fails with a connection error; the client emits 'end'.
 */
export function destroySocket(client: pg.ClientBase): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/**
 * Closes a pooled connection's socket at once (no goodbye to a peer that may be gone) and drops
 * it from its pool. Its running query, if any, fails with a connection error.
 */
export function destroyConnection(client: pg.PoolClient): void {
  destroySocket(client);
  try {
    client.release(new Error('connection closed by the event store'));
  } catch {
    // released already
  }
}
