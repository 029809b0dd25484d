import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import type { AudienceRule, StokaClient } from "../stoka/client.js";
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
  const store = deps.book.store;
  // stoka answers for the wallet that signed the request: only its payments are compared.
  const wallet = deps.signer.address;
  const reports = compareDays(await store.latest(), usage.days, wallet);
  if (!resolve) return reports;
  // Per payment first, where the answer lists payments (usage-by-payment.ts); per day after.
  // The store writes the row and moves the budget together, and only while the payment is
  // still indeterminate: another replica reconciling at the same time cannot free it twice.
  const done = new Set<string>();
  for (const r of await perPayment(store, usage, wallet, deps.book.now())) {
    const row = await store.resolveIndeterminate({
      paymentId: r.paymentId,
      charged: r.charged,
      atMs: deps.book.now(),
      reason: `reconciled: ${r.because}`,
    });
    if (row) done.add(r.paymentId);
  }
  for (const day of reports) {
    if (day.status !== "all_indeterminate_charged" && day.status !== "no_indeterminate_charged") continue;
    const charged = day.status === "all_indeterminate_charged";
    let resolved = 0;
    for (const id of day.indeterminate) {
      if (done.has(id)) continue;
      const row = await store.resolveIndeterminate({
        paymentId: id,
        charged,
        atMs: deps.book.now(),
        reason: `reconciled with /v1/me/usage for ${day.date}`,
      });
      if (row) resolved++;
    }
    deps.logger.info({ date: day.date, resolved, charged }, "reconciled indeterminate payments");
  }
  return reports;
}
