import { describe, expect, it } from "vitest";
import {
  backoffCeilingMs,
  jitteredDelayMs,
  nextStep,
  parseRetryAfterMs,
  verdict,
} from "../../src/operator/notify/backoff.js";
import type { AttemptResult, RetryPolicy } from "../../src/operator/notify/backoff.js";
import { Deduplicator } from "../../src/operator/notify/dedup.js";
import { paymentIndeterminateEvent } from "../../src/operator/notify/events.js";
import type { NotificationEvent, Severity } from "../../src/operator/notify/events.js";
import type { PostRequest, Transport } from "../../src/operator/notify/http-post.js";
import { Notifier } from "../../src/operator/notify/notifier.js";
import type { NotifierConfig, NotifierObserver } from "../../src/operator/notify/notifier.js";
import { BoundedQueue } from "../../src/operator/notify/queue.js";
import { verifySignature } from "../../src/operator/notify/signature.js";
import { ManualScheduler, settle } from "../support/manual-scheduler.js";

/** Backoff, dedup, the queue's drop rule, and the delivery loop on a clock the test moves. */

const POLICY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 1000, maxDelayMs: 8000, maxElapsedMs: 60_000 };
const NOW = Date.parse("2026-03-15T12:00:00Z");

describe("backoff", () => {
  it.each([
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [4, 8000],
    [5, 8000], // capped
    [60, 8000], // no overflow
  ])("after attempt %i the ceiling is %i ms", (attempt, ceiling) => {
    expect(backoffCeilingMs(POLICY, attempt)).toBe(ceiling);
  });

  it.each([
    [0, 3, 0],
    [0.5, 3, 2000],
    [0.999999, 3, 3999],
    [1, 3, 3999], // a random() of exactly 1 stays below the ceiling
    [-1, 3, 0],
  ])("full jitter: random %d, attempt %i → %i ms", (r, attempt, delay) => {
    expect(jitteredDelayMs(POLICY, attempt, () => r)).toBe(delay);
  });

  it.each<[string | undefined, number | null]>([
    ["0", 0],
    ["120", 120_000],
    ["  7 ", 7_000],
    ["Sun, 15 Mar 2026 12:00:30 GMT", 30_000],
    ["Sun, 15 Mar 2026 11:00:00 GMT", 0], // in the past: now
    ["-5", null],
    ["1.5", null],
    ["soon", null],
    ["2026-03-15", null],
    [undefined, null],
  ])("Retry-After %j → %j ms", (value, ms) => {
    expect(parseRetryAfterMs(value, NOW)).toBe(ms);
  });

  it.each<[AttemptResult, string]>([
    [{ kind: "status", status: 200 }, "delivered"],
    [{ kind: "status", status: 204 }, "delivered"],
    [{ kind: "status", status: 301 }, "reject"],
    [{ kind: "status", status: 400 }, "reject"],
    [{ kind: "status", status: 401 }, "reject"],
    [{ kind: "status", status: 404 }, "reject"],
    [{ kind: "status", status: 408 }, "retry"],
    [{ kind: "status", status: 429 }, "retry"],
    [{ kind: "status", status: 500 }, "retry"],
    [{ kind: "status", status: 503 }, "retry"],
    [{ kind: "timeout" }, "retry"],
    [{ kind: "connection", code: "ECONNREFUSED" }, "retry"],
    [{ kind: "aborted" }, "reject"],
  ])("%j → %s", (result, v) => {
    expect(verdict(result)).toBe(v);
  });

  const step = (attempt: number, result: AttemptResult, nowMs = NOW, random = () => 0.5) =>
    nextStep({ policy: POLICY, attempt, firstAttemptAtMs: NOW, nowMs, result, random });

  it.each<[string, ReturnType<typeof step>, unknown]>([
    ["2xx", step(1, { kind: "status", status: 202 }), { kind: "delivered" }],
    ["4xx", step(1, { kind: "status", status: 410 }), { kind: "rejected" }],
    ["500, first attempt", step(1, { kind: "status", status: 500 }), { kind: "retry", delayMs: 500 }],
    ["timeout, third attempt", step(3, { kind: "timeout" }), { kind: "retry", delayMs: 2000 }],
    ["the last attempt", step(5, { kind: "status", status: 500 }), { kind: "exhausted", why: "attempts" }],
    [
      "503 with Retry-After longer than the backoff",
      step(1, { kind: "status", status: 503, retryAfter: "5" }),
      { kind: "retry", delayMs: 5000 },
    ],
    [
      "429 with Retry-After shorter than the backoff",
      step(4, { kind: "status", status: 429, retryAfter: "1" }),
      { kind: "retry", delayMs: 4000 },
    ],
    [
      "Retry-After on a 500 is not a promise",
      step(1, { kind: "status", status: 500, retryAfter: "30" }),
      { kind: "retry", delayMs: 500 },
    ],
    [
      "Retry-After beyond the total time",
      step(1, { kind: "status", status: 503, retryAfter: "3600" }),
      { kind: "exhausted", why: "time" },
    ],
    [
      "the total time nearly spent",
      step(2, { kind: "timeout" }, NOW + 59_500),
      { kind: "exhausted", why: "time" },
    ],
  ])("%s", (_name, got, want) => {
    expect(got).toEqual(want);
  });
});

describe("dedup", () => {
  it("sends an identical event once per window, measured from its first sighting", () => {
    const d = new Deduplicator(1000);
    const seq: [string, number, boolean][] = [
      ["a", 0, false],
      ["a", 1, true],
      ["b", 2, false],
      ["a", 999, true],
      ["a", 1000, false], // the window ran out: told again
      ["a", 1500, true],
      ["b", 1001, false],
    ];
    for (const [key, t, dup] of seq) expect(d.isDuplicate(key, NOW + t)).toBe(dup);
  });

  it("is off with a zero window", () => {
    const d = new Deduplicator(0);
    expect(d.isDuplicate("a", NOW)).toBe(false);
    expect(d.isDuplicate("a", NOW)).toBe(false);
  });

  it("keeps its memory bounded", () => {
    const d = new Deduplicator(1_000_000, 100);
    for (let i = 0; i < 10_000; i++) d.isDuplicate(`k${i}`, NOW + i);
    expect(d.size).toBe(100);
    const e = new Deduplicator(10, 1_000_000);
    for (let i = 0; i < 10_000; i++) e.isDuplicate(`k${i}`, NOW + i);
    expect(e.size).toBeLessThanOrEqual(11); // expired keys leave as time moves
  });
});

describe("the bounded queue drops the oldest of the lowest severity", () => {
  const item = (id: string, severity: Severity) => ({ id, severity });
  it.each<[string, [string, Severity][], [string, Severity], string | null, string[]]>([
    ["room left", [["a", "info"]], ["b", "info"], null, ["a", "b"]],
    [
      "full of one severity: the oldest goes",
      [
        ["a", "warning"],
        ["b", "warning"],
        ["c", "warning"],
      ],
      ["d", "warning"],
      "a",
      ["b", "c", "d"],
    ],
    [
      "a newcomer pushes out an older, lower one",
      [
        ["a", "critical"],
        ["b", "info"],
        ["c", "warning"],
      ],
      ["d", "critical"],
      "b",
      ["a", "c", "d"],
    ],
    [
      "a lower newcomer is the one dropped",
      [
        ["a", "critical"],
        ["b", "warning"],
        ["c", "critical"],
      ],
      ["d", "info"],
      "d",
      ["a", "b", "c"],
    ],
    [
      "an equal newcomer drops the oldest of its kind",
      [
        ["a", "critical"],
        ["b", "warning"],
        ["c", "warning"],
      ],
      ["d", "warning"],
      "b",
      ["a", "c", "d"],
    ],
  ])("%s", (_name, queued, pushed, dropped, order) => {
    const q = new BoundedQueue<{ id: string; severity: Severity }>(3);
    for (const [id, s] of queued) expect(q.push(item(id, s))).toBeNull();
    expect(q.push(item(...pushed))?.id ?? null).toBe(dropped);
    expect(q.length).toBeLessThanOrEqual(3);
    expect(q.drain().map((i) => i.id)).toEqual(order);
    expect(q.length).toBe(0);
  });

  it("stays FIFO across severities over many operations", () => {
    const q = new BoundedQueue<{ id: number; severity: Severity }>(5000);
    const sev: Severity[] = ["info", "warning", "critical"];
    for (let i = 0; i < 3000; i++) q.push({ id: i, severity: sev[i % 3] as Severity });
    const out: number[] = [];
    for (let i = 0; i < 2500; i++) out.push((q.shift() as { id: number }).id);
    for (let i = 3000; i < 4000; i++) q.push({ id: i, severity: "info" });
    out.push(...q.drain().map((x) => x.id));
    expect(out).toEqual(Array.from({ length: 4000 }, (_, i) => i));
  });
});

// --- the delivery loop, on a fake clock, against a receiver scripted in this file ---

const SECRET = "unit-test-secret-0123456789";

interface Received {
  request: PostRequest;
  atMs: number;
}

/** A receiver whose answers the test scripts; it records what it received and when. */
class ScriptedReceiver implements Transport {
  received: Received[] = [];
  inFlight = 0;
  maxInFlight = 0;
  closed = false;
  private held: ((r: AttemptResult) => void)[] = [];

  constructor(
    private readonly scheduler: ManualScheduler,
    private readonly answer: (n: number, r: PostRequest) => AttemptResult | "hold",
  ) {}

  post(request: PostRequest): Promise<AttemptResult> {
    this.received.push({ request, atMs: this.scheduler.now() });
    const a = this.answer(this.received.length, request);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve) => {
      const done = (r: AttemptResult) => {
        this.inFlight -= 1;
        resolve(r);
      };
      if (a === "hold") {
        this.held.push(done);
        request.signal.addEventListener("abort", () => done({ kind: "aborted" }), { once: true });
      } else queueMicrotask(() => done(a));
    });
  }

  release(r: AttemptResult): void {
    this.held.shift()?.(r);
  }

  close(): void {
    this.closed = true;
  }
}

const event = (id: string, over: Partial<NotificationEvent> = {}): NotificationEvent => ({
  ...paymentIndeterminateEvent({
    paymentId: id,
    route: "store",
    client: "app",
    amount: 1400n,
    reason: "502 after the paid retry",
    upstreamStatus: 502,
    tx: null,
    atMs: NOW,
  }),
  ...over,
});

function setup(
  answer: (n: number, r: PostRequest) => AttemptResult | "hold",
  over: Partial<NotifierConfig> = {},
  observer: NotifierObserver = {},
) {
  const scheduler = new ManualScheduler(NOW);
  const receiver = new ScriptedReceiver(scheduler, answer);
  const config: NotifierConfig = {
    destinations: [{ name: "ops", url: "http://127.0.0.1:1/hook", secret: SECRET, timeoutMs: 1000 }],
    rules: [{ events: ["payment.indeterminate", "payment.refused_terms"], minSeverity: "info" }],
    queueSize: 10,
    dedupWindowMs: 60_000,
    retry: POLICY,
    ...over,
  };
  let ids = 0;
  const notifier = new Notifier(config, {
    scheduler,
    transport: receiver,
    random: () => 0.5,
    observer,
    newId: () => `evt_${++ids}`,
  });
  return { scheduler, receiver, notifier };
}

const ok: AttemptResult = { kind: "status", status: 200 };
const e500: AttemptResult = { kind: "status", status: 500 };

describe("the delivery loop", () => {
  it("notify() returns before anything is sent, and a 2xx is delivered once, signed", async () => {
    const { receiver, notifier } = setup(() => ok);
    notifier.notify(event("p1"));
    expect(receiver.received).toHaveLength(0); // nothing on the caller's stack
    await settle();
    expect(receiver.received).toHaveLength(1);
    const r = receiver.received[0]!.request;
    expect(r.headers["x-stoka-proxy-event"]).toBe("payment.indeterminate");
    expect(r.headers["x-stoka-proxy-delivery"]).toBe("evt_1");
    expect(r.headers["content-type"]).toBe("application/json");
    expect(
      verifySignature({
        header: r.headers["x-stoka-proxy-signature"],
        body: r.body,
        secrets: SECRET,
        nowMs: NOW,
      }),
    ).toEqual({
      ok: true,
      timestampSeconds: NOW / 1000,
    });
    expect(JSON.parse(r.body)).toMatchObject({
      id: "evt_1",
      event: "payment.indeterminate",
      data: { payment_id: "p1" },
    });
    expect(notifier.stats().destinations.ops).toMatchObject({
      delivered: 1,
      attempts: 1,
      queued: 0,
      inFlight: 0,
    });
  });

  it("retries a 500 on the backoff schedule, re-signing each attempt, same body and id", async () => {
    const { scheduler, receiver, notifier } = setup((n) => (n < 4 ? e500 : ok));
    notifier.notify(event("p1"));
    await settle();
    const delays: number[] = [];
    while (receiver.received.length < 4) delays.push(await scheduler.next());
    // random() = 0.5: half of each ceiling (1 s, 2 s, 4 s)
    expect(delays).toEqual([500, 1000, 2000]);
    expect(receiver.received.map((r) => r.atMs - NOW)).toEqual([0, 500, 1500, 3500]);
    const bodies = new Set(receiver.received.map((r) => r.request.body));
    expect(bodies.size).toBe(1);
    const stamps = receiver.received.map((r) => r.request.headers["x-stoka-proxy-signature"]);
    expect(new Set(stamps).size).toBe(3); // 0 s, 0.5 s → same second; 1.5 s, 3.5 s differ
    expect(receiver.received.map((r) => r.request.headers["x-stoka-proxy-attempt"])).toEqual([
      "1",
      "2",
      "3",
      "4",
    ]);
    for (const r of receiver.received) {
      expect(
        verifySignature({
          header: r.request.headers["x-stoka-proxy-signature"],
          body: r.request.body,
          secrets: SECRET,
          nowMs: r.atMs,
        }).ok,
      ).toBe(true);
    }
    expect(notifier.stats().destinations.ops).toMatchObject({
      delivered: 1,
      attempts: 4,
      lastResult: "status 200",
    });
  });

  it("waits as long as a 503's Retry-After says", async () => {
    const { scheduler, receiver, notifier } = setup((n) =>
      n === 1 ? { kind: "status", status: 503, retryAfter: "20" } : ok,
    );
    notifier.notify(event("p1"));
    await settle();
    expect(scheduler.pendingDelays()).toEqual([20_000]);
    await scheduler.advance(19_999);
    expect(receiver.received).toHaveLength(1);
    await scheduler.advance(1);
    expect(receiver.received).toHaveLength(2);
    expect(notifier.stats().destinations.ops?.delivered).toBe(1);
  });

  it("gives up after the attempt bound, counted, and the observer is told", async () => {
    const failed: string[] = [];
    const { scheduler, receiver, notifier } = setup(
      () => ({ kind: "connection", code: "ECONNREFUSED" }),
      {},
      {
        failed: (d, e, why, attempts) => failed.push(`${d} ${e} ${why} ${attempts}`),
      },
    );
    notifier.notify(event("p1"));
    await scheduler.advance(120_000);
    expect(receiver.received).toHaveLength(POLICY.maxAttempts);
    expect(failed).toEqual(["ops payment.indeterminate exhausted 5"]);
    expect(notifier.stats().destinations.ops).toMatchObject({
      exhausted: 1,
      delivered: 0,
      lastResult: "connection ECONNREFUSED",
    });
    expect(scheduler.pendingDelays()).toEqual([]);
  });

  it("does not retry a 4xx", async () => {
    const { scheduler, receiver, notifier } = setup(() => ({ kind: "status", status: 401 }));
    notifier.notify(event("p1"));
    await scheduler.advance(120_000);
    expect(receiver.received).toHaveLength(1);
    expect(notifier.stats().destinations.ops?.rejected).toBe(1);
  });

  it("one delivery in flight per destination; the queue bound holds; drops are counted", async () => {
    const dropped: string[] = [];
    const { receiver, notifier } = setup(
      () => "hold",
      { queueSize: 3 },
      {
        dropped: (d, _e, why) => dropped.push(`${d} ${why}`),
      },
    );
    notifier.notify(event("p0"));
    await settle(); // p0 in flight: it does not count against the queue
    for (let i = 1; i < 10; i++) notifier.notify(event(`p${i}`));
    await settle();
    expect(receiver.inFlight).toBe(1);
    let s = notifier.stats().destinations.ops!;
    expect(s).toMatchObject({ inFlight: 1, queued: 3, droppedQueueFull: 6 });
    expect(dropped).toHaveLength(6);
    for (let i = 0; i < 4; i++) {
      receiver.release(ok);
      await settle();
    }
    expect(receiver.maxInFlight).toBe(1);
    // p0 went out first; p1..p6 were pushed out by newer ones; p7..p9 follow
    expect(
      receiver.received.map(
        (r) => (JSON.parse(r.request.body) as { data: { payment_id: string } }).data.payment_id,
      ),
    ).toEqual(["p0", "p7", "p8", "p9"]);
    s = notifier.stats().destinations.ops!;
    expect(s).toMatchObject({ delivered: 4, queued: 0, inFlight: 0 });
  });

  it("a slow destination does not hold up another", async () => {
    const scheduler = new ManualScheduler(NOW);
    const receiver = new ScriptedReceiver(scheduler, (_n, r) => (r.url.includes("slow") ? "hold" : ok));
    const notifier = new Notifier(
      {
        destinations: [
          { name: "slow", url: "http://127.0.0.1:1/slow", secret: SECRET, timeoutMs: 1000 },
          { name: "fast", url: "http://127.0.0.1:1/fast", secret: SECRET, timeoutMs: 1000 },
        ],
        rules: [{ events: ["payment.indeterminate"], minSeverity: "info" }],
        queueSize: 10,
        dedupWindowMs: 0,
        retry: POLICY,
      },
      { scheduler, transport: receiver, random: () => 0.5 },
    );
    for (let i = 0; i < 3; i++) notifier.notify(event(`p${i}`));
    await settle();
    expect(notifier.stats().destinations.fast?.delivered).toBe(3);
    expect(notifier.stats().destinations.slow).toMatchObject({ delivered: 0, inFlight: 1, queued: 2 });
    const closing = notifier.close(100);
    await scheduler.advance(100);
    expect((await closing).destinations.slow).toMatchObject({ abortedAtShutdown: 1, droppedAtShutdown: 2 });
  });

  it("dedups identical events within the window, and counts unmatched ones", async () => {
    const { scheduler, receiver, notifier } = setup(() => ok);
    notifier.notify(event("p1"));
    notifier.notify(event("p1"));
    notifier.notify(event("p2"));
    notifier.notify(event("p1", { name: "reconcile.mismatch", dedupKey: "x" })); // no rule
    await scheduler.advance(59_999);
    notifier.notify(event("p1"));
    await scheduler.advance(1);
    notifier.notify(event("p1")); // the window ran out
    await settle();
    expect(receiver.received).toHaveLength(3);
    expect(notifier.stats()).toMatchObject({ accepted: 3, deduplicated: 2, unmatched: 1 });
  });

  it("never throws into the caller, even when the observer does", async () => {
    const { receiver, notifier } = setup(
      () => ok,
      { queueSize: 1 },
      {
        dropped: () => {
          throw new Error("observer bug");
        },
        delivered: () => {
          throw new Error("observer bug");
        },
      },
    );
    expect(() => {
      for (let i = 0; i < 5; i++) notifier.notify(event(`p${i}`));
      notifier.notify(null as unknown as NotificationEvent);
    }).not.toThrow();
    await settle();
    expect(receiver.received.length).toBeGreaterThan(0);
    expect(notifier.stats().internalErrors).toBeGreaterThan(0);
  });

  it("close() flushes what is queued, then refuses new events", async () => {
    const { receiver, notifier } = setup(() => ok);
    for (let i = 0; i < 5; i++) notifier.notify(event(`p${i}`));
    const stats = await notifier.close(10_000);
    expect(receiver.received).toHaveLength(5);
    expect(stats.destinations.ops).toMatchObject({ delivered: 5, droppedAtShutdown: 0 });
    expect(receiver.closed).toBe(true);
    notifier.notify(event("late"));
    expect(notifier.stats().droppedClosed).toBe(1);
    expect(await notifier.close()).toBe(stats); // the same close
  });

  it("close() stops at its deadline: the delivery in flight is aborted, the rest dropped, counted", async () => {
    const { scheduler, receiver, notifier } = setup(() => "hold");
    for (let i = 0; i < 4; i++) notifier.notify(event(`p${i}`));
    await settle();
    const closing = notifier.close(2_000);
    await scheduler.advance(1_999);
    expect(receiver.inFlight).toBe(1);
    await scheduler.advance(1);
    const stats = await closing;
    expect(receiver.inFlight).toBe(0);
    expect(stats.destinations.ops).toMatchObject({
      abortedAtShutdown: 1,
      droppedAtShutdown: 3,
      delivered: 0,
      queued: 0,
    });
  });

  it("close() during a backoff wait ends the wait", async () => {
    const { scheduler, receiver, notifier } = setup(() => e500);
    notifier.notify(event("p1"));
    await settle();
    expect(scheduler.pendingDelays()).toEqual([500]);
    const closing = notifier.close(100);
    await scheduler.advance(100);
    const stats = await closing;
    expect(receiver.received).toHaveLength(1);
    expect(stats.destinations.ops).toMatchObject({ abortedAtShutdown: 1 });
  });
});
