import { bucketStart, periodLabel } from "./budget.js";
import type { Budget, BudgetLimit } from "./budget.js";
import type { BudgetStore, ReserveResult } from "./store.js";

interface Entry {
  budget: string;
  limit: number;
  /** Calendar bucket start, or the payment time for rolling windows. */
  bucket: number;
  atMs: number;
  amount: bigint;
}

/**
 * A single-process budget engine. Reservations are counted against every bucket at once, in one
 * synchronous step, so concurrent requests on the event loop can never overspend.
 */
export class MemoryBudgetStore implements BudgetStore {
  private readonly entries = new Map<string, Entry[]>();
  private readonly state = new Map<string, "reserved" | "spent" | "indeterminate">();

  async reserve(
    paymentId: string,
    budgets: readonly Budget[],
    amount: bigint,
    nowMs: number,
  ): Promise<ReserveResult> {
    const planned: Entry[] = [];
    for (const b of budgets) {
      for (const [i, limit] of b.limits.entries()) {
        const used = this.usedSync(b.name, i, limit, nowMs);
        if (used + amount > limit.amount) {
          return {
            ok: false,
            denial: {
              budget: b.name,
              period: periodLabel(limit.period),
              limit: limit.amount,
              spent: used,
              price: amount,
            },
          };
        }
        planned.push({ budget: b.name, limit: i, bucket: this.bucketOf(limit, nowMs), atMs: nowMs, amount });
      }
    }
    this.entries.set(paymentId, planned);
    this.state.set(paymentId, "reserved");
    return { ok: true };
  }

  async commit(paymentId: string): Promise<void> {
    if (this.state.has(paymentId)) this.state.set(paymentId, "spent");
  }

  async release(paymentId: string): Promise<void> {
    if (this.state.get(paymentId) === "reserved") {
      this.entries.delete(paymentId);
      this.state.delete(paymentId);
    }
  }

  async markIndeterminate(paymentId: string): Promise<void> {
    if (this.state.has(paymentId)) this.state.set(paymentId, "indeterminate");
  }

  async used(budget: Budget, limitIndex: number, nowMs: number): Promise<bigint> {
    const limit = budget.limits[limitIndex];
    return limit ? this.usedSync(budget.name, limitIndex, limit, nowMs) : 0n;
  }

  async close(): Promise<void> {}

  private bucketOf(limit: BudgetLimit, nowMs: number): number {
    return limit.period.kind === "calendar" ? bucketStart(limit.period.unit, nowMs) : nowMs;
  }

  private usedSync(budget: string, index: number, limit: BudgetLimit, nowMs: number): bigint {
    let sum = 0n;
    const current = limit.period.kind === "calendar" ? bucketStart(limit.period.unit, nowMs) : 0;
    const windowStart = limit.period.kind === "rolling" ? nowMs - limit.period.seconds * 1000 : 0;
    for (const list of this.entries.values()) {
      for (const e of list) {
        if (e.budget !== budget || e.limit !== index) continue;
        if (limit.period.kind === "calendar" ? e.bucket === current : e.atMs > windowStart) sum += e.amount;
      }
    }
    return sum;
  }
}
