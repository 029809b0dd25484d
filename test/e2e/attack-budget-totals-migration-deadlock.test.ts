import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";
import { atSchema2, v2Open } from "../support/v2-replica.js";

/**
 * Attack: a rolling upgrade from v2 under live traffic. Migration 3 takes SHARE ROW EXCLUSIVE
 * on budget_entries (CREATE TRIGGER), builds an index, then asks for ACCESS EXCLUSIVE (DROP
 * INDEX budget_entries_at). A v2 stoka_open that started in between holds ACCESS SHARE (its
 * SUM over the entries) and then waits for ROW EXCLUSIVE (its INSERT) behind the migration:
 * a lock cycle. PostgreSQL aborts the migration ("deadlock detected"), so the upgraded replica
 * does not start for as long as one v2 replica keeps reserving. (docs/operations.md promises
 * replicas not yet upgraded keep writing during a rolling upgrade.)
 */
const T0 = Date.UTC(2025, 4, 14, 10);

describe("migration 3 under a v2 replica's traffic (attack)", () => {
  let place: StorePlace;
  beforeEach(async () => {
    place = await makePlace("postgres");
    await atSchema2(place);
    // A month of history (earlier payments), as a busy gateway has.
    const n = 100_000;
    await place.sql(
      `INSERT INTO payments (payment_id, budget_state, ledger_state, amount, budgets, owner, created_ms, lease_until_ms, started_ms, first_seq, last_seq)
         SELECT 'h' || i, 'spent', 'settled', 1, ARRAY['team'], 0, 0, 0, 0, 0, 0 FROM generate_series(1, $1) AS i`,
      [n],
    );
    await place.sql(
      `INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount)
         SELECT 'h' || i, 'team:month', $2::bigint, $2::bigint, 1 FROM generate_series(1, $1) AS i`,
      [n, Date.UTC(2025, 4, 1)],
    );
  });
  afterEach(async () => {
    await place.drop();
  });

  it("an upgraded replica starts while a v2 replica keeps reserving", async () => {
    const v2 = new pg.Client({ connectionString: (place.target as { url: string }).url });
    await v2.connect();
    let stop = false;
    let i = 0;
    const traffic = (async () => {
      while (!stop)
        await v2Open(v2, { paymentId: `v2-${i++}`, atMs: T0, amount: 1n, dayLimit: 1_000_000_000n }).catch(
          () => undefined,
        );
    })();
    try {
      await new Promise((r) => setTimeout(r, 50));
      const store = await place.open();
      await store.close();
    } finally {
      stop = true;
      await traffic;
      await v2.end();
    }
    expect(i).toBeGreaterThan(0);
  }, 60_000);
});
