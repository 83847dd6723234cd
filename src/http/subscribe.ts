// GET /v1/subscribe: Server-Sent Events on top of store.subscribe, which already guarantees order
// and completeness (never skipped, never repeated). Each store event is one SSE event whose `id`
// is its position, so a client that reconnects with `Last-Event-ID` (what EventSource does by
// itself) resumes exactly after the last event it received. While idle, a comment line is sent
// every `heartbeatMs`: proxies and the server's own idle timeout keep the connection, and a dead
// client is noticed by the failed write. When the client goes away the subscription is aborted.
import type { ServerResponse } from 'node:http';
import type { Query } from '../query.ts';
import type { DcbEventStore } from '../store.ts';
import { eventJson } from './encode.ts';
import { errorAnswer } from './errors.ts';

export interface SubscriptionSession {
  /** Ends the stream (server shutdown). */
  stop(): void;
  readonly done: Promise<void>;
}

export function streamSubscription(
  store: DcbEventStore,
  response: ServerResponse,
  query: Query,
  after: bigint,
  options: { heartbeatMs: number; pollIntervalMs: number | undefined; onError: (error: unknown) => void },
): SubscriptionSession {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  response.on('close', stop);
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    // nginx buffers responses unless told not to; a live tail must not wait for a buffer to fill.
    'x-accel-buffering': 'no',
  });
  // `retry` sets how soon EventSource reconnects; the comment makes the headers go out at once.
  response.write(`retry: 1000\n: subscribed after ${after}\n\n`);
  let idle = true;
  const heartbeat = setInterval(() => {
    if (idle && !response.writableEnded) response.write(': heartbeat\n\n');
    idle = true;
  }, options.heartbeatMs);
  heartbeat.unref();

  const write = async (text: string): Promise<void> => {
    idle = false;
    if (response.write(text)) return;
    // A slow reader: wait for its buffer to drain (or for it to go away) before reading on, so
    // that memory stays bounded whatever the client's speed.
    await new Promise<void>((resolve) => {
      const done = (): void => {
        response.off('drain', done);
        controller.signal.removeEventListener('abort', done);
        resolve();
      };
      response.once('drain', done);
      controller.signal.addEventListener('abort', done, { once: true });
    });
  };

  const done = (async () => {
    try {
      const subscribeOptions = { after, signal: controller.signal, ...(options.pollIntervalMs !== undefined && { pollIntervalMs: options.pollIntervalMs }) };
      for await (const event of store.subscribe(query, subscribeOptions)) {
        if (controller.signal.aborted) break;
        await write(`id: ${event.position}\ndata: ${JSON.stringify(eventJson(event))}\n\n`);
      }
    } catch (error) {
      if (!controller.signal.aborted) {
        options.onError(error);
        // The client learns why the stream ended; it may reconnect with Last-Event-ID.
        const { body } = errorAnswer(error);
        if (!response.writableEnded) response.write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
      }
    } finally {
      clearInterval(heartbeat);
      response.off('close', stop);
      if (!response.writableEnded) response.end();
    }
  })();
  return { stop, done };
}
