import type { Budget, BudgetLimit } from "../config/config.js";

/** Why a reservation was refused: enough to tell the app which limit stopped it. */
export interface BudgetDenial {
  budget: string;
  period: string;
  limit: bigint;
  spent: bigint;
  price: bigint;
}

export type ReserveResult = { ok: true } | { ok: false; denial: BudgetDenial };

export interface ReservationRequest {
  paymentId: string;
  budgets: readonly Budget[];
  amount: bigint;
  nowMs: number;
  /** A reservation not settled by then turns indeterminate (never silently freed). */
  leaseUntilMs: number;
}

/** The budget engine is unreachable, or lost its state: refuse to pay (fail closed). */
export class BudgetStoreUnavailable extends Error {}

/** Told once when a store finds its state lost, and once when an operator restored it. */
export interface BudgetStoreWatcher {
  lost(message: string): void;
  restored(epoch: string, origin: string): void;
}

/**
 * One interface over the budget engines (SQLite, Redis). `reserve` is atomic across every
 * matching budget and limit: all or nothing, before signing. Settled → spent; rejected →
 * released; indeterminate → stays spent (docs/architecture.md, The outcome table).
 */
export interface BudgetStore {
  readonly kind: "sqlite" | "redis";
  /**
   * `record` runs once the money is reserved, as part of the same atomic step where the
   * engine allows it (SQLite: the same transaction, so a crash leaves both or neither; Redis:
   * right after the script, and a failing `record` releases the reservation).
   */
  reserve(r: ReservationRequest, record?: () => void): Promise<ReserveResult>;
  /** The payment settled: the reservation becomes spend. */
  commit(paymentId: string): Promise<void>;
  /** Nothing was charged: give the reservation back (never below zero). */
  release(paymentId: string): Promise<void>;
  /** Outcome unknown: keep the money counted as spent until reconciled. */
  markIndeterminate(paymentId: string): Promise<void>;
  /**
   * Reconciliation decided an indeterminate payment: charged → it stays spent; not charged →
   * its amount is given back (never below zero).
   */
  resolveIndeterminate(paymentId: string, charged: boolean): Promise<void>;
  /** Reservations whose lease ran out become indeterminate; returns their payment ids. */
  expireLeases(nowMs: number): Promise<string[]>;
  /** Current use (spent + reserved) of one limit of a budget. */
  used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint>;
  /** Money reserved but not yet settled, per budget (for the gauge). */
  reserved(budget: Budget): Promise<bigint>;
  /** null when usable; otherwise why not (for /readyz). */
  check(): Promise<string | null>;
  /** Redis: why the common state of the replicas is known to be lost (nothing is paid), or null. */
  stateLost?(): string | null;
  /** Redis: subscribe to loss and restore. */
  watch?(watcher: BudgetStoreWatcher): void;
  close(): Promise<void>;
}
