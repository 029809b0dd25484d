import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget, BudgetLimit } from "../../src/config/config.js";
import { SqlitePaymentStore } from "../../src/store/sqlite-payment-store.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";

/**
 * Attack: a SQLite file written by the build before the totals (a replica's backup, a copy on
 * a read-only mount) opened read-only. The build before opened it (its schema statements are
 * all IF NOT EXISTS and wrote nothing), so `ledger verify`, `export` and `spend` worked on
 * it; this build's constructor drops budget_entries_at and backfills budget_totals, and the
 * store cannot be opened at all ("attempt to write a readonly database").
 */
const T0 = Date.UTC(2025, 4, 14, 10);
const day: BudgetLimit = { period: { kind: "calendar", unit: "day" }, amount: 10n ** 9n };
const team: Budget = { name: "team", match: {}, limits: [day] };

describe("a pre-totals SQLite file opened read-only (attack)", () => {
  let place: StorePlace;
  beforeEach(async () => {
    place = await makePlace("sqlite");
    const store = await place.open();
    const r = await store.open({
      payment: {
        paymentId: "a",
        requestId: "req-a",
        client: "app",
        route: "store",
        method: "POST",
        url: "http://test.api.stoka.space/v1/store",
        amount: 1400n,
        payTo: "GPAYEE",
        asset: "USDC",
        network: "stellar:testnet",
      },
      budgets: [team],
      nowMs: T0,
      leaseUntilMs: T0 + 3_600_000,
    });
    expect(r.ok).toBe(true);
    await store.close();
    // Back to the layout of the build before (as budget-totals.test.ts does).
    for (const t of ["budget_totals_insert", "budget_totals_delete", "budget_totals_update"])
      await place.sql(`DROP TRIGGER ${t}`);
    await place.sql("DROP TABLE budget_totals");
    await place.sql("DROP INDEX budget_entries_window");
    await place.sql("CREATE INDEX budget_entries_at ON budget_entries(limit_key, at_ms)");
  });
  afterEach(async () => {
    await place.drop();
  });

  it("opens, verifies and reports the spend", async () => {
    const db = new Database((place.target as { path: string }).path, { readonly: true });
    try {
      const store = new SqlitePaymentStore(db);
      expect((await store.verify()).ok).toBe(true);
      expect(await store.used(team, day, T0)).toBe(1400n);
    } finally {
      db.close();
    }
  });
});
