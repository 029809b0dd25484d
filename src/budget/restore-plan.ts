import { bucketStart, periodLabel } from "./budget.js";
import type { PaymentSummary } from "../ledger/ledger.js";
import { budgetsForRow, isCounted } from "./ledger-spend.js";
import type { SpendScope } from "./ledger-spend.js";
import { limitSlots } from "./redis-keys.js";

/**
 * What `stoka-proxy budgets restore` writes into Redis, computed from the replicas' ledgers:
 * the counters of the current calendar buckets and rolling windows, and a reservation record
 * for every payment still open or indeterminate (so its later settle, release or
 * reconciliation moves the restored counters as it would have moved the lost ones). Pure.
 */
export type RestorePayment = Pick<
  PaymentSummary,
  "paymentId" | "state" | "amount" | "startedAtMs" | "url" | "method" | "route" | "client"
>;

export interface RestoredReservation {
  paymentId: string;
  state: "reserved" | "indeterminate";
  amount: bigint;
  keys: ["c" | "r", string][];
  budgets: string[];
  leaseUntilMs: number;
}

export interface RestorePlan {
  counters: Map<string, { value: bigint; expiresAtMs: number }>;
  rolling: Map<string, { score: number; member: string }[]>;
  reservations: RestoredReservation[];
  reserved: Map<string, bigint>;
  /** `k:<key>` marks for the epoch record: when each counter expires (0 = never). */
  marks: Map<string, number>;
  /** Payments counted (each once, whatever number of budgets it fell in). */
  counted: number;
  /** Use of each configured limit at `nowMs` once restored. */
  limits: { budget: string; period: string; used: bigint; limit: bigint }[];
}

export function emptyPlan(): RestorePlan {
  return {
    counters: new Map(),
    rolling: new Map(),
    reservations: [],
    reserved: new Map(),
    marks: new Map(),
    counted: 0,
    limits: [],
  };
}

export function planRestore(
  payments: Iterable<RestorePayment>,
  scope: SpendScope & { prefix: string },
  nowMs: number,
  leaseMs: number,
): RestorePlan {
  const plan = emptyPlan();
  const seen = new Set<string>();
  for (const p of payments) {
    if (!isCounted(p.state) || seen.has(p.paymentId)) continue;
    seen.add(p.paymentId);
    const budgets = budgetsForRow(p, scope);
    if (budgets.length === 0) continue;
    const keys: ["c" | "r", string][] = [];
    for (const slot of limitSlots(scope.prefix, budgets, p.startedAtMs)) {
      const period = slot.period.period;
      if (period.kind === "calendar") {
        // Only the current bucket (or a later one, when a replica's clock ran ahead).
        if (bucketStart(period.unit, p.startedAtMs) < bucketStart(period.unit, nowMs)) continue;
        const c = plan.counters.get(slot.key) ?? { value: 0n, expiresAtMs: slot.arg };
        c.value += p.amount;
        plan.counters.set(slot.key, c);
        plan.marks.set(slot.key, slot.arg);
      } else {
        if (p.startedAtMs <= nowMs - period.seconds * 1000) continue;
        const members = plan.rolling.get(slot.key) ?? [];
        members.push({ score: p.startedAtMs, member: `${p.paymentId}:${p.amount}` });
        plan.rolling.set(slot.key, members);
        plan.marks.set(slot.key, 0);
      }
      keys.push([slot.kind, slot.key]);
    }
    plan.counted += 1;
    if (p.state === "settled") continue;
    const open = p.state === "reserved" || p.state === "sent";
    plan.reservations.push({
      paymentId: p.paymentId,
      state: open ? "reserved" : "indeterminate",
      amount: p.amount,
      keys,
      budgets: budgets.map((b) => b.name),
      leaseUntilMs: nowMs + leaseMs,
    });
    if (open)
      for (const b of budgets) plan.reserved.set(b.name, (plan.reserved.get(b.name) ?? 0n) + p.amount);
  }
  for (const slot of limitSlots(scope.prefix, scope.budgets, nowMs)) {
    const period = slot.period.period;
    const used =
      slot.kind === "c"
        ? (plan.counters.get(slot.key)?.value ?? 0n)
        : (plan.rolling.get(slot.key) ?? [])
            .filter((m) => period.kind === "rolling" && m.score > nowMs - period.seconds * 1000)
            .reduce((s, m) => s + BigInt(m.member.slice(m.member.lastIndexOf(":") + 1)), 0n);
    plan.limits.push({ budget: slot.budget.name, period: periodLabel(period), used, limit: slot.limit });
  }
  return plan;
}
