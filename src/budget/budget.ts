import { normaliseHost } from "../http/host-name.js";
import { globMatches } from "../parsing/glob.js";
import type { Budget, BudgetLimit, CalendarUnit, Period } from "../config/config.js";

/**
 * The budget engine's pure half: which budgets cover a payment, the per-request cap, and the
 * UTC calendar buckets (stoka's own usage counters are per UTC day) or rolling windows a limit
 * counts in. Budgets are defined by the configuration (config/config.ts). Money is bigint
 * atomic units everywhere. Hosts compare in their normalised spelling (http/host-name.ts), as
 * every other host policy does.
 */
export interface PaymentSubject {
  host: string;
  method: string;
  path: string;
  route: string;
  client: string;
}

export function periodLabel(p: Period): string {
  return p.kind === "calendar" ? p.unit : `rolling_${p.seconds}s`;
}

/** Start of the UTC calendar bucket holding `nowMs`; weeks start on Monday (ISO 8601). */
export function bucketStart(unit: CalendarUnit, nowMs: number): number {
  const d = new Date(nowMs);
  switch (unit) {
    case "hour":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours());
    case "day":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    case "week": {
      const sinceMonday = (d.getUTCDay() + 6) % 7;
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - sinceMonday);
    }
    case "month":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  }
}

function oneOf(list: string[] | undefined, value: string, cmp = (a: string, b: string) => a === b): boolean {
  return list === undefined || list.length === 0 || list.some((x) => cmp(x, value));
}

const sameHost = (a: string, b: string) =>
  (normaliseHost(a) ?? a.toLowerCase()) === (normaliseHost(b) ?? b.toLowerCase());

/** Every budget whose match covers this payment; an empty match covers everything. */
export function matchingBudgets(budgets: readonly Budget[], s: PaymentSubject): Budget[] {
  return budgets.filter(
    (b) =>
      oneOf(b.match.hosts, s.host, sameHost) &&
      oneOf(b.match.methods, s.method, (a, v) => a.toUpperCase() === v.toUpperCase()) &&
      oneOf(b.match.paths, s.path, globMatches) &&
      oneOf(b.match.routes, s.route) &&
      oneOf(b.match.clients, s.client),
  );
}

/** The lowest per-request cap among the budgets, or undefined when none sets one. */
export function perRequestCap(budgets: readonly Budget[]): { cap: bigint; budget: string } | undefined {
  let best: { cap: bigint; budget: string } | undefined;
  for (const b of budgets) {
    if (b.perRequestMax !== undefined && (best === undefined || b.perRequestMax < best.cap)) {
      best = { cap: b.perRequestMax, budget: b.name };
    }
  }
  return best;
}

/** Stable identity of one limit of one budget: survives reordering the config. */
export function limitKey(budget: string, limit: BudgetLimit): string {
  return `${budget}:${periodLabel(limit.period)}`;
}

/** Exclusive end of the UTC calendar bucket that starts at `start`. */
export function bucketEnd(unit: CalendarUnit, start: number): number {
  const d = new Date(start);
  switch (unit) {
    case "hour":
      return start + 3_600_000;
    case "day":
      return start + 86_400_000;
    case "week":
      return start + 7 * 86_400_000;
    case "month":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  }
}

/**
 * Rolling windows are totalled in slots of this length (the stores' budget_totals): a
 * reservation adds the slots after the one holding the window's start and sums only that
 * slot's entries, about ROLLING_SLOTS rows and 1/ROLLING_SLOTS of the window's entries instead
 * of all of them. The SQL in sqlite-store.ts and postgres-migrations.ts computes the same.
 */
export const ROLLING_SLOTS = 64;

export function rollingSlotMs(seconds: number): number {
  return Math.max(1000, Math.floor((seconds * 1000 + ROLLING_SLOTS - 1) / ROLLING_SLOTS));
}
