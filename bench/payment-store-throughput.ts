/**
 * `npx tsx bench/payment-store-throughput.ts`: how many payments per second the payment stores
 * take, from one process and from three (each its own process and connections, as replicas).
 * Not a test: it prints numbers and gates nothing. Each run uses a fresh SQLite file or a fresh
 * PostgreSQL database (dropped afterwards) on this machine, bounded in count.
 *
 *   reserve: open only (check every limit, insert the entries and the `reserved` row).
 *   payment: open → sent → settled (three transactions, as the proxy writes a paid request).
 */
import type { Budget } from "../src/config/config.js";
import type { WorkerConfig } from "../test/support/payment-store-worker.js";
import { budgetsToJson, makePlace } from "../test/support/payment-stores.js";
import type { StoreKind } from "../test/support/payment-stores.js";
import { startWorkers } from "../test/support/store-workers.js";

const TOTAL = Number(process.env.BENCH_PAYMENTS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 10);
const KINDS = (process.env.BENCH_STORES ?? "postgres,sqlite").split(",") as StoreKind[];

const budgets: Budget[] = [
  {
    name: "team",
    match: {},
    limits: [
      { period: { kind: "calendar", unit: "day" }, amount: 10n ** 15n },
      { period: { kind: "calendar", unit: "month" }, amount: 10n ** 15n },
    ],
  },
  { name: "app", match: {}, limits: [{ period: { kind: "rolling", seconds: 3600 }, amount: 10n ** 15n }] },
];

async function run(kind: StoreKind, processes: number, mode: "reserve" | "churn"): Promise<number> {
  const place = await makePlace(kind);
  // Migrate first, so the measurement is writes only.
  await (await place.open()).close();
  try {
    const per = Math.ceil(TOTAL / processes);
    const configs: WorkerConfig[] = Array.from({ length: processes }, (_, i) => ({
      target: place.target.kind === "postgres" ? { ...place.target, poolMax: CONCURRENCY } : place.target,
      mode,
      count: per,
      concurrency: CONCURRENCY,
      budgets: budgetsToJson(budgets),
      nowMs: Date.UTC(2025, 4, 14, 10),
      leaseMs: 3_600_000,
      price: "1400",
      idPrefix: `b${i}`,
    }));
    const started = performance.now();
    const workers = await startWorkers(configs, 300_000);
    const results = await Promise.all(workers.map((w) => w.done));
    const wall = performance.now() - started;
    const ok = results.reduce((s, r) => s + r.ok, 0);
    const failed = results.reduce((s, r) => s + r.denied + r.unavailable + r.errors.length, 0);
    if (failed > 0) console.log(`  (${failed} did not succeed)`);
    // Time from `go` to the last worker's end; the workers' own clocks agree closely.
    const slowest = Math.max(...results.map((r) => r.elapsedMs));
    void wall;
    return ok / (slowest / 1000);
  } finally {
    await place.drop();
  }
}

for (const kind of KINDS) {
  for (const mode of ["reserve", "churn"] as const) {
    for (const processes of [1, 3]) {
      const rate = await run(kind, processes, mode);
      const what = mode === "reserve" ? "reservations/s" : "payments/s (open+sent+settled)";
      console.log(
        `${kind.padEnd(8)} ${processes} process${processes > 1 ? "es" : "  "} × ${CONCURRENCY} in flight: ${rate.toFixed(0).padStart(6)} ${what}`,
      );
    }
  }
}
