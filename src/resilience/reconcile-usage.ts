import type { Usage, UsagePayment } from "./usage-shapes.js";

/**
 * The ledger against the wallet's own usage, per payment where the usage lists payments, per
 * UTC day otherwise. Only the ledger's payments made by the wallet whose usage this is are
 * compared (`payer`); rows written before the ledger recorded the payer count only when the
 * caller says the ledger only ever had this wallet (`includeUnattributed`). Pure.
 *
 * Per payment (a day whose listed payments add up to its counter: the list is complete):
 * - a ledger hash found in the usage with the same amount: charged (an indeterminate payment
 *   resolves to settled). This needs no completeness: a listed charge is proof by itself.
 * - an indeterminate payment whose hashes are not listed: not charged, only when every UTC day
 *   its charge could fall on (from its start to `settleHorizonMs` later) is in the answer,
 *   complete, and has no listed payment the ledger cannot match — a charge the proxy cannot
 *   name (the facilitator may rebuild the transaction under another hash) could be this one.
 * Per day (as the existing reconcile, for what the payments left open): the day's counter
 * against settled (and proven charged) + still indeterminate; resolves the day's open payments
 * when the numbers leave no doubt.
 * A payment too recent for its horizon is never resolved as not charged.
 *
 * @example
 * reconcileUsage(
 *   [{ paymentId: "p1", state: "indeterminate", amount: 1400n, startedAtMs: Date.parse("2026-11-28T10:00:00Z"), payer: "GA…", txHashes: ["ab…"] }],
 *   { days: [{ date: "2026-11-28", spentAtomic: 1400n }], payments: [{ tx: "ab…", amountAtomic: 1400n, date: "2026-11-28" }] },
 *   { wallet: "GA…", includeUnattributed: false, nowMs: Date.parse("2026-11-29T00:00:00Z"), settleHorizonMs: 300_000 },
 * ).resolutions // → [{ paymentId: "p1", charged: true, because: "its transaction is listed in the usage" }]
 */
export interface LedgerPayment {
  paymentId: string;
  /** The payment's latest state (`settled`, `indeterminate`, … others are ignored). */
  state: string;
  amount: bigint;
  startedAtMs: number;
  /** The wallet that signed it, or null for rows written before the ledger recorded it. */
  payer: string | null;
  /** Every hash the ledger knows for it (the signed transaction's, the receipt's). */
  txHashes: readonly string[];
}

export interface ReconcileOptions {
  wallet: string;
  includeUnattributed: boolean;
  nowMs: number;
  /** The longest a sent payment can take to be charged (≥ the requirement's maxTimeoutSeconds). */
  settleHorizonMs: number;
}

export type PaymentFinding =
  | "charged"
  | "not_charged"
  | "amount_differs"
  /** Settled in the ledger, absent from a complete usage day. */
  | "missing_upstream"
  | "unknown";

export interface PaymentReport {
  paymentId: string;
  date: string;
  ledgerState: string;
  finding: PaymentFinding;
  reason: string;
}

export interface DayComparison {
  date: string;
  mode: "per_payment" | "per_day";
  /** Settled in the ledger, plus indeterminate payments proven charged. */
  ledgerSettled: bigint;
  /** Indeterminate and not proven either way by a listed payment. */
  ledgerIndeterminate: bigint;
  upstream: bigint;
  difference: bigint;
  status: "match" | "all_indeterminate_charged" | "no_indeterminate_charged" | "mismatch";
  indeterminate: string[];
  /** Listed payments of the day that no ledger payment matches. */
  unmatchedUpstream: number;
}

export interface Resolution {
  paymentId: string;
  charged: boolean;
  because: string;
}

export interface UsageReconcile {
  days: DayComparison[];
  payments: PaymentReport[];
  resolutions: Resolution[];
  /** Listed payments the ledger cannot match (charged but not known by their hash). */
  unmatchedUpstream: UsagePayment[];
}

const DAY_MS = 86_400_000;
const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The UTC days a charge for a payment started at `startMs` could fall on. */
export function chargeDays(startMs: number, horizonMs: number): string[] {
  const out: string[] = [];
  const first = Math.floor(startMs / DAY_MS) * DAY_MS;
  for (let d = first; d <= startMs + horizonMs && out.length < 400; d += DAY_MS) out.push(utcDay(d));
  return out;
}

export function reconcileUsage(
  ledger: readonly LedgerPayment[],
  usage: Usage,
  options: ReconcileOptions,
): UsageReconcile {
  const mine = ledger.filter(
    (p) =>
      (p.state === "settled" || p.state === "indeterminate") &&
      (p.payer === options.wallet || (p.payer === null && options.includeUnattributed)),
  );
  const listed = usage.payments ?? [];
  const byTx = new Map<string, UsagePayment>();
  for (const u of listed) if (u.tx) byTx.set(u.tx, u);
  const matchOf = (p: LedgerPayment) => {
    for (const h of p.txHashes) {
      const u = byTx.get(h.toLowerCase());
      if (u) return u;
    }
    return undefined;
  };

  const matched = new Set<UsagePayment>();
  for (const p of mine) {
    const u = matchOf(p);
    if (u) matched.add(u);
  }
  const unmatchedUpstream = listed.filter((u) => !matched.has(u));

  // A day is complete when its listed payments add up to its counter.
  const counters = new Map(usage.days.map((d) => [d.date, d.spentAtomic]));
  const listedSum = new Map<string, bigint>();
  const unmatchedOn = new Map<string, number>();
  let unplaced = 0;
  for (const u of listed) {
    if (!u.date) {
      unplaced += 1;
      continue;
    }
    listedSum.set(u.date, (listedSum.get(u.date) ?? 0n) + u.amountAtomic);
    if (!matched.has(u)) unmatchedOn.set(u.date, (unmatchedOn.get(u.date) ?? 0) + 1);
  }
  const complete = (date: string) =>
    usage.payments !== undefined &&
    unplaced === 0 &&
    counters.has(date) &&
    (listedSum.get(date) ?? 0n) === counters.get(date);
  const clean = (date: string) => complete(date) && (unmatchedOn.get(date) ?? 0) === 0;

  const payments: PaymentReport[] = [];
  const resolutions: Resolution[] = [];
  const provenCharged = new Set<string>();
  const provenNot = new Set<string>();
  for (const p of mine) {
    const date = utcDay(p.startedAtMs);
    const u = matchOf(p);
    const report = (finding: PaymentFinding, reason: string) =>
      payments.push({ paymentId: p.paymentId, date, ledgerState: p.state, finding, reason });
    if (u) {
      if (u.amountAtomic !== p.amount) {
        report("amount_differs", `listed with ${u.amountAtomic}, the ledger says ${p.amount}`);
        continue;
      }
      report("charged", "its transaction is listed in the usage");
      if (p.state === "indeterminate") {
        provenCharged.add(p.paymentId);
        resolutions.push({
          paymentId: p.paymentId,
          charged: true,
          because: "its transaction is listed in the usage",
        });
      }
      continue;
    }
    const days = chargeDays(p.startedAtMs, options.settleHorizonMs);
    const settledForSure = options.nowMs >= p.startedAtMs + options.settleHorizonMs;
    if (settledForSure && days.every(clean)) {
      if (p.state === "indeterminate") {
        report("not_charged", "absent from complete usage days that list every charge");
        provenNot.add(p.paymentId);
        resolutions.push({
          paymentId: p.paymentId,
          charged: false,
          because: `absent from the complete usage of ${days.join(", ")}`,
        });
      } else report("missing_upstream", "settled in the ledger, absent from complete usage days");
      continue;
    }
    report(
      "unknown",
      usage.payments === undefined ? "the usage lists no payments" : "the usage cannot prove it either way",
    );
  }

  // Per day: every day of the answer.
  const dayReports: DayComparison[] = [];
  for (const day of usage.days) {
    const perPayment = complete(day.date);
    let settled = 0n;
    let open = 0n;
    const ids: string[] = [];
    for (const p of mine) {
      if (utcDay(p.startedAtMs) !== day.date || provenNot.has(p.paymentId)) continue;
      if (p.state === "settled" || provenCharged.has(p.paymentId)) settled += p.amount;
      else {
        open += p.amount;
        ids.push(p.paymentId);
      }
    }
    const difference = day.spentAtomic - settled;
    let status: DayComparison["status"] = "mismatch";
    if (ids.length === 0 && difference === 0n) status = "match";
    else if (ids.length > 0 && difference === open) status = "all_indeterminate_charged";
    else if (ids.length > 0 && difference === 0n) status = "no_indeterminate_charged";
    dayReports.push({
      date: day.date,
      mode: perPayment ? "per_payment" : "per_day",
      ledgerSettled: settled,
      ledgerIndeterminate: open,
      upstream: day.spentAtomic,
      difference,
      status,
      indeterminate: ids,
      unmatchedUpstream: unmatchedOn.get(day.date) ?? 0,
    });
    // The day's numbers resolve what the listed payments left open (a charge listed under a
    // hash the ledger does not know, or no list at all), only for payments whose charge cannot
    // fall on a later day than this one.
    if (status !== "all_indeterminate_charged" && status !== "no_indeterminate_charged") continue;
    const charged = status === "all_indeterminate_charged";
    for (const id of ids) {
      const p = mine.find((x) => x.paymentId === id) as LedgerPayment;
      const sure = options.nowMs >= p.startedAtMs + options.settleHorizonMs;
      const sameDay = chargeDays(p.startedAtMs, options.settleHorizonMs).length === 1;
      if (!sure || !sameDay) continue;
      resolutions.push({
        paymentId: id,
        charged,
        because: `the usage of ${day.date} equals settled ${charged ? "plus all indeterminate" : "alone"}`,
      });
    }
  }
  return { days: dayReports, payments, resolutions, unmatchedUpstream };
}
