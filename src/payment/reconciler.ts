import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import type { AudienceRule, StokaClient } from "../stoka/client.js";
import { baseOf } from "./book.js";
import type { PaymentBook } from "./book.js";
import { compareDays } from "./reconcile.js";
import { perPayment } from "./usage-by-payment.js";
import type { DayReport } from "./reconcile.js";

/**
 * The reconciler's I/O: reads the wallet's own counters from stoka (wallet-signed
 * `GET /v1/me/usage`), compares them with the ledger, and, when asked, resolves indeterminate
 * payments the numbers decide (docs/operations.md, Reconcile). Used by `stoka-proxy reconcile`,
 * the optional periodic job and the tests, all wired by `reconcilerDeps`.
 */
export interface ReconcileDeps {
  stoka: StokaClient;
  /** stoka's base URL (the gateway upstream): where the wallet's usage is read. */
  base: URL;
  /** The usage route's audience (wallet_auth), with its alternative spelling. */
  usageAudience: AudienceRule;
  signer: MessageSigner | undefined;
  book: PaymentBook;
  logger: Logger;
}

/** What the reconciler is built from: the running proxy's parts, or the CLI's. */
export interface ReconcilerParts {
  stoka: StokaClient;
  messageSigner: MessageSigner | undefined;
  book: PaymentBook;
  logger: Logger;
}

/** The one place the reconciler is wired (server, CLI and tests). */
export function reconcilerDeps(
  config: Pick<ProxyConfig, "gatewayUpstream" | "walletAuth">,
  parts: ReconcilerParts,
): ReconcileDeps {
  return {
    stoka: parts.stoka,
    base: config.gatewayUpstream,
    usageAudience: config.walletAuth.find((r) => r.route === "usage") ?? {
      audience: "usage",
      alternativeAudience: "me-usage",
    },
    signer: parts.messageSigner,
    book: parts.book,
    logger: parts.logger,
  };
}

export async function reconcile(deps: ReconcileDeps, days: number, resolve: boolean): Promise<DayReport[]> {
  if (!deps.signer) {
    throw new StokaProxyError(
      "wallet_auth_failed",
      "reconciling needs the wallet key or a sign command",
      "set STELLAR_SECRET or wallet.sign_command",
    );
  }
  const usage = await deps.stoka.usageAnswer(deps.base, deps.signer, deps.usageAudience, days);
  const reports = compareDays(deps.book.ledger.latest(), usage.days);
  if (!resolve) return reports;
  const latest = new Map(deps.book.ledger.latest().map((r) => [r.paymentId, r]));
  // Per payment first, where the answer lists payments (usage-by-payment.ts); per day after.
  const resolved = new Set<string>();
  for (const r of perPayment(deps.book, usage, deps.signer.address)) {
    const row = latest.get(r.paymentId);
    if (!row || row.state !== "indeterminate") continue;
    deps.book.append(
      baseOf(row),
      r.charged ? "settled" : "rejected",
      row.tx,
      null,
      `reconciled: ${r.because}`,
    );
    await deps.book.budgets.resolveIndeterminate(r.paymentId, r.charged);
    resolved.add(r.paymentId);
  }
  for (const day of reports) {
    if (day.status !== "all_indeterminate_charged" && day.status !== "no_indeterminate_charged") continue;
    const charged = day.status === "all_indeterminate_charged";
    for (const id of day.indeterminate) {
      const row = latest.get(id);
      if (!row || resolved.has(id)) continue;
      deps.book.append(
        baseOf(row),
        charged ? "settled" : "rejected",
        row.tx,
        null,
        `reconciled with /v1/me/usage for ${day.date}`,
      );
      await deps.book.budgets.resolveIndeterminate(id, charged);
    }
    deps.logger.info(
      { date: day.date, resolved: day.indeterminate.length, charged },
      "reconciled indeterminate payments",
    );
  }
  return reports;
}
