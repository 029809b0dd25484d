import { fullJitterDelay } from "./retry-policy.js";
import { parseRetryAfter } from "./retry-after.js";
import type { HeaderValue } from "./retry-after.js";

/**
 * The one retry a paid request may get: when the paid retry is answered 429, or 503 with a
 * `Retry-After`, the SAME payment header (the same signed authorization, the same nonce) may be
 * sent again after the wait. It cannot cost twice: a Soroban authorization nonce is consumed
 * by the first transfer that uses it, so however many copies reach the facilitator, at most one
 * settles. Nothing here can produce a new payment: the decision is a wait, and the caller resends
 * the header it already holds. Pure: clock and random source are arguments.
 *
 * The resend must still be valid when the facilitator settles it, so it is allowed only when
 * `now + wait + safetyMargin` falls before both
 * - the requirement's `maxTimeoutSeconds`, counted from the moment the header was signed, and
 * - the signature's expiration ledger, placed in time from one observed (ledger, instant) pair
 *   and the ledger close time estimate; without that pair the expiry is unknown and nothing is
 *   resent (the safe answer: the app gets the 429/503 and nothing is lost).
 *
 * @example
 * decideResend(DEFAULT_RESEND_POLICY, {
 *   answer: { status: 429, retryAfter: "3" }, nowMs: 10_000, signedAtMs: 9_000,
 *   maxTimeoutSeconds: 120, resendsMade: 0, random: () => 0.5,
 *   signature: { expirationLedger: 1_024, referenceLedger: 1_000, referenceAtMs: 9_000, ledgerCloseSeconds: 5 },
 * }); // → { resend: true, waitMs: 3000, sendBy: 119_000, … }
 */
export interface ResendPolicy {
  /** Resends of one payment header; 0 turns the rule off. */
  maxResends: number;
  /** Time left for the facilitator to verify and settle after the resend starts. */
  safetyMarginMs: number;
  /** The longest `Retry-After` honoured. */
  retryAfterCapMs: number;
  /** Backoff when a 429 names no (readable) `Retry-After`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RESEND_POLICY: ResendPolicy = {
  maxResends: 2,
  safetyMarginMs: 10_000,
  retryAfterCapMs: 30_000,
  baseDelayMs: 500,
  maxDelayMs: 5_000,
};

/** Where the signature's expiration ledger falls in time. */
export interface SignatureExpiry {
  /** The authorization entry's `signatureExpirationLedger` (valid through this ledger). */
  expirationLedger: number;
  /** A ledger sequence observed at `referenceAtMs` (at signing, or a later RPC read). */
  referenceLedger: number;
  referenceAtMs: number;
  /** Ledger close time estimate (config `wallet.ledger_close_seconds`). */
  ledgerCloseSeconds: number;
}

export interface PaidAnswer {
  status: number;
  retryAfter?: HeaderValue;
}

export interface ResendInput {
  /** The answer to the latest send of the payment header. */
  answer: PaidAnswer;
  nowMs: number;
  /** When the signer returned the header. */
  signedAtMs: number;
  /** The signed requirement's `maxTimeoutSeconds`. */
  maxTimeoutSeconds: number;
  signature: SignatureExpiry | null;
  /** Resends of this header already made (0 after the first paid send). */
  resendsMade: number;
  random: () => number;
}

export type ResendDecision =
  | {
      resend: true;
      waitMs: number;
      /** The latest instant the resend may start (deadline minus the safety margin). */
      sendBy: number;
      /** Which bound decided `sendBy`. */
      boundBy: "max_timeout" | "signature_expiry";
      /** For the ledger row of the resend (no secrets: statuses and numbers only). */
      ledgerReason: string;
    }
  | { resend: false; reason: string };

/** When the signature stops being valid, or null when it cannot be placed in time. */
export function signatureDeadlineMs(s: SignatureExpiry | null): number | null {
  if (!s) return null;
  const ok = [s.expirationLedger, s.referenceLedger, s.referenceAtMs, s.ledgerCloseSeconds].every(
    Number.isFinite,
  );
  if (!ok || s.ledgerCloseSeconds <= 0) return null;
  // The expiration ledger itself is still valid; counting only up to its start keeps a ledger spare.
  return s.referenceAtMs + (s.expirationLedger - s.referenceLedger) * s.ledgerCloseSeconds * 1000;
}

export function decideResend(policy: ResendPolicy, input: ResendInput): ResendDecision {
  const { status } = input.answer;
  const no = (reason: string): ResendDecision => ({ resend: false, reason });
  if (status !== 429 && status !== 503) return no(`the paid retry was answered ${status}`);
  if (input.resendsMade >= policy.maxResends)
    return no(`the payment header was already resent ${input.resendsMade} time(s)`);
  const ra =
    input.answer.retryAfter === undefined
      ? null
      : parseRetryAfter(input.answer.retryAfter, input.nowMs, policy.retryAfterCapMs);
  if (ra?.exceedsCap)
    return no(`${status} asks to wait longer than ${Math.ceil(policy.retryAfterCapMs / 1000)} s`);
  if (status === 503 && !ra) return no("503 without a readable Retry-After is not a throttle; not resent");

  const backoff = fullJitterDelay(policy, input.resendsMade, input.random);
  const waitMs = ra ? ra.delayMs : backoff;

  const byTimeout = input.signedAtMs + input.maxTimeoutSeconds * 1000;
  const bySignature = signatureDeadlineMs(input.signature);
  if (bySignature === null) return no("the signature's expiration cannot be placed in time; not resent");
  const deadline = Math.min(byTimeout, bySignature);
  const boundBy = bySignature < byTimeout ? "signature_expiry" : "max_timeout";
  const sendBy = deadline - policy.safetyMarginMs;
  if (!Number.isFinite(sendBy) || input.nowMs + waitMs > sendBy) {
    return no(
      `waiting ${waitMs} ms would leave less than ${policy.safetyMarginMs} ms before the payment expires (${boundBy === "max_timeout" ? "maxTimeoutSeconds" : "signature expiration ledger"})`,
    );
  }
  const n = input.resendsMade + 1;
  return {
    resend: true,
    waitMs,
    sendBy,
    boundBy,
    ledgerReason: `resent the same payment header (resend ${n} of at most ${policy.maxResends}) after ${status}${ra ? ` with Retry-After ${Math.ceil(ra.delayMs / 1000)} s` : ""}; no new payment was signed`,
  };
}

/** How the last send of a payment header ended, as the HTTP client saw it. */
export type LastSend =
  | { kind: "response"; status: number; settled: boolean }
  | { kind: "timeout" }
  | { kind: "dropped" }
  /** The resend's connection never opened: that copy was not sent. */
  | { kind: "not_sent" };

export type CombinedOutcome = {
  outcome: "settled" | "rejected" | "indeterminate" | "failed";
  reason: string;
};

/**
 * The money state of a payment whose header was sent more than once. `earlier` are the
 * answers that led to each resend (429s, 503s). A 429 is a refusal to serve the request
 * (RFC 6585 §4), read as "not charged" exactly as the proxy already reads any 4xx after a paid
 * retry; so after only 429s a later 402 still means nothing was charged. A 503 does not: the
 * server may have settled and then failed, and the resend's 402 may only say "this nonce was
 * used". So after any earlier 503 only a success is certain; the rest is indeterminate and
 * stays counted until reconciled.
 */
export function outcomeAcrossSends(earlier: readonly PaidAnswer[], last: LastSend): CombinedOutcome {
  if (last.kind === "response" && last.settled) return { outcome: "settled", reason: "settled on a resend" };
  const earlier5xx = earlier.some((a) => a.status >= 500);
  const unsure = (what: string): CombinedOutcome => ({
    outcome: "indeterminate",
    reason: `${what}; an earlier send of the same header was answered 5xx and may have been charged`,
  });
  switch (last.kind) {
    case "timeout":
    case "dropped":
      return {
        outcome: "indeterminate",
        reason: `the resend ${last.kind === "timeout" ? "timed out" : "was dropped"}`,
      };
    case "not_sent":
      return earlier5xx
        ? unsure("the resend could not connect")
        : { outcome: "failed", reason: "the resend could not connect; every earlier send was answered 429" };
    case "response": {
      if (last.status >= 500)
        return { outcome: "indeterminate", reason: `the resend was answered ${last.status}` };
      if (earlier5xx) return unsure(`the resend was answered ${last.status}`);
      if (last.status >= 400)
        return {
          outcome: "rejected",
          reason: `the resend was answered ${last.status}; earlier sends were answered 429`,
        };
      return { outcome: "indeterminate", reason: `the resend was answered ${last.status}` };
    }
  }
}
