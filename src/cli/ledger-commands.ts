import { bucketStart, periodLabel } from "../budget/budget.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { CSV_COLUMNS, csvLine, toExportObject } from "../ledger/entry.js";
import { PaymentBook } from "../payment/book.js";
import { reconcile, reconcilerDeps } from "../payment/reconciler.js";
import type { Logger } from "../observability/logger.js";
import { pino } from "pino";
import { viaToken } from "../http/hop-by-hop.js";
import { UpstreamClient } from "../http/upstream-client.js";
import { formatUsdc } from "../stellar/amount.js";
import { StokaClient } from "../stoka/client.js";
import { createMessageSigner } from "../wallet/setup.js";
import { openStores } from "../payment/stores.js";
import type { Stores } from "../payment/stores.js";

/** `stoka-proxy ledger verify|export`, `spend` and `reconcile`: read the data directory. */
type Out = (text: string) => void;

/** Opens the configured payment store (data_dir or PostgreSQL) for one command, and closes it. */
async function withStores<T>(
  config: ProxyConfig,
  fn: (stores: Stores) => Promise<T>,
  logger: Logger = silentLogger,
): Promise<T> {
  const stores = openStores(config, logger);
  try {
    return await fn(stores);
  } catch (e) {
    if (!(e instanceof BudgetStoreUnavailable) || e instanceof StokaProxyError) throw e;
    throw new StokaProxyError(
      "budget_unavailable",
      `cannot read the payment store: ${e.message}`,
      storeHint(config),
    );
  } finally {
    await stores.close();
  }
}

function storeHint(config: ProxyConfig): string {
  if (config.paymentStore.kind === "postgres")
    return "check that PostgreSQL answers at the payment_store URL (STOKA_PROXY_DATABASE_URL)";
  return config.budgetStore.kind === "redis"
    ? "check budget_store and that Redis answers"
    : "check that data_dir is readable and no other process holds the database locked";
}

/** The CLI's stores log nothing of their own: each command prints its answer. */
const silentLogger = pino({ level: "silent" });

export async function ledgerVerify(config: ProxyConfig, out: Out): Promise<number> {
  return withStores(config, async (stores) => {
    const check = await stores.payments.verify();
    if (check.ok) {
      out(`ledger OK: ${check.rows} rows, head ${check.headHash}\n`);
      return 0;
    }
    out(`ledger TAMPERED: ${check.reason} (${check.rows} rows verified before it)\n`);
    return 3;
  });
}

export async function ledgerExport(
  config: ProxyConfig,
  format: string,
  since: string | undefined,
  out: Out,
): Promise<number> {
  const sinceMs = since ? Date.parse(since) : 0;
  if (Number.isNaN(sinceMs)) {
    out(`--since must be an ISO 8601 date or time, got ${since}\n`);
    return 2;
  }
  if (format !== "ndjson" && format !== "csv") {
    out(`--format must be ndjson or csv\n`);
    return 2;
  }
  return withStores(config, async (stores) => {
    if (format === "csv") out(`${csvLine(CSV_COLUMNS)}\n`);
    for await (const row of stores.payments.rows(sinceMs)) {
      const obj = toExportObject(row);
      out(
        format === "csv"
          ? `${csvLine(CSV_COLUMNS.map((c) => obj[c] ?? null))}\n`
          : `${JSON.stringify(obj)}\n`,
      );
    }
    return 0;
  });
}

export async function spend(
  config: ProxyConfig,
  json: boolean,
  out: Out,
  nowMs = Date.now(),
): Promise<number> {
  return withStores(config, async (stores) => {
    const budgets = [];
    try {
      for (const b of config.budgets) {
        for (const limit of b.limits) {
          budgets.push({
            budget: b.name,
            period: periodLabel(limit.period),
            used: (await stores.budgets.used(b, limit, nowMs)).toString(),
            limit: limit.amount.toString(),
            reserved: (await stores.budgets.reserved(b)).toString(),
          });
        }
      }
    } catch (e) {
      if (!(e instanceof BudgetStoreUnavailable)) throw e;
      throw new StokaProxyError(
        "budget_unavailable",
        `cannot read the budgets: ${e.message}`,
        storeHint(config),
      );
    }
    const dayStart = bucketStart("day", nowMs);
    const monthStart = bucketStart("month", nowMs);
    const routes = new Map<
      string,
      { route: string; client: string; day: bigint; month: bigint; indeterminate: bigint }
    >();
    for (const p of await stores.payments.latest()) {
      if (p.state !== "settled" && p.state !== "indeterminate") continue;
      const key = `${p.route}\u0000${p.client}`;
      const e = routes.get(key) ?? {
        route: p.route,
        client: p.client,
        day: 0n,
        month: 0n,
        indeterminate: 0n,
      };
      if (p.startedAtMs >= monthStart) e.month += p.amount;
      if (p.startedAtMs >= dayStart) e.day += p.amount;
      if (p.state === "indeterminate") e.indeterminate += p.amount;
      routes.set(key, e);
    }
    const perRoute = [...routes.values()].map((r) => ({
      route: r.route,
      client: r.client,
      today: r.day.toString(),
      this_month: r.month.toString(),
      indeterminate: r.indeterminate.toString(),
    }));
    if (json) {
      out(`${JSON.stringify({ budgets, routes: perRoute })}\n`);
      return 0;
    }
    out("budget / period: used of limit (reserved)\n");
    for (const b of budgets) {
      out(
        `  ${b.budget} / ${b.period}: ${formatUsdc(BigInt(b.used))} of ${formatUsdc(BigInt(b.limit))} (${formatUsdc(BigInt(b.reserved))} reserved)\n`,
      );
    }
    out("route / client: today, this month (of which indeterminate)\n");
    for (const r of perRoute) {
      out(
        `  ${r.route} / ${r.client}: ${formatUsdc(BigInt(r.today))}, ${formatUsdc(BigInt(r.this_month))} (${formatUsdc(BigInt(r.indeterminate))})\n`,
      );
    }
    return 0;
  });
}

export async function reconcileCommand(
  config: ProxyConfig,
  logger: Logger,
  days: number,
  resolve: boolean,
  json: boolean,
  out: Out,
): Promise<number> {
  const upstream = new UpstreamClient({
    timeoutMs: config.upstream.timeoutMs,
    connectTimeoutMs: config.upstream.connectTimeoutMs,
    caPems: config.upstream.caPems,
  });
  try {
    return await withStores(
      config,
      async (stores) => {
        const deps = reconcilerDeps(config, {
          stoka: new StokaClient(upstream, viaToken("reconcile")),
          messageSigner: createMessageSigner(config.wallet),
          book: new PaymentBook(stores.payments, logger, Date.now, config.leaseMs),
          logger,
        });
        const reports = await reconcile(deps, days, resolve);
        if (json) {
          out(`${JSON.stringify(reports, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`);
        } else {
          for (const d of reports) {
            out(
              `${d.date}: stoka ${d.upstream}, ledger settled ${d.ledgerSettled}, indeterminate ${d.ledgerIndeterminate}, difference ${d.difference}: ${d.status}\n`,
            );
          }
        }
        return reports.some((d) => d.status === "mismatch") ? 4 : 0;
      },
      logger,
    );
  } finally {
    upstream.close();
  }
}
