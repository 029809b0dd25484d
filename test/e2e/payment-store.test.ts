import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bucketEnd, bucketStart } from "../../src/budget/budget.js";
import type { Budget, BudgetLimit, CalendarUnit, Period } from "../../src/config/config.js";
import type { LedgerRow } from "../../src/ledger/entry.js";
import type { PaymentSummary } from "../../src/ledger/ledger.js";
import { UnknownPayment } from "../../src/store/payment-store.js";
import type { LaterState, OpenResult, PaymentFacts, PaymentStore } from "../../src/store/payment-store.js";
import {
  INTERRUPTED_REASON,
  LEASE_EXPIRED_REASON,
  NEVER_SENT_REASON,
} from "../../src/store/payment-transitions.js";
import { STORE_KINDS, makePlace } from "../support/payment-stores.js";
import type { StoreKind, StorePlace } from "../support/payment-stores.js";

/**
 * The payment store contract, run against both implementations (a SQLite file, a PostgreSQL
 * database): reservations per period kind with an injected clock, several budgets at once,
 * every transition and its budget step, leases, recovery, the chain and its tamper checks.
 */
const P = 1000n;
// Monday 31 March 2025, 22:15 UTC: the last day of a month, late, so the next hour, day, week
// and month buckets all start at different times.
const T0 = Date.UTC(2025, 2, 31, 22, 15);
const MINUTE = 60_000;
const DAY = 86_400_000;

function facts(paymentId: string, amount = P): PaymentFacts {
  return {
    paymentId,
    requestId: `req-${paymentId}`,
    client: "app",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store?api_key=0123456789abcdef0123456789abcdef",
    amount,
    payTo: "GPAYEE",
    asset: "USDC",
    network: "stellar:testnet",
  };
}

function budget(name: string, limits: [Period, bigint][]): Budget {
  return { name, match: {}, limits: limits.map(([period, amount]) => ({ period, amount })) };
}

const cal = (unit: CalendarUnit): Period => ({ kind: "calendar", unit });
const limitOf = (b: Budget, i = 0) => b.limits[i] as BudgetLimit;

function open(
  store: PaymentStore,
  id: string,
  budgets: Budget[],
  nowMs: number,
  opts: { leaseMs?: number; amount?: bigint } = {},
): Promise<OpenResult> {
  return store.open({
    payment: facts(id, opts.amount ?? P),
    budgets,
    nowMs,
    leaseUntilMs: nowMs + (opts.leaseMs ?? 10 * MINUTE),
  });
}

async function mustOpen(store: PaymentStore, id: string, budgets: Budget[], nowMs: number, leaseMs?: number) {
  const r = await open(store, id, budgets, nowMs, leaseMs === undefined ? {} : { leaseMs });
  if (!r.ok) throw new Error(`${id} was refused: ${JSON.stringify(r.denial, (_k, v: unknown) => String(v))}`);
  return r.row;
}

function change(
  store: PaymentStore,
  paymentId: string,
  state: LaterState,
  atMs: number,
  tx: string | null = null,
) {
  return store.record({
    paymentId,
    state,
    atMs,
    tx,
    upstreamStatus: state === "sent" ? null : 200,
    reason: null,
  });
}

async function latestOf(store: PaymentStore): Promise<Map<string, PaymentSummary>> {
  return new Map((await store.latest()).map((r) => [r.paymentId, r]));
}

async function allRows(store: PaymentStore, sinceMs?: number): Promise<LedgerRow[]> {
  const out: LedgerRow[] = [];
  for await (const r of store.rows(sinceMs)) out.push(r);
  return out;
}

describe.each(STORE_KINDS)("payment store contract (%s)", (kind: StoreKind) => {
  let place: StorePlace;
  let store: PaymentStore;

  beforeEach(async () => {
    place = await makePlace(kind);
    store = await place.open();
  });
  afterEach(async () => {
    await store.close();
    await place.drop();
  });

  it.each(["hour", "day", "week", "month"] as const)(
    "a %s limit: fits until full, refuses within the bucket, frees at the next bucket",
    async (unit) => {
      const b = budget(`per-${unit}`, [[cal(unit), 3n * P]]);
      const start = bucketStart(unit, T0);
      const next = bucketEnd(unit, start);
      for (let i = 0; i < 3; i++) await mustOpen(store, `${unit}-${i}`, [b], T0 + i);
      const full = await open(store, `${unit}-full`, [b], T0 + 10);
      expect(full).toEqual({
        ok: false,
        denial: { budget: b.name, period: unit, limit: 3n * P, spent: 3n * P, price: P },
      });
      expect((await open(store, `${unit}-last-ms`, [b], next - 1)).ok).toBe(false);
      expect((await open(store, `${unit}-next`, [b], next)).ok).toBe(true);
      expect(await store.used(b, limitOf(b), T0)).toBe(3n * P);
      expect(await store.used(b, limitOf(b), next)).toBe(P);
      // Refusals leave no row: 3 + 1 reservations.
      expect((await store.head())?.seq).toBe(4);
    },
  );

  it("a rolling window counts what is strictly inside it", async () => {
    const b = budget("rolling", [[{ kind: "rolling", seconds: 60 }, 2n * P]]);
    await mustOpen(store, "r0", [b], T0);
    await mustOpen(store, "r1", [b], T0 + 30_000);
    const denied = await open(store, "r2", [b], T0 + 59_999);
    expect(denied).toMatchObject({ ok: false, denial: { period: "rolling_60s", spent: 2n * P } });
    // r0 leaves the window 60 s after it was made.
    await mustOpen(store, "r3", [b], T0 + 60_000);
    expect(await store.used(b, limitOf(b), T0 + 90_000)).toBe(P);
  });

  it("a price above the limit is refused with nothing spent", async () => {
    const b = budget("small", [[cal("day"), P - 1n]]);
    expect(await open(store, "big", [b], T0)).toEqual({
      ok: false,
      denial: { budget: "small", period: "day", limit: P - 1n, spent: 0n, price: P },
    });
    expect(await store.head()).toBeNull();
  });

  it("several budgets at once: all or nothing, the denial names the limit that stopped it", async () => {
    const t = Date.UTC(2025, 4, 14, 10);
    const team = budget("team", [[cal("day"), 10n * P]]);
    const app = budget("app", [
      [cal("day"), 2n * P],
      [cal("month"), 3n * P],
    ]);
    const tagged = budget("tagged", []);
    const all = [team, app, tagged];
    await mustOpen(store, "m1", all, t);
    await mustOpen(store, "m2", all, t + 1);
    expect(await open(store, "m3", all, t + 2)).toEqual({
      ok: false,
      denial: { budget: "app", period: "day", limit: 2n * P, spent: 2n * P, price: P },
    });
    // The refused reservation left nothing in the budget it did fit.
    expect(await store.used(team, limitOf(team), t + 2)).toBe(2n * P);
    await mustOpen(store, "m4", [team], t + 3);
    await mustOpen(store, "m5", all, t + DAY);
    expect(await open(store, "m6", all, t + DAY + 1)).toMatchObject({
      ok: false,
      denial: { budget: "app", period: "month", limit: 3n * P, spent: 3n * P },
    });
    expect(await store.used(team, limitOf(team), t + DAY)).toBe(P);
    expect(await store.reserved(tagged)).toBe(3n * P);
    expect(await store.reserved(team)).toBe(4n * P);
    expect([...(await latestOf(store)).keys()]).toEqual(["m1", "m2", "m4", "m5"]);
  });

  it("every transition moves the budget with its row", async () => {
    const b = budget("flow", [[cal("day"), 100n * P]]);
    const used = () => store.used(b, limitOf(b), T0);
    await mustOpen(store, "s", [b], T0);
    await change(store, "s", "sent", T0 + 1, "tx-s");
    expect(await store.reserved(b)).toBe(P);
    await change(store, "s", "settled", T0 + 2, "tx-s");
    expect(await store.reserved(b)).toBe(0n);
    expect(await used()).toBe(P);

    await mustOpen(store, "r", [b], T0);
    await change(store, "r", "sent", T0 + 1);
    await change(store, "r", "rejected", T0 + 2);
    await mustOpen(store, "f", [b], T0);
    await change(store, "f", "failed", T0 + 1);
    expect(await used()).toBe(P);

    await mustOpen(store, "i", [b], T0);
    await change(store, "i", "sent", T0 + 1, "tx-i");
    await change(store, "i", "indeterminate", T0 + 2, "tx-i");
    expect(await used()).toBe(2n * P);
    expect(await store.reserved(b)).toBe(0n);
    expect(await store.indeterminateCount()).toBe(1);

    // Reconciliation: not charged → given back; asked again → nothing happens.
    const freed = await store.resolveIndeterminate({
      paymentId: "i",
      charged: false,
      atMs: T0 + 3,
      reason: "usage says no",
    });
    expect(freed).toMatchObject({ paymentId: "i", state: "rejected", tx: "tx-i", reason: "usage says no" });
    expect(await used()).toBe(P);
    const head = await store.head();
    expect(
      await store.resolveIndeterminate({ paymentId: "i", charged: false, atMs: T0 + 4, reason: "again" }),
    ).toBeNull();
    expect(
      await store.resolveIndeterminate({ paymentId: "s", charged: false, atMs: T0 + 4, reason: "settled" }),
    ).toBeNull();
    expect(await store.head()).toEqual(head);

    // Charged → stays spent.
    await mustOpen(store, "c", [b], T0);
    await change(store, "c", "indeterminate", T0 + 1);
    await store.resolveIndeterminate({
      paymentId: "c",
      charged: true,
      atMs: T0 + 2,
      reason: "usage says yes",
    });
    expect(await used()).toBe(2n * P);
    expect(await store.indeterminateCount()).toBe(0);

    const latest = await latestOf(store);
    expect([...latest].map(([id, r]) => `${id}:${r.state}`)).toEqual([
      "s:settled",
      "r:rejected",
      "f:failed",
      "i:rejected",
      "c:settled",
    ]);
    expect(latest.get("i")?.startedAtMs).toBe(T0);
  });

  it("a second release gives nothing back twice (never below zero)", async () => {
    const b = budget("twice", [[cal("day"), 10n * P]]);
    await mustOpen(store, "a", [b], T0);
    await mustOpen(store, "b", [b], T0);
    await change(store, "a", "rejected", T0 + 1);
    await change(store, "a", "rejected", T0 + 2);
    await change(store, "a", "failed", T0 + 3);
    expect(await store.used(b, limitOf(b), T0)).toBe(P);
  });

  it("unknown and duplicate payments are refused without a row", async () => {
    const b = budget("dup", [[cal("day"), 10n * P]]);
    await mustOpen(store, "d", [b], T0);
    await expect(change(store, "nope", "settled", T0)).rejects.toBeInstanceOf(UnknownPayment);
    await expect(
      store.resolveIndeterminate({ paymentId: "nope", charged: true, atMs: T0, reason: "x" }),
    ).rejects.toBeInstanceOf(UnknownPayment);
    await expect(open(store, "d", [b], T0 + 1)).rejects.toThrow();
    expect((await store.head())?.seq).toBe(1);
    expect(await store.used(b, limitOf(b), T0)).toBe(P);
  });

  it("leases: an unfinished reservation turns indeterminate, stays counted, once", async () => {
    const b = budget("lease", [[cal("day"), 10n * P]]);
    await mustOpen(store, "la", [b], T0, 1000);
    await change(store, "la", "sent", T0 + 10, "tx-la");
    await mustOpen(store, "lb", [b], T0, 5000);
    expect(await store.expireLeases(T0 + 999)).toEqual([]);
    expect(await store.expireLeases(T0 + 1000)).toEqual(["la"]);
    const row = (await latestOf(store)).get("la");
    expect(row).toMatchObject({
      state: "indeterminate",
      reason: LEASE_EXPIRED_REASON,
      tx: "tx-la",
      atMs: T0 + 1000,
    });
    expect(await store.used(b, limitOf(b), T0)).toBe(2n * P);
    expect(await store.reserved(b)).toBe(P);
    expect(await store.indeterminateCount()).toBe(1);
    expect(await store.expireLeases(T0 + 1000)).toEqual([]);
    expect(await store.expireLeases(T0 + 5000)).toEqual(["lb"]);
    expect(await store.indeterminateCount()).toBe(2);
  });

  it("an answer that arrives after the lease ran out still applies, with its row", async () => {
    const b = budget("late", [[cal("day"), 10n * P]]);
    await mustOpen(store, "ok", [b], T0, 1000);
    await mustOpen(store, "no", [b], T0, 1000);
    await store.expireLeases(T0 + 1000);
    await change(store, "ok", "settled", T0 + 2000, "tx-ok");
    await change(store, "no", "rejected", T0 + 2000);
    expect(await store.used(b, limitOf(b), T0)).toBe(P);
    expect(await store.indeterminateCount()).toBe(0);
  });

  it("recovery: a stopped writer's payments never sent are released; sent ones become indeterminate, still counted", async () => {
    const b = budget("recover", [[cal("day"), 10n * P]]);
    await mustOpen(store, "p1", [b], T0);
    await mustOpen(store, "p2", [b], T0);
    await change(store, "p2", "sent", T0 + 1, "tx-p2");
    await mustOpen(store, "p3", [b], T0);
    await change(store, "p3", "settled", T0 + 2);
    await store.close();
    store = await place.open();
    expect(await store.recoverInterrupted(T0 + 5)).toEqual({ released: ["p1"], indeterminate: ["p2"] });
    const latest = await latestOf(store);
    // p1 was never handed to a socket (no `sent` row): provably nothing left, so it is freed.
    expect(latest.get("p1")).toMatchObject({ state: "failed", reason: NEVER_SENT_REASON });
    expect(latest.get("p2")).toMatchObject({
      state: "indeterminate",
      tx: "tx-p2",
      reason: INTERRUPTED_REASON,
    });
    expect(latest.get("p3")?.state).toBe("settled");
    expect(await store.used(b, limitOf(b), T0)).toBe(2n * P);
    expect(await store.reserved(b)).toBe(0n);
    expect(await store.recoverInterrupted(T0 + 6)).toEqual({ released: [], indeterminate: [] });
  });

  it("the chain verifies after many writes; rows, latest and head agree", async () => {
    const b = budget("many", [[cal("day"), 1000n * P]]);
    const finals: LaterState[] = ["settled", "rejected", "failed", "indeterminate"];
    for (let i = 0; i < 120; i++) {
      await mustOpen(store, `n${i}`, [b], T0 + i);
      if (i % 5 === 0) continue;
      await change(store, `n${i}`, "sent", T0 + i, `tx${i}`);
      await change(store, `n${i}`, finals[i % 4] as LaterState, T0 + i + 1);
    }
    const check = await store.verify();
    const head = await store.head();
    expect(check).toEqual({ ok: true, rows: head?.seq, headHash: head?.hash });
    const rows = await allRows(store);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
    expect(rows.every((r) => r.url.includes("api_key=REDACTED"))).toBe(true);
    expect((await allRows(store, T0 + 100)).every((r) => r.atMs >= T0 + 100)).toBe(true);
    expect((await store.latest()).length).toBe(120);
    expect(await store.indeterminateCount()).toBe(24);
  });

  describe("tampering is detected", () => {
    beforeEach(async () => {
      const b = budget("t", [[cal("day"), 100n * P]]);
      for (let i = 0; i < 4; i++) {
        await mustOpen(store, `t${i}`, [b], T0 + i);
        await change(store, `t${i}`, "settled", T0 + i + 1);
      }
      await place.allowLedgerEdits();
    });

    it("an edited row", async () => {
      await place.sql("UPDATE ledger SET amount = amount + 1 WHERE seq = 5");
      expect(await store.verify()).toEqual({ ok: false, rows: 4, seq: 5, reason: "row 5 was edited" });
    });

    it("a removed row", async () => {
      await place.sql("DELETE FROM ledger WHERE seq = 3");
      expect(await store.verify()).toEqual({ ok: false, rows: 2, seq: 3, reason: "row 3 is missing" });
    });

    it("a removed last row", async () => {
      await place.sql("DELETE FROM ledger WHERE seq = 8");
      expect(await store.verify()).toMatchObject({
        ok: false,
        rows: 7,
        reason: expect.stringContaining("rows were removed"),
      });
    });
  });

  it("is ready while its database answers", async () => {
    expect(await store.check()).toBeNull();
  });
});

describe("both stores write the same chain", () => {
  it("the same payments give byte-identical rows and hashes in SQLite and PostgreSQL", async () => {
    const rowsOf = async (kind: StoreKind) => {
      const place = await makePlace(kind);
      const store = await place.open();
      try {
        const b = budget("same", [[cal("day"), 4n * P]]);
        for (let i = 0; i < 6; i++) {
          const r = await open(store, `x${i}`, [b], T0 + i, { leaseMs: 100 });
          if (!r.ok) continue;
          if (i % 2 === 0) await change(store, `x${i}`, "sent", T0 + i + 1, `tx${i}`);
          if (i === 0)
            await store.record({
              paymentId: "x0",
              state: "rejected",
              atMs: T0 + 7,
              tx: null,
              upstreamStatus: 402,
              // Text an upstream could send: quotes, escapes, controls, non-ASCII, separators.
              reason: 'said "no" \\ \n\t\u0001\u001f\u007f é 中文 😀 \u2028\u2029 </script>',
            });
        }
        await store.expireLeases(T0 + 200);
        await store.resolveIndeterminate({
          paymentId: "x1",
          charged: false,
          atMs: T0 + 300,
          reason: "reconciled",
        });
        return { rows: await allRows(store), check: await store.verify() };
      } finally {
        await store.close();
        await place.drop();
      }
    };
    const sqlite = await rowsOf("sqlite");
    const postgres = await rowsOf("postgres");
    expect(sqlite.check.ok).toBe(true);
    expect(sqlite.rows.length).toBeGreaterThan(8);
    expect(postgres.rows).toEqual(sqlite.rows);
    expect(postgres.check).toEqual(sqlite.check);
  });
});
