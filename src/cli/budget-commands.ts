import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { ledgerIdentity } from "../budget/epoch-memory.js";
import type { EpochLedgerMark } from "../budget/epoch.js";
import { beginMaintenance, connectRedis, readEpoch, writeEpoch } from "../budget/redis-restore.js";
import { redisWhere } from "../budget/redis-store.js";
import { emptyPlan, planRestore } from "../budget/restore-plan.js";
import type { RestorePayment } from "../budget/restore-plan.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { Ledger } from "../ledger/ledger.js";
import { formatUsdc } from "../stellar/amount.js";
import { openDatabase } from "../storage/sqlite.js";
import { databasePath } from "../payment/stores.js";
import { jsonLine } from "./output.js";

/**
 * `stoka-proxy budgets status | restore | reset`: the operator's tools for a Redis budget store
 * that lost its state (see src/budget/epoch.ts). Each replica keeps its own SQLite ledger, so
 * `restore` takes every replica's database (`--ledger FILE`, repeated) and sums them; a
 * replica whose ledger was left out refuses the restored epoch and marks it lost again.
 */
type Out = (text: string) => void;

function redisStore(config: ProxyConfig): { url: string; prefix: string } {
  if (config.paymentStore.kind === "postgres") {
    throw new StokaProxyError(
      "config_invalid",
      "budgets status/restore/reset work on the Redis budget store, and this configuration keeps its budgets in PostgreSQL with the ledger",
      "nothing to restore: PostgreSQL keeps budgets and ledger in one transaction; use `stoka-proxy spend` and `reconcile`",
    );
  }
  if (config.budgetStore.kind !== "redis") {
    throw new StokaProxyError(
      "config_invalid",
      "budgets status/restore/reset work on the Redis budget store, and this configuration uses SQLite",
      "set budget_store.kind: redis (or STOKA_PROXY_REDIS_URL), or use `stoka-proxy spend` for SQLite",
    );
  }
  return config.budgetStore;
}

async function withRedis<T>(
  url: string,
  fn: (redis: Awaited<ReturnType<typeof connectRedis>>) => Promise<T>,
) {
  let redis;
  try {
    redis = await connectRedis(url);
  } catch (e) {
    throw new StokaProxyError("budget_unavailable", (e as Error).message, "check budget_store.redis_url");
  }
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

interface LedgerSnapshot {
  file: string;
  mark: EpochLedgerMark;
  payments: RestorePayment[];
}

/** One ledger file, read in one transaction (a consistent snapshot while its replica runs). */
function readLedger(file: string): LedgerSnapshot {
  if (!existsSync(file)) {
    throw new StokaProxyError(
      "bad_request",
      `no ledger database at ${file}`,
      "give each replica's data_dir/stoka-proxy.db (or a copy made with sqlite3 .backup)",
    );
  }
  const db = openDatabase(file);
  try {
    const ledger = new Ledger(db);
    const id = ledgerIdentity(db);
    return db.transaction(() => {
      const check = ledger.verify();
      if (!check.ok) {
        throw new StokaProxyError(
          "bad_request",
          `the ledger ${file} does not verify: ${check.reason}`,
          "run `stoka-proxy ledger verify` on it; a tampered ledger cannot be trusted to rebuild budgets",
        );
      }
      return { file, mark: { id, head: ledger.head()?.seq ?? 0 }, payments: ledger.latest() };
    })();
  } finally {
    db.close();
  }
}

function readLedgers(files: string[]): LedgerSnapshot[] {
  const snapshots = files.map(readLedger);
  const byId = new Map<string, string>();
  for (const s of snapshots) {
    const other = byId.get(s.mark.id);
    if (other) {
      throw new StokaProxyError(
        "bad_request",
        `${other} and ${s.file} are the same ledger (id ${s.mark.id})`,
        "give each replica's database once",
      );
    }
    byId.set(s.mark.id, s.file);
  }
  return snapshots;
}

export async function budgetsStatus(config: ProxyConfig, json: boolean, out: Out): Promise<number> {
  const store = redisStore(config);
  const record = await withRedis(store.url, (redis) => readEpoch(redis, store.prefix));
  const state = record === null ? "none" : record.lost !== null ? "lost" : "ok";
  if (json) {
    out(jsonLine({ state, prefix: store.prefix, epoch: record }));
  } else if (record === null) {
    out(
      `no budget epoch under ${store.prefix} at ${redisWhere(store.url)} (a fresh deployment, or lost data)\n`,
    );
  } else {
    out(
      `epoch ${record.id ?? "(none)"} under ${store.prefix} at ${redisWhere(store.url)}: ${state}, made by ${record.origin} at ${new Date(record.atMs).toISOString()}, generation ${record.gen}\n`,
    );
    if (record.lost) out(`  lost: ${record.lost}\n`);
  }
  return state === "lost" ? 1 : 0;
}

export async function budgetsRestore(
  config: ProxyConfig,
  files: string[],
  json: boolean,
  out: Out,
  graceMs = 2000,
): Promise<number> {
  const store = redisStore(config);
  const ledgers = files.length > 0 ? files : [databasePath(config)];
  // Read once before touching Redis: a wrong or tampered file must not stop healthy replicas.
  readLedgers(ledgers);
  return withRedis(store.url, async (redis) => {
    await beginMaintenance(
      redis,
      store.prefix,
      `an operator's budgets restore is in progress (started ${new Date().toISOString()}); if it did not finish, run it again`,
    );
    // Reservations made just before the tombstone write their ledger row a moment later.
    await sleep(graceMs);
    const snapshots = readLedgers(ledgers);
    const nowMs = Date.now();
    const plan = planRestore(
      snapshots.flatMap((s) => s.payments),
      {
        prefix: store.prefix,
        budgets: config.budgets,
        paidHosts: config.paidHosts,
        gatewayUpstream: config.gatewayUpstream,
      },
      nowMs,
      config.leaseMs,
    );
    const written = await writeEpoch(
      redis,
      store.prefix,
      plan,
      "restore",
      snapshots.map((s) => s.mark),
    );
    if (json) {
      out(
        `${JSON.stringify({
          epoch: written.id,
          origin: written.origin,
          ledgers: snapshots.map((s) => ({ file: s.file, id: s.mark.id, head: s.mark.head })),
          payments_counted: plan.counted,
          open_reservations: plan.reservations.length,
          limits: plan.limits.map((l) => ({ ...l, used: l.used.toString(), limit: l.limit.toString() })),
        })}\n`,
      );
    } else {
      out(
        `restored epoch ${written.id} under ${store.prefix} from ${snapshots.length} ledger(s): ${plan.counted} payment(s) counted, ${plan.reservations.length} still open or indeterminate\n`,
      );
      for (const l of plan.limits)
        out(`  ${l.budget} / ${l.period}: ${formatUsdc(l.used)} of ${formatUsdc(l.limit)}\n`);
      out("running replicas take the new epoch up on their next payment or check (no restart needed)\n");
    }
    return 0;
  });
}

export async function budgetsReset(config: ProxyConfig, yes: boolean, out: Out): Promise<number> {
  const store = redisStore(config);
  if (!yes) {
    out(
      `budgets reset forgets everything spent under ${store.prefix} at ${redisWhere(store.url)} and starts every budget from zero.\n` +
        "Prefer `stoka-proxy budgets restore --ledger FILE …`, which rebuilds the counters from the ledgers.\n" +
        "Nothing was changed; run `stoka-proxy budgets reset --yes` to reset.\n",
    );
    return 2;
  }
  return withRedis(store.url, async (redis) => {
    await beginMaintenance(
      redis,
      store.prefix,
      `an operator's budgets reset is in progress (started ${new Date().toISOString()}); if it did not finish, run it again`,
    );
    const written = await writeEpoch(redis, store.prefix, emptyPlan(), "reset", []);
    out(`reset: epoch ${written.id} under ${store.prefix}; every budget starts from zero\n`);
    return 0;
  });
}
