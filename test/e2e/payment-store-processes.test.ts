import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget, BudgetLimit } from "../../src/config/config.js";
import { isCounted } from "../../src/budget/ledger-spend.js";
import type { PaymentStore } from "../../src/store/payment-store.js";
import type { WorkerConfig } from "../support/payment-store-worker.js";
import { STORE_KINDS, budgetsToJson, makePlace } from "../support/payment-stores.js";
import type { StoreKind, StorePlace } from "../support/payment-stores.js";
import { startWorkers } from "../support/store-workers.js";

/**
 * Several processes, each with its own connections, against one store: exactly K of 200
 * parallel reservations fit a budget of K; a writer killed with SIGKILL mid-load leaves no
 * reservation without its row (or the reverse), one valid chain, and budgets equal to what
 * the ledger counts.
 */
const P = 1400n;
const T = Date.UTC(2025, 4, 14, 10);

const dayBudget = (name: string, amount: bigint): Budget => ({
  name,
  match: {},
  limits: [{ period: { kind: "calendar", unit: "day" }, amount }],
});

function config(
  place: StorePlace,
  over: Partial<WorkerConfig> & Pick<WorkerConfig, "mode" | "count">,
): WorkerConfig {
  return {
    target: place.target,
    concurrency: over.count,
    budgets: budgetsToJson([dayBudget("shared", 1_000_000n * P)]),
    nowMs: T,
    leaseMs: 3_600_000,
    price: P.toString(),
    idPrefix: "w",
    ...over,
  };
}

/** Every payment with a budget row has exactly one `reserved` row, and the reverse. */
async function reservationsMatchRows(place: StorePlace): Promise<void> {
  const budgetIds = (
    await place.sql(`SELECT payment_id FROM ${place.paymentsTable} ORDER BY payment_id`)
  ).map((r) => String(r.payment_id));
  const reservedRows = (
    await place.sql("SELECT payment_id FROM ledger WHERE state = 'reserved' ORDER BY payment_id")
  ).map((r) => String(r.payment_id));
  expect(reservedRows).toEqual(budgetIds);
  expect(new Set(reservedRows).size).toBe(reservedRows.length);
}

async function countedByLedger(store: PaymentStore): Promise<bigint> {
  return (await store.latest()).filter((r) => isCounted(r.state)).reduce((s, r) => s + r.amount, 0n);
}

describe.each(STORE_KINDS)("several processes on one store (%s)", (kind: StoreKind) => {
  let place: StorePlace;
  let store: PaymentStore | undefined;

  beforeEach(async () => {
    place = await makePlace(kind);
    // Migrated once before the workers start (they also migrate: a no-op then).
    store = await place.open();
  });
  afterEach(async () => {
    await store?.close();
    await place.drop();
  });

  it(
    "3 processes, 200 parallel reservations, a budget for exactly K: exactly K succeed",
    { timeout: 90_000 },
    async () => {
      const K = 37n;
      const b = dayBudget("exact", K * P);
      const budgets = budgetsToJson([b]);
      const workers = await startWorkers(
        [67, 67, 66].map((count, i) => config(place, { mode: "reserve", count, budgets, idPrefix: `k${i}` })),
      );
      const results = await Promise.all(workers.map((w) => w.done));
      const total = results.reduce(
        (s, r) => ({
          ok: s.ok + r.ok,
          denied: s.denied + r.denied,
          unavailable: s.unavailable + r.unavailable,
        }),
        { ok: 0, denied: 0, unavailable: 0 },
      );
      expect(results.flatMap((r) => r.errors)).toEqual([]);
      expect(total).toEqual({ ok: Number(K), denied: 200 - Number(K), unavailable: 0 });
      const s = store as PaymentStore;
      expect(await s.used(b, b.limits[0] as BudgetLimit, T)).toBe(K * P);
      const rows = await place.sql("SELECT count(*) AS n FROM ledger WHERE state = 'reserved'");
      expect(Number(rows[0]?.n)).toBe(Number(K));
      expect(await s.verify()).toMatchObject({ ok: true, rows: Number(K) });
      await reservationsMatchRows(place);
    },
  );

  it(
    "kill -9 of one writer mid-load: rows and budgets agree, the chain verifies, recovery takes its open payments",
    { timeout: 90_000 },
    async () => {
      const b = dayBudget("shared", 1_000_000n * P);
      const workers = await startWorkers(
        // The victim has far more to do than it will live for: it is surely killed mid-load.
        [3000, 150, 150].map((count, i) =>
          // The victim also leaves 4 payments open before its churn starts, so recovery has
          // work to do however the kill lands between commits.
          config(place, {
            mode: "churn",
            count,
            concurrency: 6,
            idPrefix: `c${i}`,
            holdOpen: i === 0 ? 4 : 0,
          }),
        ),
      );
      const victim = workers[0]!;
      await victim.progressed(30);
      victim.child.kill("SIGKILL");
      await expect(victim.done).rejects.toThrow(/SIGKILL/);
      const survivors = await Promise.all(workers.slice(1).map((w) => w.done));
      expect(survivors.flatMap((r) => r.errors)).toEqual([]);
      expect(survivors.map((r) => r.ok)).toEqual([150, 150]);

      // A fresh store, as a replica starting after the crash.
      await store?.close();
      store = await place.open();
      const s = store;
      expect((await s.verify()).ok).toBe(true);
      await reservationsMatchRows(place);
      const limit = b.limits[0] as BudgetLimit;
      expect(await s.used(b, limit, T)).toBe(await countedByLedger(s));

      const open = (await s.latest())
        .filter((r) => r.state === "reserved" || r.state === "sent")
        .map((r) => r.paymentId);
      expect(open.length).toBeGreaterThanOrEqual(4);
      expect(open).toEqual(expect.arrayContaining(["c0-0", "c0-1", "c0-2", "c0-3"]));
      expect(open.every((id) => id.startsWith("c0-"))).toBe(true);
      const recovered = await s.recoverInterrupted(T + 10_000);
      expect([...recovered.released, ...recovered.indeterminate].sort()).toEqual(open.sort());
      expect((await s.latest()).filter((r) => r.state === "reserved" || r.state === "sent")).toEqual([]);
      expect(await s.used(b, limit, T)).toBe(await countedByLedger(s));
      expect((await s.verify()).ok).toBe(true);
    },
  );
});
