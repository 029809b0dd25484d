import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import type { PaymentFacts, PaymentStore } from "../../src/store/payment-store.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";

/**
 * A SQLite file whose budget_totals were made by the build before the rolling slots (f207ed0 /
 * 43d1e87): its triggers total every entry at its own bucket, 0 for a rolling window. The new
 * build only checks that the table exists (addBudgetTotals' has()), keeps those triggers and
 * reads a rolling window as "totals with bucket > edge" (edge ~ now / slot, far above 0) plus
 * one slot's entries: the window's spend disappears, and a spent budget pays again.
 */
const HOUR = 3_600_000;
const P = 1000n;
const T = Date.UTC(2026, 11, 2, 12, 0);

function facts(paymentId: string, amount: bigint): PaymentFacts {
  return {
    paymentId,
    requestId: `req-${paymentId}`,
    client: "app",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    amount,
    payTo: "GPAYEE",
    asset: "USDC",
    network: "stellar:testnet",
  };
}

const hourly: Budget = {
  name: "team",
  match: {},
  limits: [{ period: { kind: "rolling", seconds: 3600 }, amount: 10n * P }],
};

// Verbatim what 43d1e87's addBudgetTotals (src/budget/sqlite-store.ts) created.
const FITS = `SELECT RAISE(ABORT, 'integer overflow: a budget total would pass 2^63 - 1') WHERE NEW.amount > 9223372036854775807 -
       COALESCE((SELECT amount FROM budget_totals WHERE limit_key = NEW.limit_key AND bucket = NEW.bucket), 0);`;
const OLD_TRIGGERS = [
  `CREATE TRIGGER budget_totals_insert AFTER INSERT ON budget_entries BEGIN
     ${FITS}
     INSERT INTO budget_totals (limit_key, bucket, amount) VALUES (NEW.limit_key, NEW.bucket, NEW.amount)
       ON CONFLICT (limit_key, bucket) DO UPDATE SET amount = amount + excluded.amount;
   END`,
  `CREATE TRIGGER budget_totals_delete AFTER DELETE ON budget_entries BEGIN
     UPDATE budget_totals SET amount = amount - OLD.amount WHERE limit_key = OLD.limit_key AND bucket = OLD.bucket;
   END`,
  `CREATE TRIGGER budget_totals_update AFTER UPDATE OF limit_key, bucket, amount ON budget_entries BEGIN
     UPDATE budget_totals SET amount = amount - OLD.amount WHERE limit_key = OLD.limit_key AND bucket = OLD.bucket;
     ${FITS}
     INSERT INTO budget_totals (limit_key, bucket, amount) VALUES (NEW.limit_key, NEW.bucket, NEW.amount)
       ON CONFLICT (limit_key, bucket) DO UPDATE SET amount = amount + excluded.amount;
   END`,
];

describe("rolling slots on a SQLite file from the build before them (43d1e87)", () => {
  let place: StorePlace;
  let store: PaymentStore | undefined;

  beforeEach(async () => {
    place = await makePlace("sqlite");
    // The file as 43d1e87 leaves it: same tables and index, its triggers, its backfill.
    await (await place.open()).close();
    for (const t of ["budget_totals_insert", "budget_totals_delete", "budget_totals_update"])
      await place.sql(`DROP TRIGGER ${t}`);
    for (const t of OLD_TRIGGERS) await place.sql(t);
  });
  afterEach(async () => {
    await store?.close();
    await place.drop();
  });

  it("a rolling window's spend still counts after the upgrade: a spent budget is refused", async () => {
    // Ten payments in the last hour, written on the old build's file (the entries are the same
    // rows every build writes: bucket 0 for a rolling window).
    store = await place.open();
    for (let i = 0; i < 10; i++) {
      const at = T + i * 60_000;
      const r = await store.open({
        payment: facts(`old${i}`, P),
        budgets: [hourly],
        nowMs: at,
        leaseUntilMs: at + HOUR,
      });
      expect(r.ok).toBe(true);
    }
    await store.close();
    // The upgraded build opens the same file.
    store = await place.open();
    const now = T + 20 * 60_000;
    const limit = hourly.limits[0] as Budget["limits"][number];
    const entries = await place.sql(
      "SELECT SUM(amount) AS s FROM budget_entries WHERE limit_key = 'team:rolling_3600s' AND at_ms > ?",
      [now - 3_600_000],
    );
    expect(BigInt(String(entries[0]?.s))).toBe(10n * P);
    const used = await store.used(hourly, limit, now);
    const over = await store.open({
      payment: facts("over", P),
      budgets: [hourly],
      nowMs: now,
      leaseUntilMs: now + HOUR,
    });
    expect({ used, over }).toEqual({
      used: 10n * P,
      over: {
        ok: false,
        denial: { budget: "team", period: "rolling_3600s", limit: 10n * P, spent: 10n * P, price: P },
      },
    });
  });
});
