import type { Budget } from "../config/config.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import type { BudgetDenial } from "../budget/store.js";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { LedgerRow } from "../ledger/entry.js";
import { factsOf } from "../store/payment-store.js";
import type { LaterState, PaymentFacts, PaymentStore, RecoveredPayments } from "../store/payment-store.js";
import type { Reservation } from "./decide.js";
import type { LedgerClose } from "./settle.js";

/**
 * One payment's bookkeeping over the configured payment store (stores.ts): the reservation and
 * its `reserved` row in one step, every later row with its budget step. The store keeps the
 * order that never loses money; what this adds is the proxy's answer to a store that cannot be
 * used: before anything is signed, refuse (402 `budget_unavailable`); after the payment left,
 * log it and let the reservation's lease turn it indeterminate, so the money stays counted.
 */
export type PaymentBase = PaymentFacts;

/** The fixed fields of a payment, from any of its rows. */
export function baseOf(row: LedgerRow): PaymentBase {
  return factsOf(row);
}

export class PaymentBook {
  constructor(
    readonly store: PaymentStore,
    private readonly logger: Logger,
    readonly now: () => number,
    private readonly leaseMs: number,
  ) {}

  async open(
    base: PaymentBase,
    budgets: readonly Budget[],
  ): Promise<{ ok: true; payment: OpenPayment } | { ok: false; denial: BudgetDenial }> {
    const nowMs = this.now();
    const r = await this.store.open({ payment: base, budgets, nowMs, leaseUntilMs: nowMs + this.leaseMs });
    if (!r.ok) return r;
    return { ok: true, payment: new OpenPayment(this, base) };
  }

  /**
   * `open`, with the store's outage as an answer rather than an exception: a budget store
   * that cannot be checked refuses the payment (fail closed); any other error is a bug.
   */
  async reserve(base: PaymentBase, budgets: readonly Budget[]): Promise<Reservation<OpenPayment>> {
    try {
      const r = await this.open(base, budgets);
      return r.ok ? { kind: "reserved", payment: r.payment } : { kind: "denied", denial: r.denial };
    } catch (e) {
      if (!(e instanceof BudgetStoreUnavailable)) throw e;
      return { kind: "unavailable", reason: e.message };
    }
  }

  /** A later row of an opened payment, with the budget step its state brings. */
  async append(
    base: PaymentBase,
    state: LaterState,
    tx: string | null,
    status: number | null,
    reason: string | null,
  ): Promise<LedgerRow> {
    return this.store.record({
      paymentId: base.paymentId,
      state,
      atMs: this.now(),
      tx,
      upstreamStatus: status,
      reason,
    });
  }

  /**
   * After a restart: payments left open by a writer that stopped were interrupted. Those never
   * handed to a socket (still `reserved`) are released; those `sent` may have been charged and
   * become indeterminate (still counted) until reconciled. With PostgreSQL only those of
   * replicas that are gone, so it runs again later.
   */
  recoverInterrupted(): Promise<RecoveredPayments> {
    return this.store.recoverInterrupted(this.now());
  }

  /** A closing row the store could not take: the lease keeps the money counted. */
  logFailedClose(paymentId: string, state: LaterState, e: Error): void {
    this.logger.error(
      { payment_id: paymentId, state, err: e.message },
      "the payment store could not record the outcome; the lease will turn it indeterminate (still counted)",
    );
  }

  /** Reservations whose lease ran out (a stuck or crashed request) become indeterminate. */
  expireLeases(): Promise<string[]> {
    return this.store.expireLeases(this.now());
  }
}

export class OpenPayment {
  constructor(
    private readonly book: PaymentBook,
    readonly base: PaymentBase,
  ) {}

  write(
    state: LaterState,
    tx: string | null,
    status: number | null,
    reason: string | null,
  ): Promise<LedgerRow> {
    return this.book.append(this.base, state, tx, status, reason);
  }

  /**
   * The payment header is handed to the socket: written after the connection opened and before
   * its first byte, so a payment without this row provably never left. A resend of the same
   * header writes another one, with its reason. When the store cannot take it, nothing is sent;
   * the reservation stays counted until its lease turns it indeterminate.
   */
  async sent(tx: string | null, reason: string | null = null): Promise<void> {
    try {
      await this.write("sent", tx, null, reason);
    } catch (e) {
      if (!(e instanceof BudgetStoreUnavailable)) throw e;
      throw new StokaProxyError(
        "budget_unavailable",
        `the payment could not be recorded before sending it, so it was not sent: ${e.message}`,
        "retry when the payment store answers (see /readyz)",
      );
    }
  }

  /**
   * The outcome is known (payment/settle.ts): its row and budget step. The app's answer does
   * not wait on a store that cannot be used: the payment stays open in it, and its lease turns
   * it indeterminate (counted until reconciled).
   */
  async close(row: LedgerClose): Promise<void> {
    try {
      await this.write(row.state, row.tx, row.status, row.reason);
    } catch (e) {
      if (!(e instanceof BudgetStoreUnavailable)) throw e;
      this.book.logFailedClose(this.base.paymentId, row.state, e);
    }
  }
}
