import type { Budget, BudgetLimit } from "../config/config.js";
import type { BudgetStore, BudgetStoreWatcher } from "../budget/store.js";
import type { ChainCheck, LedgerFields, LedgerRow } from "../ledger/entry.js";
import type { Ledger, PaymentSummary } from "../ledger/ledger.js";
import type { Db } from "../storage/sqlite.js";
import { UnknownPayment, factsOf } from "./payment-store.js";
import type {
  ChainHead,
  OpenRequest,
  OpenResult,
  PaymentStore,
  Resolution,
  StateChange,
  RecoveredPayments,
} from "./payment-store.js";
import {
  INTERRUPTED_REASON,
  LEASE_EXPIRED_REASON,
  NEVER_SENT_REASON,
  budgetStepFor,
  interruptedOutcome,
} from "./payment-transitions.js";

/**
 * The payment store of a replica whose budgets live in a budget engine of their own (Redis,
 * shared by replicas), its ledger in its own SQLite file. Two stores cannot share a
 * transaction, so the order is the one that never loses money: the `reserved` row is written
 * inside the reservation step (a failing row releases it), every later row is written first
 * and the budget moves after it. When the budget step fails (Redis down), the reservation's
 * lease turns it indeterminate later: the money stays counted, never silently freed.
 *
 * This is how the proxy kept its books before the payment store, kept as it was for
 * `budget_store.kind: redis` (epochs, `budgets status|restore|reset`; src/budget/epoch.ts).
 */
/** Where a failed budget step is told (the proxy's logger; this layer sits below it). */
export interface ErrorLog {
  error(fields: Record<string, unknown>, message: string): void;
}

export class LedgerBesideBudgets implements PaymentStore {
  readonly kind = "redis" as const;

  constructor(
    readonly db: Db,
    readonly ledger: Ledger,
    readonly budgets: BudgetStore,
    private readonly logger: ErrorLog,
  ) {}

  async open(r: OpenRequest): Promise<OpenResult> {
    let row: LedgerRow | undefined;
    const fields: LedgerFields = {
      ...r.payment,
      atMs: r.nowMs,
      state: "reserved",
      tx: null,
      upstreamStatus: null,
      reason: null,
    };
    const result = await this.budgets.reserve(
      {
        paymentId: r.payment.paymentId,
        budgets: r.budgets,
        amount: r.payment.amount,
        nowMs: r.nowMs,
        leaseUntilMs: r.leaseUntilMs,
      },
      () => {
        row = this.ledger.append(fields);
      },
    );
    if (!result.ok) return result;
    if (!row) throw new Error("the reservation was made without its ledger row");
    return { ok: true, row };
  }

  private firstRow(paymentId: string): LedgerRow {
    const first = this.ledger.firstOf(paymentId);
    if (!first) throw new UnknownPayment(paymentId);
    return first;
  }

  /** A budget step after its row: a failure is logged, and the lease keeps the money counted. */
  private async step(paymentId: string, step: "commit" | "release" | "markIndeterminate"): Promise<void> {
    try {
      await this.budgets[step](paymentId);
    } catch (e) {
      this.logger.error(
        { payment_id: paymentId, step, err: (e as Error).message },
        "budget update failed; the lease will keep the amount counted",
      );
    }
  }

  async record(change: StateChange): Promise<LedgerRow> {
    const row = this.ledger.append({
      ...factsOf(this.firstRow(change.paymentId)),
      atMs: change.atMs,
      state: change.state,
      tx: change.tx,
      upstreamStatus: change.upstreamStatus,
      reason: change.reason,
    });
    const step = budgetStepFor(change.state);
    if (step !== "none") await this.step(change.paymentId, step === "hold" ? "markIndeterminate" : step);
    return row;
  }

  async expireLeases(nowMs: number): Promise<string[]> {
    const ids = new Set(await this.budgets.expireLeases(nowMs));
    for (const row of this.ledger.inState("reserved", "sent")) {
      if (ids.has(row.paymentId)) this.hold(row, nowMs, LEASE_EXPIRED_REASON);
    }
    return [...ids];
  }

  private hold(row: LedgerRow, nowMs: number, reason: string): void {
    this.ledger.append({
      ...factsOf(row),
      atMs: nowMs,
      state: "indeterminate",
      tx: row.tx,
      upstreamStatus: null,
      reason,
    });
  }

  async recoverInterrupted(nowMs: number): Promise<RecoveredPayments> {
    // This file has one writer, which is starting: whatever it left open was interrupted.
    const done: RecoveredPayments = { released: [], indeterminate: [] };
    for (const row of this.ledger.inState("reserved", "sent")) {
      if (interruptedOutcome(row.state).state === "failed") {
        // The ledger row first, then the budget: a failed release leaves the lease to hold it.
        this.ledger.append({
          ...factsOf(row),
          atMs: nowMs,
          state: "failed",
          tx: row.tx,
          upstreamStatus: null,
          reason: NEVER_SENT_REASON,
        });
        await this.step(row.paymentId, "release");
        done.released.push(row.paymentId);
      } else {
        this.hold(row, nowMs, INTERRUPTED_REASON);
        await this.step(row.paymentId, "markIndeterminate");
        done.indeterminate.push(row.paymentId);
      }
    }
    return done;
  }

  async resolveIndeterminate(res: Resolution): Promise<LedgerRow | null> {
    const last = this.ledger.latestOf(res.paymentId);
    if (!last) throw new UnknownPayment(res.paymentId);
    if (last.state !== "indeterminate") return null;
    const row = this.ledger.append({
      ...factsOf(last),
      atMs: res.atMs,
      state: res.charged ? "settled" : "rejected",
      tx: last.tx,
      upstreamStatus: null,
      reason: res.reason,
    });
    await this.budgets.resolveIndeterminate(res.paymentId, res.charged);
    return row;
  }

  async *rows(sinceMs = 0): AsyncGenerator<LedgerRow> {
    // Read at once: an iterator left open across awaits would hold the connection.
    yield* [...this.ledger.rows(sinceMs)];
  }

  async latest(): Promise<PaymentSummary[]> {
    return this.ledger.latest();
  }

  async head(): Promise<ChainHead | null> {
    return this.ledger.head();
  }

  async verify(): Promise<ChainCheck> {
    return this.db.transaction(() => this.ledger.verify())();
  }

  used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint> {
    return this.budgets.used(budget, limit, nowMs);
  }

  reserved(budget: Budget): Promise<bigint> {
    return this.budgets.reserved(budget);
  }

  async indeterminateCount(): Promise<number> {
    return this.ledger.inState("indeterminate").length;
  }

  check(): Promise<string | null> {
    return this.budgets.check();
  }

  stateLost(): string | null {
    return this.budgets.stateLost?.() ?? null;
  }

  watch(watcher: BudgetStoreWatcher): void {
    this.budgets.watch?.(watcher);
  }

  async close(): Promise<void> {
    await this.budgets.close();
    if (this.db.open) this.db.close();
  }
}
