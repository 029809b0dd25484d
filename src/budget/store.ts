import type { Budget } from "./budget.js";

/** Why a reservation was refused: enough to tell the app which limit stopped it. */
export interface BudgetDenial {
  budget: string;
  period: string;
  limit: bigint;
  spent: bigint;
  price: bigint;
}

export type ReserveResult = { ok: true } | { ok: false; denial: BudgetDenial };

/**
 * One interface over the budget engines. `reserve` is atomic across every matching budget and
 * limit: all or nothing, before signing. Settled → spent; rejected → released; indeterminate
 * → stays spent (design.md §2).
 */
export interface BudgetStore {
  reserve(
    paymentId: string,
    budgets: readonly Budget[],
    amount: bigint,
    nowMs: number,
  ): Promise<ReserveResult>;
  /** The payment settled: the reservation becomes spend. */
  commit(paymentId: string): Promise<void>;
  /** Nothing was charged: give the reservation back. */
  release(paymentId: string): Promise<void>;
  /** Outcome unknown: keep the money counted as spent until reconciled. */
  markIndeterminate(paymentId: string): Promise<void>;
  /** Current use (spent + reserved) of one budget limit. */
  used(budget: Budget, limitIndex: number, nowMs: number): Promise<bigint>;
  close(): Promise<void>;
}
