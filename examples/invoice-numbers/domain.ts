// Gap-free invoice numbers, after the dcb.events example. Tax law in many countries wants invoice
// numbers without gaps; a database sequence cannot give that (a rolled-back transaction burns a
// value). Here the number is decided from the last InvoiceCreated event and the append is guarded
// by every InvoiceCreated event: when two invoices are created at once, one append fails, and
// that command decides again on the new last number.
//
// The boundary is global on purpose: invoice creations are serialized, which is the price of a
// gap-free sequence. Keep the decision small so that retries are cheap.
import { defineCommandHandler, defineProjection, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload per event type. */
export type InvoiceEvents = {
  InvoiceCreated: { invoiceNumber: number; customerId: string; amountCents: number };
};

export const invoiceTag = (invoiceNumber: number): string => `invoice:${invoiceNumber}`;
export const customerTag = (customerId: string): string => `customer:${customerId}`;

export function invoiceCreated(invoice: InvoiceEvents['InvoiceCreated'], at: Date): EventInput<InvoiceEvents['InvoiceCreated']> {
  return {
    type: 'InvoiceCreated',
    tags: [invoiceTag(invoice.invoiceNumber), customerTag(invoice.customerId)],
    data: { invoiceNumber: invoice.invoiceNumber, customerId: invoice.customerId, amountCents: invoice.amountCents },
    occurredAt: at,
  };
}

// ---------------------------------------------------------------------------------------------
// Errors

export type InvoiceErrorCode = 'INVALID_INVOICE_AMOUNT';

/** A rule rejected the command; nothing was appended, and no number was used up. */
export class InvoiceError extends Error {
  readonly code: InvoiceErrorCode;

  constructor(code: InvoiceErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidInvoiceAmountError extends InvoiceError {
  constructor(readonly amountCents: number) {
    super('INVALID_INVOICE_AMOUNT', `an invoice amount must be a positive whole number of cents, got ${amountCents}`);
  }
}

export function isInvoiceError(error: unknown, code?: InvoiceErrorCode): error is InvoiceError {
  return error instanceof InvoiceError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// Projections

/**
 * The number the next invoice gets: the last one's + 1. It depends on every InvoiceCreated event
 * (no tags; the append condition covers them all), but only the last one determines the state,
 * so only that one is read: the decision costs the same at the 10th and the 10 millionth invoice.
 */
export const nextInvoiceNumber = defineProjection<number, InvoiceEvents>({
  initialState: 1,
  handlers: { InvoiceCreated: (_, event) => event.data.invoiceNumber + 1 },
  onlyLastEvent: true,
});

// ---------------------------------------------------------------------------------------------
// Commands

export interface CreateInvoice {
  customerId: string;
  amountCents: number;
  at: Date;
}

/**
 * Creates an invoice with the next number: the last invoice's number + 1, starting at 1.
 * Concurrent creations are decided one after the other, so the numbers are 1..N without gap or
 * duplicate.
 *
 * Rule: the amount is a positive whole number of cents ({@link InvalidInvoiceAmountError}).
 */
export const createInvoice = defineCommandHandler({
  projections: (_command: CreateInvoice) => ({ nextNumber: nextInvoiceNumber }),
  decide: (state, command) => {
    if (!Number.isSafeInteger(command.amountCents) || command.amountCents <= 0) throw new InvalidInvoiceAmountError(command.amountCents);
    return invoiceCreated({ invoiceNumber: state.nextNumber, customerId: command.customerId, amountCents: command.amountCents }, command.at);
  },
});
