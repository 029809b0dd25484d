import type { ApprovalRule } from "../../config/config.js";
import { formatUsdc } from "../../stellar/amount.js";

/**
 * Whether a payment waits for a person (docs/configuration.md, Approvals). Pure: the caller
 * (proxy/approval-gate.ts) reads each budget's day use after the reservation, so the use
 * already counts this payment and every other one open right now: the safe side.
 *
 *   rule          needs a person when
 *   above         the price is strictly above it (equal passes)
 *   daily_mark    the day's use with this payment is strictly above it (reaching it passes),
 *                 or the day's use could not be read (nothing unchecked is paid)
 *
 * Several matching budgets: any one asking is enough; the wait is the shortest they set.
 */
export interface ApprovalBudget {
  name: string;
  approval?: ApprovalRule;
  /** Spent + reserved in the budget's current UTC day, this payment included; null = unreadable. */
  dayUsed?: bigint | null;
}

export type ApprovalNeed =
  | { kind: "none" }
  | {
      kind: "needed";
      /** One sentence per budget that asks, for the person deciding and the refusal. */
      reasons: string[];
      budgets: string[];
      timeoutMs: number;
    };

export function needsApproval(price: bigint, budgets: readonly ApprovalBudget[]): ApprovalNeed {
  const reasons: string[] = [];
  const names: string[] = [];
  let timeoutMs = Number.POSITIVE_INFINITY;
  for (const b of budgets) {
    const rule = b.approval;
    if (!rule) continue;
    const why: string[] = [];
    if (rule.above !== undefined && price > rule.above)
      why.push(`the price ${formatUsdc(price)} is above its approval mark ${formatUsdc(rule.above)}`);
    if (rule.dailyMark !== undefined) {
      if (b.dayUsed === null || b.dayUsed === undefined) why.push("its spend today could not be read");
      else if (b.dayUsed > rule.dailyMark)
        why.push(
          `its spend today with this payment, ${formatUsdc(b.dayUsed)}, passes its daily mark ${formatUsdc(rule.dailyMark)}`,
        );
    }
    if (why.length === 0) continue;
    reasons.push(`budget ${b.name}: ${why.join("; ")}`);
    names.push(b.name);
    timeoutMs = Math.min(timeoutMs, rule.timeoutMs);
  }
  return names.length === 0 ? { kind: "none" } : { kind: "needed", reasons, budgets: names, timeoutMs };
}

/** Whether any budget could ask at all (so the day's use is only read when it matters). */
export function dailyMarked(budgets: readonly { approval?: ApprovalRule }[]): boolean {
  return budgets.some((b) => b.approval?.dailyMark !== undefined);
}
