import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  maySendSignedAgain,
  DEFAULT_RETRY_POLICY,
  carriesPayment,
  fullJitterDelay,
  isRetryableFailure,
  nextUnpaidRetry,
  retryPolicyFor,
} from "../../../src/resilience/retry-policy.js";
import type { AttemptFailure, RetryInput, RetryPolicy } from "../../../src/resilience/retry-policy.js";

const BUDGET = { numRuns: 2000, interruptAfterTimeLimit: 3000 };
const POLICY: RetryPolicy = {
  maxAttempts: 3,
  baseDelayMs: 100,
  maxDelayMs: 1_000,
  maxTotalMs: 5_000,
  retryAfterCapMs: 3_000,
};
const half = () => 0.5;
const input = (failure: AttemptFailure, over: Partial<RetryInput> = {}): RetryInput => ({
  failure,
  attemptsMade: 1,
  firstSentAtMs: 0,
  nowMs: 50,
  carriesPayment: false,
  random: half,
  ...over,
});

describe("which unpaid failures are retryable", () => {
  it.each([
    [{ kind: "connect" }, true],
    [{ kind: "status", status: 429 }, true],
    [{ kind: "status", status: 502 }, true],
    [{ kind: "status", status: 503 }, true],
    [{ kind: "status", status: 504 }, true],
    [{ kind: "timeout" }, false],
    [{ kind: "dropped" }, false],
    [{ kind: "status", status: 500 }, false],
    [{ kind: "status", status: 501 }, false],
    [{ kind: "status", status: 402 }, false],
    [{ kind: "status", status: 404 }, false],
    [{ kind: "status", status: 408 }, false],
    [{ kind: "status", status: 200 }, false],
  ] as [AttemptFailure, boolean][])("%j → %s", (failure, retryable) => {
    expect(isRetryableFailure(failure)).toBe(retryable);
  });
});

describe("a payment header on the request", () => {
  it.each([
    [{ "x-payment": "abc" }, true],
    [{ "X-PAYMENT": "" }, true],
    [{ "Payment-Signature": "abc" }, true],
    [{ "x-payment-response": "abc", "payment-required": "x" }, false],
    [{ authorization: "Stellar G…" }, false],
    [{}, false],
  ])("%j → %s", (headers, paid) => {
    expect(carriesPayment(headers)).toBe(paid);
  });
});

describe("full jitter", () => {
  it.each([
    ["random 0 waits nothing", 0, 0, 0],
    ["half of the first step", 0, 0.5, 50],
    ["half of the third step (base × 4)", 2, 0.5, 200],
    ["the step is capped at maxDelayMs", 10, 0.5, 500],
    ["a huge retry count stays capped", 5000, 0.5, 500],
    ["random 1 stays below the ceiling", 0, 1, 99],
    ["NaN from the random source waits nothing", 0, Number.NaN, 0],
    ["a negative random value waits nothing", 0, -3, 0],
  ])("%s", (_name, n, r, expected) => {
    expect(fullJitterDelay(POLICY, n, () => r)).toBe(expected);
  });
});

describe("nextUnpaidRetry: table", () => {
  it.each([
    ["a refused connection, first retry", input({ kind: "connect" }), { retry: true, delayMs: 50 }],
    [
      "503, second retry doubles the step",
      input({ kind: "status", status: 503 }, { attemptsMade: 2 }),
      { retry: true, delayMs: 100 },
    ],
    [
      "429 with Retry-After 2 waits 2 s",
      input({ kind: "status", status: 429, retryAfter: "2" }),
      { retry: true, delayMs: 2_000 },
    ],
    [
      "Retry-After shorter than the backoff: the backoff wins",
      input({ kind: "status", status: 503, retryAfter: "0" }, { random: () => 0.9 }),
      { retry: true, delayMs: 90 },
    ],
    [
      "garbage Retry-After falls back to backoff",
      input({ kind: "status", status: 429, retryAfter: "soon" }),
      { retry: true, delayMs: 50 },
    ],
    [
      "Retry-After as an HTTP-date",
      input({ kind: "status", status: 503, retryAfter: new Date(1_050).toUTCString() }, { nowMs: 50 }),
      { retry: true, delayMs: 950 },
    ],
    [
      "Retry-After past the cap: no retry",
      input({ kind: "status", status: 429, retryAfter: "4" }),
      { retry: false },
    ],
    [
      "a paid attempt is never retried",
      input({ kind: "status", status: 503 }, { carriesPayment: true }),
      { retry: false },
    ],
    [
      "a paid attempt whose connection failed is not retried here either",
      input({ kind: "connect" }, { carriesPayment: true }),
      { retry: false },
    ],
    ["a timeout is not retried", input({ kind: "timeout" }), { retry: false }],
    ["a dropped connection is not retried", input({ kind: "dropped" }), { retry: false }],
    ["500 is not retried", input({ kind: "status", status: 500 }), { retry: false }],
    ["402 is not retried", input({ kind: "status", status: 402 }), { retry: false }],
    ["all attempts used", input({ kind: "connect" }, { attemptsMade: 3 }), { retry: false }],
    [
      "the wait would pass the total budget",
      input({ kind: "status", status: 429, retryAfter: "2" }, { nowMs: 3_500 }),
      { retry: false },
    ],
    [
      "the wait ends exactly at the total budget",
      input({ kind: "status", status: 429, retryAfter: "2" }, { nowMs: 3_000 }),
      { retry: true, delayMs: 2_000 },
    ],
  ])("%s", (_name, given, expected) => {
    expect(nextUnpaidRetry(POLICY, given)).toMatchObject(expected);
  });

  it("says why it stops", () => {
    expect(
      nextUnpaidRetry(POLICY, input({ kind: "status", status: 503 }, { carriesPayment: true })).reason,
    ).toMatch(/paid attempt is never retried/);
    expect(nextUnpaidRetry(POLICY, input({ kind: "connect" }, { attemptsMade: 3 })).reason).toMatch(
      /3 of 3 attempts/,
    );
    expect(nextUnpaidRetry(POLICY, input({ kind: "status", status: 429, retryAfter: "9" })).reason).toMatch(
      /Retry-After is longer than 3 s/,
    );
  });

  it("maxAttempts 1 never retries", () => {
    expect(nextUnpaidRetry({ ...POLICY, maxAttempts: 1 }, input({ kind: "connect" }))).toMatchObject({
      retry: false,
    });
  });
});

describe("nextUnpaidRetry: properties", () => {
  const failure = fc.oneof(
    fc.constant<AttemptFailure>({ kind: "connect" }),
    fc.constant<AttemptFailure>({ kind: "timeout" }),
    fc.constant<AttemptFailure>({ kind: "dropped" }),
    fc.record({
      kind: fc.constant("status" as const),
      status: fc.integer({ min: 100, max: 599 }),
      retryAfter: fc.option(fc.oneof(fc.nat({ max: 20 }).map(String), fc.string({ maxLength: 8 })), {
        nil: undefined,
      }),
    }),
  );

  it("never retries a paid attempt, never passes the attempt count or the total time", () => {
    fc.assert(
      fc.property(
        failure,
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.boolean(),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (f, attemptsMade, elapsed, paid, r) => {
          const d = nextUnpaidRetry(POLICY, {
            failure: f,
            attemptsMade,
            firstSentAtMs: 1_000,
            nowMs: 1_000 + elapsed,
            carriesPayment: paid,
            random: () => r,
          });
          if (!d.retry) return;
          expect(paid).toBe(false);
          expect(isRetryableFailure(f)).toBe(true);
          expect(attemptsMade).toBeLessThan(POLICY.maxAttempts);
          expect(elapsed + d.delayMs).toBeLessThanOrEqual(POLICY.maxTotalMs);
          expect(d.delayMs).toBeGreaterThanOrEqual(0);
        },
      ),
      BUDGET,
    );
  });

  it("honours Retry-After: a retry never starts before the server asked", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (seconds, r) => {
          const d = nextUnpaidRetry(
            POLICY,
            input({ kind: "status", status: 503, retryAfter: String(seconds) }, { random: () => r }),
          );
          expect(d.retry).toBe(true);
          if (d.retry) expect(d.delayMs).toBeGreaterThanOrEqual(seconds * 1000);
        },
      ),
      BUDGET,
    );
  });
});

describe("per-route policies", () => {
  const routes = { store: { maxAttempts: 1 }, retrieve: { maxTotalMs: 1_000, baseDelayMs: undefined } };
  it.each([
    ["a route with its own count", "store", { ...DEFAULT_RETRY_POLICY, maxAttempts: 1 }],
    ["an undefined override keeps the default", "retrieve", { ...DEFAULT_RETRY_POLICY, maxTotalMs: 1_000 }],
    ["a route without overrides", "queue_pop", DEFAULT_RETRY_POLICY],
    ["an inherited property name is not a route", "constructor", DEFAULT_RETRY_POLICY],
    ["__proto__ is not a route", "__proto__", DEFAULT_RETRY_POLICY],
  ])("%s", (_name, route, expected) => {
    expect(retryPolicyFor(DEFAULT_RETRY_POLICY, routes, route)).toEqual(expected);
  });
});

describe("maySendSignedAgain: a wallet-signed request is sent again only when safe", () => {
  it.each([
    ["DELETE", { kind: "connect" }, true],
    ["POST", { kind: "connect" }, true],
    ["DELETE", { kind: "status", status: 503 }, true],
    ["delete", { kind: "status", status: 429 }, true],
    ["GET", { kind: "status", status: 502 }, true],
    ["PUT", { kind: "status", status: 504 }, true],
    ["POST", { kind: "status", status: 503 }, false],
    ["POST", { kind: "status", status: 429 }, false],
    ["PATCH", { kind: "status", status: 503 }, false],
    ["DELETE", { kind: "status", status: 500 }, false],
    ["DELETE", { kind: "timeout" }, false],
    ["GET", { kind: "dropped" }, false],
  ] as [string, AttemptFailure, boolean][])("%s after %j: %s", (method, failure, expected) => {
    expect(maySendSignedAgain(method, failure)).toBe(expected);
  });
});
