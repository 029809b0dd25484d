import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget, BudgetLimit } from "../../src/config/config.js";
import type { PaymentFacts, PaymentStore } from "../../src/store/payment-store.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";

/**
 * Attack: SQLite integer arithmetic. Each payment may be up to 2^63 - 1 atomic units
 * (MAX_STORED_AMOUNT) and a SQLite budget limit has no ceiling. SUM() over budget_entries
 * raised "integer overflow" past 2^63 (the reservation failed closed, and was exact again once
 * the spend came back down); the budget_totals trigger's `amount + excluded.amount` silently
 * turns the total into a REAL instead. While it is a REAL the store hands out a JS number for
 * the spend; once entries are removed it is stored back as an INTEGER, rounded: the total no
 * longer equals the entries, and a reservation sees less spend than there is. The trigger now
 * aborts such a write, as SUM() did.
 */
const T0 = Date.UTC(2025, 4, 14, 10);
const HOUR = 3_600_000;
const X = 2n ** 62n + 511n; // rounds down to 2^62 as a double

const day = (amount: bigint): BudgetLimit => ({ period: { kind: "calendar", unit: "day" }, amount });
const team = (amount: bigint): Budget => ({ name: "team", match: {}, limits: [day(amount)] });

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

describe("budget totals near 2^63 (sqlite, attack)", () => {
  let place: StorePlace;
  let store: PaymentStore;
  beforeEach(async () => {
    place = await makePlace("sqlite");
    store = await place.open();
  });
  afterEach(async () => {
    await store.close();
    await place.drop();
  });

  it("a reservation that would carry the day's total past 2^63 - 1 fails closed; the total stays exact", async () => {
    const big = team(2n ** 64n);
    expect(
      (await store.open({ payment: facts("a", X), budgets: [big], nowMs: T0, leaseUntilMs: T0 + HOUR })).ok,
    ).toBe(true);
    // a + b does not fit a 64-bit integer: the write is refused, as SUM() refused to add them.
    await expect(
      store.open({ payment: facts("b", X), budgets: [big], nowMs: T0 + 1, leaseUntilMs: T0 + HOUR }),
    ).rejects.toThrow(/integer overflow/);

    const entries = await place.sql(
      "SELECT CAST(SUM(amount) AS TEXT) AS s FROM budget_entries WHERE limit_key = 'team:day'",
    );
    const totals = await place.sql(
      "SELECT CAST(amount AS TEXT) AS s FROM budget_totals WHERE limit_key = 'team:day'",
    );
    expect({ entries: entries[0]?.s, totals: totals[0]?.s }).toEqual({
      entries: X.toString(),
      totals: X.toString(),
    });
    expect(await store.used(big, day(2n ** 64n), T0)).toBe(X);
    // b left no row and no entry.
    expect((await store.head())?.seq).toBe(1);

    // X is spent; a limit of X + 999 leaves 999, so a price of 1000 is refused and 999 fits.
    const tight = team(X + 999n);
    const refused = await store.open({
      payment: facts("c", 1000n),
      budgets: [tight],
      nowMs: T0 + 3,
      leaseUntilMs: T0 + HOUR,
    });
    expect(refused.ok).toBe(false);
    const fits = await store.open({
      payment: facts("d", 999n),
      budgets: [tight],
      nowMs: T0 + 4,
      leaseUntilMs: T0 + HOUR,
    });
    expect(fits.ok).toBe(true);
  });
});
