// An automation's telemetry (a file of its own: it installs a global context manager and
// providers): a consumer.handle span per decided event, a child of the append that wrote the
// trigger; the reactions carry that span's traceparent, so the trace goes on through them; each
// commit is an eventstore.append span.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { Query, QueryItem } from '../../src/index.ts';
import { ATTRIBUTE, SPAN, TRACEPARENT_KEY } from '../../src/telemetry/names.ts';
import { createTestStore, keepEventLoopAliveDuringTests } from '../helpers.ts';
import { waitFor } from './fixtures/backends.ts';
import { recordTelemetry, traceparentOf } from './fixtures/otel.ts';

keepEventLoopAliveDuringTests();
const otel = recordTelemetry({ global: true });
after(() => otel.shutdown());

// Bugs: reactions that start traces of their own (the trace ends at the automation), or a
// commit that is not visible as an append.
test('the reactions continue the trace of the trigger through the handle span that decided them; the commit is an append span', { timeout: 30_000 }, async () => {
  const { store, dispose } = await createTestStore({ poolSize: 2 });
  try {
    await store.append({ type: 'Trigger', data: { n: 1 } });
    const append = otel.spans().find((span) => span.name === SPAN.append)!;
    otel.reset();
    const automation = store.automation('traced', {
      query: Query.of(QueryItem.types('Trigger')),
      pollIntervalMs: 50,
      decide: () => ({ type: 'Reaction', data: {} }),
    });
    const controller = new AbortController();
    const running = automation.run({ signal: controller.signal });
    await waitFor('the automation to reach the head', async () => (await automation.status()).position === (await store.head()));
    controller.abort();
    await running;
    const handle = otel.spans().find((span) => span.name === SPAN.consumerHandle);
    assert.ok(handle, 'a handle span');
    assert.equal(handle.kind, SpanKind.CONSUMER);
    assert.equal(handle.attributes[ATTRIBUTE.consumerName], 'traced');
    assert.equal(handle.parentSpanContext?.spanId, append.spanContext().spanId, 'a child of the trigger\'s append');
    const { events } = await store.read(Query.of(QueryItem.types('Reaction')));
    assert.equal(events[0]!.metadata[TRACEPARENT_KEY], traceparentOf(handle.spanContext()));
    const commit = otel.spans().find((span) => span.name === SPAN.append);
    assert.ok(commit, 'an append span for the commit');
    assert.equal(commit.attributes[ATTRIBUTE.appendOutcome], 'appended');
    assert.equal(commit.attributes[ATTRIBUTE.batchCommands], 1);
    assert.equal(commit.attributes[ATTRIBUTE.position], events[0]!.position.toString());
  } finally {
    await dispose();
  }
});
