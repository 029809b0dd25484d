import type { Budget } from "../config/config.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import type { BudgetDenial, BudgetStore } from "../budget/store.js";
import type { Logger } from "../observability/logger.js";
import type { LedgerFields, LedgerRow, PaymentState } from "../ledger/entry.js";
import type { Ledger } from "../ledger/ledger.js";
import { planRecovery } from "../resilience/crash-recovery.js";
import type { RecoveryPlan } from "../resilience/crash-recovery.js";
import type { Reservation } from "./decide.js";
import type { LedgerClose } from "./settle.js";

/**
 * One payment's bookkeeping: the budget reservation and the ledger rows, in the order that
 * never loses money: the ledger row is written first (durable), then the budget moves.
 * If a budget update fails afterwards (Redis down), the reservation's lease turns it
 * indeterminate later: money stays counted, never silently freed.
 */
export type PaymentBase = Omit<LedgerFields, "state" | "tx" | "upstreamStatus" | "reason" | "atMs">;

/** The fixed fields of a payment, from any of its rows. */
export function baseOf(row: LedgerRow): PaymentBase {
  return {
    paymentId: row.paymentId,
    requestId: row.requestId,
    client: row.client,
    route: row.route,
    method: row.method,
    url: row.url,
    amount: row.amount,
    payTo: row.payTo,
    asset: row.asset,
    network: row.network,
  };
}

export class PaymentBook {
  constructor(
    readonly budgets: BudgetStore,
    readonly ledger: Ledger,
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly leaseMs: number,
  ) {}

  async open(
    base: PaymentBase,
    budgets: readonly Budget[],
  ): Promise<{ ok: true; payment: OpenPayment } | { ok: false; denial: BudgetDenial }> {
    const nowMs = this.now();
    const payment = new OpenPayment(this, base);
    // The ledger row is written inside the reservation's atomic step: a crash leaves the
    // money either reserved and recorded, or neither.
    const r = await this.budgets.reserve(
      { paymentId: base.paymentId, budgets, amount: base.amount, nowMs, leaseUntilMs: nowMs + this.leaseMs },
      () => payment.write("reserved", null, null, null),
    );
    if (!r.ok) return r;
    return { ok: true, payment };
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

  append(
    base: PaymentBase,
    state: PaymentState,
    tx: string | null,
    status: number | null,
    reason: string | null,
  ): void {
    this.ledger.append({ ...base, atMs: this.now(), state, tx, upstreamStatus: status, reason });
  }

  async budgetStep(paymentId: string, step: "commit" | "release" | "markIndeterminate"): Promise<void> {
    try {
      await this.budgets[step](paymentId);
    } catch (e) {
      this.logger.error(
        { payment_id: paymentId, step, err: (e as Error).message },
        "budget update failed; the lease will keep the amount counted",
      );
    }
  }

  /**
   * After a restart: payments this ledger left `reserved` or `sent` were interrupted. Those
   * never handed to a socket (still `reserved`) provably sent nothing and are released; the
   * rest may have been charged and become indeterminate (still counted) until reconciled.
   * planRecovery (resilience/crash-recovery.ts) decides; this applies it.
   */
  async recoverInterrupted(): Promise<RecoveryPlan> {
    const open = this.ledger.inState("reserved", "sent");
    const byId = new Map(open.map((r) => [r.paymentId, r]));
    // Only `reserved` and `sent` are written before an outcome: the latest row tells the story.
    const plan = planRecovery(
      open.map((r) => ({
        paymentId: r.paymentId,
        amount: r.amount,
        rows: r.state === "reserved" ? [{ state: "reserved" }] : [{ state: "reserved" }, { state: "sent" }],
      })),
    );
    for (const p of plan.release) {
      const row = byId.get(p.paymentId) as LedgerRow;
      this.append(baseOf(row), "failed", row.tx, null, p.reason);
      await this.budgetStep(p.paymentId, "release");
    }
    for (const p of plan.indeterminate) {
      const row = byId.get(p.paymentId) as LedgerRow;
      this.append(baseOf(row), "indeterminate", row.tx, null, p.reason);
      await this.budgetStep(p.paymentId, "markIndeterminate");
    }
    return plan;
  }

  /** Reservations whose lease ran out (a stuck or crashed request) become indeterminate. */
  async expireLeases(): Promise<string[]> {
    const ids = new Set(await this.budgets.expireLeases(this.now()));
    for (const row of this.ledger.inState("reserved", "sent")) {
      if (ids.has(row.paymentId)) {
        this.append(baseOf(row), "indeterminate", row.tx, null, "lease expired before the outcome was known");
      }
    }
    return [...ids];
  }
}

export class OpenPayment {
  constructor(
    private readonly book: PaymentBook,
    readonly base: PaymentBase,
  ) {}

  write(state: PaymentState, tx: string | null, status: number | null, reason: string | null): void {
    this.book.append(this.base, state, tx, status, reason);
  }

  /**
   * The payment header is handed to the socket: written after the connection opened and before
   * its first byte, so a payment without this row provably never left. A resend of the same
   * header writes another one, with its reason.
   */
  sent(tx: string | null, reason: string | null = null): void {
    this.write("sent", tx, null, reason);
  }

  /** The outcome is known (payment/settle.ts): its row, then the budget step. */
  async close(row: LedgerClose): Promise<void> {
    this.write(row.state, row.tx, row.status, row.reason);
    await this.book.budgetStep(this.base.paymentId, row.budget);
  }
}
