/**
 * `npx tsx bench/budget-history.ts`: what one reservation costs as the month's history grows.
 * Each store (a fresh SQLite file, a fresh PostgreSQL database) is given N earlier payments in
 * the current day and month buckets and the last hour's rolling window (written in bulk, as
 * the history of a busy gateway, spread over the last 50 minutes), then
 * times 200 reservations one after another. Not a test: it prints numbers and gates nothing.
 */
import type { Budget } from "../src/config/config.js";
import type { PaymentStore } from "../src/store/payment-store.js";
import { makePlace } from "../test/support/payment-stores.js";
import type { StoreKind, StorePlace } from "../test/support/payment-stores.js";

const SIZES = (process.env.BENCH_HISTORY ?? "0,10000,100000").split(",").map(Number);
const KINDS = (process.env.BENCH_STORES ?? "sqlite,postgres").split(",") as StoreKind[];
const RESERVATIONS = 200;
const NOW = Date.UTC(2025, 4, 14, 10);
const DAY = Date.UTC(2025, 4, 14);
const MONTH = Date.UTC(2025, 4, 1);

const budgets: Budget[] = [
  {
    name: "team",
    match: {},
    limits: [
      { period: { kind: "calendar", unit: "day" }, amount: 10n ** 15n },
      { period: { kind: "calendar", unit: "month" }, amount: 10n ** 15n },
      { period: { kind: "rolling", seconds: 3600 }, amount: 10n ** 15n },
    ],
  },
];

async function seed(place: StorePlace, n: number): Promise<void> {
  if (n === 0) return;
  if (place.kind === "sqlite") {
    await place.sql(
      `INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount)
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?)
         SELECT 'h' || i, 'team:day', ?, ? - i % 3000000, 1400 FROM s
         UNION ALL SELECT 'h' || i, 'team:month', ?, ? - i % 3000000, 1400 FROM s
         UNION ALL SELECT 'h' || i, 'team:rolling_3600s', 0, ? - i % 3000000, 1400 FROM s`,
      [n, DAY, NOW - 1, MONTH, NOW - 1, NOW - 1],
    );
    return;
  }
  await place.sql(
    `INSERT INTO payments (payment_id, budget_state, ledger_state, amount, budgets, owner, created_ms, lease_until_ms, started_ms, first_seq, last_seq)
       SELECT 'h' || i, 'spent', 'settled', 1400, ARRAY['team'], 0, $2::bigint, $2::bigint, $2::bigint, 0, 0 FROM generate_series(1, $1) AS i`,
    [n, NOW - 1],
  );
  await place.sql(
    `INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount)
       SELECT 'h' || i, 'team:day', $2::bigint, $4::bigint - i % 3000000, 1400 FROM generate_series(1, $1) AS i
       UNION ALL SELECT 'h' || i, 'team:month', $3::bigint, $4::bigint - i % 3000000, 1400 FROM generate_series(1, $1) AS i
       UNION ALL SELECT 'h' || i, 'team:rolling_3600s', 0, $4::bigint - i % 3000000, 1400 FROM generate_series(1, $1) AS i`,
    [n, DAY, MONTH, NOW - 1],
  );
  await place.sql("ANALYZE");
}

async function timeReservations(store: PaymentStore): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RESERVATIONS; i++) {
    const started = performance.now();
    const r = await store.open({
      payment: {
        paymentId: `b${i}`,
        requestId: `r${i}`,
        client: "bench",
        route: "store",
        method: "POST",
        url: "http://stoka.test/v1/store",
        amount: 1400n,
        payTo: "GPAYEE",
        asset: "USDC",
        network: "stellar:testnet",
      },
      budgets,
      nowMs: NOW + i,
      leaseUntilMs: NOW + 3_600_000,
    });
    times.push(performance.now() - started);
    if (!r.ok) throw new Error("a reservation was refused");
  }
  return times.sort((a, b) => a - b);
}

for (const kind of KINDS) {
  for (const n of SIZES) {
    const place = await makePlace(kind);
    try {
      await (await place.open()).close();
      await seed(place, n);
      const store = await place.open();
      try {
        const t = await timeReservations(store);
        const at = (q: number) => (t[Math.min(t.length - 1, Math.floor(q * t.length))] ?? 0).toFixed(3);
        console.log(
          `${kind.padEnd(8)} ${String(n).padStart(7)} earlier payments this month and hour: reservation p50 ${at(0.5)} ms, p90 ${at(0.9)} ms`,
        );
      } finally {
        await store.close();
      }
    } finally {
      await place.drop();
    }
  }
}
