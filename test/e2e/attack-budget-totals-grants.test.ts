import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PaymentStore } from "../../src/store/payment-store.js";
import { makePlace } from "../support/payment-stores.js";
import type { StorePlace } from "../support/payment-stores.js";
import { atSchema2, v2Open } from "../support/v2-replica.js";

/**
 * Attack: the rolling upgrade docs/operations.md describes ("give its user the rights to
 * create them (or run one replica first)"). Replicas run as a role granted the tables that
 * existed; one replica with the owner's rights runs migration 3. budget_totals is a new table
 * nobody else was granted, and budget_totals_follow runs with the rights of whoever writes
 * budget_entries: every not-yet-upgraded replica's reservation now fails with "permission
 * denied for table budget_totals" (migration 3's doc says their writes move it too).
 */
const T0 = Date.UTC(2025, 4, 14, 10);

describe("migration 3 and a replica role granted the v2 tables (attack)", () => {
  let place: StorePlace;
  let store: PaymentStore | undefined;
  const role = `stoka_app_${randomBytes(4).toString("hex")}`;
  beforeEach(async () => {
    place = await makePlace("postgres");
    await atSchema2(place);
    await place.sql(`CREATE ROLE ${role} LOGIN`);
    await place.sql(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
  });
  afterEach(async () => {
    await store?.close();
    await place.drop();
    // The role is the cluster's: drop it through the server's own database.
    const c = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
    await c.connect();
    await c.query(`DROP ROLE IF EXISTS ${role}`).finally(() => c.end());
  });

  it("a v2 replica running as the app role can still reserve after another replica migrated", async () => {
    const url = new URL((place.target as { url: string }).url);
    url.username = role;
    const v2 = new pg.Client({ connectionString: url.toString() });
    await v2.connect();
    try {
      expect(
        (await v2Open(v2, { paymentId: "before", atMs: T0, amount: 1n, dayLimit: 1000n })).rows[0]?.r_seq,
      ).not.toBeNull();
      store = await place.open(); // the replica with the owner's rights migrates
      expect(
        (await v2Open(v2, { paymentId: "after", atMs: T0, amount: 1n, dayLimit: 1000n })).rows[0]?.r_seq,
      ).not.toBeNull();
    } finally {
      await v2.end();
    }
  });
});
