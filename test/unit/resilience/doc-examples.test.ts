import { describe, expect, it } from "vitest";
import { CircuitBreaker } from "../../../src/resilience/circuit-breaker.js";
import { recoveryFor } from "../../../src/resilience/crash-recovery.js";
import { IdempotencyRegistry, requestIdentity } from "../../../src/resilience/idempotency.js";
import { DEFAULT_RESEND_POLICY, decideResend } from "../../../src/resilience/paid-resend.js";
import { PaymentSwitch } from "../../../src/resilience/payment-switch.js";
import { DEFAULT_RATE_LIMIT, HostRateLimiter } from "../../../src/resilience/rate-limiter.js";
import { reconcileUsage } from "../../../src/resilience/reconcile-usage.js";
import { parseRetryAfter } from "../../../src/resilience/retry-after.js";
import { DEFAULT_RETRY_POLICY, nextUnpaidRetry } from "../../../src/resilience/retry-policy.js";
import { readUsage } from "../../../src/resilience/usage-shapes.js";

/** The JSDoc example of each module, run as written, so the documentation cannot drift. */
describe("the modules' documented examples hold", () => {
  it("retry-after", () => {
    expect(parseRetryAfter("120", 0, 600_000)).toEqual({ delayMs: 120_000, exceedsCap: false });
    expect(
      parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", Date.parse("1994-11-06T08:49:30Z"), 600_000),
    ).toEqual({
      delayMs: 7_000,
      exceedsCap: false,
    });
    expect(parseRetryAfter("soon", 0, 600_000)).toBeNull();
  });

  it("retry-policy", () => {
    const policy = { ...DEFAULT_RETRY_POLICY, maxAttempts: 3 };
    expect(
      nextUnpaidRetry(policy, {
        failure: { kind: "status", status: 503, retryAfter: "2" },
        attemptsMade: 1,
        firstSentAtMs: 0,
        nowMs: 100,
        carriesPayment: false,
        random: () => 0.5,
      }),
    ).toEqual({ retry: true, delayMs: 2000, reason: "upstream answered 503 (Retry-After 2 s)" });
  });

  it("paid-resend", () => {
    expect(
      decideResend(DEFAULT_RESEND_POLICY, {
        answer: { status: 429, retryAfter: "3" },
        nowMs: 10_000,
        signedAtMs: 9_000,
        maxTimeoutSeconds: 120,
        resendsMade: 0,
        random: () => 0.5,
        signature: {
          expirationLedger: 1_024,
          referenceLedger: 1_000,
          referenceAtMs: 9_000,
          ledgerCloseSeconds: 5,
        },
      }),
    ).toMatchObject({ resend: true, waitMs: 3000, sendBy: 119_000 });
  });

  it("rate-limiter", () => {
    const l = new HostRateLimiter(
      "api.stoka.space:443",
      { ...DEFAULT_RATE_LIMIT, ratePerSecond: 2, burst: 1, jitterRatio: 0 },
      0,
    );
    expect(l.acquire(0, Math.random)).toEqual({ kind: "ok" });
    expect(l.acquire(0, Math.random)).toEqual({ kind: "wait", waitMs: 500 });
    l.onThrottled(10, 30_000);
    expect(l.acquire(20, Math.random)).toMatchObject({ kind: "reject", retryAfterSeconds: 31 });
  });

  it("circuit-breaker", () => {
    const b = new CircuitBreaker("store", {
      failureThreshold: 2,
      windowMs: 60_000,
      coolDownMs: 30_000,
      probeTimeoutMs: 60_000,
    });
    const t = b.check(0);
    expect(t).toEqual({ allow: true, ticket: { id: 1, probe: false } });
    if (!t.allow) throw new Error("unreachable");
    b.recordFailure(t.ticket, 1, "second 402: insufficient funds");
    const second = b.check(2);
    if (!second.allow) throw new Error("unreachable");
    expect(b.recordFailure(second.ticket, 2, "indeterminate: upstream_5xx")).toMatchObject({
      from: "closed",
      to: "open",
    });
    expect(b.check(3)).toMatchObject({ allow: false, state: "open", retryAfterSeconds: 30 });
    expect(b.check(30_002)).toMatchObject({ allow: true, ticket: { id: 3, probe: true } });
  });

  it("payment-switch", () => {
    const s = new PaymentSwitch();
    s.set({ stopped: true }, { by: "admin", reason: "wallet rotation", atMs: 1_000 });
    expect(s.decide()).toEqual({ kind: "stopped", reason: "wallet rotation", by: "admin", sinceMs: 1000 });
    s.set({ stopped: false }, { by: "signal:SIGUSR2", reason: "", atMs: 2_000 });
    expect(s.decide()).toEqual({ kind: "pay" });
  });

  it("idempotency", () => {
    const body = Buffer.from("blob");
    const id = requestIdentity({
      client: "app",
      method: "POST",
      url: "https://api.stoka.space/v1/store",
      body,
      idempotencyKey: undefined,
    });
    const reg = new IdempotencyRegistry({
      maxEntries: 10_000,
      inFlightTtlMs: 300_000,
      indeterminateTtlMs: 86_400_000,
    });
    expect(reg.begin(id, "pay-1", 0)).toEqual({ kind: "proceed" });
    expect(reg.begin(id, "pay-2", 5)).toEqual({ kind: "conflict", state: "in_flight", paymentId: "pay-1" });
    reg.settle(id, "pay-1", "settled", 9);
    expect(reg.begin(id, "pay-3", 10)).toEqual({ kind: "proceed" });
  });

  it("crash-recovery", () => {
    expect(recoveryFor([{ state: "reserved" }]).action).toBe("release");
    expect(recoveryFor([{ state: "reserved" }, { state: "signed" }]).action).toBe("release");
    expect(recoveryFor([{ state: "reserved" }, { state: "signed" }, { state: "sent" }]).action).toBe(
      "indeterminate",
    );
    expect(
      recoveryFor([{ state: "reserved" }, { state: "sent" }, { state: "throttled", upstreamStatus: 429 }])
        .action,
    ).toBe("release");
    expect(recoveryFor([{ state: "reserved" }, { state: "sent" }, { state: "settled" }])).toEqual({
      action: "keep",
    });
  });

  it("usage-shapes", () => {
    expect(readUsage('{"days": 7, "series": [{"day": "2026-11-28", "charged_atomic": 1400}]}')).toEqual({
      ok: true,
      usage: { days: [{ date: "2026-11-28", spentAtomic: 1400n }] },
      shape: "series[] of days",
    });
    expect(readUsage('{"total": "5"}')).toEqual({
      ok: false,
      reason: "no list of days found; got an object with keys: total (string)",
    });
  });

  it("reconcile-usage", () => {
    const r = reconcileUsage(
      [
        {
          paymentId: "p1",
          state: "indeterminate",
          amount: 1400n,
          startedAtMs: Date.parse("2026-11-28T10:00:00Z"),
          payer: "GA…",
          txHashes: ["ab…"],
        },
      ],
      {
        days: [{ date: "2026-11-28", spentAtomic: 1400n }],
        payments: [{ tx: "ab…", amountAtomic: 1400n, date: "2026-11-28" }],
      },
      {
        wallet: "GA…",
        includeUnattributed: false,
        nowMs: Date.parse("2026-11-29T00:00:00Z"),
        settleHorizonMs: 300_000,
      },
    );
    expect(r.resolutions).toEqual([
      { paymentId: "p1", charged: true, because: "its transaction is listed in the usage" },
    ]);
  });
});
