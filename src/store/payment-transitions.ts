import { bucketStart, limitKey, periodLabel } from "../budget/budget.js";
import type { Budget } from "../config/config.js";
import type { BudgetDenial } from "../budget/store.js";
import type { LaterState } from "./payment-store.js";

/**
 * What each payment store decides before it writes: which budget step a ledger state brings,
 * how a reservation moves, which limits a reservation must fit. Pure, so SQLite and
 * PostgreSQL decide alike and the table tests cover both.
 */

/** Where a payment's money stands in the budgets. */
export type BudgetState = "reserved" | "spent" | "released" | "indeterminate";

/** commit: spent for good; release: given back; hold: outcome unknown, stays counted. */
export type BudgetStep = "none" | "commit" | "release" | "hold";

export const BUDGET_STATES: readonly BudgetState[] = ["reserved", "spent", "released", "indeterminate"];

export function budgetStepFor(state: LaterState): BudgetStep {
  switch (state) {
    case "sent":
      return "none";
    case "settled":
      return "commit";
    case "rejected":
    case "failed":
      return "release";
    case "indeterminate":
      return "hold";
  }
}

/** The reservation's next state, and whether its budget entries are removed (money given back). */
export interface BudgetMove {
  to: BudgetState;
  frees: boolean;
}

/**
 * How a step moves a reservation; null leaves it as it is. From `reserved` every step applies.
 * From `indeterminate` (a lease ran out, or the proxy was interrupted, while the request was
 * still in flight) a definite answer that arrives later still applies: a receipt keeps the
 * money spent, a rejection (or a retry that never left) gives it back; that answer is a ledger
 * row, so nothing is freed silently. `spent` and `released` are final.
 */
export function moveBudget(from: BudgetState, step: BudgetStep): BudgetMove | null {
  if (step === "none") return null;
  if (from === "reserved") {
    if (step === "commit") return { to: "spent", frees: false };
    if (step === "release") return { to: "released", frees: true };
    return { to: "indeterminate", frees: false };
  }
  if (from === "indeterminate") {
    if (step === "commit") return { to: "spent", frees: false };
    if (step === "release") return { to: "released", frees: true };
  }
  return null;
}

/** Reconciliation's decision for an indeterminate payment (never takes anything below zero). */
export function resolveMove(from: BudgetState, charged: boolean): BudgetMove | null {
  if (from !== "indeterminate" && from !== "reserved") return null;
  return charged ? { to: "spent", frees: false } : { to: "released", frees: true };
}

/** One limit of one budget, as a reservation at `nowMs` checks and records it. */
export interface LimitCheck {
  budget: string;
  period: string;
  limit: bigint;
  /** limitKey(): stable across config reordering. */
  key: string;
  calendar: boolean;
  /** Start of the UTC calendar bucket (0 for rolling windows, as the SQLite store keeps it). */
  bucket: number;
  /** Rolling windows count entries strictly after this. */
  sinceMs: number;
}

export function limitChecks(budgets: readonly Budget[], nowMs: number): LimitCheck[] {
  const out: LimitCheck[] = [];
  for (const b of budgets) {
    for (const limit of b.limits) {
      const calendar = limit.period.kind === "calendar";
      out.push({
        budget: b.name,
        period: periodLabel(limit.period),
        limit: limit.amount,
        key: limitKey(b.name, limit),
        calendar,
        bucket: limit.period.kind === "calendar" ? bucketStart(limit.period.unit, nowMs) : 0,
        sinceMs: limit.period.kind === "rolling" ? nowMs - limit.period.seconds * 1000 : 0,
      });
    }
  }
  return out;
}

/** The first limit the price does not fit, in config order; null when it fits all. */
export function firstDenial(
  checks: readonly LimitCheck[],
  used: readonly bigint[],
  price: bigint,
): BudgetDenial | null {
  for (const [i, c] of checks.entries()) {
    const spent = used[i] ?? 0n;
    if (spent + price > c.limit) return { budget: c.budget, period: c.period, limit: c.limit, spent, price };
  }
  return null;
}

/** The reasons written on rows the store adds by itself (the same text as before). */
/**
 * After a restart, what becomes of a payment a stopped writer left open (docs/operations.md,
 * crash recovery): still `reserved` means its header was never handed to a socket (the `sent`
 * row is written before the first byte), so nothing can have been charged and it is released;
 * `sent` may have been charged and stays counted as indeterminate.
 */
export function interruptedOutcome(latest: "reserved" | "sent" | string): {
  state: "failed" | "indeterminate";
  reason: string;
} {
  return latest === "reserved"
    ? { state: "failed", reason: NEVER_SENT_REASON }
    : { state: "indeterminate", reason: INTERRUPTED_REASON };
}

export const NEVER_SENT_REASON =
  "interrupted before the payment header was handed to the socket (before or after signing): nothing was sent, released";

export const INTERRUPTED_REASON =
  "interrupted after the payment header was handed to the socket: the outcome is unknown";
export const LEASE_EXPIRED_REASON = "lease expired before the outcome was known";
