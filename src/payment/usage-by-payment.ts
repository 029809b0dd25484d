import type { Usage } from "../resilience/usage-shapes.js";
import { reconcileUsage } from "../resilience/reconcile-usage.js";
import type { LedgerPayment, Resolution } from "../resilience/reconcile-usage.js";
import type { PaymentStore } from "../store/payment-store.js";

/**
 * The per-payment half of reconcile (resilience/reconcile-usage.ts): when the usage answer
 * lists payments with their transaction, an indeterminate payment whose signed transaction is
 * listed was charged, and one absent from complete days was not. Only the payments of `wallet`
 * (their rows' payer) are compared; rows written before the ledger recorded the payer count
 * as this wallet's (`includeUnattributed`), as the per-day comparison counts them and reports
 * them. Days the answer cannot decide per payment are left to the per-day comparison.
 */
export const SETTLE_HORIZON_MS = 10 * 60_000;

export async function perPayment(
  store: Pick<PaymentStore, "rows">,
  usage: Usage,
  wallet: string,
  nowMs = Date.now(),
): Promise<Resolution[]> {
  if (!usage.payments) return [];
  const byId = new Map<string, LedgerPayment & { hashes: Set<string> }>();
  for await (const row of store.rows()) {
    let p = byId.get(row.paymentId);
    if (!p) {
      p = {
        paymentId: row.paymentId,
        state: row.state,
        amount: row.amount,
        startedAtMs: row.atMs,
        payer: row.payer ?? null,
        txHashes: [],
        hashes: new Set<string>(),
      };
      byId.set(row.paymentId, p);
    }
    p.state = row.state;
    p.payer ??= row.payer ?? null;
    if (row.tx) p.hashes.add(row.tx.toLowerCase());
  }
  const ledger = [...byId.values()].map(({ hashes, ...p }) => ({ ...p, txHashes: [...hashes] }));
  return reconcileUsage(ledger, usage, {
    wallet,
    includeUnattributed: true,
    nowMs,
    settleHorizonMs: SETTLE_HORIZON_MS,
  }).resolutions;
}
