import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareDays } from "../../../src/payment/reconcile.js";
import type { PaymentSummary } from "../../../src/ledger/ledger.js";
import { chargeDays, reconcileUsage } from "../../../src/resilience/reconcile-usage.js";
import type { LedgerPayment, ReconcileOptions } from "../../../src/resilience/reconcile-usage.js";
import type { Usage } from "../../../src/resilience/usage-shapes.js";

const BUDGET = { numRuns: 1000, interruptAfterTimeLimit: 3000 };
const WALLET = "GWALLET";
const tx = (c: string) => c.repeat(64);
const at = (iso: string) => Date.parse(iso);
const DAY = "2026-11-28";
const OPTIONS: ReconcileOptions = {
  wallet: WALLET,
  includeUnattributed: false,
  nowMs: at("2026-11-29T12:00:00Z"),
  settleHorizonMs: 300_000,
};
const pay = (
  id: string,
  state: string,
  amount: bigint,
  over: Partial<LedgerPayment> = {},
): LedgerPayment => ({
  paymentId: id,
  state,
  amount,
  startedAtMs: at(`${DAY}T10:00:00Z`),
  payer: WALLET,
  txHashes: [tx(id.slice(-1))],
  ...over,
});

describe("per payment", () => {
  it("an indeterminate payment whose transaction is listed was charged", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 2_800n }],
      payments: [
        { tx: tx("a"), amountAtomic: 1_400n, date: DAY },
        { tx: tx("b"), amountAtomic: 1_400n, date: DAY },
      ],
    };
    const r = reconcileUsage(
      [pay("pa", "settled", 1_400n), pay("pb", "indeterminate", 1_400n)],
      usage,
      OPTIONS,
    );
    expect(r.resolutions).toEqual([
      { paymentId: "pb", charged: true, because: "its transaction is listed in the usage" },
    ]);
    expect(r.payments.map((p) => [p.paymentId, p.finding])).toEqual([
      ["pa", "charged"],
      ["pb", "charged"],
    ]);
    expect(r.days).toEqual([
      {
        date: DAY,
        mode: "per_payment",
        ledgerSettled: 2_800n,
        ledgerIndeterminate: 0n,
        upstream: 2_800n,
        difference: 0n,
        status: "match",
        indeterminate: [],
        unmatchedUpstream: 0,
      },
    ]);
  });

  it("a listed charge proves itself even when the day's list is incomplete", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 9_999n }],
      payments: [{ tx: tx("b"), amountAtomic: 1_400n, date: DAY }],
    };
    const r = reconcileUsage([pay("pb", "indeterminate", 1_400n)], usage, OPTIONS);
    expect(r.resolutions.map((x) => [x.paymentId, x.charged])).toEqual([["pb", true]]);
    expect(r.days[0]?.mode).toBe("per_day");
  });

  it("an indeterminate payment absent from a complete, fully matched day was not charged", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 1_400n }],
      payments: [{ tx: tx("a"), amountAtomic: 1_400n, date: DAY }],
    };
    const r = reconcileUsage(
      [pay("pa", "settled", 1_400n), pay("pb", "indeterminate", 1_800n)],
      usage,
      OPTIONS,
    );
    expect(r.resolutions).toEqual([
      { paymentId: "pb", charged: false, because: `absent from the complete usage of ${DAY}` },
    ]);
    expect(r.days[0]).toMatchObject({
      mode: "per_payment",
      status: "match",
      ledgerSettled: 1_400n,
      indeterminate: [],
    });
  });

  it("a listed charge the ledger cannot match is never read as 'absent' (it may be that one, rehashed)", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 3_200n }],
      payments: [
        { tx: tx("a"), amountAtomic: 1_400n, date: DAY },
        { tx: tx("f"), amountAtomic: 1_800n, date: DAY },
      ],
    };
    const r = reconcileUsage(
      [pay("pa", "settled", 1_400n), pay("pb", "indeterminate", 1_800n)],
      usage,
      OPTIONS,
    );
    expect(r.payments.find((p) => p.paymentId === "pb")?.finding).toBe("unknown");
    expect(r.unmatchedUpstream).toEqual([{ tx: tx("f"), amountAtomic: 1_800n, date: DAY }]);
    // The day's numbers still speak: settled + all indeterminate = the day's total.
    expect(r.days[0]).toMatchObject({
      mode: "per_payment",
      status: "all_indeterminate_charged",
      unmatchedUpstream: 1,
    });
    expect(r.resolutions).toEqual([
      {
        paymentId: "pb",
        charged: true,
        because: `the usage of ${DAY} equals settled plus all indeterminate`,
      },
    ]);
  });

  it("a charge without a hash counts as unmatched: the absent payment is not declared uncharged", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 1_000n }],
      payments: [{ tx: null, amountAtomic: 1_000n, date: DAY }],
    };
    const r = reconcileUsage([pay("pb", "indeterminate", 1_800n)], usage, OPTIONS);
    expect(r.payments[0]?.finding).toBe("unknown");
    expect(r.resolutions).toEqual([]); // and the day's numbers (1 000 vs 1 800) decide nothing
  });

  it("an amount that differs resolves nothing and says so", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 1_000n }],
      payments: [{ tx: tx("b"), amountAtomic: 1_000n, date: DAY }],
    };
    const r = reconcileUsage([pay("pb", "indeterminate", 1_400n)], usage, OPTIONS);
    expect(r.resolutions).toEqual([]);
    expect(r.payments[0]).toMatchObject({
      finding: "amount_differs",
      reason: "listed with 1000, the ledger says 1400",
    });
  });

  it("too recent to be sure: not resolved as not charged", () => {
    const usage: Usage = { days: [{ date: DAY, spentAtomic: 0n }], payments: [] };
    const recent = pay("pb", "indeterminate", 1_400n, { startedAtMs: at(`${DAY}T10:00:00Z`) });
    expect(
      reconcileUsage([recent], usage, { ...OPTIONS, nowMs: at(`${DAY}T10:02:00Z`) }).resolutions,
    ).toEqual([]);
    expect(
      reconcileUsage([recent], usage, { ...OPTIONS, nowMs: at(`${DAY}T10:05:00Z`) }).resolutions,
    ).toHaveLength(1);
  });

  it("started just before midnight: the next day must be in the answer too", () => {
    const late = pay("pb", "indeterminate", 1_400n, { startedAtMs: at(`${DAY}T23:58:00Z`) });
    expect(chargeDays(late.startedAtMs, 300_000)).toEqual([DAY, "2026-11-29"]);
    const oneDay: Usage = { days: [{ date: DAY, spentAtomic: 0n }], payments: [] };
    expect(reconcileUsage([late], oneDay, OPTIONS).resolutions).toEqual([]);
    const both: Usage = {
      days: [
        { date: DAY, spentAtomic: 0n },
        { date: "2026-11-29", spentAtomic: 0n },
      ],
      payments: [],
    };
    expect(reconcileUsage([late], both, OPTIONS).resolutions).toMatchObject([{ charged: false }]);
  });

  it("a settled payment absent from a complete day is flagged, not changed", () => {
    const usage: Usage = { days: [{ date: DAY, spentAtomic: 0n }], payments: [] };
    const r = reconcileUsage([pay("pa", "settled", 1_400n)], usage, OPTIONS);
    expect(r.resolutions).toEqual([]);
    expect(r.payments[0]?.finding).toBe("missing_upstream");
    expect(r.days[0]?.status).toBe("mismatch");
  });

  it("a hash known from any row matches (the signed transaction's or the receipt's)", () => {
    const usage: Usage = {
      days: [{ date: DAY, spentAtomic: 1_400n }],
      payments: [{ tx: tx("e"), amountAtomic: 1_400n, date: DAY }],
    };
    const p = pay("pb", "indeterminate", 1_400n, { txHashes: [tx("d"), tx("E")] });
    expect(reconcileUsage([p], usage, OPTIONS).resolutions).toMatchObject([{ charged: true }]);
  });
});

describe("the wallet that paid", () => {
  const usage: Usage = { days: [{ date: DAY, spentAtomic: 1_400n }] };
  it.each([
    ["its own payments count", WALLET, false, "match"],
    ["another wallet's payments do not", "GOTHER", false, "mismatch"],
    ["rows without a payer do not, by default", null, false, "mismatch"],
    ["rows without a payer do when the ledger only had this wallet", null, true, "match"],
  ])("%s", (_name, payer, includeUnattributed, status) => {
    const r = reconcileUsage([pay("pa", "settled", 1_400n, { payer })], usage, {
      ...OPTIONS,
      includeUnattributed,
    });
    expect(r.days[0]?.status).toBe(status);
  });
});

describe("per day (the fallback)", () => {
  const day = (spent: bigint): Usage => ({ days: [{ date: DAY, spentAtomic: spent }] });
  const ledger = [
    pay("pa", "settled", 1_400n),
    pay("pb", "indeterminate", 1_800n),
    pay("pc", "rejected", 999n),
  ];
  it.each([
    ["settled alone: none of the indeterminate was charged", 1_400n, "no_indeterminate_charged", false],
    ["settled + all indeterminate: all were", 3_200n, "all_indeterminate_charged", true],
    ["anything else is a mismatch", 2_000n, "mismatch", null],
  ])("%s", (_name, spent, status, charged) => {
    const r = reconcileUsage(ledger, day(spent), OPTIONS);
    expect(r.days[0]).toMatchObject({
      mode: "per_day",
      status,
      indeterminate: ["pb"],
      ledgerIndeterminate: 1_800n,
    });
    expect(r.resolutions.map((x) => x.charged)).toEqual(charged === null ? [] : [charged]);
  });

  it("a day with no payments in the ledger and none upstream matches", () => {
    expect(reconcileUsage([], day(0n), OPTIONS).days[0]?.status).toBe("match");
  });

  it("a payment whose charge may fall on the next day is not resolved from one day's numbers", () => {
    const late = [pay("pb", "indeterminate", 1_800n, { startedAtMs: at(`${DAY}T23:59:00Z`) })];
    expect(reconcileUsage(late, day(0n), OPTIONS).resolutions).toEqual([]);
  });

  it("gives the same day statuses as today's per-day compare, when no payments are listed", () => {
    const entry = fc.record({
      id: fc.nat({ max: 30 }),
      state: fc.constantFrom("settled", "indeterminate", "rejected", "failed"),
      amount: fc.bigInt({ min: 0n, max: 5_000n }),
      dayOffset: fc.nat({ max: 3 }),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(entry, { selector: (e) => e.id, maxLength: 12 }),
        fc.array(fc.bigInt({ min: 0n, max: 20_000n }), { minLength: 4, maxLength: 4 }),
        (entries, spent) => {
          const dates = [0, 1, 2, 3].map((i) =>
            new Date(at("2026-11-25T00:00:00Z") + i * 86_400_000).toISOString().slice(0, 10),
          );
          const usage: Usage = { days: dates.map((date, i) => ({ date, spentAtomic: spent[i] as bigint })) };
          const mine: LedgerPayment[] = entries.map((e) => ({
            paymentId: `p${e.id}`,
            state: e.state,
            amount: e.amount,
            startedAtMs: at("2026-11-25T12:00:00Z") + e.dayOffset * 86_400_000,
            payer: WALLET,
            txHashes: [],
          }));
          const summaries = mine.map(
            (p) => ({ ...p, startedAtMs: p.startedAtMs }) as unknown as PaymentSummary,
          );
          const old = compareDays(summaries, usage.days);
          const now = reconcileUsage(mine, usage, { ...OPTIONS, nowMs: at("2026-12-01T00:00:00Z") });
          expect(now.days.map((d) => [d.date, d.status, d.difference, d.indeterminate])).toEqual(
            old.map((d) => [d.date, d.status, d.difference, d.indeterminate]),
          );
        },
      ),
      BUDGET,
    );
  });
});
