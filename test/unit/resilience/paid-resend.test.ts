import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_RESEND_POLICY,
  decideResend,
  outcomeAcrossSends,
  signatureDeadlineMs,
} from "../../../src/resilience/paid-resend.js";
import type { LastSend, PaidAnswer, ResendInput, ResendPolicy } from "../../../src/resilience/paid-resend.js";

const BUDGET = { numRuns: 2000, interruptAfterTimeLimit: 3000 };
const POLICY: ResendPolicy = {
  ...DEFAULT_RESEND_POLICY,
  maxResends: 2,
  safetyMarginMs: 10_000,
  retryAfterCapMs: 30_000,
};
/** Signed at t = 100 s against 60 s of maxTimeoutSeconds; the signature lasts 24 ledgers of 5 s (120 s). */
const SIGNED = 100_000;
const input = (answer: PaidAnswer, over: Partial<ResendInput> = {}): ResendInput => ({
  answer,
  nowMs: SIGNED + 1_000,
  signedAtMs: SIGNED,
  maxTimeoutSeconds: 60,
  signature: {
    expirationLedger: 1_024,
    referenceLedger: 1_000,
    referenceAtMs: SIGNED,
    ledgerCloseSeconds: 5,
  },
  resendsMade: 0,
  random: () => 0.5,
  ...over,
});

describe("signature deadline", () => {
  it.each([
    [
      "24 ledgers of 5 s after the reference",
      { expirationLedger: 1_024, referenceLedger: 1_000, referenceAtMs: 0, ledgerCloseSeconds: 5 },
      120_000,
    ],
    [
      "a later reference moves the estimate",
      { expirationLedger: 1_024, referenceLedger: 1_010, referenceAtMs: 60_000, ledgerCloseSeconds: 5 },
      130_000,
    ],
    [
      "already expired: in the past",
      { expirationLedger: 990, referenceLedger: 1_000, referenceAtMs: 0, ledgerCloseSeconds: 5 },
      -50_000,
    ],
    [
      "no close time",
      { expirationLedger: 1_024, referenceLedger: 1_000, referenceAtMs: 0, ledgerCloseSeconds: 0 },
      null,
    ],
    [
      "NaN ledger",
      { expirationLedger: Number.NaN, referenceLedger: 1_000, referenceAtMs: 0, ledgerCloseSeconds: 5 },
      null,
    ],
    ["unknown", null, null],
  ])("%s", (_name, s, expected) => {
    expect(signatureDeadlineMs(s)).toBe(expected);
  });
});

describe("may the same payment header be resent? table", () => {
  it.each([
    [
      "429 with Retry-After 3 fits",
      input({ status: 429, retryAfter: "3" }),
      { resend: true, waitMs: 3_000, sendBy: 150_000, boundBy: "max_timeout" },
    ],
    ["429 without Retry-After: backoff", input({ status: 429 }), { resend: true, waitMs: 250 }],
    [
      "429 with garbage Retry-After: backoff",
      input({ status: 429, retryAfter: "later" }),
      { resend: true, waitMs: 250 },
    ],
    [
      "the second resend backs off longer",
      input({ status: 429 }, { resendsMade: 1 }),
      { resend: true, waitMs: 500 },
    ],
    ["503 with Retry-After fits", input({ status: 503, retryAfter: "2" }), { resend: true, waitMs: 2_000 }],
    [
      "503 with an HTTP-date Retry-After",
      input({ status: 503, retryAfter: new Date(SIGNED + 6_000).toUTCString() }),
      { resend: true, waitMs: 5_000 },
    ],
    ["503 without Retry-After is not a throttle", input({ status: 503 }), { resend: false }],
    ["503 with garbage Retry-After", input({ status: 503, retryAfter: "1.5" }), { resend: false }],
    ["502 never", input({ status: 502, retryAfter: "1" }), { resend: false }],
    ["500 never", input({ status: 500 }), { resend: false }],
    ["a second 402 never", input({ status: 402, retryAfter: "1" }), { resend: false }],
    ["2xx never", input({ status: 200 }), { resend: false }],
    ["Retry-After past the cap", input({ status: 429, retryAfter: "31" }), { resend: false }],
    ["resends used up", input({ status: 429, retryAfter: "1" }, { resendsMade: 2 }), { resend: false }],
    [
      "the first resend of a header",
      input({ status: 429, retryAfter: "1" }, { resendsMade: 0 }),
      { resend: true },
    ],
    [
      "signature expiry unknown",
      input({ status: 429, retryAfter: "1" }, { signature: null }),
      { resend: false },
    ],
    [
      "the wait ends exactly at maxTimeout minus the margin",
      input({ status: 429, retryAfter: "29" }, { nowMs: SIGNED + 21_000 }),
      { resend: true, waitMs: 29_000, sendBy: 150_000 },
    ],
    [
      "one second too late for maxTimeout",
      input({ status: 429, retryAfter: "29" }, { nowMs: SIGNED + 22_000 }),
      { resend: false },
    ],
    [
      "the signature expires before maxTimeout: it decides",
      input(
        { status: 429, retryAfter: "10" },
        {
          signature: {
            expirationLedger: 1_004,
            referenceLedger: 1_000,
            referenceAtMs: SIGNED,
            ledgerCloseSeconds: 5,
          },
        },
      ),
      { resend: false },
    ],
    [
      "a short signature that still fits",
      input(
        { status: 429, retryAfter: "5" },
        {
          signature: {
            expirationLedger: 1_004,
            referenceLedger: 1_000,
            referenceAtMs: SIGNED,
            ledgerCloseSeconds: 5,
          },
        },
      ),
      { resend: true, boundBy: "signature_expiry", sendBy: SIGNED + 10_000 },
    ],
    [
      "an already expired signature",
      input(
        { status: 429, retryAfter: "0" },
        {
          signature: {
            expirationLedger: 999,
            referenceLedger: 1_000,
            referenceAtMs: SIGNED,
            ledgerCloseSeconds: 5,
          },
        },
      ),
      { resend: false },
    ],
    [
      "the payment is older than maxTimeout",
      input({ status: 429, retryAfter: "0" }, { nowMs: SIGNED + 61_000 }),
      { resend: false },
    ],
  ])("%s", (_name, given, expected) => {
    expect(decideResend(POLICY, given)).toMatchObject(expected);
  });

  it("maxResends 0 turns the rule off", () => {
    expect(decideResend({ ...POLICY, maxResends: 0 }, input({ status: 429, retryAfter: "1" }))).toMatchObject(
      { resend: false },
    );
  });

  it("the ledger reason says the same header was resent and nothing new was signed", () => {
    const d = decideResend(POLICY, input({ status: 429, retryAfter: "3" }));
    expect(d.resend && d.ledgerReason).toBe(
      "resent the same payment header (resend 1 of at most 2) after 429 with Retry-After 3 s; no new payment was signed",
    );
  });

  it("says which bound refused", () => {
    const d = decideResend(POLICY, input({ status: 429, retryAfter: "29" }, { nowMs: SIGNED + 22_000 }));
    expect(!d.resend && d.reason).toMatch(/maxTimeoutSeconds/);
    const s = decideResend(
      POLICY,
      input(
        { status: 429, retryAfter: "10" },
        {
          signature: {
            expirationLedger: 1_004,
            referenceLedger: 1_000,
            referenceAtMs: SIGNED,
            ledgerCloseSeconds: 5,
          },
        },
      ),
    );
    expect(!s.resend && s.reason).toMatch(/signature expiration ledger/);
  });
});

describe("may the same payment header be resent? properties", () => {
  it("a resend always starts, with the margin, before both bounds; the decision carries no payment", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(429, 503, 500, 402, 200),
        fc.option(fc.oneof(fc.nat({ max: 40 }).map(String), fc.string({ maxLength: 6 })), { nil: undefined }),
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: -5, max: 100 }),
        fc.integer({ min: 0, max: 3 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (status, retryAfter, sinceSigned, maxTimeoutSeconds, ledgers, resendsMade, r) => {
          const signature = {
            expirationLedger: 1_000 + ledgers,
            referenceLedger: 1_000,
            referenceAtMs: SIGNED,
            ledgerCloseSeconds: 5,
          };
          const nowMs = SIGNED + sinceSigned;
          const d = decideResend(POLICY, {
            answer: { status, retryAfter },
            nowMs,
            signedAtMs: SIGNED,
            maxTimeoutSeconds,
            signature,
            resendsMade,
            random: () => r,
          });
          if (!d.resend) return;
          expect([429, 503]).toContain(status);
          expect(resendsMade).toBeLessThan(POLICY.maxResends);
          const deadline = Math.min(
            SIGNED + maxTimeoutSeconds * 1000,
            signatureDeadlineMs(signature) as number,
          );
          expect(nowMs + d.waitMs + POLICY.safetyMarginMs).toBeLessThanOrEqual(deadline);
          expect(Object.keys(d).sort()).toEqual(["boundBy", "ledgerReason", "resend", "sendBy", "waitMs"]);
        },
      ),
      BUDGET,
    );
  });
});

describe("the money state after resends", () => {
  const r429: PaidAnswer = { status: 429 };
  const r503: PaidAnswer = { status: 503, retryAfter: "1" };
  it.each([
    ["settled on the resend", [r429], { kind: "response", status: 200, settled: true }, "settled"],
    [
      "settled on the resend after a 503",
      [r503],
      { kind: "response", status: 201, settled: true },
      "settled",
    ],
    [
      "429 then a second 402: nothing was charged",
      [r429],
      { kind: "response", status: 402, settled: false },
      "rejected",
    ],
    [
      "429, 429, then 429 again: nothing processed",
      [r429, r429],
      { kind: "response", status: 429, settled: false },
      "rejected",
    ],
    [
      "503 then a second 402: the first may have settled",
      [r503],
      { kind: "response", status: 402, settled: false },
      "indeterminate",
    ],
    ["429, 503, then 404", [r429, r503], { kind: "response", status: 404, settled: false }, "indeterminate"],
    ["429 then 500", [r429], { kind: "response", status: 500, settled: false }, "indeterminate"],
    ["429 then a timeout", [r429], { kind: "timeout" }, "indeterminate"],
    ["429 then dropped", [r429], { kind: "dropped" }, "indeterminate"],
    ["429 then the resend could not connect", [r429], { kind: "not_sent" }, "failed"],
    ["503 then the resend could not connect", [r503], { kind: "not_sent" }, "indeterminate"],
    ["429 then an odd 3xx", [r429], { kind: "response", status: 304, settled: false }, "indeterminate"],
  ] as [string, PaidAnswer[], LastSend, string][])("%s → %s", (_name, earlier, last, outcome) => {
    expect(outcomeAcrossSends(earlier, last).outcome).toBe(outcome);
  });
});
