// Double opt-in, after the dcb.events "opt-in token" example: a sign-up sends a one-time password
// (OTP) to the email address, and only its confirmation proves the address. The OTP lives in the
// events themselves (tagged `otp:<otp>` and `email:<address>`), so no token table is needed, and
// the append condition makes sure that an OTP is confirmed once even when the link is clicked
// twice at the same moment.
import { randomInt } from 'node:crypto';
import { defineCommandHandler, defineProjection, type EventInput } from '../../src/index.ts';

// ---------------------------------------------------------------------------------------------
// Events

/** Payload per event type. */
export type SignUpEvents = {
  SignUpInitiated: { emailAddress: string; otp: string };
  SignUpConfirmed: { emailAddress: string; otp: string };
};

export const emailTag = (emailAddress: string): string => `email:${emailAddress}`;
export const otpTag = (otp: string): string => `otp:${otp}`;

export function signUpInitiated(emailAddress: string, otp: string, at: Date): EventInput<SignUpEvents['SignUpInitiated']> {
  return { type: 'SignUpInitiated', tags: [emailTag(emailAddress), otpTag(otp)], data: { emailAddress, otp }, occurredAt: at };
}

export function signUpConfirmed(emailAddress: string, otp: string, at: Date): EventInput<SignUpEvents['SignUpConfirmed']> {
  return { type: 'SignUpConfirmed', tags: [emailTag(emailAddress), otpTag(otp)], data: { emailAddress, otp }, occurredAt: at };
}

/**
 * A random 6-digit OTP. Drawn by the caller and passed in the command, so that decisions stay
 * pure. OTPs of different addresses may collide; they are only ever looked up with the address.
 */
export function generateOtp(): string {
  return randomInt(0, 1_000_000).toString().padStart(6, '0');
}

// ---------------------------------------------------------------------------------------------
// Errors

export const OTP_VALIDITY_MINUTES = 60;
const OTP_VALIDITY_MS = OTP_VALIDITY_MINUTES * 60 * 1000;

export type SignUpErrorCode = 'EMAIL_ALREADY_CONFIRMED' | 'INVALID_OTP' | 'OTP_ALREADY_USED' | 'OTP_EXPIRED';

/** A rule rejected the command; nothing was appended. */
export class SignUpError extends Error {
  readonly code: SignUpErrorCode;

  constructor(code: SignUpErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class EmailAlreadyConfirmedError extends SignUpError {
  constructor(readonly emailAddress: string) {
    super('EMAIL_ALREADY_CONFIRMED', `${emailAddress} is confirmed already`);
  }
}

/** No sign-up of this address was sent this OTP. Deliberately vague towards the user. */
export class InvalidOtpError extends SignUpError {
  constructor(readonly emailAddress: string) {
    super('INVALID_OTP', `no sign-up of ${emailAddress} with this OTP`);
  }
}

export class OtpAlreadyUsedError extends SignUpError {
  constructor(readonly emailAddress: string) {
    super('OTP_ALREADY_USED', `the OTP sent to ${emailAddress} was used already`);
  }
}

export class OtpExpiredError extends SignUpError {
  constructor(
    readonly emailAddress: string,
    readonly expiredAt: Date,
  ) {
    super('OTP_EXPIRED', `the OTP sent to ${emailAddress} expired at ${expiredAt.toISOString()}`);
  }
}

export function isSignUpError(error: unknown, code?: SignUpErrorCode): error is SignUpError {
  return error instanceof SignUpError && (code === undefined || error.code === code);
}

// ---------------------------------------------------------------------------------------------
// Projections

export interface PendingSignUp {
  /** When the OTP was sent; null if it never was (to this address). */
  initiatedAt: Date | null;
  confirmed: boolean;
}

/** The sign-up of this address with this OTP: both tags on one item mean AND. */
export const pendingSignUp = (emailAddress: string, otp: string) =>
  defineProjection<PendingSignUp, SignUpEvents>({
    initialState: { initiatedAt: null, confirmed: false },
    handlers: {
      SignUpInitiated: (state, event) => ({ ...state, initiatedAt: event.occurredAt }),
      SignUpConfirmed: (state) => ({ ...state, confirmed: true }),
    },
    tags: [emailTag(emailAddress), otpTag(otp)],
  });

/** Whether any OTP of this address was confirmed. */
export const emailConfirmed = (emailAddress: string) =>
  defineProjection<boolean, SignUpEvents>({
    initialState: false,
    handlers: { SignUpConfirmed: () => true },
    tags: [emailTag(emailAddress)],
  });

// ---------------------------------------------------------------------------------------------
// Commands

export interface InitiateSignUp {
  emailAddress: string;
  /** From {@link generateOtp}; send it to the address once the command succeeded. */
  otp: string;
  at: Date;
}

export interface ConfirmSignUp {
  emailAddress: string;
  otp: string;
  at: Date;
}

/**
 * Starts a sign-up: records the OTP to send. Initiating again (a lost email) records a new OTP;
 * the earlier ones stay valid until they expire.
 *
 * Rule: the address is not confirmed yet ({@link EmailAlreadyConfirmedError}).
 */
export const initiateSignUp = defineCommandHandler({
  projections: (command: InitiateSignUp) => ({ emailConfirmed: emailConfirmed(command.emailAddress) }),
  decide: (state, command) => {
    if (state.emailConfirmed) throw new EmailAlreadyConfirmedError(command.emailAddress);
    return signUpInitiated(command.emailAddress, command.otp, command.at);
  },
});

/**
 * Confirms a sign-up with the OTP sent to the address.
 *
 * Rules: a sign-up of this address was sent this OTP ({@link InvalidOtpError}); the OTP was not
 * used before ({@link OtpAlreadyUsedError}); the address was not confirmed with another of its
 * OTPs ({@link EmailAlreadyConfirmedError}); the OTP is younger than
 * {@link OTP_VALIDITY_MINUTES} minutes ({@link OtpExpiredError}).
 */
export const confirmSignUp = defineCommandHandler({
  projections: (command: ConfirmSignUp) => ({
    signUp: pendingSignUp(command.emailAddress, command.otp),
    emailConfirmed: emailConfirmed(command.emailAddress),
  }),
  decide: (state, command) => {
    const { initiatedAt, confirmed } = state.signUp;
    if (initiatedAt === null) throw new InvalidOtpError(command.emailAddress);
    if (confirmed) throw new OtpAlreadyUsedError(command.emailAddress);
    if (state.emailConfirmed) throw new EmailAlreadyConfirmedError(command.emailAddress);
    const expiredAt = new Date(initiatedAt.getTime() + OTP_VALIDITY_MS);
    if (command.at >= expiredAt) throw new OtpExpiredError(command.emailAddress, expiredAt);
    return signUpConfirmed(command.emailAddress, command.otp, command.at);
  },
});
