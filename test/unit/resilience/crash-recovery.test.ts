import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planRecovery, recoveryFor } from "../../../src/resilience/crash-recovery.js";
import type { RecoveryRow } from "../../../src/resilience/crash-recovery.js";

const BUDGET = { numRuns: 2000, interruptAfterTimeLimit: 3000 };
const rows = (...states: (string | [string, number])[]): RecoveryRow[] =>
  states.map((s) => (Array.isArray(s) ? { state: s[0], upstreamStatus: s[1] } : { state: s }));

describe("what a restart does with a payment left open", () => {
  it.each([
    ["reserved only: never signed", rows("reserved"), "release"],
    ["signed, never handed to the socket", rows("reserved", "signed"), "release"],
    ["handed to the socket: may have been sent", rows("reserved", "signed", "sent"), "indeterminate"],
    [
      "a ledger from before the marker: sent meant signed-and-about-to-send",
      rows("reserved", "sent"),
      "indeterminate",
    ],
    [
      "every send answered 429, waiting to resend",
      rows("reserved", "signed", "sent", ["throttled", 429]),
      "release",
    ],
    [
      "two sends, both answered 429",
      rows("reserved", "signed", "sent", ["throttled", 429], "sent", ["throttled", 429]),
      "release",
    ],
    [
      "resent after a 429, the resend unanswered",
      rows("reserved", "signed", "sent", ["throttled", 429], "sent"),
      "indeterminate",
    ],
    [
      "a send answered 503, waiting to resend",
      rows("reserved", "signed", "sent", ["throttled", 503]),
      "indeterminate",
    ],
    [
      "503 then 429",
      rows("reserved", "signed", "sent", ["throttled", 503], "sent", ["throttled", 429]),
      "indeterminate",
    ],
    ["a throttled row without its status", rows("reserved", "signed", "sent", "throttled"), "indeterminate"],
    ["an answer with no send before it", rows("reserved", "signed", ["throttled", 429]), "indeterminate"],
    [
      "two answers to one send",
      rows("reserved", "sent", ["throttled", 429], ["throttled", 429]),
      "indeterminate",
    ],
    [
      "two sends, only the second answered",
      rows("reserved", "sent", "sent", ["throttled", 429]),
      "indeterminate",
    ],
    ["a state this version does not know", rows("reserved", "signed", "launched"), "indeterminate"],
    ["an unknown state before signing is not trusted either", rows("reserved", "queued"), "indeterminate"],
    ["settled: nothing to do", rows("reserved", "signed", "sent", "settled"), "keep"],
    ["rejected: nothing to do", rows("reserved", "signed", "sent", "rejected"), "keep"],
    ["failed: nothing to do", rows("reserved", "failed"), "keep"],
    ["already indeterminate: nothing to do", rows("reserved", "sent", "indeterminate"), "keep"],
    ["no rows", rows(), "keep"],
  ])("%s → %s", (_name, given, action) => {
    expect(recoveryFor(given).action).toBe(action);
  });

  it("says why, for the ledger row", () => {
    expect(recoveryFor(rows("reserved"))).toEqual({
      action: "release",
      reason: "interrupted before signing; nothing was signed or sent",
    });
    expect(recoveryFor(rows("reserved", "signed"))).toMatchObject({
      reason:
        "interrupted after signing and before the payment header was handed to the socket; nothing was sent",
    });
    expect(recoveryFor(rows("reserved", "sent"))).toMatchObject({
      reason: "interrupted after the payment header was handed to the socket; the outcome is unknown",
    });
  });

  it("the kill -9 run of the issue: 31 payments still reserved, 43 400 atomic, are all released", () => {
    const open = Array.from({ length: 31 }, (_, i) => ({
      paymentId: `p${i}`,
      amount: 1_400n,
      rows: rows("reserved"),
    }));
    const plan = planRecovery(open);
    expect(plan.release).toHaveLength(31);
    expect(plan.releasedAtomic).toBe(43_400n);
    expect(plan.indeterminate).toEqual([]);
    expect(plan.heldAtomic).toBe(0n);
  });

  it("a mixed restart: only what may have been sent stays held", () => {
    const plan = planRecovery([
      { paymentId: "a", amount: 1_400n, rows: rows("reserved") },
      { paymentId: "b", amount: 1_800n, rows: rows("reserved", "signed") },
      { paymentId: "c", amount: 410_600n, rows: rows("reserved", "signed", "sent") },
      { paymentId: "d", amount: 1_000n, rows: rows("reserved", "signed", "sent", "settled") },
    ]);
    expect(plan.release.map((p) => p.paymentId)).toEqual(["a", "b"]);
    expect(plan.indeterminate.map((p) => p.paymentId)).toEqual(["c"]);
    expect([plan.releasedAtomic, plan.heldAtomic]).toEqual([3_200n, 410_600n]);
  });
});

describe("properties", () => {
  // Mostly the open states, so sequences of sends and answers get explored.
  const state = fc.oneof(
    { arbitrary: fc.constantFrom("reserved", "signed", "sent", "throttled"), weight: 8 },
    { arbitrary: fc.constantFrom("settled", "rejected", "failed", "indeterminate", "other"), weight: 1 },
  );
  const row = fc.record({ state, upstreamStatus: fc.constantFrom(429, 503, null) });

  it("a payment with a `sent` row and no final row is never released unless every send was answered 429", () => {
    fc.assert(
      fc.property(fc.array(row, { maxLength: 12 }), (rs) => {
        const a = recoveryFor(rs);
        const last = rs[rs.length - 1];
        const final = last && ["settled", "rejected", "failed", "indeterminate"].includes(last.state);
        if (final || rs.length === 0) {
          expect(a.action).toBe("keep");
          return;
        }
        if (a.action !== "release") return;
        expect(rs.every((r) => ["reserved", "signed", "sent", "throttled"].includes(r.state))).toBe(true);
        // Every send is followed by its own 429 answer, and every answer follows a send.
        let open = false;
        for (const r of rs) {
          if (r.state === "sent") {
            expect(open).toBe(false);
            open = true;
          }
          if (r.state === "throttled") {
            expect(open).toBe(true);
            expect(r.upstreamStatus).toBe(429);
            open = false;
          }
        }
        expect(open).toBe(false);
      }),
      BUDGET,
    );
  });
});
