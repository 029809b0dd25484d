import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_ADAPTIVE,
  DEFAULT_RATE_LIMIT,
  HostRateLimiter,
  RateLimiters,
  checkRateLimitSettings,
} from "../../../src/resilience/rate-limiter.js";
import type { RateLimitSettings } from "../../../src/resilience/rate-limiter.js";

const BUDGET = { numRuns: 1000, interruptAfterTimeLimit: 3000 };
const HOST = "api.stoka.space:443";
const zero = () => 0;
const bucket = (over: Partial<RateLimitSettings> = {}): RateLimitSettings => ({
  ...DEFAULT_RATE_LIMIT,
  ratePerSecond: 10,
  burst: 3,
  maxWaitMs: 1_000,
  jitterRatio: 0,
  retryAfterCapMs: 60_000,
  ...over,
});
const adaptive = (over: Partial<RateLimitSettings["adaptive"]> = {}): RateLimitSettings =>
  bucket({
    adaptive: {
      ...DEFAULT_ADAPTIVE,
      floorPerSecond: 1,
      ceilingPerSecond: 10,
      decreaseFactor: 0.5,
      increasePerSecond: 1,
      increaseIntervalMs: 1_000,
      decreaseCooldownMs: 500,
      ...over,
    },
  });

describe("token bucket", () => {
  it("lets a burst through, then spaces requests at the rate", () => {
    const l = new HostRateLimiter(HOST, bucket(), 0);
    expect([l.acquire(0, zero), l.acquire(0, zero), l.acquire(0, zero)]).toEqual([
      { kind: "ok" },
      { kind: "ok" },
      { kind: "ok" },
    ]);
    expect(l.acquire(0, zero)).toEqual({ kind: "wait", waitMs: 100 });
    expect(l.acquire(0, zero)).toEqual({ kind: "wait", waitMs: 200 });
  });

  it("refills with time, never above the burst", () => {
    const l = new HostRateLimiter(HOST, bucket(), 0);
    for (let i = 0; i < 3; i++) l.acquire(0, zero);
    expect(l.acquire(100, zero)).toEqual({ kind: "ok" });
    expect(l.snapshot(60_000).tokens).toBe(3);
  });

  it("rejects a wait longer than the maximum, with Retry-After in whole seconds", () => {
    const l = new HostRateLimiter(HOST, bucket({ ratePerSecond: 1, burst: 1, maxWaitMs: 1_500 }), 0);
    expect(l.acquire(0, zero)).toEqual({ kind: "ok" });
    expect(l.acquire(0, zero)).toEqual({ kind: "wait", waitMs: 1_000 });
    const r = l.acquire(0, zero);
    expect(r).toMatchObject({ kind: "reject", retryAfterSeconds: 2 });
    expect(r.kind === "reject" && r.reason).toMatch(/api\.stoka\.space:443 is rate limited \(1\/s\)/);
    // A rejection takes no slot: the next caller is no worse off.
    expect(l.acquire(500, zero)).toEqual({ kind: "wait", waitMs: 1_500 });
  });

  it("maxWait 0 answers at once: ok or reject", () => {
    const l = new HostRateLimiter(HOST, bucket({ burst: 1, maxWaitMs: 0 }), 0);
    expect(l.acquire(0, zero).kind).toBe("ok");
    expect(l.acquire(0, zero)).toMatchObject({ kind: "reject", retryAfterSeconds: 1 });
  });

  it.each([
    ["no jitter", 0, 0.9, 100],
    ["10 % jitter at random 0.5", 0.1, 0.5, 105],
    ["full jitter at random 1 doubles the wait", 1, 1, 200],
    ["a broken random source adds nothing", 1, Number.NaN, 100],
  ])("jitter on waits: %s", (_name, jitterRatio, r, waitMs) => {
    const l = new HostRateLimiter(HOST, bucket({ burst: 1, jitterRatio }), 0);
    l.acquire(0, zero);
    expect(l.acquire(0, () => r)).toEqual({ kind: "wait", waitMs });
  });

  it("jitter never pushes a wait past the maximum", () => {
    const l = new HostRateLimiter(
      HOST,
      bucket({ burst: 1, ratePerSecond: 1, maxWaitMs: 1_200, jitterRatio: 1 }),
      0,
    );
    l.acquire(0, zero);
    expect(l.acquire(0, () => 1)).toEqual({ kind: "wait", waitMs: 1_200 });
  });

  it("a 429's Retry-After pauses the host, even with tokens left", () => {
    const l = new HostRateLimiter(HOST, bucket({ maxWaitMs: 5_000 }), 0);
    expect(l.onThrottled(0, 2_000)).toBeNull(); // the plain bucket keeps its rate
    expect(l.pausedForMs(500)).toBe(1_500);
    expect(l.acquire(500, zero)).toEqual({ kind: "wait", waitMs: 1_600 });
    expect(l.acquire(500, zero)).toEqual({ kind: "wait", waitMs: 1_700 });
    expect(l.snapshot(500)).toMatchObject({
      mode: "token_bucket",
      ratePerSecond: 10,
      pausedForMs: 1_500,
      throttled: 1,
      waited: 2,
    });
    expect(l.pausedForMs(2_000)).toBe(0);
  });

  it("a pause longer than the maximum wait rejects with the pause's Retry-After", () => {
    const l = new HostRateLimiter(HOST, bucket({ maxWaitMs: 1_000 }), 0);
    l.onThrottled(0, 30_000);
    expect(l.acquire(10, zero)).toMatchObject({ kind: "reject", retryAfterSeconds: 31 });
  });

  it("a pause is capped", () => {
    const l = new HostRateLimiter(HOST, bucket({ retryAfterCapMs: 5_000 }), 0);
    l.onThrottled(0, 3_600_000);
    expect(l.pausedForMs(0)).toBe(5_000);
  });

  it("counts for metrics", () => {
    const l = new HostRateLimiter(HOST, bucket({ burst: 1, maxWaitMs: 150 }), 0);
    l.acquire(0, zero);
    l.acquire(0, zero);
    l.acquire(0, zero);
    expect(l.snapshot(0)).toMatchObject({
      host: HOST,
      acquired: 2,
      waited: 1,
      rejected: 1,
      waitMsTotal: 100,
      tokens: 0,
      queuedForMs: 100,
    });
  });
});

describe("adaptive (AIMD)", () => {
  it("halves the rate on a 429, down to the floor, once per cool-down", () => {
    const l = new HostRateLimiter(HOST, adaptive(), 0);
    expect(l.onThrottled(0, null)).toEqual({ ratePerSecond: 5 });
    expect(l.onThrottled(100, null)).toBeNull(); // same burst of 429s
    expect(l.onThrottled(600, null)).toEqual({ ratePerSecond: 2.5 });
    expect(l.onThrottled(1_200, null)).toEqual({ ratePerSecond: 1.25 });
    expect(l.onThrottled(1_800, null)).toEqual({ ratePerSecond: 1 });
    expect(l.onThrottled(2_400, null)).toBeNull(); // at the floor
    expect(l.snapshot(2_400)).toMatchObject({
      mode: "adaptive",
      ratePerSecond: 1,
      decreases: 4,
      throttled: 6,
    });
  });

  it("no burst right after a 429: the next request waits for a token at the new rate", () => {
    const l = new HostRateLimiter(HOST, adaptive(), 0);
    l.onThrottled(0, null);
    expect(l.acquire(0, zero)).toEqual({ kind: "wait", waitMs: 200 });
  });

  it("grows by a step per interval of successes, up to the ceiling", () => {
    const l = new HostRateLimiter(HOST, adaptive(), 0);
    l.onThrottled(0, null); // 5/s
    expect(l.onSuccess(500)).toBeNull(); // too soon after the decrease
    expect(l.onSuccess(1_000)).toEqual({ ratePerSecond: 6 });
    expect(l.onSuccess(1_500)).toBeNull();
    expect(l.onSuccess(2_000)).toEqual({ ratePerSecond: 7 });
    for (let t = 3_000; t <= 10_000; t += 1_000) l.onSuccess(t);
    expect(l.snapshot(10_000).ratePerSecond).toBe(10);
    expect(l.onSuccess(20_000)).toBeNull();
  });

  it("the plain bucket ignores successes", () => {
    const l = new HostRateLimiter(HOST, bucket(), 0);
    expect(l.onSuccess(5_000)).toBeNull();
  });

  it("tokens counted at the old rate before the rate changes", () => {
    const l = new HostRateLimiter(HOST, adaptive(), 0);
    for (let i = 0; i < 3; i++) l.acquire(0, zero);
    l.onThrottled(100, null); // 1 token earned at 10/s, then drained to 0 by the decrease
    expect(l.snapshot(100).tokens).toBe(0);
    expect(l.acquire(300, zero)).toEqual({ kind: "ok" }); // 200 ms × 5/s = 1 token
  });
});

describe("settings", () => {
  it.each([
    ["zero rate", bucket({ ratePerSecond: 0 }), /rate/],
    ["infinite rate", bucket({ ratePerSecond: Infinity }), /rate/],
    ["burst below 1", bucket({ burst: 0.5 }), /burst/],
    ["negative wait", bucket({ maxWaitMs: -1 }), /wait/],
    ["jitter above 1", bucket({ jitterRatio: 2 }), /jitter/],
    ["floor 0", adaptive({ floorPerSecond: 0 }), /floor/],
    ["ceiling below floor", adaptive({ floorPerSecond: 5, ceilingPerSecond: 4 }), /ceiling/],
    ["start above the ceiling", adaptive({ ceilingPerSecond: 5 }), /starting rate/],
    ["decrease factor 1", adaptive({ decreaseFactor: 1 }), /decrease/],
  ])("%s is refused", (_name, s, message) => {
    expect(checkRateLimitSettings(s)).toMatch(message);
    expect(() => new HostRateLimiter(HOST, s, 0)).toThrow(RangeError);
  });

  it("the defaults are valid", () => {
    expect(checkRateLimitSettings(DEFAULT_RATE_LIMIT)).toBeNull();
    expect(checkRateLimitSettings({ ...DEFAULT_RATE_LIMIT, adaptive: DEFAULT_ADAPTIVE })).toBeNull();
  });
});

describe("one limiter per host", () => {
  it("hosts are limited separately, case-insensitively; unlisted hosts are not limited", () => {
    const limiters = new RateLimiters(
      (h) => (h.startsWith("api.") ? bucket({ burst: 1 }) : null),
      () => 0,
    );
    expect(limiters.for("API.stoka.space:443")).toBe(limiters.for("api.stoka.space:443"));
    expect(limiters.for("other.example:443")).toBeNull();
    limiters.for("api.stoka.space:443")?.acquire(0, zero);
    expect(limiters.for("api.example:443")?.acquire(0, zero)).toEqual({ kind: "ok" });
    expect(limiters.snapshots(0).map((s) => s.host)).toEqual(["api.stoka.space:443", "api.example:443"]);
  });
});

describe("token bucket: properties", () => {
  it("no window of T ms ever holds more sends than burst + rate × T, and waits stay within the maximum", () => {
    fc.assert(
      fc.property(
        // Many simultaneous arrivals (gap 0) make the queue, and jitter, matter.
        fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 })), {
          minLength: 1,
          maxLength: 100,
        }),
        fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 50 })),
        fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 5 })),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 50 }),
        (gaps, rate, burst, jitterRatio, randoms) => {
          let k = 0;
          const random = () => randoms[k++ % randoms.length] as number;
          const s = bucket({ ratePerSecond: rate, burst, maxWaitMs: 2_000, jitterRatio });
          const l = new HostRateLimiter(HOST, s, 0);
          const sends: number[] = [];
          let now = 0;
          for (const g of gaps) {
            now += g;
            const a = l.acquire(now, random);
            if (a.kind === "ok") sends.push(now);
            if (a.kind === "wait") {
              expect(a.waitMs).toBeGreaterThan(0);
              expect(a.waitMs).toBeLessThanOrEqual(s.maxWaitMs);
              sends.push(now + a.waitMs);
            }
            if (a.kind === "reject") expect(a.retryAfterSeconds).toBeGreaterThanOrEqual(1);
          }
          sends.sort((a, b) => a - b);
          for (let i = 0; i < sends.length; i++) {
            for (let j = i; j < sends.length; j++) {
              const window = (sends[j] as number) - (sends[i] as number);
              expect(j - i + 1).toBeLessThanOrEqual(burst + Math.floor((rate * window) / 1000));
            }
          }
        },
      ),
      BUDGET,
    );
  });
});

describe("token bucket: a sustained queue", () => {
  // Regression (issue 15): jitter was a share of the whole wait, slots already promised
  // included, so each waiter pushed the next further; 64 callers in a loop against a 1000/s
  // host got about 300 sends/s and waits of seconds.
  it.each([
    ["1000/s, 64 callers, 10 % jitter", 1000, 1000, 64, 0.1],
    ["1000/s, 64 callers, full jitter", 1000, 1000, 64, 1],
    ["20/s, 8 callers, 10 % jitter", 20, 40, 8, 0.1],
  ])("%s: the host gets its rate, and waits stay short", (_name, rate, burst, callers, jitterRatio) => {
    const s = bucket({ ratePerSecond: rate, burst, maxWaitMs: 5_000, jitterRatio });
    const l = new HostRateLimiter(HOST, s, 0);
    // Each caller sends, then asks again 1 ms later (a closed loop, as connections do).
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) as number;
    const nextAsk = Array.from({ length: callers }, () => 0);
    const horizonMs = 4_000;
    let sends = 0;
    let longestWait = 0;
    for (let step = 0; step < 1_000_000; step++) {
      let i = 0;
      for (let k = 1; k < callers; k++) if ((nextAsk[k] as number) < (nextAsk[i] as number)) i = k;
      const now = nextAsk[i] as number;
      if (now >= horizonMs) break;
      const a = l.acquire(now, random);
      expect(a.kind).not.toBe("reject");
      const waitMs = a.kind === "wait" ? a.waitMs : 0;
      longestWait = Math.max(longestWait, waitMs);
      if (now + waitMs < horizonMs) sends += 1;
      nextAsk[i] = now + waitMs + 1;
    }
    const expected = burst + (rate * horizonMs) / 1000;
    expect(sends).toBeGreaterThanOrEqual(Math.floor(expected * 0.9));
    expect(sends).toBeLessThanOrEqual(expected + 1);
    // A queue of `callers` slots is callers / rate seconds long, jitter of one interval each.
    expect(longestWait).toBeLessThanOrEqual(((callers + 1) * 1000 * (1 + jitterRatio)) / rate + 2);
  });
});

describe("adaptive: a high default that never bound", () => {
  // The default host rate is 10 000/s (it must not cap a healthy host); once 429s have taught
  // the limiter a far lower rate, a quiet spell must not release a 10 000 burst.
  const high = (): RateLimitSettings => ({
    ...DEFAULT_RATE_LIMIT,
    ratePerSecond: 10_000,
    burst: 10_000,
    jitterRatio: 0,
    adaptive: { ...DEFAULT_ADAPTIVE, floorPerSecond: 0.5, ceilingPerSecond: 10_000 },
  });

  it("the bucket shrinks with the learned rate: a quiet spell does not release the old burst", () => {
    const l = new HostRateLimiter(HOST, high(), 0);
    // Ten 429s, a second apart, halve 10 000/s to about 10/s.
    for (let i = 0; i < 10; i++) l.onThrottled(i * 1_000, null);
    expect(l.snapshot(9_000).ratePerSecond).toBeCloseTo(9.77, 2);
    const at = 9_000 + 600_000;
    let sent = 0;
    while (l.acquire(at, zero).kind === "ok") sent += 1;
    expect(sent).toBe(9); // burst 10 000 × 9.77 / 10 000, whole tokens
  });
});
