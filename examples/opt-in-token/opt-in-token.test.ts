// Double opt-in: every rule as a Given/When/Then specification on the in-memory store, then on
// PostgreSQL, where a confirmation link clicked many times at once, through several store
// instances, must confirm the sign-up exactly once.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Query, QueryItem, type EventStore } from '../../src/index.ts';
import { CommandHandlerSpecification, ProjectionSpecification } from '../../src/testing/index.ts';
import { createTestStores, race } from '../../test/helpers.ts';
import {
  EmailAlreadyConfirmedError,
  InvalidOtpError,
  OTP_VALIDITY_MINUTES,
  OtpAlreadyUsedError,
  OtpExpiredError,
  confirmSignUp,
  emailConfirmed,
  emailTag,
  generateOtp,
  initiateSignUp,
  isSignUpError,
  pendingSignUp,
  signUpConfirmed,
  signUpInitiated,
} from './domain.ts';

const MINUTE = 60 * 1000;
const t0 = new Date('2026-03-01T12:00:00Z');
const later = (ms: number): Date => new Date(t0.getTime() + ms);
const EMAIL = 'ada@example.com';

// ---------------------------------------------------------------------------------------------
// Specifications (in memory)

describe('initiateSignUp', () => {
  const spec = CommandHandlerSpecification.for(initiateSignUp);

  test('a new address: the sign-up is initiated with the OTP, tagged with the address and the OTP', async () => {
    await spec.given([]).when({ emailAddress: EMAIL, otp: '123456', at: t0 }).then([signUpInitiated(EMAIL, '123456', t0)]);
  });

  test('initiated before but not confirmed: initiated again with a new OTP', async () => {
    await spec.given([signUpInitiated(EMAIL, '111111', t0)]).when({ emailAddress: EMAIL, otp: '222222', at: later(MINUTE) }).then([signUpInitiated(EMAIL, '222222', later(MINUTE))]);
  });

  test('an address confirmed already: EmailAlreadyConfirmedError', async () => {
    await spec
      .given([signUpInitiated(EMAIL, '111111', t0), signUpConfirmed(EMAIL, '111111', later(MINUTE))])
      .when({ emailAddress: EMAIL, otp: '222222', at: later(2 * MINUTE) })
      .thenThrows(EmailAlreadyConfirmedError);
  });

  test('generateOtp draws 6 digits', () => {
    for (let count = 0; count < 100; count++) assert.match(generateOtp(), /^\d{6}$/);
  });
});

describe('confirmSignUp', () => {
  const spec = CommandHandlerSpecification.for(confirmSignUp);
  const initiated = signUpInitiated(EMAIL, '123456', t0);

  test('the OTP sent to the address, in time: the sign-up is confirmed', async () => {
    await spec.given([initiated]).when({ emailAddress: EMAIL, otp: '123456', at: later(5 * MINUTE) }).then([signUpConfirmed(EMAIL, '123456', later(5 * MINUTE))]);
  });

  test('an OTP never sent: InvalidOtpError', async () => {
    await spec.given([initiated]).when({ emailAddress: EMAIL, otp: '654321', at: later(MINUTE) }).thenThrows(InvalidOtpError);
  });

  test('an OTP sent to another address: InvalidOtpError', async () => {
    await spec.given([signUpInitiated('bob@example.com', '123456', t0)]).when({ emailAddress: EMAIL, otp: '123456', at: later(MINUTE) }).thenThrows(InvalidOtpError);
  });

  test('an OTP used already: OtpAlreadyUsedError', async () => {
    await spec
      .given([initiated, signUpConfirmed(EMAIL, '123456', later(MINUTE))])
      .when({ emailAddress: EMAIL, otp: '123456', at: later(2 * MINUTE) })
      .thenThrows(OtpAlreadyUsedError);
  });

  test('the address confirmed with another of its OTPs: EmailAlreadyConfirmedError', async () => {
    await spec
      .given([initiated, signUpInitiated(EMAIL, '222222', t0), signUpConfirmed(EMAIL, '222222', later(MINUTE))])
      .when({ emailAddress: EMAIL, otp: '123456', at: later(2 * MINUTE) })
      .thenThrows(EmailAlreadyConfirmedError);
  });

  test(`valid for ${OTP_VALIDITY_MINUTES} minutes: OtpExpiredError from then on`, async () => {
    const expiry = later(OTP_VALIDITY_MINUTES * MINUTE);
    await spec.given([initiated]).when({ emailAddress: EMAIL, otp: '123456', at: new Date(expiry.getTime() - 1) }).then([signUpConfirmed(EMAIL, '123456', new Date(expiry.getTime() - 1))]);
    await spec
      .given([initiated])
      .when({ emailAddress: EMAIL, otp: '123456', at: expiry })
      .thenThrows((error) => error instanceof OtpExpiredError && error.expiredAt.getTime() === expiry.getTime());
  });

  test('a new OTP has its own validity', async () => {
    const renewed = [initiated, signUpInitiated(EMAIL, '222222', later(50 * MINUTE))];
    await spec.given(renewed).when({ emailAddress: EMAIL, otp: '123456', at: later(70 * MINUTE) }).thenThrows(OtpExpiredError);
    await spec.given(renewed).when({ emailAddress: EMAIL, otp: '222222', at: later(70 * MINUTE) }).then([signUpConfirmed(EMAIL, '222222', later(70 * MINUTE))]);
  });

  test('domain errors carry a stable code', () => {
    assert.equal(new OtpExpiredError(EMAIL, t0).code, 'OTP_EXPIRED');
    assert.ok(isSignUpError(new OtpAlreadyUsedError(EMAIL), 'OTP_ALREADY_USED'));
    assert.ok(!isSignUpError(new InvalidOtpError(EMAIL), 'OTP_EXPIRED'));
  });
});

describe('projections', () => {
  const history = [signUpInitiated(EMAIL, '111111', t0), signUpInitiated(EMAIL, '222222', later(MINUTE)), signUpConfirmed(EMAIL, '222222', later(2 * MINUTE))];

  test('pendingSignUp follows one OTP of one address', async () => {
    await ProjectionSpecification.for(pendingSignUp(EMAIL, '111111')).given(history).then({ initiatedAt: t0, confirmed: false });
    await ProjectionSpecification.for(pendingSignUp(EMAIL, '222222')).given(history).then({ initiatedAt: later(MINUTE), confirmed: true });
    await ProjectionSpecification.for(pendingSignUp('bob@example.com', '111111')).given(history).then({ initiatedAt: null, confirmed: false });
  });

  test('emailConfirmed: any of its OTPs confirmed', async () => {
    await ProjectionSpecification.for(emailConfirmed(EMAIL)).given(history).then(true);
    await ProjectionSpecification.for(emailConfirmed(EMAIL)).given(history.slice(0, 2)).then(false);
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

  const newEmail = (): string => `${randomUUID().slice(0, 8)}@example.com`;
  const confirmationsOf = async (emailAddress: string): Promise<string[]> => {
    const { events } = await stores[0]!.read<{ otp: string }>(Query.of(QueryItem.types('SignUpConfirmed').tags(emailTag(emailAddress))));
    return events.map((event) => event.data.otp);
  };

  const rejections = (results: PromiseSettledResult<unknown>[]): unknown[] => results.flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));

  test('initiate and confirm end to end; the expiry is measured from the time stored with the event', async () => {
    const [store] = stores as [EventStore];
    const emailAddress = newEmail();
    const otp = generateOtp();
    await store.execute(initiateSignUp, { emailAddress, otp, at: t0 });
    await assert.rejects(store.execute(confirmSignUp, { emailAddress, otp, at: later(61 * MINUTE) }), OtpExpiredError);
    const renewed = generateOtp();
    await store.execute(initiateSignUp, { emailAddress, otp: renewed, at: later(61 * MINUTE) });
    await store.execute(confirmSignUp, { emailAddress, otp: renewed, at: later(62 * MINUTE) });
    assert.deepEqual(await confirmationsOf(emailAddress), [renewed]);
  });

  test(`one OTP confirmed 16 times at once from ${INSTANCES} store instances: confirmed once, 15 OtpAlreadyUsedError`, async () => {
    const emailAddress = newEmail();
    const otp = generateOtp();
    await stores[0]!.execute(initiateSignUp, { emailAddress, otp, at: t0 });
    const results = await race(stores, 16, (store) => store.execute(confirmSignUp, { emailAddress, otp, at: later(MINUTE) }, { maxAttempts: 50 }));
    const errors = rejections(results);
    assert.equal(errors.length, 15);
    for (const error of errors) assert.ok(error instanceof OtpAlreadyUsedError, String(error));
    assert.deepEqual(await confirmationsOf(emailAddress), [otp]);
  });

  test('three OTPs of one address confirmed at once: the address is confirmed once', async () => {
    const emailAddress = newEmail();
    const otps = ['111111', '222222', '333333'];
    for (const otp of otps) await stores[0]!.execute(initiateSignUp, { emailAddress, otp, at: t0 });
    const results = await race(stores, 12, (store, index) => store.execute(confirmSignUp, { emailAddress, otp: otps[index % otps.length]!, at: later(MINUTE) }, { maxAttempts: 50 }));
    const errors = rejections(results);
    assert.equal(errors.length, 11);
    for (const error of errors) assert.ok(error instanceof OtpAlreadyUsedError || error instanceof EmailAlreadyConfirmedError, String(error));
    assert.equal((await confirmationsOf(emailAddress)).length, 1);
  });
});
