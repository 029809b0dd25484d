import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { canonical } from "../../src/ledger/entry.js";
import type { LedgerFields } from "../../src/ledger/entry.js";
import { MIGRATIONS } from "../../src/store/postgres-migrations.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";

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
const DAY = Date.UTC(2025, 4, 14);

function v2Open(c: pg.ClientBase, paymentId: string) {
  const f: LedgerFields = {
    paymentId,
    requestId: `req-${paymentId}`,
    client: "app",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    amount: 1n,
    payTo: "GPAYEE",
    asset: "USDC",
    network: "stellar:testnet",
    atMs: T0,
    state: "reserved",
    tx: null,
    upstreamStatus: null,
    reason: null,
  };
  return c.query(
    `SELECT * FROM stoka_open(${Array.from({ length: 21 }, (_, i) => `$${i + 1}`).join(", ")})`,
    [
      f.paymentId,
      f.requestId,
      f.atMs,
      f.client,
      f.route,
      f.method,
      f.url,
      "1",
      f.payTo,
      f.asset,
      f.network,
      canonical(0, f).slice(3),
      ["team"],
      424242,
      T0 + 3_600_000,
      ["team:day"],
      [true],
      [DAY],
      [0],
      ["1000000000"],
      null,
    ],
  );
}

describe("migration 3 under a v2 replica's traffic (attack)", () => {
  let place: StorePlace;
  beforeEach(async () => {
    place = await makePlace("postgres");
    await place.sql(
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    );
    for (const m of MIGRATIONS.filter((m) => m.version <= 2)) {
      await place.sql(m.sql);
      await place.sql("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
    }
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
      while (!stop) await v2Open(v2, `v2-${i++}`).catch(() => undefined);
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
