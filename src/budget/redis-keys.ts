import { bucketEnd, bucketStart, limitKey } from "./budget.js";
import type { Budget, BudgetLimit } from "../config/config.js";

/**
 * Where the Redis budget store keeps what, under one prefix. The store's scripts and
 * `stoka-proxy budgets restore` build keys here, so a restored Redis is exactly what the
 * scripts would have written. Pure.
 */
export const KEEP_FINISHED_BUCKETS_MS = 35 * 86_400_000;

/** The placeholder member that keeps a rolling window's sorted set alive when it is empty. */
export const ROLLING_PLACEHOLDER = "~";

export function redisKeys(prefix: string) {
  return {
    /** The epoch record: id, origin, generation, `lost` and one `k:<key>` per counter made. */
    epoch: `${prefix}:epoch`,
    leases: `${prefix}:leases`,
    reservation: (paymentId: string) => `${prefix}:res:${paymentId}`,
    reserved: (budget: string) => `${prefix}:reserved:${budget}`,
    counter: (limit: string, bucket: number) => `${prefix}:c:${limit}:${bucket}`,
    rolling: (limit: string) => `${prefix}:r:${limit}`,
    /** Key families a restore or reset clears (everything but the epoch record). */
    families: [
      `${prefix}:c:*`,
      `${prefix}:r:*`,
      `${prefix}:res:*`,
      `${prefix}:reserved:*`,
      `${prefix}:leases`,
    ],
  };
}

/** One limit of one budget as the reserve script sees it. */
export interface LimitSlot {
  kind: "c" | "r";
  key: string;
  limit: bigint;
  /** Calendar: when the counter expires (ms). Rolling: the window's exclusive start (ms). */
  arg: number;
  budget: Budget;
  period: BudgetLimit;
}

export function limitSlots(prefix: string, budgets: readonly Budget[], nowMs: number): LimitSlot[] {
  const keys = redisKeys(prefix);
  const slots: LimitSlot[] = [];
  for (const budget of budgets) {
    for (const period of budget.limits) {
      const name = limitKey(budget.name, period);
      if (period.period.kind === "calendar") {
        const start = bucketStart(period.period.unit, nowMs);
        // Finished buckets stay a while for `spend` and reconciliation, then expire.
        const arg = bucketEnd(period.period.unit, start) + KEEP_FINISHED_BUCKETS_MS;
        slots.push({ kind: "c", key: keys.counter(name, start), limit: period.amount, arg, budget, period });
      } else {
        const arg = nowMs - period.period.seconds * 1000;
        slots.push({ kind: "r", key: keys.rolling(name), limit: period.amount, arg, budget, period });
      }
    }
  }
  return slots;
}

/** The amount a rolling window member carries (`<payment id>:<amount>`); 0 for the placeholder. */
export function rollingMemberAmount(member: string): bigint {
  const m = /:(\d+)$/.exec(member);
  return m?.[1] ? BigInt(m[1]) : 0n;
}
