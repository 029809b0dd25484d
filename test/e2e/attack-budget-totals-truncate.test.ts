import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget, BudgetLimit } from "../../src/config/config.js";
import type { PaymentStore } from "../../src/store/payment-store.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";

/**
 * Attack: TRUNCATE on PostgreSQL fires no row triggers. budget_entries has no TRUNCATE guard
 * (the ledger has one) and budget_totals_follow is FOR EACH ROW only, so TRUNCATE
 * budget_entries (or TRUNCATE payments CASCADE) leaves every total in place: the totals no
 * longer equal the entries, and reservations keep being refused for money the entries no
 * longer hold (fail-safe direction: over-counting, until the bucket rolls over).
 */
const T0 = Date.UTC(2025, 4, 14, 10);
const day: BudgetLimit = { period: { kind: "calendar", unit: "day" }, amount: 2000n };
const team: Budget = { name: "team", match: {}, limits: [day] };

describe("TRUNCATE budget_entries (postgres, attack)", () => {
  let place: StorePlace;
  let store: PaymentStore;
  beforeEach(async () => {
    place = await makePlace("postgres");
    store = await place.open();
  });
  afterEach(async () => {
    await store.close();
    await place.drop();
  });

  it("the totals follow a TRUNCATE of the entries", async () => {
    const r = await store.open({
      payment: {
        paymentId: "a",
        requestId: "req-a",
        client: "app",
        route: "store",
        method: "POST",
        url: "http://test.api.stoka.space/v1/store",
        amount: 1500n,
        payTo: "GPAYEE",
        asset: "USDC",
        network: "stellar:testnet",
      },
      budgets: [team],
      nowMs: T0,
      leaseUntilMs: T0 + 3_600_000,
    });
    expect(r.ok).toBe(true);
    await place.sql("TRUNCATE budget_entries");
    const entries = await place.sql("SELECT COALESCE(SUM(amount), 0)::text AS s FROM budget_entries");
    const totals = await place.sql("SELECT COALESCE(SUM(amount), 0)::text AS s FROM budget_totals");
    expect.soft({ entries: entries[0]?.s, totals: totals[0]?.s }).toEqual({ entries: "0", totals: "0" });
    expect(await store.used(team, day, T0)).toBe(0n);
  });
});
