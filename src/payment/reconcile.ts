import type { PaymentSummary } from "../ledger/ledger.js";
import type { UsageDay } from "../stoka/client.js";

/**
 * Compares what the ledger says was paid with what stoka says the wallet spent, per UTC day
 * (`GET /v1/me/usage`). Pure. An indeterminate payment can be resolved when the day's numbers
 * leave no doubt: stoka's total equals settled + all indeterminate (they were all charged), or
 * equals settled alone (none were).
 *
 * Only the payments of the wallet whose usage this is are compared (`wallet`): a ledger can
 * hold several wallets' payments (the wallet was changed, or gateways with different wallets
 * share one PostgreSQL ledger). Rows written before the ledger recorded the payer (payer null)
 * cannot be told apart, so they are counted as this wallet's and reported (`unattributed`).
 */
export interface DayReport {
  date: string;
  ledgerSettled: bigint;
  ledgerIndeterminate: bigint;
  upstream: bigint;
  /** upstream − ledger settled: what stoka charged that the ledger does not count as settled. */
  difference: bigint;
  status: "match" | "all_indeterminate_charged" | "no_indeterminate_charged" | "mismatch";
  indeterminate: string[];
  /** Payments of the day counted although the ledger does not say which wallet paid them. */
  unattributed: number;
  /** Payments of the day paid by another wallet: not compared. */
  otherWallets: number;
}

/** Whose payments a comparison covers; without one, every row counts (as before the payer was recorded). */
export function paidBy(
  payer: string | null | undefined,
  wallet: string | undefined,
): "mine" | "unknown" | "other" {
  if (payer === null || payer === undefined) return "unknown";
  return wallet === undefined || payer === wallet ? "mine" : "other";
}

export function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** `latest` holds the latest row of each payment; a payment counts on the day it started. */
export function compareDays(
  latest: readonly PaymentSummary[],
  usage: readonly UsageDay[],
  wallet?: string,
): DayReport[] {
  return usage.map((day) => {
    let settled = 0n;
    let indeterminate = 0n;
    let unattributed = 0;
    let otherWallets = 0;
    const ids: string[] = [];
    for (const r of latest) {
      if (utcDate(r.startedAtMs) !== day.date) continue;
      const whose = paidBy(r.payer, wallet);
      if (whose === "other") {
        otherWallets += 1;
        continue;
      }
      if (whose === "unknown" && (r.state === "settled" || r.state === "indeterminate")) unattributed += 1;
      if (r.state === "settled") settled += r.amount;
      if (r.state === "indeterminate") {
        indeterminate += r.amount;
        ids.push(r.paymentId);
      }
    }
    const difference = day.spentAtomic - settled;
    let status: DayReport["status"] = "mismatch";
    if (ids.length === 0 && difference === 0n) status = "match";
    else if (ids.length > 0 && difference === indeterminate) status = "all_indeterminate_charged";
    else if (ids.length > 0 && difference === 0n) status = "no_indeterminate_charged";
    return {
      date: day.date,
      ledgerSettled: settled,
      ledgerIndeterminate: indeterminate,
      upstream: day.spentAtomic,
      difference,
      status,
      indeterminate: ids,
      unattributed,
      otherWallets,
    };
  });
}
