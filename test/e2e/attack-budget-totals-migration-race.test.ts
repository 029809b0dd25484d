import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import type { PaymentStore } from "../../src/store/payment-store.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";
import { atSchema2, v2Open } from "../support/v2-replica.js";

/**
 * Attack: a rolling upgrade from v2 to this build on PostgreSQL. Migration 3 backfills
 * budget_totals with INSERT … SELECT SUM(...) FROM budget_entries and only afterwards creates the
 * trigger, without locking budget_entries first. A v2 replica's reservation that is in flight
 * (inserted its entries, not yet committed) when the backfill reads the table, or that commits
 * between the backfill's snapshot and CREATE TRIGGER, is in budget_entries but never in
 * budget_totals: CREATE TRIGGER waits for it to commit, then the trigger exists only for later
 * writes. From then on every upgraded replica reads the calendar bucket's spend from the totals
 * and sees less than was spent.
 */
const T0 = Date.UTC(2025, 4, 14, 10);
const DAY = Date.UTC(2025, 4, 14);
const HOUR = 3_600_000;
const LIMIT = 1500n;
const PRICE = 1000n;

const budgets: Budget[] = [
  { name: "team", match: {}, limits: [{ period: { kind: "calendar", unit: "day" }, amount: LIMIT }] },
];

async function waitForLockedMigration(c: pg.ClientBase): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await c.query(
      // The only session of this database that can wait on a lock here is the migration (its
      // text is longer than pg_stat_activity keeps, so it is not matched by its text).
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    );
    if (r.rows.length > 0) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error("the migration never waited for the v2 replica's transaction");
}

describe("migration 3 while a v2 replica reserves (attack)", () => {
  let place: StorePlace;
  let store: PaymentStore | undefined;
  beforeEach(async () => {
    place = await makePlace("postgres");
    // The database as v2 replicas left it: migrations 1 and 2.
    await atSchema2(place);
  });
  afterEach(async () => {
    await store?.close();
    await place.drop();
  });

  it("a v2 reservation committing during the backfill is counted in budget_totals", async () => {
    const url = (place.target as { url: string }).url;
    const v2 = new pg.Client({ connectionString: url });
    const watch = new pg.Client({ connectionString: url });
    await v2.connect();
    await watch.connect();
    try {
      // A v2 replica's reservation, inside its transaction (stoka_open has written its entry).
      await v2.query("BEGIN");
      const opened = await v2Open(v2, { paymentId: "v2-pay", atMs: T0, amount: PRICE, dayLimit: LIMIT });
      expect(opened.rows[0]?.r_seq).not.toBeNull();

      // An upgraded replica starts and migrates meanwhile.
      const upgrading = place.open();
      await waitForLockedMigration(watch);
      await v2.query("COMMIT");
      store = await upgrading;
    } finally {
      await v2.end();
      await watch.end();
    }

    const entries = await place.sql(
      "SELECT COALESCE(SUM(amount), 0)::text AS s FROM budget_entries WHERE limit_key = 'team:day' AND bucket = $1",
      [DAY],
    );
    const totals = await place.sql(
      "SELECT COALESCE(SUM(amount), 0)::text AS s FROM budget_totals WHERE limit_key = 'team:day' AND bucket = $1",
      [DAY],
    );
    // What the day's limit has spent, two ways.
    expect
      .soft({ entries: entries[0]?.s, totals: totals[0]?.s })
      .toEqual({ entries: "1000", totals: "1000" });

    // And the consequence: 1000 spent of 1500, so another 1000 must be refused.
    const r = await store.open({
      payment: {
        paymentId: "v3-pay",
        requestId: "req-v3-pay",
        client: "app",
        route: "store",
        method: "POST",
        url: "http://test.api.stoka.space/v1/store",
        amount: PRICE,
        payTo: "GPAYEE",
        asset: "USDC",
        network: "stellar:testnet",
      },
      budgets,
      nowMs: T0 + 10,
      leaseUntilMs: T0 + HOUR,
    });
    expect(r.ok).toBe(false);
  });
});
