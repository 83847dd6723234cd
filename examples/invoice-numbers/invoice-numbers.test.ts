// Gap-free invoice numbers: the rule as Given/When/Then specifications on the in-memory store,
// then on PostgreSQL, where invoices created at once from several store instances must be
// numbered 1..N, in position order, without a gap or a duplicate.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Query, QueryItem, executeCommand, type CommandStore, type EventStore, type ReadOptions } from '../../src/index.ts';
import { CommandHandlerSpecification, InMemoryEventStore, ProjectionSpecification } from '../../src/testing/index.ts';
import { createTestStores, startGate } from '../../test/helpers.ts';
import { InvalidInvoiceAmountError, createInvoice, invoiceCreated, isInvoiceError, nextInvoiceNumber } from './domain.ts';

const at = new Date('2026-03-01T12:00:00Z');
const invoice = (invoiceNumber: number, customerId = 'k1', amountCents = 100_00) => invoiceCreated({ invoiceNumber, customerId, amountCents }, at);

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('createInvoice', () => {
  const spec = CommandHandlerSpecification.for(createInvoice);

  test('the first invoice gets number 1, tagged with its number and its customer', async () => {
    await spec.given([]).when({ customerId: 'k1', amountCents: 99_50, at }).then([invoiceCreated({ invoiceNumber: 1, customerId: 'k1', amountCents: 99_50 }, at)]);
  });

  test('the next invoice gets the last number + 1, whoever the customer', async () => {
    await spec
      .given([invoice(1, 'k1'), invoice(2, 'k2'), invoice(3, 'k1')])
      .when({ customerId: 'k3', amountCents: 10_00, at })
      .then([invoiceCreated({ invoiceNumber: 4, customerId: 'k3', amountCents: 10_00 }, at)]);
  });

  test('an amount that is not a positive whole number of cents: InvalidInvoiceAmountError, and no number is used up', async () => {
    for (const amountCents of [0, -100, 12.5, Number.NaN]) {
      await spec.given([invoice(1)]).when({ customerId: 'k1', amountCents, at }).thenThrows(InvalidInvoiceAmountError);
    }
    assert.ok(isInvoiceError(new InvalidInvoiceAmountError(0), 'INVALID_INVOICE_AMOUNT'));
  });
});

describe('nextInvoiceNumber', () => {
  test('1 before any invoice; the last number + 1 after', async () => {
    await ProjectionSpecification.for(nextInvoiceNumber).given([]).then(1);
    await ProjectionSpecification.for(nextInvoiceNumber).given([invoice(1), invoice(2)]).then(3);
  });

  test('other events do not count', async () => {
    await ProjectionSpecification.for(nextInvoiceNumber)
      .given([invoice(1), { type: 'InvoicePaid', tags: ['invoice:1'], data: { invoiceNumber: 7 } }])
      .then(2);
  });

  test('250 invoices in a row are numbered 1..250, and each decision reads only the last invoice', async () => {
    const store = new InMemoryEventStore();
    let mostEventsRead = 0;
    const counting: CommandStore = {
      read: async <Data>(query: Query, options?: ReadOptions) => {
        const result = await store.read<Data>(query, options);
        mostEventsRead = Math.max(mostEventsRead, result.events.length);
        return result;
      },
      append: (events, condition, options) => store.append(events, condition, options),
      snapshots: store.snapshots,
    };
    for (let count = 0; count < 250; count++) await executeCommand(counting, createInvoice, { customerId: 'k1', amountCents: 100, at });
    assert.equal(mostEventsRead, 1, `a decision read ${mostEventsRead} events`);
    assert.deepEqual(
      store.events.map((event) => (event.data as { invoiceNumber: number }).invoiceNumber),
      Array.from({ length: 250 }, (_, index) => index + 1),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// On PostgreSQL

describe('on PostgreSQL', () => {
  const INSTANCES = 4;
  const INVOICES = 40;
  let stores: EventStore[] = [];
  let dispose: () => Promise<void>;

  before(async () => ({ stores, dispose } = await createTestStores(INSTANCES, { poolSize: 4 })));
  after(() => dispose?.());

  test(`${INVOICES} invoices created at once from ${INSTANCES} store instances: numbered 1..${INVOICES} in position order, no gap, no duplicate`, async () => {
    const gate = startGate();
    const racing = Array.from({ length: INVOICES }, async (_, index) => {
      await gate.wait();
      // Every creation conflicts with every other: allow enough rounds for the last one.
      return stores[index % INSTANCES]!.execute(createInvoice, { customerId: `k${index}`, amountCents: 100 + index, at }, { maxAttempts: 100, maxDelayMs: 20 });
    });
    gate.open();
    const results = await Promise.all(racing);

    const { events } = await stores[0]!.read<{ invoiceNumber: number; customerId: string }>(Query.of(QueryItem.types('InvoiceCreated')));
    assert.deepEqual(
      events.map((event) => event.data.invoiceNumber),
      Array.from({ length: INVOICES }, (_, index) => index + 1),
    );
    // Each command got the number it appended, and each customer exactly one invoice.
    assert.equal(new Set(events.map((event) => event.data.customerId)).size, INVOICES);
    assert.deepEqual(results.map((result) => (result.events[0]!.data as { invoiceNumber: number }).invoiceNumber).sort((a, b) => a - b), events.map((event) => event.data.invoiceNumber));
  });
});
