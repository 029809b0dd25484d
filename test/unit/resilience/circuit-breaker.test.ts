import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CircuitBreaker,
  CircuitBreakers,
  DEFAULT_CIRCUIT,
  checkCircuitSettings,
  verdictFor,
} from "../../../src/resilience/circuit-breaker.js";
import type {
  CircuitCheck,
  CircuitSettings,
  CircuitTicket,
} from "../../../src/resilience/circuit-breaker.js";

const BUDGET = { numRuns: 1000, interruptAfterTimeLimit: 3000 };
const SETTINGS: CircuitSettings = {
  failureThreshold: 3,
  windowMs: 10_000,
  coolDownMs: 5_000,
  probeTimeoutMs: 20_000,
};

function admitted(c: CircuitCheck): CircuitTicket {
  if (!c.allow) throw new Error(`expected the payment to be allowed, got: ${c.reason}`);
  return c.ticket;
}

/** A breaker tripped at t = 3 by three failures. */
function tripped(): CircuitBreaker {
  const b = new CircuitBreaker("store", SETTINGS);
  for (let t = 1; t <= 3; t++) b.recordFailure(admitted(b.check(t)), t, "second 402: insufficient balance");
  return b;
}

describe("closed → open", () => {
  it("opens after N failures within the window, and says so once", () => {
    const b = new CircuitBreaker("store", SETTINGS);
    expect(b.recordFailure(admitted(b.check(0)), 0, "second 402")).toBeNull();
    expect(b.recordFailure(admitted(b.check(1)), 1, "indeterminate: upstream_5xx")).toBeNull();
    const t = b.recordFailure(admitted(b.check(2)), 2, "indeterminate: timeout");
    expect(t).toEqual({
      route: "store",
      from: "closed",
      to: "open",
      atMs: 2,
      reason: "3 payment failures within 10 s; last: indeterminate: timeout",
    });
    expect(b.snapshot(2)).toMatchObject({ state: "open", recentFailures: 3, openUntilMs: 5_002, opened: 1 });
  });

  it("failures older than the window do not count", () => {
    const b = new CircuitBreaker("store", SETTINGS);
    b.recordFailure(admitted(b.check(0)), 0, "x");
    b.recordFailure(admitted(b.check(5_000)), 5_000, "x");
    // The failure at 0 is 10 s old: out of the window (now − 10 s, now].
    expect(b.recordFailure(admitted(b.check(10_000)), 10_000, "x")).toBeNull();
    expect(b.snapshot(10_000)).toMatchObject({ state: "closed", recentFailures: 2 });
    expect(b.snapshot(15_000)).toMatchObject({ state: "closed", recentFailures: 1 });
    expect(b.recordFailure(admitted(b.check(10_002)), 10_002, "x")?.to).toBe("open");
  });

  it("successes do not erase failures; the window does", () => {
    const b = new CircuitBreaker("store", SETTINGS);
    b.recordFailure(admitted(b.check(0)), 0, "x");
    b.recordFailure(admitted(b.check(1)), 1, "x");
    expect(b.recordSuccess(admitted(b.check(2)), 2)).toBeNull();
    expect(b.recordFailure(admitted(b.check(3)), 3, "x")?.to).toBe("open");
  });

  it("a threshold of 1 opens on the first failure", () => {
    const b = new CircuitBreaker("store", { ...SETTINGS, failureThreshold: 1 });
    expect(b.recordFailure(admitted(b.check(0)), 0, "x")?.to).toBe("open");
  });
});

describe("open", () => {
  it("refuses with the reason and how long, until the cool-down ends", () => {
    const b = tripped();
    const c = b.check(1_000);
    expect(c).toMatchObject({ allow: false, state: "open", retryAfterSeconds: 5 });
    expect(!c.allow && c.reason).toBe(
      "payments on route store are paused after 3 payment failures within 10 s; last failure: second 402: insufficient balance",
    );
    expect(b.check(5_002)).toMatchObject({ allow: false, state: "open", retryAfterSeconds: 1 });
    expect(b.check(5_003)).toMatchObject({ allow: true, ticket: { probe: true } });
  });

  it("reports from payments admitted before the trip change nothing", () => {
    const b = new CircuitBreaker("store", SETTINGS);
    const early = admitted(b.check(0));
    for (let t = 1; t <= 3; t++) b.recordFailure(admitted(b.check(t)), t, "x");
    expect(b.recordSuccess(early, 10)).toBeNull();
    expect(b.recordFailure(early, 10, "late")).toBeNull();
    expect(b.snapshot(10).state).toBe("open");
  });
});

describe("half-open", () => {
  it("lets exactly one probe through and says it moved", () => {
    const b = tripped();
    const probe = b.check(5_003);
    expect(probe).toMatchObject({
      allow: true,
      ticket: { probe: true },
      transition: { from: "open", to: "half_open" },
    });
    const other = b.check(5_004);
    expect(other).toMatchObject({ allow: false, state: "half_open" });
    expect(!other.allow && other.reason).toMatch(/one probe payment is testing the route/);
  });

  it("the probe's success closes the circuit and clears the failures", () => {
    const b = tripped();
    const probe = admitted(b.check(5_003));
    expect(b.recordSuccess(probe, 5_100)).toMatchObject({
      from: "half_open",
      to: "closed",
      reason: "the probe payment settled",
    });
    expect(b.snapshot(5_100)).toMatchObject({ state: "closed", recentFailures: 0 });
    expect(b.recordFailure(admitted(b.check(5_200)), 5_200, "x")).toBeNull(); // counting starts over
  });

  it("the probe's failure re-opens for another cool-down", () => {
    const b = tripped();
    const probe = admitted(b.check(5_003));
    expect(b.recordFailure(probe, 5_100, "second 402: expired")).toMatchObject({
      from: "half_open",
      to: "open",
    });
    expect(b.check(10_099)).toMatchObject({ allow: false, state: "open" });
    expect(b.check(10_100)).toMatchObject({ allow: true, ticket: { probe: true } });
    expect(b.snapshot(10_100).opened).toBe(2);
  });

  it("a probe that paid nothing frees the slot", () => {
    const b = tripped();
    const probe = admitted(b.check(5_003));
    b.record(probe, "neutral", 5_010, "refused: budget exceeded");
    expect(b.check(5_020)).toMatchObject({ allow: true, ticket: { probe: true } });
  });

  it("a probe that never reports frees the slot after the probe timeout; its late report is ignored", () => {
    const b = tripped();
    const lost = admitted(b.check(5_003));
    expect(b.check(25_002).allow).toBe(false);
    const next = admitted(b.check(25_003));
    expect(next.probe).toBe(true);
    expect(b.recordSuccess(lost, 25_010)).toBeNull();
    expect(b.snapshot(25_010).state).toBe("half_open");
    expect(b.recordSuccess(next, 25_020)?.to).toBe("closed");
  });

  it("only the probe decides: other tickets' reports are ignored", () => {
    const b = new CircuitBreaker("store", SETTINGS);
    const before = admitted(b.check(0));
    for (let t = 1; t <= 3; t++) b.recordFailure(admitted(b.check(t)), t, "x");
    admitted(b.check(5_003));
    expect(b.recordSuccess(before, 5_010)).toBeNull();
    expect(b.recordFailure(before, 5_010, "x")).toBeNull();
    expect(b.snapshot(5_010).state).toBe("half_open");
  });

  it("after closing, a failure from a payment admitted before the trip does not count", () => {
    const b = new CircuitBreaker("store", { ...SETTINGS, failureThreshold: 1 });
    const before = admitted(b.check(0));
    b.recordFailure(admitted(b.check(0)), 0, "x");
    b.recordSuccess(admitted(b.check(5_000)), 5_000);
    expect(b.recordFailure(before, 5_001, "late")).toBeNull();
    expect(b.snapshot(5_001).state).toBe("closed");
  });
});

describe("verdicts", () => {
  it.each([
    [{ outcome: "settled" }, "success"],
    [{ outcome: "settled_no_receipt" }, "success"],
    [{ outcome: "rejected", secondChallenge: true }, "failure"],
    [{ outcome: "indeterminate" }, "failure"],
    [{ outcome: "rejected", secondChallenge: false }, "neutral"],
    [{ outcome: "refused" }, "neutral"],
    [{ outcome: "failed" }, "neutral"],
  ] as const)("%j → %s", (outcome, verdict) => {
    expect(verdictFor(outcome)).toBe(verdict);
  });
});

describe("settings and registry", () => {
  it.each([
    [{ ...SETTINGS, failureThreshold: 0 }, /threshold/],
    [{ ...SETTINGS, failureThreshold: 1.5 }, /threshold/],
    [{ ...SETTINGS, windowMs: 0 }, /window/],
    [{ ...SETTINGS, coolDownMs: Number.NaN }, /cool-down/],
    [{ ...SETTINGS, probeTimeoutMs: -1 }, /probe/],
  ])("%j is refused", (s, message) => {
    expect(checkCircuitSettings(s)).toMatch(message);
    expect(() => new CircuitBreaker("store", s)).toThrow(RangeError);
  });

  it("the defaults are valid; one breaker per route, enumerable for metrics", () => {
    expect(checkCircuitSettings(DEFAULT_CIRCUIT)).toBeNull();
    const all = new CircuitBreakers((route) =>
      route === "store" ? { ...SETTINGS, failureThreshold: 1 } : SETTINGS,
    );
    expect(all.for("store")).toBe(all.for("store"));
    all.for("store").recordFailure(admitted(all.for("store").check(0)), 0, "x");
    all.for("retrieve");
    expect(all.snapshots(1).map((s) => [s.route, s.state])).toEqual([
      ["store", "open"],
      ["retrieve", "closed"],
    ]);
    expect(all.snapshots(6_000).map((s) => s.state)).toEqual(["half_open", "closed"]);
  });
});

describe("properties", () => {
  type Op = { kind: "check" } | { kind: "report"; which: number; verdict: "success" | "failure" | "neutral" };
  const op = fc.oneof(
    fc.constant<Op>({ kind: "check" }),
    fc.record({
      kind: fc.constant("report" as const),
      which: fc.nat({ max: 20 }),
      verdict: fc.constantFrom("success" as const, "failure" as const, "neutral" as const),
    }),
  );

  it("never two live probes at once; never a payment while open; only a probe closes the circuit", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(op, fc.integer({ min: 0, max: 3_000 })), { maxLength: 200 }), (ops) => {
        const b = new CircuitBreaker("store", SETTINGS);
        const tickets: CircuitTicket[] = [];
        let liveProbe: { id: number; since: number } | null = null;
        let now = 0;
        for (const [o, gap] of ops) {
          now += gap;
          const before = b.snapshot(now);
          if (o.kind === "check") {
            const c = b.check(now);
            if (before.state === "open") expect(c.allow).toBe(false);
            if (c.allow) {
              tickets.push(c.ticket);
              if (c.ticket.probe) {
                if (liveProbe) expect(now - liveProbe.since).toBeGreaterThanOrEqual(SETTINGS.probeTimeoutMs);
                liveProbe = { id: c.ticket.id, since: now };
              }
            }
          } else if (tickets.length > 0) {
            const t = tickets[o.which % tickets.length] as CircuitTicket;
            const probeId = (liveProbe as { id: number } | null)?.id;
            const moved = b.record(t, o.verdict, now, "x");
            if (moved?.to === "closed") expect(t.probe && t.id === probeId).toBe(true);
            if (t.id === probeId && (moved || o.verdict === "neutral")) liveProbe = null;
          }
        }
      }),
      BUDGET,
    );
  });
});
