import { bucketStart, periodLabel } from "../budget/budget.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { stringify } from "csv-stringify/sync";
import { CSV_COLUMNS, toExportObject } from "../ledger/entry.js";
import { PaymentBook } from "../payment/book.js";
import { reconcile, reconcilerDeps } from "../payment/reconciler.js";
import type { Logger } from "../observability/logger.js";
import { pino } from "pino";
import { viaToken } from "../http/hop-by-hop.js";
import { UpstreamClient } from "../http/upstream-client.js";
import { formatUsdc } from "../stellar/amount.js";
import { StokaClient } from "../stoka/client.js";
import { StrKey } from "@stellar/stellar-sdk";
import type { WalletOptions } from "../config/config.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import { createMessageSigner } from "../wallet/setup.js";
import { openStores } from "../payment/stores.js";
import type { Stores } from "../payment/stores.js";
import { jsonLine, NO_PROGRESS, table } from "./output.js";
import type { Out, Progress } from "./output.js";

/**
 * `stoka-proxy ledger verify|export`, `spend` and `reconcile`: read the data directory. People
 * read USDC in aligned tables; `--json` carries atomic units as strings, snake_case keys.
 */

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

export async function ledgerVerify(config: ProxyConfig, out: Out, json = false): Promise<number> {
  return withStores(config, async (stores) => {
    const check = await stores.payments.verify();
    if (json) {
      out(jsonLine(check.ok ? check : { ...check, tampered: true }));
      return check.ok ? 0 : 3;
    }
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
  progress: Progress = NO_PROGRESS,
): Promise<number> {
  const sinceMs = since ? Date.parse(since) : 0;
  // Refusals are errors (stderr, exit 2), never part of the export a pipe receives.
  if (Number.isNaN(sinceMs))
    throw new StokaProxyError(
      "bad_request",
      `--since must be an ISO 8601 date or time, got ${JSON.stringify(since)}`,
      "e.g. --since 2026-01-31 or --since 2026-01-31T12:00:00Z",
    );
  if (format !== "ndjson" && format !== "csv")
    throw new StokaProxyError("bad_request", `--format must be ndjson or csv, got ${format}`, "");
  return withStores(config, async (stores) => {
    // RFC 4180 with "\n" line ends; a field holding a CR is quoted too, as it always was.
    const csv = (rows: (string | number | null)[][]) =>
      stringify(rows, { record_delimiter: "\n", quoted_match: /\r/ });
    if (format === "csv") out(csv([CSV_COLUMNS]));
    let count = 0;
    for await (const row of stores.payments.rows(sinceMs)) {
      const obj = toExportObject(row);
      out(format === "csv" ? csv([CSV_COLUMNS.map((c) => obj[c] ?? null)]) : `${JSON.stringify(obj)}\n`);
      count += 1;
      if (count % 500 === 0) progress.update(`ledger export: ${count} rows…`);
    }
    progress.done();
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
      out(jsonLine({ budgets, routes: perRoute }));
      return 0;
    }
    const usdc = (atomic: string) => formatUsdc(BigInt(atomic));
    if (budgets.length === 0) out("no budgets configured (nothing is paid)\n");
    else
      out(
        table(
          ["BUDGET", "PERIOD", "USED", "LIMIT", "RESERVED"],
          budgets.map((b) => [b.budget, b.period, usdc(b.used), usdc(b.limit), usdc(b.reserved)]),
          [2, 3, 4],
        ),
      );
    out("\n");
    if (perRoute.length === 0) out("no payments this month\n");
    else
      out(
        table(
          ["ROUTE", "CLIENT", "TODAY", "THIS MONTH", "INDETERMINATE"],
          perRoute.map((r) => [r.route, r.client, usdc(r.today), usdc(r.this_month), usdc(r.indeterminate)]),
          [2, 3, 4],
        ),
      );
    return 0;
  });
}

/**
 * The signer `reconcile` reads the usage with, for the wallet being reconciled. stoka answers
 * `/v1/me/usage` for the wallet that signed it, so `--wallet` must be that wallet: the local
 * key's own address, or (with a sign command) the address the command signs for.
 */
export function reconcileSigner(
  wallet: WalletOptions,
  chosen: string | undefined,
): MessageSigner | undefined {
  if (chosen === undefined) return createMessageSigner(wallet);
  if (!StrKey.isValidEd25519PublicKey(chosen))
    throw new StokaProxyError(
      "bad_request",
      `--wallet must be a Stellar account address (G…, 56 characters), got ${JSON.stringify(chosen.slice(0, 60))}`,
      "e.g. --wallet GABC…; without it the configured wallet is reconciled",
    );
  const configured = createMessageSigner(wallet.secret ? wallet : { ...wallet, address: chosen });
  if (configured && configured.address !== chosen)
    throw new StokaProxyError(
      "bad_request",
      `--wallet ${chosen} is not the configured wallet ${configured.address}: stoka reports usage only to the wallet that signs for it`,
      "run reconcile with that wallet's key (STELLAR_SECRET or wallet.secret_file) or its sign command and wallet.address",
    );
  return configured;
}

export async function reconcileCommand(
  config: ProxyConfig,
  logger: Logger,
  days: number,
  resolve: boolean,
  json: boolean,
  out: Out,
  progress: Progress = NO_PROGRESS,
  wallet?: string,
): Promise<number> {
  const messageSigner = reconcileSigner(config.wallet, wallet);
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
          messageSigner,
          book: new PaymentBook(stores.payments, logger, Date.now, config.leaseMs),
          logger,
        });
        progress.update(`reconcile: asking stoka for ${days} day(s) of usage…`);
        const reports = await reconcile(deps, days, resolve).finally(() => progress.done());
        if (json) {
          out(jsonLine(reports));
        } else if (reports.length === 0) {
          out(`stoka reports no usage in the last ${days} day(s)\n`);
        } else {
          out(
            table(
              ["DATE", "STOKA", "LEDGER SETTLED", "INDETERMINATE", "DIFFERENCE", "STATUS"],
              reports.map((d) => [
                d.date,
                formatUsdc(d.upstream),
                formatUsdc(d.ledgerSettled),
                formatUsdc(d.ledgerIndeterminate),
                formatUsdc(d.difference),
                d.status,
              ]),
              [1, 2, 3, 4],
            ),
          );
          const unattributed = reports.reduce((n, d) => n + d.unattributed, 0);
          const others = reports.reduce((n, d) => n + d.otherWallets, 0);
          const who = messageSigner?.address ?? "the configured wallet";
          out(`\nwallet: ${who}\n`);
          if (unattributed > 0)
            out(
              `note: ${unattributed} payment(s) were recorded before the ledger kept the paying wallet; they are counted as ${who}'s\n`,
            );
          if (others > 0)
            out(`note: ${others} payment(s) of other wallets in these days were not compared\n`);
        }
        return reports.some((d) => d.status === "mismatch") ? 4 : 0;
      },
      logger,
    );
  } finally {
    upstream.close();
  }
}
