import type pg from "pg";
import { bucketStart } from "../../src/budget/budget.js";
import { canonical } from "../../src/ledger/entry.js";
import type { LedgerFields } from "../../src/ledger/entry.js";
import { MIGRATIONS } from "../../src/store/postgres-migrations.js";
import type { StorePlace } from "./payment-stores.js";

/**
 * A PostgreSQL payment database as replicas of schema version 2 leave it, and the reservation
 * such a replica makes (migration 2's 21-argument stoka_open against one `team` day limit), for
 * the rolling-upgrade attack tests.
 */
export async function atSchema2(place: StorePlace): Promise<void> {
  await place.sql(
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
  );
  for (const m of MIGRATIONS.filter((m) => m.version <= 2)) {
    await place.sql(m.sql);
    await place.sql("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
  }
}

export function v2Open(
  c: pg.ClientBase,
  r: { paymentId: string; atMs: number; amount: bigint; dayLimit: bigint },
): Promise<pg.QueryResult<{ r_seq: string | null }>> {
  const f: LedgerFields = {
    paymentId: r.paymentId,
    requestId: `req-${r.paymentId}`,
    client: "app",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    amount: r.amount,
    payTo: "GPAYEE",
    asset: "USDC",
    network: "stellar:testnet",
    atMs: r.atMs,
    state: "reserved",
    tx: null,
    upstreamStatus: null,
    reason: null,
  };
  return c.query<{ r_seq: string | null }>(
    `SELECT * FROM stoka_open(${Array.from({ length: 21 }, (_, i) => `$${i + 1}`).join(", ")})`,
    [
      f.paymentId,
      f.requestId,
      f.atMs,
      f.client,
      f.route,
      f.method,
      f.url,
      f.amount.toString(),
      f.payTo,
      f.asset,
      f.network,
      canonical(0, f).slice(3),
      ["team"],
      424242,
      r.atMs + 3_600_000,
      ["team:day"],
      [true],
      [bucketStart("day", r.atMs)],
      [r.atMs - 86_400_000],
      [r.dayLimit.toString()],
      null,
    ],
  );
}
