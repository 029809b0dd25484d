import { budgetThresholdEvent } from "./events.js";
import type { NotificationEvent } from "./events.js";

/**
 * Decides when a budget limit crosses a threshold (80 %, 100 %, …): each threshold fires once
 * per budget, per limit, per calendar period. A new period (its start moved) arms every
 * threshold again. A rolling window has no start, so there a threshold arms again once the use
 * falls back below it. A jump past several thresholds at once fires each of them (rules may
 * send them to different places). Compares in bigint basis points; no floats touch money.
 *
 * State is in memory: after a restart a limit already past a threshold fires it once more.
 */
export interface LimitUse {
  budget: string;
  /** Period label: `day`, `month`, `rolling_3600s`, … */
  period: string;
  /** Start of the current calendar bucket; null for a rolling window. */
  periodStartMs: number | null;
  limit: bigint;
  /** Spent plus reserved, as the budget store reports it. */
  used: bigint;
}

interface LimitState {
  periodStartMs: number | null;
  fired: Set<number>;
}

export class ThresholdWatcher {
  private readonly thresholds: { percent: number; basisPoints: bigint }[];
  private readonly state = new Map<string, LimitState>();

  /** `maxLimits` bounds the memory when budgets are renamed at run time (oldest forgotten). */
  constructor(
    thresholdsPercent: readonly number[],
    private readonly maxLimits = 10_000,
  ) {
    this.thresholds = [...new Set(thresholdsPercent)]
      .filter((p) => Number.isFinite(p) && p > 0)
      .sort((a, b) => a - b)
      .map((percent) => ({ percent, basisPoints: BigInt(Math.round(percent * 100)) }));
  }

  /** The thresholds this observation newly crossed, lowest first. */
  observe(use: LimitUse): number[] {
    if (use.limit <= 0n || this.thresholds.length === 0) return [];
    const key = `${use.budget}\u0000${use.period}`;
    let s = this.state.get(key);
    if (s === undefined || s.periodStartMs !== use.periodStartMs) {
      s = { periodStartMs: use.periodStartMs, fired: new Set() };
      this.state.delete(key);
      this.state.set(key, s);
      if (this.state.size > this.maxLimits) {
        const oldest = this.state.keys().next().value;
        if (oldest !== undefined) this.state.delete(oldest);
      }
    }
    const scaled = use.used * 10_000n;
    const crossed: number[] = [];
    for (const t of this.thresholds) {
      const reached = scaled >= use.limit * t.basisPoints;
      if (reached && !s.fired.has(t.percent)) {
        s.fired.add(t.percent);
        crossed.push(t.percent);
      } else if (!reached && use.periodStartMs === null) {
        s.fired.delete(t.percent);
      }
    }
    return crossed;
  }

  /** The events for what `observe` found. */
  events(use: LimitUse, atMs: number): NotificationEvent[] {
    return this.observe(use).map((thresholdPercent) =>
      budgetThresholdEvent({ ...use, thresholdPercent, atMs }),
    );
  }
}
